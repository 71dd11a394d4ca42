"""PVS counting on the BG and CSO rating slices with the Potter grade (:mod:`.counting`)."""

from .counting import (MidsagittalPlane, RatingCounts, SliceCount, VolumeCount, component_table,
                       count_rating_slices, count_slice, count_volume, potter_grade, slab_range, write_counts_csv)

__all__ = ["SliceCount", "RatingCounts", "VolumeCount", "potter_grade", "count_slice", "MidsagittalPlane",
           "slab_range", "count_rating_slices", "count_volume", "write_counts_csv", "component_table"]
