"""Reading scans (NIfTI, FreeSurfer MGH/MGZ, DICOM series) and writing NIfTI that keeps the
geometry; atomic writes.

Reading gives a :class:`~napari_pvs.engine.io.volume.Volume` (data ``(Z, Y, X)``, the
file's affine and header): NIfTI and MGH/MGZ with nibabel (an MGZ gets a NIfTI header made
from its affine, so that derived masks are written as NIfTI on its grid), DICOM series with
SimpleITK's GDCM reader (:mod:`.dicom`). Writing a derived image transposes back and reuses the source
image's affine and header exactly; every write goes to a temporary file in the target
folder, is flushed to disk (fsync) and renamed, so a crash never leaves a half-written
file under the final name.
"""

from __future__ import annotations

import gzip
import logging
import os
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import PVSInputError
from .checks import READ_BYTES_PER_VOXEL, SEGMENT_BYTES_PER_VOXEL, check_memory, check_scan
from .volume import Volume, check_same_grid

__all__ = ["load_volume", "load_mask", "save_volume", "atomic_path", "is_nifti_name", "is_mgh_name",
           "is_volume_path", "NIFTI_SUFFIXES", "MGH_SUFFIXES", "load_scan"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MGH_SUFFIXES = (".mgz", ".mgh")


def is_nifti_name(path: str | Path) -> bool:
    """True for a ``.nii`` or ``.nii.gz`` file name (case-insensitive)."""
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def is_mgh_name(path: str | Path) -> bool:
    """True for a FreeSurfer ``.mgz`` or ``.mgh`` file name (case-insensitive)."""
    return Path(path).name.lower().endswith(MGH_SUFFIXES)


def is_volume_path(path: str | Path) -> bool:
    """True for what :func:`load_volume` reads: a NIfTI or MGH/MGZ name, a DICOM file, or a
    folder (a DICOM series)."""
    from .dicom import is_dicom_file

    path = Path(path)
    return is_nifti_name(path) or is_mgh_name(path) or path.is_dir() or is_dicom_file(path)


def load_volume(path: str | Path, *, allow_nan: bool = False, series: str | int | None = None) -> Volume:
    """Read a 3D scan: NIfTI (nibabel), FreeSurfer MGH/MGZ (nibabel) or a DICOM series
    (SimpleITK/GDCM, :func:`~napari_pvs.engine.io.dicom.load_dicom`), keeping its geometry.

    Parameters
    ----------
    path : str or Path
        ``.nii``/``.nii.gz``, ``.mgz``/``.mgh``, a DICOM file (``.dcm`` or the ``DICM``
        preamble: its whole series is read) or a folder of DICOM files.
    allow_nan : bool
        If False (default) an image containing NaN or infinite values is rejected.
    series : str or int, optional
        DICOM only: the series number or UID when the folder holds several.

    Returns
    -------
    Volume
        ``data`` of shape ``(Z, Y, X)`` in the file's own dtype after scaling
        (integers stay integers when the header has no scaling), the file's affine
        (voxel ``(i, j, k)`` -> RAS mm).

    Raises
    ------
    PVSInputError
        Missing, unknown or truncated file; not 3D (a 4D image with one volume is
        accepted and squeezed); NaN/inf values; a singular affine; the DICOM refusals of
        :mod:`.dicom` (several series and no choice, gaps, duplicates, 4D, no image).

    Example
    -------
    >>> from napari_pvs.engine.io import load_volume
    >>> t2 = load_volume("open_ms/longitudinal/patient01/study1_T2W.nii.gz")   # doctest: +SKIP
    >>> t2.shape, t2.orientation                                               # doctest: +SKIP
    ((36, 448, 406), ('L', 'P', 'S'))
    """
    path = Path(path)
    try:
        found = path.exists()
    except OSError as exc:    # e.g. a folder on the way that this user may not enter
        raise PVSInputError(f"cannot be read ({exc.strerror or exc})", path) from None
    if not found:
        raise PVSInputError("file not found", path)
    from .dicom import is_dicom_file, load_dicom

    if path.is_dir() and (is_nifti_name(path) or is_mgh_name(path)):
        raise PVSInputError("is a directory, expected a file with that name", path)
    if path.is_dir() or (is_dicom_file(path) and not (is_nifti_name(path) or is_mgh_name(path))):
        vol = load_dicom(path, series=series)
        return _checked(vol.data, vol.affine, vol.header, path, allow_nan, meta=vol.meta)
    if not (is_nifti_name(path) or is_mgh_name(path)):
        raise PVSInputError("not a readable scan: expected NIfTI (.nii, .nii.gz), FreeSurfer (.mgz, .mgh), "
                            "a DICOM file or a folder of DICOM files", path)
    kind = "MGH" if is_mgh_name(path) else "NIfTI"
    if path.stat().st_size == 0:
        raise PVSInputError(f"file is empty (0 bytes), expected a {kind} image", path)
    if path.name.lower().endswith((".gz", ".mgz")) and not _is_gzip(path):
        hint = " (an uncompressed NIfTI: rename it to .nii)" if _is_plain_nifti(path) else ""
        raise PVSInputError(f"named {path.suffix} but not gzip-compressed{hint}", path)
    try:
        with _quiet_nibabel():
            img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
        raise PVSInputError(f"cannot read as {kind} ({type(exc).__name__}: {' '.join(str(exc).split())})",
                            path) from None
    expected = (nib.MGHImage,) if kind == "MGH" else (nib.Nifti1Image, nib.Nifti2Image)
    if not isinstance(img, expected):
        raise PVSInputError(f"not a {kind} image ({type(img).__name__})", path)
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise PVSInputError(
            f"image has {len(img.shape)} dimensions {tuple(img.shape)}, expected a 3D volume", path)
    if min(shape) < 1:
        raise PVSInputError(f"image has an empty dimension {tuple(shape)}", path)
    _check_header(img, kind, path)
    check_memory(shape, img.get_data_dtype().itemsize + READ_BYTES_PER_VOXEL, "reading", path)
    try:
        raw = np.asanyarray(img.dataobj)
    except (EOFError, OSError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise PVSInputError(f"truncated or corrupt {kind} data ({type(exc).__name__}: {exc})", path) from None
    raw = np.asarray(raw).reshape(shape)
    affine = np.asarray(img.affine, dtype=np.float64)
    if kind == "MGH":
        header = nib.Nifti1Image(np.zeros((1, 1, 1), np.uint8), affine).header   # geometry for NIfTI outputs
        header.set_data_shape(shape)
        header.set_qform(affine, code=1)
        header.set_sform(affine, code=1)
        header.set_xyzt_units("mm", "sec")
        meta = {"format": "MGH"}
    else:
        header, meta = img.header.copy(), {}
    return _checked(raw.transpose(2, 1, 0), affine, header, path, allow_nan, meta=meta)


@contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """nibabel logs header repairs (e.g. "pixdim[1,2,3] should be positive") to stderr; our
    checks report what matters in one line, so its log is held back while a header is read."""
    log = logging.getLogger("nibabel")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _is_plain_nifti(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(348)
    return len(head) == 348 and head[344:347] in (b"n+1", b"ni1")


#: largest disagreement between qform and sform (mm, at the corners of the grid) that is accepted
QFORM_SFORM_TOLERANCE_MM = 1.0


def _check_header(img, kind: str, path: Path) -> None:
    """Refuse headers whose data or geometry cannot be trusted, before the data is read:
    complex or RGB data, zero or negative voxel sizes, qform and sform that disagree."""
    dtype = img.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "V":
        raise PVSInputError(f"RGB or structured data ({dtype}), expected one intensity per voxel", path)
    if dtype.kind == "c":
        raise PVSInputError(f"complex data ({dtype}), expected real intensities (a magnitude image)", path)
    if kind != "NIfTI":
        return
    hdr = img.header
    try:   # nibabel silently repairs zero or negative pixdim on load: look at the stored values
        from nibabel.openers import ImageOpener

        with ImageOpener(str(path)) as fh:
            stored = type(hdr).from_fileobj(fh, check=False)
    except Exception:  # noqa: BLE001 - the header was read once already; keep nibabel's view
        stored = hdr
    zooms = np.asarray(stored["pixdim"][1:4], dtype=np.float64)
    if not np.isfinite(zooms).all() or (zooms <= 0).any():
        raise PVSInputError(f"voxel size (pixdim) {tuple(float(z) for z in zooms)} in the header, expected "
                            "positive sizes in mm", path)
    if int(hdr["qform_code"]) > 0 and int(hdr["sform_code"]) > 0:
        try:
            q, s = hdr.get_qform(), hdr.get_sform()
        except (ValueError, np.linalg.LinAlgError) as exc:    # e.g. a quaternion longer than 1
            raise PVSInputError(f"invalid qform ({exc})", path) from None
        if not (np.isfinite(q).all() and np.isfinite(s).all()):
            raise PVSInputError("image has a singular or non-finite affine", path)
        n = np.asarray(img.shape[:3], dtype=np.float64) - 1
        corners = np.array([[i, j, k, 1.0] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])])
        gap = float(np.abs((corners @ q.T - corners @ s.T)[:, :3]).max())
        if gap > QFORM_SFORM_TOLERANCE_MM:
            # a sheared sform has no exact qform: accept the qform that is its closest rotation
            # (what nibabel writes for it); only a qform that says something else is refused
            try:
                probe = nib.Nifti1Header()
                probe.set_qform(s, code=1)
                nearest = probe.get_qform()
                gap = float(np.abs((corners @ q.T - corners @ nearest.T)[:, :3]).max())
            except (ValueError, np.linalg.LinAlgError, nib.spatialimages.HeaderDataError):
                pass          # no qform for this sform (singular): the disagreement stands
        if gap > QFORM_SFORM_TOLERANCE_MM:
            raise PVSInputError(f"qform and sform disagree by up to {gap:.1f} mm: the orientation is ambiguous "
                                "(tools differ in which they use); make them equal, e.g. "
                                "'fslorient -copysform2qform'", path)


def _checked(data_zyx: np.ndarray, affine: np.ndarray, header, path: Path, allow_nan: bool,
             meta: dict | None = None) -> Volume:
    """The checks every reader shares (finite values and affine), then the Volume."""
    raw = data_zyx
    if raw.dtype.kind == "c" or raw.dtype.fields is not None:
        raise PVSInputError(f"{'complex' if raw.dtype.kind == 'c' else 'RGB or structured'} data ({raw.dtype}), "
                            "expected real intensities", path)
    if raw.dtype == np.float64:  # scaled integers come back as float64: float32 is plenty
        finite = raw[np.isfinite(raw)]
        big = float(np.abs(finite).max()) if finite.size else 0.0
        if big > float(np.finfo(np.float32).max):
            raise PVSInputError(f"values up to {big:.3g} overflow 32-bit floats: check the header's scaling "
                                "(scl_slope, scl_inter)", path)
        raw = raw.astype(np.float32)
    if raw.dtype.kind == "f" and not allow_nan and not np.isfinite(raw).all():
        n_bad = int((~np.isfinite(raw)).sum())
        raise PVSInputError(f"image contains {n_bad} NaN or infinite voxels", path)
    affine = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise PVSInputError("image has a singular or non-finite affine", path)
    return Volume(data=np.ascontiguousarray(raw), affine=affine, header=header, path=path, meta=dict(meta or {}))


def load_mask(path: str | Path, reference: Volume | None = None, *, any_label: bool = False) -> Volume:
    """Read a binary mask (any voxel > 0 is foreground) as ``uint8`` ``(Z, Y, X)``.

    Parameters
    ----------
    path : str or Path
        Mask file (NIfTI, MGH/MGZ, or a DICOM series): background 0 and one foreground value
        (1, or e.g. 255).
    reference : Volume, optional
        If given, the mask must be on the same grid (shape and affine).
    any_label : bool
        Accept several foreground values (e.g. an ensemble's agreement map 0..n) and
        non-integer values: everything above 0 is foreground. Default: refuse them.

    Raises
    ------
    PVSInputError
        Anything :func:`load_volume` raises; a grid that differs from ``reference``; several
        foreground labels (a label map); non-integer values (a probability map); negative values.
    """
    vol = load_volume(path)
    if reference is not None:
        check_same_grid(reference, vol)
    data = vol.data
    if any_label:
        return vol.with_data((data > 0).astype(np.uint8))
    if data.dtype.kind == "f":
        frac = data[(data != np.floor(data))]
        if frac.size:
            raise PVSInputError(f"mask holds non-integer values ({float(frac.min()):.3g}..{float(frac.max()):.3g}): "
                                "probabilities? threshold them first (a mask holds 0 and 1)", path)
    labels = np.unique(data[data != 0])
    if labels.size > 1:
        shown = ", ".join(str(v) for v in labels[:5].tolist()) + (", ..." if labels.size > 5 else "")
        raise PVSInputError(f"mask holds {labels.size} labels ({shown}): a label map, not a binary mask; "
                            "extract the PVS label first", path)
    if labels.size and labels[0] < 0:
        raise PVSInputError(f"mask holds the negative value {labels[0]}, expected 0 and 1", path)
    return vol.with_data((data > 0).astype(np.uint8))


def _umask() -> int:
    """This process's umask (read from /proc on Linux; elsewhere set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Context manager yielding a temporary path beside ``path``.

    When the block succeeds the temporary file is flushed to disk (``fsync``) and renamed
    onto ``path`` (``os.replace``: atomic on one file system); when it raises, the
    temporary file is removed. Either way no half-written file ever carries the final
    name. Parent folders are created.

    Raises
    ------
    PVSInputError
        ``path`` is a folder, or it cannot be written (no permission, a full disk, a
        file-size limit): one line, and nothing is left behind.
    """
    path = Path(path)
    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix
    try:
        if path.is_dir():
            raise PVSInputError("is a folder, expected a file name to write", path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    except OSError as exc:
        raise PVSInputError(f"cannot write here ({exc.strerror or exc or type(exc).__name__})", path) from None
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())    # mkstemp makes 0600; give the mode a plain open() would
            os.replace(tmp, path)
        except OSError as exc:   # a full disk, a file-size limit, permissions
            raise PVSInputError(f"cannot write ({exc.strerror or exc or type(exc).__name__}); nothing was written",
                                path) from None
    finally:
        tmp.unlink(missing_ok=True)


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
    if not is_nifti_name(path):
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


def _header_shape(path: Path) -> tuple[int, ...] | None:
    """Shape from a NIfTI/MGH header without reading the data (None for other formats or
    unreadable headers: :func:`load_volume` will say what is wrong)."""
    if not (path.is_file() and (is_nifti_name(path) or is_mgh_name(path))):
        return None
    try:
        with _quiet_nibabel():
            return tuple(int(n) for n in nib.load(str(path)).shape)
    except Exception:  # noqa: BLE001 - load_volume reports it with the right message
        return None


def load_scan(path: str | Path, *, series: str | int | None = None,
              bytes_per_voxel: float | None = None) -> Volume:
    """Read a scan to segment: the memory its processing takes is checked from the header
    first, then :func:`~napari_pvs.engine.io.load_volume`, then :func:`check_scan`.

    Parameters
    ----------
    path : str or Path
        NIfTI, MGH/MGZ or DICOM (file or folder).
    series : str or int, optional
        DICOM series number or UID.
    bytes_per_voxel : float
        Memory estimate of the work per voxel (default: segmenting).

    Returns
    -------
    Volume
        Data ``(Z, Y, X)``.

    Raises
    ------
    PVSInputError
        What :func:`load_volume`, :func:`check_memory` and :func:`check_scan` raise.

    Example
    -------
    >>> t2 = load_scan("open_ms/longitudinal/patient01/study1_T2W.nii.gz")     # doctest: +SKIP
    """
    if bytes_per_voxel is None:
        bytes_per_voxel = SEGMENT_BYTES_PER_VOXEL
    path = Path(path)
    shape = _header_shape(path)
    if shape is not None:
        check_memory(shape[:3], bytes_per_voxel, "segmenting", path)
    volume = load_volume(path, series=series)
    if shape is None:       # DICOM: the shape is known only now
        check_memory(volume.shape, bytes_per_voxel, "segmenting", path)
    return check_scan(volume, path)
