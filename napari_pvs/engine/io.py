"""NIfTI input/output that keeps the geometry (affine, voxel size, orientation, header).

Arrays are held in ``(Z, Y, X)`` order: the NIfTI voxel axes ``(k, j, i)`` reversed, so
``volume.data[z]`` is slice ``z`` as numbered in the file. Nothing is ever re-oriented
or flipped: the affine stored with the array is the file's own, and writing a mask
transposes back and reuses the source image's affine and header exactly.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import PVSInputError

__all__ = [
    "Volume",
    "load_volume",
    "load_mask",
    "save_volume",
    "check_same_grid",
    "atomic_path",
    "NIFTI_SUFFIXES",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _is_nifti_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D scalar volume with its geometry.

    Attributes
    ----------
    data : np.ndarray
        Shape ``(Z, Y, X)`` (NIfTI ``(k, j, i)``). Any numeric dtype.
    affine : np.ndarray
        Shape ``(4, 4)``, float64: NIfTI voxel ``(i, j, k)`` -> world RAS+ mm.
    header : nibabel.Nifti1Header, optional
        The source file's header, reused when saving derived images.
    path : Path, optional
        File the volume was read from.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    path: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(Z, Y, X)`` in voxels."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size in mm along ``(Z, Y, X)``, from the affine's column norms."""
        ijk = np.sqrt((np.asarray(self.affine)[:3, :3] ** 2).sum(axis=0))
        return tuple(float(v) for v in ijk[::-1])  # type: ignore[return-value]

    @property
    def orientation(self) -> tuple[str, str, str]:
        """Axis codes of NIfTI ``(i, j, k)``, e.g. ``('L', 'P', 'S')``: the direction each
        voxel axis increases towards (nibabel's ``aff2axcodes``)."""
        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]

    @property
    def axial_axis(self) -> int:
        """Index (in ``(Z, Y, X)`` order) of the array axis closest to superior-inferior."""
        rot = np.asarray(self.affine)[:3, :3]
        unit = rot / np.linalg.norm(rot, axis=0, keepdims=True)
        ijk = int(np.argmax(np.abs(unit[2])))  # S component of each voxel axis
        return 2 - ijk

    @property
    def lr_axis(self) -> int:
        """Index (in ``(Z, Y, X)`` order) of the array axis closest to left-right."""
        rot = np.asarray(self.affine)[:3, :3]
        unit = rot / np.linalg.norm(rot, axis=0, keepdims=True)
        return 2 - int(np.argmax(np.abs(unit[0])))

    def with_data(self, data: np.ndarray, **meta) -> "Volume":
        """A new volume on the same grid (affine, header) holding ``data`` (same shape)."""
        if tuple(data.shape) != self.shape:
            raise ValueError(f"data shape {tuple(data.shape)} does not match grid {self.shape}")
        return Volume(data=data, affine=self.affine, header=self.header, path=self.path,
                      meta={**self.meta, **meta})

    def voxel_to_world(self, zyx: np.ndarray) -> np.ndarray:
        """Map array indices ``(..., 3)`` in ``(z, y, x)`` order to world RAS+ mm ``(..., 3)``."""
        zyx = np.asarray(zyx, dtype=float)
        ijk = zyx[..., ::-1]
        return ijk @ np.asarray(self.affine)[:3, :3].T + np.asarray(self.affine)[:3, 3]

    def world_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """Map world RAS+ mm ``(..., 3)`` to (fractional) array indices ``(..., 3)`` ``(z, y, x)``."""
        inv = np.linalg.inv(np.asarray(self.affine))
        ijk = np.asarray(xyz, dtype=float) @ inv[:3, :3].T + inv[:3, 3]
        return ijk[..., ::-1]


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise PVSInputError("file not found", path)
    if path.is_dir():
        raise PVSInputError("is a directory, expected a NIfTI file (.nii or .nii.gz)", path)
    if not _is_nifti_name(path):
        raise PVSInputError("not a NIfTI file: expected a .nii or .nii.gz name", path)


