"""DICOM series as volumes, read with SimpleITK's GDCM reader.

Why SimpleITK: it is already the registration library of napari-pvs; its GDCM back end
decodes the transfer syntaxes scanners and archives send (explicit and implicit little
endian, big endian, RLE, JPEG lossless, JPEG-LS, JPEG 2000: the nine files of
``dcm_qa_ts`` decode to identical pixels), finds the series of a folder
(``GetGDCMSeriesIDs``), orders slices by their position along the slice normal, and gives
the patient-space geometry (LPS origin, spacing, direction cosines). pydicom would need
pylibjpeg or GDCM plug-ins for the compressed syntaxes and our own slice sorting and
geometry; the dcm2niix wheel converts through files on disk (it is the tests' reference).

What napari-pvs adds: a clear one-line refusal of what would give a wrong volume (a folder
with no DICOM image; several series and no choice, listing them; a missing or duplicated
slice position; a 4D or multi-echo series; a report or presentation state; an
unsupported transfer syntax), and the conversion to a :class:`~napari_pvs.engine.io.Volume`:
data ``(Z, Y, X)`` with ``Z`` along the slices as ordered by position, and the NIfTI-style
affine (voxel ``(i, j, k)`` -> RAS mm; DICOM's LPS with x and y negated). No patient name,
ID or birth date is read into the volume, its header or any message: the header is made
from the geometry alone and ``Volume.meta`` keeps the modality, series number,
description and UID.

Refer to: DICOM PS3.3 C.7.6.2 (Image Plane Module: Image Position / Orientation Patient);
Lowekamp B. C. et al., "The Design of SimpleITK", Frontiers in Neuroinformatics 2013,
doi:10.3389/fninf.2013.00045.

Example
-------
>>> from napari_pvs.engine.io import load_volume
>>> t1 = load_volume("dicom/studyforrest_t1w")          # doctest: +SKIP
>>> t1.shape, tuple(round(v, 3) for v in t1.voxel_size) # doctest: +SKIP
((384, 384, 274), (0.667, 0.667, 0.7))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PVSInputError

__all__ = ["DicomSeries", "list_series", "is_dicom_file", "load_dicom", "NON_IMAGE_SOP_PREFIXES"]

#: SOP classes that hold no image: structured reports, presentation states, key objects,
#: encapsulated documents, raw data
NON_IMAGE_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.11.",
                          "1.2.840.10008.5.1.4.1.1.104.", "1.2.840.10008.5.1.4.1.1.66")
#: relative tolerance on the slice spacing: a step this much larger than the median is a gap
GAP_TOLERANCE = 0.5


def is_dicom_file(path: str | Path) -> bool:
    """True for a file with the DICOM preamble (``DICM`` at byte 128) or a ``.dcm`` name."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() in (".dcm", ".ima"):
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


@dataclass(frozen=True)
class DicomSeries:
    """One series of a folder: its number (``0020,0011``), description, UID, modality
    and files (ordered by slice position)."""

    uid: str
    number: str
    description: str
    modality: str
    files: tuple[str, ...]

    def label(self) -> str:
        return f"series {self.number or '?'} '{self.description}' ({len(self.files)} files, UID {self.uid})"


