"""Conversion between napari layers and engine :class:`~napari_pvs.engine.io.Volume` objects.

A layer opened with the napari-pvs reader carries the NIfTI geometry in its metadata
(``affine``: 4x4 voxel ``(i, j, k)`` -> RAS mm, ``nifti_header``: the nibabel header,
``source_path``, ``orientation``); its data is ``(Z, Y, X)`` = NIfTI ``(k, j, i)``. Layers
from elsewhere (a drawn labels layer, a TIFF) only have ``scale``/``translate``; their
volume gets a diagonal affine built from those.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.io import Volume

__all__ = ["layer_to_volume", "volume_metadata", "geometry_metadata", "diagonal_affine"]

log = logging.getLogger(__name__)

#: layer metadata keys that describe the source geometry
GEOMETRY_KEYS = ("affine", "nifti_header", "source_path", "orientation")


def diagonal_affine(scale, translate=None) -> np.ndarray:
    """4x4 affine mapping NIfTI ``(i, j, k)`` to mm for a layer with ``(Z, Y, X)`` scale
    and translate (napari order): ``diag(sx, sy, sz)`` with ``(tx, ty, tz)`` offset."""
    scale = np.asarray(scale, dtype=float)[-3:]
    translate = np.zeros(3) if translate is None else np.asarray(translate, dtype=float)[-3:]
    aff = np.eye(4)
    aff[:3, :3] = np.diag(scale[::-1])
    aff[:3, 3] = translate[::-1]
    return aff


def _header_fits(header, shape_zyx: tuple[int, ...]) -> bool:
    try:
        dims = tuple(int(d) for d in header.get_data_shape()[:3])
    except Exception:  # not a nibabel header
        return False
    return dims == tuple(shape_zyx)[::-1]


def layer_to_volume(layer, *, dtype=None) -> Volume:
    """The engine :class:`Volume` of a 3D napari Image or Labels layer.

    Uses the layer metadata's ``affine`` (and ``nifti_header`` when it fits the data
    shape) when present, otherwise a diagonal affine from the layer's ``scale`` and
    ``translate``. ``Volume.path`` is the metadata's ``source_path`` if any.

    Raises
    ------
    PVSInputError
        The layer is not 3D (e.g. RGB, 2D or 4D).
    """
    from ..engine.errors import PVSInputError

    data = np.asarray(layer.data)
    if getattr(layer, "rgb", False) or data.ndim != 3:
        raise PVSInputError(f"layer '{layer.name}' has shape {data.shape}; expected a 3D volume (Z, Y, X)")
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    meta = layer.metadata or {}
    affine = meta.get("affine")
    header = meta.get("nifti_header")
    if affine is not None:
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            log.warning("layer '%s': metadata affine is not a valid 4x4 matrix; using its scale", layer.name)
            affine = None
    if affine is None:
        affine = diagonal_affine(layer.scale, layer.translate)
        header = None
    if header is not None and not _header_fits(header, data.shape):
        log.warning("layer '%s': metadata NIfTI header does not fit shape %s; header ignored",
                    layer.name, data.shape)
        header = None
    path = meta.get("source_path")
    return Volume(data=data, affine=affine, header=header, path=Path(path) if path else None,
                  meta={"napari_layer": str(layer.name)})


def volume_metadata(volume: Volume, **extra: Any) -> dict:
    """Layer metadata describing ``volume``'s geometry (what the reader stores)."""
    md = {
        "affine": np.asarray(volume.affine, dtype=np.float64).copy(),
        "nifti_header": volume.header,
        "source_path": str(volume.path) if volume.path else None,
        "orientation": "".join(volume.orientation),
    }
    md.update(extra)
    return md


def geometry_metadata(layer) -> dict:
    """The geometry entries (:data:`GEOMETRY_KEYS`) of a layer's metadata, to copy onto a
    derived layer so that it is saved on the same grid."""
    meta = layer.metadata or {}
    return {k: meta[k] for k in GEOMETRY_KEYS if k in meta}
