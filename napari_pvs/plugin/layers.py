"""Conversion between napari layers and engine :class:`~napari_pvs.engine.io.Volume` objects.

Imports neither napari nor Qt (layers are used through their attributes), so the reader,
the writer, the sample data and the widgets all share it.

**World frame.** napari-pvs places every layer in one world frame, in mm: napari's world
axes ``(0, 1, 2)`` are ``(S, P, L)``, i.e. the LPS coordinates of ITK and DICOM in
``(z, y, x)`` order (``S = z_RAS, P = -y_RAS, L = -x_RAS``). A layer's data ``(Z, Y, X)``
= NIfTI ``(k, j, i)`` is mapped there by ``scale`` = the voxel size (mm) and ``affine`` =
the rest of the file's affine (rotation, flips, translation), so a T1, a FLAIR, an atlas
or a second visit opened beside a T2 lines up in world space, oblique scans included, and
every scan is shown the way radiologists view it (anterior up, the patient's left on the
screen's right), whatever its storage order.

Layer metadata keeps the file's geometry so a mask drawn or predicted on the layer is
written back on the same grid: ``affine`` (4x4, NIfTI voxel ``(i, j, k)`` -> RAS mm, the
file's own), ``nifti_header``, ``source_path``, ``orientation``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.errors import PVSInputError
from ..engine.io import Volume

__all__ = ["layer_to_volume", "volume_metadata", "geometry_metadata", "layer_geometry", "is_axial_storage",
           "napari_affine", "nifti_affine_from_napari", "data_to_world_matrix", "header_fits",
           "GEOMETRY_KEYS"]

log = logging.getLogger(__name__)

#: layer metadata keys that describe the source geometry
GEOMETRY_KEYS = ("affine", "nifti_header", "source_path", "orientation")

# data index (k, j, i, 1) <- (i, j, k, 1): reverse the three spatial coordinates
_REVERSE = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
# napari world (S, P, L, 1) <- RAS (x, y, z, 1)
_RAS_TO_NAPARI = np.array([[0, 0, 1, 0], [0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


def napari_affine(nifti_affine: np.ndarray) -> np.ndarray:
    """The full napari data-to-world matrix (4x4, data ``(Z, Y, X)`` -> world ``(S, P, L)`` mm)
    of a NIfTI affine (voxel ``(i, j, k)`` -> RAS mm)."""
    return _RAS_TO_NAPARI @ np.asarray(nifti_affine, dtype=float) @ _REVERSE


def nifti_affine_from_napari(matrix: np.ndarray) -> np.ndarray:
    """Inverse of :func:`napari_affine`: a napari data-to-world matrix -> NIfTI affine."""
    return np.linalg.inv(_RAS_TO_NAPARI) @ np.asarray(matrix, dtype=float) @ _REVERSE


def is_axial_storage(volume: Volume) -> bool:
    """True when the data axes ``(Z, Y, X)`` run closest to the world axes ``(S, P/A, L/R)``
    (axial slices, possibly oblique or flipped), the storage napari can place in the world
    frame: napari cannot display an affine that swaps axes (a coronal or sagittal volume)."""
    from nibabel.orientations import io_orientation

    return [int(a) for a in io_orientation(volume.affine)[:, 0]] == [0, 1, 2]


#: names of the napari-pvs world axes (S, P, L) shown beside the sliders and on the axes
_WORLD_LABELS = ("I→S", "A→P", "R→L")
_FLIPPED_LABELS = ("S→I", "P→A", "L→R")


def layer_geometry(volume: Volume) -> dict:
    """``scale`` (voxel size in mm, ``(Z, Y, X)``), ``affine`` (the rest of the mapping),
    ``units`` (mm) and ``axis_labels`` (the anatomical direction of each world axis, e.g.
    ``"I→S"``) to pass to a napari layer of ``volume``'s data (see the module docstring).

    Volumes not stored axially (coronal, sagittal; e.g. FreeSurfer ``LIA``) get their world
    axes in data order instead (napari cannot show an axis-swapping affine), the axis
    running superior-inferior pointing along its data index (so that its slider counts the
    data slices): they display correctly but do not overlay axial scans in world space; a
    warning is logged.
    """
    scale = np.asarray(volume.voxel_size, dtype=float)
    full = napari_affine(volume.affine)
    labels = list(_WORLD_LABELS)
    if not is_axial_storage(volume):
        log.warning("%s is not stored axially (%s): shown in its own axis order, not aligned in world "
                    "space with axial scans", volume.path or "volume", "".join(volume.orientation))
        order = np.argmax(np.abs(full[:3, :3]), axis=0)   # world axis of each data axis
        perm = np.eye(4)
        perm[:3, :3] = np.eye(3)[order]                   # world axis order[a] -> a
        full = perm @ full
        labels = [_WORLD_LABELS[w] for w in order]
        a = int(np.argmax(order == 0))                    # the data axis along S
        if full[a, a] < 0:                                # S falls with the index: count along I
            full[a] = -full[a]
            labels[a] = _FLIPPED_LABELS[0]
    rest = full @ np.diag([*(1.0 / scale), 1.0])
    return {"scale": tuple(float(s) for s in scale), "affine": rest, "units": ("mm", "mm", "mm"),
            "axis_labels": tuple(labels)}


def header_fits(header, shape_zyx: tuple[int, ...]) -> bool:
    """True when a nibabel header's dimensions are ``shape_zyx`` reversed."""
    try:
        dims = tuple(int(d) for d in header.get_data_shape()[:3])
    except (AttributeError, TypeError):  # not a nibabel header
        return False
    return dims == tuple(shape_zyx)[::-1]


