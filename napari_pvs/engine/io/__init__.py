"""Volumes and their geometry (:mod:`.volume`), NIfTI reading and atomic writing (:mod:`.nifti`)."""

from .nifti import NIFTI_SUFFIXES, atomic_path, is_nifti_name, load_mask, load_volume, save_volume
from .volume import Volume, check_same_grid

__all__ = ["Volume", "check_same_grid", "load_volume", "load_mask", "save_volume", "atomic_path",
           "is_nifti_name", "NIFTI_SUFFIXES"]
