"""napari writers: a Labels or an Image layer -> NIfTI (``.nii`` / ``.nii.gz``) on the source
grid (labels as the smallest integer type that holds them; images, such as the PVS
probability, the ensemble's uncertainty or a warped scan, as float32).

The output takes the exact affine and header of the image the labels belong to, read
from the layer metadata (``affine``, ``nifti_header``, as stored by the napari-pvs reader
and by the Segment widget). A labels layer without that metadata (e.g. drawn on an image
from another reader) is written with the affine of its own data-to-world transform in the
napari-pvs world frame (:mod:`napari_pvs.plugin.layers`), and a warning is logged. Writing is atomic (temporary file, then
rename), via :func:`napari_pvs.engine.io.save_volume`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_labels", "write_image"]

log = logging.getLogger(__name__)


def _label_dtype(data: np.ndarray) -> np.dtype:
    if data.size == 0:
        return np.dtype(np.uint8)
    lo, hi = int(data.min()), int(data.max())
    for dt in (np.uint8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer for Labels layers (see :func:`_write`)."""
    return _write(path, data, meta, kind="labels")


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer for Image layers: the data as float32 NIfTI on the source
    grid (an RGB or 2D image is refused: one line)."""
    return _write(path, data, meta, kind="image")


def _write(path: str, data: Any, meta: dict, *, kind: str) -> list[str]:
    """Write a Labels or Image layer's data as NIfTI on its source grid.

    Parameters
    ----------
    path : str
        Output file; ``.nii`` or ``.nii.gz`` (``.nii.gz`` is added to a name without a
        NIfTI suffix).
    data : array-like
        Labels ``(Z, Y, X)``.
    meta : dict
        The layer's state (napari passes ``metadata``, ``scale``, ``translate``, ...).

    Returns
    -------
    list of str
        The path written.

    Raises
    ------
    PVSInputError
        Labels that are not 3D, or whose shape differs from the source image grid.
    """
    from ..engine.errors import PVSInputError
    from ..engine.io import Volume, is_nifti_name, save_volume
    from .layers import data_to_world_matrix, header_fits, nifti_affine_from_napari

    out = Path(path)
    if not is_nifti_name(out):
        out = out.with_name(out.name + ".nii.gz")
    arr = np.asarray(data)
    if arr.ndim != 3 or meta.get("rgb"):
        raise PVSInputError(f"{kind} have shape {arr.shape}; only 3D (Z, Y, X) {kind} can be written as NIfTI", out)
    metadata = meta.get("metadata") or {}
    affine = metadata.get("affine")
    header = metadata.get("nifti_header")
    if affine is None:
        affine = nifti_affine_from_napari(data_to_world_matrix(meta))
        header = None
        log.warning("%s '%s' carry no source geometry (metadata 'affine'); writing %s with the "
                    "affine of the layer's own transform (scale %s)", kind, meta.get("name", ""), out,
                    tuple(float(v) for v in meta.get("scale", (1.0, 1.0, 1.0))))
    elif header is not None and not header_fits(header, arr.shape):
        raise PVSInputError(f"{kind} shape {arr.shape} (Z, Y, X) does not match the source image grid "
                            f"{tuple(int(d) for d in header.get_data_shape()[:3])[::-1]}", out)
    reference = Volume(data=np.broadcast_to(np.uint8(0), arr.shape), affine=np.asarray(affine, dtype=np.float64),
                       header=header)
    save_volume(out, arr, reference, dtype=_label_dtype(arr) if kind == "labels" else np.float32)
    log.info("wrote %s %s to %s", kind, meta.get("name", ""), out)
    return [str(out)]