def data_to_world_matrix(state) -> np.ndarray:
    """Full data-to-world 4x4 matrix of 3D layer data, from a layer or its state dict
    (``scale``, ``translate``, ``rotate``, ``shear``, ``affine``, as napari hands writers):
    ``affine @ [rotate @ shear @ scale | translate]``, napari's composition."""
    def get(key, default):
        value = state.get(key) if isinstance(state, dict) else getattr(state, key, None)
        return default if value is None else value

    affine = get("affine", np.eye(4))
    affine = np.asarray(getattr(affine, "affine_matrix", affine), dtype=float)[-4:, -4:]
    scale = np.asarray(get("scale", np.ones(3)), dtype=float)[-3:]
    translate = np.asarray(get("translate", np.zeros(3)), dtype=float)[-3:]
    rotate = np.asarray(get("rotate", np.eye(3)), dtype=float)[-3:, -3:]
    shear = np.asarray(get("shear", np.zeros(3)), dtype=float)
    upper = np.eye(3)
    if shear.shape == (3, 3):
        upper = shear
    elif shear.size == 3:
        upper[0, 1], upper[0, 2], upper[1, 2] = shear
    inner = np.eye(4)
    inner[:3, :3] = rotate @ upper @ np.diag(scale)
    inner[:3, 3] = translate
    return affine @ inner


def layer_to_volume(layer, *, dtype=None) -> Volume:
    """The engine :class:`Volume` of a 3D napari Image or Labels layer.

    Uses the layer metadata's ``affine`` (and ``nifti_header`` when it fits the data
    shape) when present; otherwise the NIfTI affine is derived from the layer's own
    data-to-world transform (``affine``, ``scale``, ``translate``, ...) in the napari-pvs
    world frame. ``Volume.path`` is the metadata's ``source_path`` if any.

    Raises
    ------
    PVSInputError
        The layer is not 3D (e.g. RGB, 2D or 4D), naming the layer.
    """
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
            log.warning("layer '%s': metadata affine is not a valid 4x4 matrix; using the layer's transform",
                        layer.name)
            affine = None
    if affine is None:
        affine = nifti_affine_from_napari(data_to_world_matrix(layer))
        header = None
    if header is not None and not header_fits(header, data.shape):
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
