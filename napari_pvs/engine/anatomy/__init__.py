"""Anatomy from the image itself: brain mask (:mod:`.brain`), tissue classes, BG/CSO regions
and the ventricle landmark with approximate rating-slice levels (:mod:`.tissue`)."""

from .brain import brain_mask
from .tissue import (REGION_BG, REGION_CSO, REGION_NAMES, REGION_NONE, Anatomy, AnatomyConfig,
                     analyze_anatomy, csf_class, rating_slice_levels, tissue_regions, wide_csf)

__all__ = ["brain_mask", "Anatomy", "AnatomyConfig", "analyze_anatomy", "tissue_regions",
           "rating_slice_levels", "wide_csf", "csf_class", "REGION_NONE", "REGION_BG", "REGION_CSO", "REGION_NAMES"]
