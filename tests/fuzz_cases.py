"""Hypothesis strategies and checks for fuzzing the readers: NIfTI-1 headers and data written
byte by byte (any field, valid or not), arrays of any dtype and shape through the scan path
(read, check, normalise), and DICOM series whose tags are changed with pydicom.

Used by ``tests/test_fuzz.py`` (a CI-sized number of examples) and ``benchmarks/reliability.py``
(more). The contract under test: :func:`napari_pvs.engine.io.load_volume` returns a sane
3D ``Volume`` or raises ``PVSInputError``; nothing else escapes, nothing hangs.
"""

from __future__ import annotations

import gzip
import math
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import strategies as st

__all__ = ["nifti_files", "write_fuzzed_nifti", "check_volume", "scan_arrays", "dicom_mutations",
           "write_fuzzed_dicom", "TIME_LIMIT_S"]

#: seconds one case may take before it counts as a hang
TIME_LIMIT_S = 5.0

_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                    st.sampled_from([0.0, -1.0, 1.0, 0.5, 3.0, 1e-12, 1e12, float("nan"), float("inf")]))
_DTYPE_CODES = [2, 4, 8, 16, 64, 256, 512, 768, 1024, 1280, 32, 128, 1536, 1792, 2048, 2304, 0, 1, 255, 9999]


@st.composite
def nifti_files(draw):
    """A dict describing one NIfTI-1 file: each header field valid, or (one time in three)
    replaced by a fuzzed value, many out of range; the data whole, cut, missing or with
    extra bytes; compressed or not. So both the readable path and every refusal are reached."""
    def field_(valid, fuzzed):
        return draw(fuzzed) if draw(st.integers(0, 2)) == 0 else valid

    dims = field_([3, 4, 5, 3, 1, 1, 1, 1], st.lists(
        st.one_of(st.integers(0, 12), st.sampled_from([1, 64, 2 ** 15 - 1, -1, 0])), min_size=8, max_size=8))
    fields = {
        "dim": dims,
        "datatype": field_(16, st.sampled_from(_DTYPE_CODES)),
        "pixdim": field_([1.0, 1.0, 1.0, 3.0, 1.0, 0.0, 0.0, 0.0],
                         st.lists(_FLOATS, min_size=8, max_size=8)),
        "qform_code": field_(1, st.sampled_from([0, 1, 2, 3, 4, 5, -3, 300])),
        "sform_code": field_(1, st.sampled_from([0, 1, 2, 3, 4, 5, -3, 300])),
        "quatern_b": field_(0.0, _FLOATS), "quatern_c": field_(0.0, _FLOATS), "quatern_d": field_(0.0, _FLOATS),
        "qoffset_x": field_(0.0, _FLOATS), "qoffset_y": field_(0.0, _FLOATS), "qoffset_z": field_(0.0, _FLOATS),
        "srow_x": field_([1.0, 0.0, 0.0, 0.0], st.lists(_FLOATS, min_size=4, max_size=4)),
        "srow_y": field_([0.0, 1.0, 0.0, 0.0], st.lists(_FLOATS, min_size=4, max_size=4)),
        "srow_z": field_([0.0, 0.0, 3.0, 0.0], st.lists(_FLOATS, min_size=4, max_size=4)),
        "scl_slope": field_(1.0, _FLOATS), "scl_inter": field_(0.0, _FLOATS),
        "vox_offset": field_(352.0, st.sampled_from([348.0, 0.0, 353.0, 1e9, -352.0, float("nan")])),
        "xyzt_units": field_(10, st.sampled_from([0, 2, 1, 3, 255])),
        "magic": field_(b"n+1", st.sampled_from([b"ni1", b"n+2", b"xyz", b""])),
        "sizeof_hdr": field_(348, st.sampled_from([540, 0, 1 << 20])),
    }
    keep = field_("all", st.sampled_from(["half", "none", "extra"]))
    return {"fields": fields, "data": keep, "gz": draw(st.booleans()), "seed": draw(st.integers(0, 2 ** 16))}