def _sitk():
    """SimpleITK with ITK's console warnings off (napari-pvs reports problems itself)."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    return sitk


def _reader_info(path: str):
    sitk = _sitk()
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    r.LoadPrivateTagsOff()
    r.ReadImageInformation()
    return r


def _tag(r, key: str, default: str = "") -> str:
    return r.GetMetaData(key).strip() if r.HasMetaDataKey(key) else default


def _split_by_number(uid: str, files) -> list[DicomSeries]:
    """The files of one series UID, split by series number (copies of one series saved
    under new numbers keep the UID), in slice order."""
    groups: dict[str, list] = {}
    for f in files:
        try:
            r = _reader_info(f)
        except RuntimeError:
            continue
        key = _tag(r, "0020|0011")
        if key not in groups:
            groups[key] = [r]
        groups[key].append(f)
    return [DicomSeries(uid, number, _tag(g[0], "0008|103e"), _tag(g[0], "0008|0060"), tuple(g[1:]))
            for number, g in groups.items()]


def _gdcm_text(exc: BaseException) -> str:
    """The informative end of a GDCM/SimpleITK exception, on one line."""
    text = " ".join(str(exc).split())
    return text[-160:]


def list_series(folder: str | Path) -> list[DicomSeries]:
    """The DICOM series of a folder (GDCM's series discovery, split by series number), each
    with its files in slice order.

    Raises
    ------
    PVSInputError
        Not a folder, or no DICOM image in it.
    """
    sitk = _sitk()
    folder = Path(folder)
    if not folder.is_dir():
        raise PVSInputError("not a folder", folder)
    try:
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        if not ids:
            raise PVSInputError("no DICOM image in this folder", folder)
        out = []
        for uid in ids:
            out += _split_by_number(uid, sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    except RuntimeError as exc:     # GDCM throws on files whose pixel description is impossible
        raise PVSInputError(f"damaged DICOM files in this folder ({_gdcm_text(exc)})", folder) from None
    if not out:
        raise PVSInputError("no readable DICOM image in this folder", folder)
    return sorted(out, key=lambda s: (int(s.number) if s.number.isdigit() else 1 << 30, s.uid))


def _choose(series: list[DicomSeries], choice: str | int | None, folder: Path) -> DicomSeries:
    if choice is None:
        if len(series) == 1:
            return series[0]
        listing = "; ".join(s.label() for s in series)
        raise PVSInputError(f"{len(series)} DICOM series here, choose one (by number or UID): {listing}", folder)
    key = str(choice).strip()
    hits = [s for s in series if key in (s.uid, s.number)]
    if len(hits) != 1:
        listing = "; ".join(s.label() for s in series)
        raise PVSInputError(f"no single series {key!r} here; the series are: {listing}", folder)
    return hits[0]


def _check_series(files: tuple[str, ...], where: Path) -> None:
    """Refuse a series that would not make one 3D volume (see the module docstring)."""
    infos = []
    for f in files:
        try:
            infos.append(_reader_info(f))
        except RuntimeError as exc:
            raise PVSInputError(f"not a readable DICOM image ({' '.join(str(exc).split())[:160]})", f) from None
    sop = _tag(infos[0], "0008|0016")
    if sop.startswith(NON_IMAGE_SOP_PREFIXES) or not _tag(infos[0], "0028|0010"):
        raise PVSInputError(f"a DICOM object without an image (SOP class {sop or 'unknown'}: a report, "
                            "presentation state or document)", files[0])
    echoes = {_tag(r, "0018|0086") for r in infos} - {""}
    if len(echoes) > 1:
        raise PVSInputError(f"a multi-echo series (echo numbers {', '.join(sorted(echoes))}); napari-pvs reads "
                            "3D volumes: split the echoes into series first", where)
    frames = int(_tag(infos[0], "0028|0008", "1").split("\\")[0] or 1)
    if len(files) == 1:
        return                          # one file: a single slice or a multi-frame volume
    if frames > 1:
        raise PVSInputError(f"a series of {len(files)} multi-frame files: a 4D series; napari-pvs reads 3D "
                            "volumes", where)
    iop = _tag(infos[0], "0020|0037")
    if not iop:
        raise PVSInputError("DICOM files without Image Orientation (Patient): the slice order is unknown", files[0])
    values = [float(v) for v in iop.split("\\")]
    if len(values) != 6:
        raise PVSInputError(f"Image Orientation (Patient) holds {len(values)} values, expected 6", files[0])
    row, col = np.asarray(values[:3]), np.asarray(values[3:6])
    normal = np.cross(row, col)
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 1e-3:
        raise PVSInputError(f"Image Orientation (Patient) {iop} does not give two directions", files[0])
    pos = []
    for f, r in zip(files, infos, strict=True):
        ipp = _tag(r, "0020|0032")
        if not ipp:
            raise PVSInputError("DICOM file without Image Position (Patient)", f)
        xyz = [float(v) for v in ipp.split("\\")]
        if len(xyz) != 3:
            raise PVSInputError(f"Image Position (Patient) holds {len(xyz)} values, expected 3", f)
        pos.append(float(np.dot(normal, xyz)))
    pos = np.sort(np.asarray(pos))
    steps = np.diff(pos)
    median = float(np.median(steps)) if steps.size else 0.0
    if median <= 1e-6 or (steps < 1e-3 * max(median, 1e-3)).any():
        n_dup = int((steps < 1e-3 * max(median, 1e-3)).sum())
        raise PVSInputError(f"{n_dup} duplicated slice position(s) in {len(files)} files: several volumes "
                            "(time points or repeats) in one series, or copied files", where)
    big = np.flatnonzero(steps > (1 + GAP_TOLERANCE) * median)
    if big.size:
        k = int(big[0])
        raise PVSInputError(f"missing slice(s): a gap of {steps[k]:.2f} mm after slice {k + 1} of {len(files)} "
                            f"(slice spacing {median:.2f} mm)", where)


def _volume_from_sitk(img, path: Path, meta: dict):
    """A :class:`Volume` from a SimpleITK image (LPS geometry -> RAS affine)."""
    import SimpleITK as sitk
    import nibabel as nib

    from .volume import Volume

    arr = sitk.GetArrayFromImage(img)                 # (k, j, i) = (Z, Y, X)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise PVSInputError(f"not a scalar 3D DICOM image (shape {arr.shape}, "
                            f"{img.GetNumberOfComponentsPerPixel()} components)", path)
    dim = img.GetDimension()
    direction = np.asarray(img.GetDirection(), float).reshape(dim, dim)
    spacing = np.asarray(img.GetSpacing(), float)
    origin = np.asarray(img.GetOrigin(), float)
    if dim == 2:                                      # a single 2D slice
        direction = np.block([[direction, np.zeros((2, 1))], [np.zeros((1, 2)), np.ones((1, 1))]])
        direction[:, 2] = np.cross(direction[:, 0], direction[:, 1])
        spacing, origin = np.append(spacing, 1.0), np.append(origin, 0.0)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing
    lps[:3, 3] = origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps     # LPS -> RAS
    data = np.ascontiguousarray(arr)
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    if max(data.shape) > 32767:
        raise PVSInputError(f"DICOM image of {data.shape[::-1]} voxels: a dimension above 32767 (NIfTI-1's "
                            "limit); damaged Rows/Columns tags?", path)
    hdr = nib.Nifti1Image(data.transpose(2, 1, 0), affine).header   # geometry only: no patient data
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    return Volume(data=data, affine=affine, header=hdr, path=path, meta=meta)


def load_dicom(path: str | Path, *, series: str | int | None = None):
    """Read a DICOM series (a folder, or any one file of it) as a volume.

    Parameters
    ----------
    path : str or Path
        A folder holding the series (or several: choose with ``series``), or one file of
        the series (the other files of its folder with the same series UID are read too).
    series : str or int, optional
        Series number (``0020,0011``) or series instance UID, when the folder holds several.

    Returns
    -------
    Volume
        ``data`` ``(Z, Y, X)`` in the stored type, slices ordered by position; the RAS affine
        of the patient geometry; ``meta``: modality, series number, description, UID, files.

    Raises
    ------
    PVSInputError
        See the module docstring.
    """
    sitk = _sitk()
    path = Path(path)
    if not path.exists():
        raise PVSInputError("file not found", path)
    if path.is_file():
        try:
            r = _reader_info(str(path))
        except RuntimeError:
            raise PVSInputError("a DICOM object that holds no readable image (a report, presentation state or "
                                "document?) or a damaged file", path) from None
        uid, number = _tag(r, "0020|000e"), _tag(r, "0020|0011")
        chosen = None
        if uid:
            same = _split_by_number(uid, sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path.parent), uid))
            chosen = next((sr for sr in same if sr.number == number and str(path) in sr.files), None)
        if chosen is None:
            chosen = DicomSeries(uid, number, _tag(r, "0008|103e"), _tag(r, "0008|0060"), (str(path),))
        where = path
    else:
        chosen = _choose(list_series(path), series, path)
        where = path
    try:
        _check_series(chosen.files, where)
    except PVSInputError:
        raise
    except (ValueError, IndexError, TypeError) as exc:   # tags with too few or non-numeric values
        raise PVSInputError(f"malformed DICOM geometry or frame tags ({type(exc).__name__}: {exc})", where) from None
    try:
        if len(chosen.files) == 1:
            img = sitk.ReadImage(chosen.files[0])
        else:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(list(chosen.files))
            reader.LoadPrivateTagsOff()
            img = reader.Execute()
    except RuntimeError as exc:
        text = " ".join(str(exc).split())
        if "transfer syntax" in text.lower() or "codec" in text.lower() or "decompress" in text.lower():
            raise PVSInputError(f"unsupported DICOM transfer syntax ({text[-160:]})", where) from None
        raise PVSInputError(f"cannot read the DICOM series ({text[-160:]})", where) from None
    meta = {"format": "DICOM", "modality": chosen.modality, "series_number": chosen.number,
            "series_description": chosen.description, "series_uid": chosen.uid, "n_files": len(chosen.files)}
    return _volume_from_sitk(img, where, meta)
