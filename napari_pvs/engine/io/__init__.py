"""Volumes and their geometry (:mod:`.volume`); reading NIfTI, MGH/MGZ and DICOM series,
NIfTI writing, atomic writes (:mod:`.nifti`, :mod:`.dicom`)."""

from .checks import check_memory, check_output_paths, check_scan
from .dicom import DicomSeries, is_dicom_file, list_series, load_dicom
from .nifti import (MGH_SUFFIXES, NIFTI_SUFFIXES, atomic_path, is_mgh_name, is_nifti_name, is_volume_path,
                    load_mask, load_scan, load_volume, save_volume)
from .volume import Volume, check_same_grid

__all__ = ["Volume", "check_same_grid", "load_volume", "load_mask", "save_volume", "atomic_path",
           "is_nifti_name", "is_mgh_name", "is_volume_path", "NIFTI_SUFFIXES", "MGH_SUFFIXES", "DicomSeries",
           "list_series", "load_dicom", "is_dicom_file", "check_scan", "check_memory", "check_output_paths", "load_scan"]