def write_fuzzed_nifti(spec: dict, folder: Path) -> Path:
    """Write the file a :func:`nifti_files` draw describes (raw fields bypass nibabel's checks)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4, 5, 3))
    hdr.set_data_dtype(np.float32)
    arr = hdr._structarr
    for k, v in spec["fields"].items():
        try:
            arr[k] = v
        except (ValueError, TypeError, OverflowError):
            pass
    dims = [max(0, int(d)) for d in np.asarray(arr["dim"])[1:8]]
    ndim = int(np.clip(arr["dim"][0], 0, 7))
    n_vox = math.prod(dims[:ndim]) if ndim else 1          # Python ints: no int64 overflow
    rng = np.random.default_rng(spec["seed"])
    try:
        dtype = np.dtype(nib.nifti1.data_type_codes.dtype[int(arr["datatype"])])
    except (KeyError, TypeError, ValueError):
        dtype = None
    if dtype is not None and dtype.kind in "iuf" and n_vox * dtype.itemsize <= 1 << 20:
        payload = (rng.normal(100, 20, n_vox) if dtype.kind == "f" else rng.integers(0, 100, n_vox)).astype(dtype).tobytes()
    else:
        payload = rng.integers(0, 256, min(n_vox * 4, 1 << 20), dtype=np.uint8).tobytes()
    if spec["data"] == "half":
        payload = payload[: len(payload) // 2]
    elif spec["data"] == "none":
        payload = b""
    elif spec["data"] == "extra":
        payload += b"\0" * 1000
    blob = arr.tobytes() + b"\0" * 4 + payload
    name = "f.nii.gz" if spec["gz"] else "f.nii"
    p = folder / name
    p.write_bytes(gzip.compress(blob, 1) if spec["gz"] else blob)
    return p


def check_volume(vol) -> None:
    """A Volume that came back must be sane: 3D data, a finite invertible affine."""
    assert vol.data.ndim == 3 and min(vol.data.shape) >= 1, vol.data.shape
    assert np.isfinite(vol.affine).all() and abs(np.linalg.det(vol.affine[:3, :3])) > 0
    assert vol.data.dtype.kind in "biuf", vol.data.dtype
    if vol.data.dtype.kind == "f":
        assert np.isfinite(vol.data).all()


@st.composite
def scan_arrays(draw):
    """Arrays nibabel writes as valid NIfTI: any numeric dtype, shape and values (constant,
    extreme, tiny, huge), with a random voxel size."""
    from hypothesis.extra import numpy as hnp

    dtype = draw(st.sampled_from(["uint8", "int8", "int16", "uint16", "int32", "uint32", "float32", "float64"]))
    shape = draw(st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 6)))
    data = draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(np.dtype(dtype), allow_nan=False,
                                                                  allow_infinity=False)))
    zooms = draw(st.tuples(*[st.sampled_from([0.05, 0.5, 1.0, 3.0, 8.0, 0.9]) for _ in range(3)]))
    return data, zooms


@st.composite
def dicom_mutations(draw):
    """Changes to the tags of a small DICOM series (pydicom keywords -> values, or deletion)."""
    choices = {
        "Rows": st.sampled_from([0, 1, 2, 65535, 384, 100]),
        "Columns": st.sampled_from([0, 1, 2, 65535, 384, 100]),
        "BitsAllocated": st.sampled_from([0, 1, 8, 12, 16, 32, 64, 7]),
        "BitsStored": st.sampled_from([0, 1, 8, 12, 16, 33]),
        "HighBit": st.sampled_from([0, 7, 11, 15, 40]),
        "PixelRepresentation": st.sampled_from([0, 1, 2]),
        "SamplesPerPixel": st.sampled_from([0, 1, 3, 4]),
        "PhotometricInterpretation": st.sampled_from(["MONOCHROME2", "MONOCHROME1", "RGB", "PALETTE COLOR", "XYZ"]),
        "PixelSpacing": st.sampled_from([[0.7, 0.7], [0, 0], [-1, 1], [1e9, 1e9], [0.7]]),
        "SliceThickness": st.sampled_from([0.7, 0, -3, 1e9]),
        "ImageOrientationPatient": st.sampled_from([[1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0],
                                                    [1, 0, 0], [0.6, 0.8, 0, 0, 0, 1]]),
        "ImagePositionPatient": st.sampled_from([[0, 0, 0], [1e30, 0, 0], [0, 0]]),
        "RescaleSlope": st.sampled_from([1, 0, -1, 1e30]),
        "RescaleIntercept": st.sampled_from([0, -1024, 1e30]),
        "NumberOfFrames": st.sampled_from([0, 1, 2, 1000]),
        "SeriesInstanceUID": st.sampled_from(["1.2.3", "1.2.3.4"]),
        "EchoNumbers": st.sampled_from([1, 2]),
        "Modality": st.sampled_from(["MR", "CT", "SR", ""]),
        "SOPClassUID": st.sampled_from(["1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.88.22"]),
    }
    keys = draw(st.lists(st.sampled_from(sorted(choices) + ["PixelData"]), min_size=1, max_size=4, unique=True))
    muts = {}
    for k in keys:
        if k == "PixelData":
            muts[k] = draw(st.sampled_from(["truncate", "delete", "empty"]))
        else:
            muts[k] = draw(st.one_of(choices[k], st.just(None)))   # None: delete the tag
    which = draw(st.sampled_from(["one", "all"]))
    return muts, which


def write_fuzzed_dicom(source_files: list[Path], muts: dict, which: str, folder: Path) -> Path:
    """Copy a few slices of a real series into ``folder`` and apply ``muts`` to one or all."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(source_files):
        dest = folder / f"s{i:03d}.dcm"
        if which == "one" and i != 1:
            shutil.copy(src, dest)
            continue
        ds = pydicom.dcmread(str(src))
        for k, v in muts.items():
            if k == "PixelData":
                if v == "delete":
                    del ds.PixelData
                elif v == "empty":
                    ds.PixelData = b""
                else:
                    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
            elif v is None:
                if k in ds:
                    delattr(ds, k)
            else:
                try:
                    setattr(ds, k, v)
                except (ValueError, TypeError, OverflowError):
                    pass
        try:
            ds.save_as(str(dest), enforce_file_format=False)
        except Exception:  # noqa: BLE001 - pydicom refuses some values; write the original then
            shutil.copy(src, dest)
    return folder


class Timer:
    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t
