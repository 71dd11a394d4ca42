"""napari reader for scans: NIfTI (``*.nii``, ``*.nii.gz``), FreeSurfer MGH/MGZ (``*.mgz``,
``*.mgh``) and DICOM series (a folder dropped onto the viewer, or any ``.dcm`` file of a
series), all through :func:`napari_pvs.engine.io.load_volume`.

A folder holding several DICOM series: napari asks which one (a list of the series by
number, description and file count); outside a running napari the one-line error lists
them.

The layer data is the engine's ``(Z, Y, X)`` array (NIfTI ``(k, j, i)`` reversed: axis 0
is the slice axis, ``data[z]`` is slice ``z`` as numbered in the file); ``scale`` is the
voxel size in mm along ``(Z, Y, X)`` and ``affine`` the rest of the file's affine, so that
scans opened side by side line up in the napari-pvs world frame (LPS mm, see
:mod:`napari_pvs.plugin.layers`), oblique ones included. The metadata keeps the file's geometry
so that a mask drawn or predicted on it can be written back on the same grid:

``affine``
    4x4 float64, NIfTI voxel ``(i, j, k)`` -> world RAS+ mm (the file's own).
``nifti_header``
    The nibabel header object of the file (for MGZ and DICOM: a NIfTI header made from the
    geometry alone; no patient data).
``source_path``
    The file read (str).
``orientation``
    Axis codes of ``(i, j, k)``, e.g. ``"LPS"``.

Integer-valued images (integer type, or float holding whole numbers only) with few distinct
values (at most 16, all in ``0..255``) or whose file name contains ``mask``, ``label`` or
``seg`` are opened as ``labels`` (integer dtype); other files as a gray ``image``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

__all__ = ["napari_get_reader", "read_scans", "is_label_volume"]

log = logging.getLogger(__name__)

_LABEL_WORDS = ("mask", "label", "seg")
_MAX_LABEL_VALUES = 16


def napari_get_reader(path: "str | list[str]"):
    """npe2 ``get_reader``: the reader function for scans napari-pvs reads (NIfTI, MGH/MGZ,
    a DICOM file or a folder of them), None for anything else."""
    from ..engine.io import is_volume_path

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(is_volume_path(p) for p in paths):
        return None
    return read_scans


def _integer_valued(data: np.ndarray) -> bool:
    """Integer (or bool) dtype, or a float array whose values are all finite integers."""
    if data.dtype == bool or data.dtype.kind in "iu":
        return True
    if data.dtype.kind != "f" or data.size == 0:
        return False
    return bool(np.isfinite(data).all() and np.array_equal(data, np.round(data)))


def is_label_volume(data: np.ndarray, name: str = "") -> bool:
    """True when ``data`` looks like a label map: integer-valued (integer dtype, or float
    holding whole numbers only, as some tools save masks) and either at most 16 distinct
    values, all within ``0..255``, or a file ``name`` that mentions mask/label/seg."""
    if data.dtype == bool:
        return True
    if not _integer_valued(data):
        return False
    stem = Path(name).name.lower()
    if any(w in stem for w in _LABEL_WORDS):
        return True
    if data.size == 0:
        return False
    lo, hi = float(data.min()), float(data.max())
    if lo < 0 or hi > 255:
        return False
    counts = np.bincount(np.asarray(data, dtype=np.uint8).ravel(), minlength=1)
    return int(np.count_nonzero(counts)) <= _MAX_LABEL_VALUES


def _as_label_array(data: np.ndarray) -> np.ndarray:
    """Labels in an integer dtype (napari Labels need integers)."""
    if data.dtype.kind in "iu":
        return data
    if data.size == 0:
        return data.astype(np.uint8)
    lo, hi = int(data.min()), int(data.max())
    for dt in (np.uint8, np.uint16, np.int32):
        if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return data.astype(dt)
    return data.astype(np.int64)


def _layer_name(path: Path, meta: dict | None = None) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".mgz", ".mgh", ".dcm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    meta = meta or {}
    if meta.get("format") == "DICOM":
        name = f"{name} series {meta.get('series_number', '')} {meta.get('series_description', '')}".strip()
    return name


def _ask_series(path: Path):
    """In a running napari, ask which series of a DICOM folder to open (None: cancelled)."""
    from ..engine.io import list_series

    series = list_series(path)
    if len(series) == 1:
        return series[0].number or None
    try:
        from qtpy.QtWidgets import QApplication, QInputDialog
    except ImportError:  # pragma: no cover - no Qt: the engine's message lists them
        return None
    if QApplication.instance() is None:
        return None
    labels = [s.label() for s in series]
    choice, ok = QInputDialog.getItem(None, "napari-pvs: DICOM series", f"{path.name} holds {len(series)} series; "
                                      "open which one?", labels, 0, False)
    if not ok:
        return _CANCELLED
    return series[labels.index(choice)].number


_CANCELLED = object()


def read_scans(path: "str | list[str]", *, series=None) -> "list[napari.types.LayerDataTuple]":
    """Read one or several scans (NIfTI, MGH/MGZ, DICOM file or folder) into napari layer
    data tuples, in world mm.

    Raises
    ------
    PVSInputError
        A missing, corrupt, non-3D or otherwise unreadable file; a DICOM folder with several
        series when no choice is made (one-line message naming the file). napari shows it
        as a notification when the file was opened from the GUI.
    """
    from ..engine.io import is_dicom_file, load_volume
    from .layers import layer_geometry, volume_metadata

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers = []
    for p in paths:
        p = Path(p)
        chosen = series
        if chosen is None and p.is_dir() and not is_dicom_file(p):
            chosen = _ask_series(p)
            if chosen is _CANCELLED:
                continue
        vol = load_volume(p, series=chosen)  # PVSInputError: one line naming the file
        kwargs = {"name": _layer_name(p, vol.meta), **layer_geometry(vol),
                  "metadata": volume_metadata(vol, **{k: v for k, v in vol.meta.items() if k != "napari_layer"})}
        if is_label_volume(vol.data, p.name):
            layers.append((_as_label_array(vol.data), kwargs, "labels"))
        else:
            kwargs.update(colormap="gray")
            layers.append((vol.data, kwargs, "image"))
        log.info("read %s: shape %s, voxel size %s mm, %s", p, vol.shape, vol.voxel_size, layers[-1][2])
    return layers
