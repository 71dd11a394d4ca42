"""Anatomy from the image itself: brain mask (:mod:`.brain`), tissue classes, BG/CSO regions
and the ventricle landmark with approximate rating-slice levels (:mod:`.tissue`), where PVS
can lie (:mod:`.regions`) and the morphology helpers in mm (:mod:`.morphology`)."""

from .brain import brain_mask
from .morphology import STRUCTURE_26, dilate_mm, label_components
from .regions import find_brain_mask, find_wide_csf, parenchyma_mask
from .tissue import (REGION_BG, REGION_CSO, REGION_NAMES, REGION_NONE, Anatomy, AnatomyConfig,
                     analyze_anatomy, csf_class, rating_slice_levels, tissue_regions, wide_csf)

__all__ = ["brain_mask", "Anatomy", "AnatomyConfig", "analyze_anatomy", "tissue_regions",
           "rating_slice_levels", "wide_csf", "csf_class", "REGION_NONE", "REGION_BG", "REGION_CSO", "REGION_NAMES",
           "find_brain_mask", "find_wide_csf", "parenchyma_mask", "STRUCTURE_26", "label_components", "dilate_mm"]