def load_volume(path: str | Path, *, allow_nan: bool = False) -> Volume:
    """Read a 3D NIfTI image with nibabel, keeping its affine and header.

    Parameters
    ----------
    path : str or Path
        ``.nii`` or ``.nii.gz`` file.
    allow_nan : bool
        If False (default) an image containing NaN or infinite values is rejected.

    Returns
    -------
    Volume
        ``data`` of shape ``(Z, Y, X)`` in the file's own dtype after scaling
        (integers stay integers when the header has no scaling), the file's affine.

    Raises
    ------
    PVSInputError
        Missing, non-NIfTI or truncated file; not 3D (a 4D image with one volume is
        accepted and squeezed); NaN/inf values; a singular affine.
    """
    path = Path(path)
    _check_readable(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for bad files
        raise PVSInputError(f"cannot read as NIfTI ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise PVSInputError(f"not a NIfTI image ({type(img).__name__})", path)
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise PVSInputError(
            f"image has {len(img.shape)} dimensions {tuple(img.shape)}, expected a 3D volume", path)
    if min(shape) < 1:
        raise PVSInputError(f"image has an empty dimension {tuple(shape)}", path)
    try:
        raw = np.asanyarray(img.dataobj)
    except (EOFError, OSError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise PVSInputError(f"truncated or corrupt NIfTI data ({type(exc).__name__}: {exc})", path) from None
    raw = np.asarray(raw).reshape(shape)
    if raw.dtype == np.float64:  # scaled integers come back as float64: float32 is plenty
        raw = raw.astype(np.float32)
    if raw.dtype.kind == "f" and not allow_nan and not np.isfinite(raw).all():
        n_bad = int((~np.isfinite(raw)).sum())
        raise PVSInputError(f"image contains {n_bad} NaN or infinite voxels", path)
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise PVSInputError("image has a singular or non-finite affine", path)
    data = np.ascontiguousarray(raw.transpose(2, 1, 0))
    header = img.header.copy()
    return Volume(data=data, affine=affine, header=header, path=path)


def check_same_grid(a: Volume, b: Volume, *, atol: float = 1e-3) -> None:
    """Raise :class:`PVSInputError` (naming ``b.path``) unless ``b`` is on ``a``'s grid.

    Same grid means the same shape ``(Z, Y, X)`` and affines equal within ``atol`` mm.
    """
    if a.shape != b.shape:
        raise PVSInputError(
            f"grid {b.shape[::-1]} differs from the image's {a.shape[::-1]} "
            f"({a.path.name if a.path else 'image'}); expected the same voxel grid", b.path)
    if not np.allclose(a.affine, b.affine, atol=atol):
        raise PVSInputError(
            "affine differs from the image's "
            f"({a.path.name if a.path else 'image'}); expected the same voxel grid", b.path)


def load_mask(path: str | Path, reference: Volume | None = None) -> Volume:
    """Read a binary mask (any voxel > 0 is foreground) as ``uint8`` ``(Z, Y, X)``.

    Parameters
    ----------
    path : str or Path
        NIfTI mask file.
    reference : Volume, optional
        If given, the mask must be on the same grid (shape and affine).

    Raises
    ------
    PVSInputError
        Anything :func:`load_volume` raises, or a grid that differs from ``reference``.
    """
    vol = load_volume(path)
    if reference is not None:
        check_same_grid(reference, vol)
    return vol.with_data((vol.data > 0).astype(np.uint8))


def atomic_path(path: str | Path):
    """Context manager yielding a temporary path beside ``path``; renamed onto ``path``
    only if the block succeeds, so a failure never leaves a half-written file."""
    return _AtomicPath(Path(path))


class _AtomicPath:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(self.path.suffixes[-2:]) if self.path.name.endswith(".nii.gz") else self.path.suffix
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=f".part{suffix}",
                                   dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
        return False


def save_volume(path: str | Path, data: np.ndarray, reference: Volume, *,
                dtype: np.dtype | type | None = None) -> Path:
    """Write ``data`` ``(Z, Y, X)`` as NIfTI on ``reference``'s grid, atomically.

    The output has exactly the reference's affine, qform/sform codes and header fields
    (dimensions, voxel sizes, units, orientation); only the data type (and scaling) change
    to fit ``data``.

    Parameters
    ----------
    path : str or Path
        Output ``.nii`` / ``.nii.gz``; parent folders are created.
    data : np.ndarray
        Shape ``(Z, Y, X)`` equal to ``reference.shape``.
    reference : Volume
        Source image whose geometry the output takes.
    dtype : numpy dtype, optional
        On-disk type (default: ``data.dtype``).

    Raises
    ------
    PVSInputError
        Not a NIfTI file name.
    ValueError
        ``data`` shape differs from the reference grid.
    """
    path = Path(path)
    if not _is_nifti_name(path):
        raise PVSInputError("output must be a .nii or .nii.gz file", path)
    if tuple(data.shape) != reference.shape:
        raise ValueError(f"data shape {tuple(data.shape)} does not match the reference grid {reference.shape}")
    dtype = np.dtype(dtype or data.dtype)
    arr = np.asarray(data).astype(dtype, copy=False).transpose(2, 1, 0)
    if reference.header is not None:
        header = reference.header.copy()
        img = nib.Nifti1Image(arr, reference.affine, header=header)
        # keep the reference's qform/sform exactly (nibabel would otherwise update them)
        qcode = int(header["qform_code"])
        scode = int(header["sform_code"])
        img.set_qform(reference.header.get_qform(), code=qcode)
        img.set_sform(reference.header.get_sform(), code=scode)
    else:
        img = nib.Nifti1Image(arr, reference.affine)
    img.set_data_dtype(dtype)
    if dtype.kind in "iub":
        img.header.set_slope_inter(1, 0)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
