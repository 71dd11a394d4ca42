"""The bad-input corpus: each class of bad input a user can hand napari-pvs, built in a
folder, and the way to try it through the CLI, the Python API and the napari reader.

Used by ``tests/test_bad_inputs.py`` (CLI in process, every class) and by
``benchmarks/reliability.py`` (CLI as a subprocess, the table of results).

A class is *refused* when napari-pvs must answer with one line naming the file and the
problem (``PVSInputError``; exit status 2 on the command line), with no traceback, no
partial output and the input untouched; a few classes are *accepted* inputs that look odd
(a 4D file with one volume, integer extremes, paths with spaces and non-ASCII characters)
and must work.

Every case gets ``root/in`` (its inputs) and ``root/out`` (where outputs would go); both
are fingerprinted (sha256 of every file) before and after the call.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

__all__ = ["Case", "CASES", "Context", "make_context", "run_api", "run_cli_inprocess", "run_reader",
           "fingerprint", "Outcome"]


# --------------------------------------------------------------------------- context
@dataclass
class Context:
    """What every case may use: a tiny checkpoint, the real data root (or None)."""

    tiny_ckpt: Path
    data: Path | None
    loaded: object = None      # the tiny model, loaded once for the API calls

    def real(self, rel: str) -> Path | None:
        if self.data is None:
            return None
        p = self.data / rel
        return p if p.exists() else None


def make_context(folder: Path, data: Path | None) -> Context:
    """A tiny U-Net checkpoint in ``folder`` (fast to run) and the data root."""
    from napari_pvs.engine.models import UNetConfig, build_model
    from napari_pvs.engine.models.checkpoint import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    cfg = UNetConfig(features=(8, 16, 32))
    ckpt = folder / "tiny_unet.pt"
    save_checkpoint(ckpt, model=build_model("unet", cfg), model_name="unet", model_config=cfg, spacing_mm=0.7,
                    percentiles=(0.5, 99.5))
    return Context(tiny_ckpt=ckpt, data=data)


# --------------------------------------------------------------------------- file builders
def scan_like(shape=(8, 40, 40), seed=0) -> np.ndarray:
    """A small scan-like float32 volume ``(X, Y, Z)`` as nibabel stores it: a bright disc with noise."""
    rng = np.random.default_rng(seed)
    x, y = np.mgrid[: shape[1], : shape[2]]
    disc = ((x - shape[1] / 2) ** 2 + (y - shape[2] / 2) ** 2 < (shape[1] / 2.5) ** 2).astype(np.float32)
    vol = 200.0 * disc[None] + rng.normal(20, 5, shape).astype(np.float32)
    return np.ascontiguousarray(vol.transpose(1, 2, 0)).astype(np.float32)


def write_nii(path: Path, arr: np.ndarray, affine=None, **header) -> Path:
    """NIfTI through nibabel (qform and sform code 1), then header fields set as given."""
    img = nib.Nifti1Image(arr, np.diag([1.0, 1.0, 3.0, 1.0]) if affine is None else affine, dtype=arr.dtype)
    img.header.set_qform(img.affine, code=1)
    img.header.set_sform(img.affine, code=1)
    for k, v in header.items():
        img.header[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def write_raw_nii(path: Path, arr: np.ndarray, **fields) -> Path:
    """NIfTI-1 written byte by byte from a header whose fields are set *after* nibabel's checks
    (so that values nibabel would repair or refuse, e.g. a zero pixdim, reach the file)."""
    img = nib.Nifti1Image(arr, np.diag([1.0, 1.0, 3.0, 1.0]), dtype=arr.dtype)
    hdr = img.header
    hdr.set_qform(img.affine, code=1)
    hdr.set_sform(img.affine, code=1)
    for k, v in fields.items():
        hdr[k] = v
    hdr["vox_offset"] = 352
    blob = hdr.binaryblock + b"\0" * 4 + np.asarray(arr).tobytes(order="F")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(blob, 1) if path.name.endswith(".gz") else blob)
    return path


def good_scan(root: Path, name="t2.nii.gz") -> Path:
    return write_nii(root / "in" / name, scan_like())


def structured_report(path: Path) -> Path:
    """A minimal DICOM Part-10 enhanced structured report (no pixel data)."""

    def el(group, elem, vr, value):
        if isinstance(value, str):
            value = value.encode()
            if len(value) % 2:
                value += b"\0" if vr == "UI" else b" "
        if vr in ("OB", "OW", "SQ", "UN", "UT"):
            return struct.pack("<HH2sHI", group, elem, vr.encode(), 0, len(value)) + value
        return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value

    sr = "1.2.840.10008.5.1.4.1.1.88.22"
    meta = (el(2, 1, "OB", b"\0\1") + el(2, 2, "UI", sr) + el(2, 3, "UI", "1.2.3.4.5.6.7")
            + el(2, 0x10, "UI", "1.2.840.10008.1.2.1"))
    body = (el(8, 0x16, "UI", sr) + el(8, 0x18, "UI", "1.2.3.4.5.6.7") + el(8, 0x60, "CS", "SR")
            + el(0x20, 0x0D, "UI", "1.2.3.4.5.6.8") + el(0x20, 0x0E, "UI", "1.2.3.4.5.6.9"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + el(2, 0, "UL", struct.pack("<I", len(meta))) + meta + body)
    return path


# --------------------------------------------------------------------------- the cases
@dataclass
class Case:
    """One class of bad input.

    ``build(root, ctx)`` makes the inputs under ``root/in`` and returns a dict with:
    ``input`` (the file the message must name), ``argv`` (CLI arguments), ``api`` (a
    callable of no arguments), optionally ``reader`` (a path for the napari reader),
    ``subprocess`` (a function of ``argv`` run as the CLI in another process: for
    permissions and file-size limits), ``names`` (the name the message must contain, when
    it is not a file).
    """

    name: str
    group: str
    needle: str
    build: Callable[[Path, Context], dict]
    expect: str = "refused"          # or "accepted"
    needs_data: bool = False
    reader_ok: bool = False          # napari opens it for viewing (refused only for segmenting)


CASES: list[Case] = []


def case(name: str, group: str, needle: str, *, expect: str = "refused", needs_data: bool = False,
         reader_ok: bool = False):
    def deco(fn):
        CASES.append(Case(name, group, needle, fn, expect, needs_data, reader_ok))
        return fn
    return deco


def _segment(ctx: Context, path: Path, out: Path, *extra: str) -> list[str]:
    return ["segment", str(path), "-m", str(ctx.tiny_ckpt), "-o", str(out), *extra]


def _api_segment(ctx: Context, path: Path, **kw):
    def call():
        from napari_pvs.engine.usecases import load_segmenter, segment

        if ctx.loaded is None:
            ctx.loaded = load_segmenter(ctx.tiny_ckpt)
        return segment(path, ctx.loaded, **kw)
    return call


def _scan_case(root: Path, ctx: Context, path: Path) -> dict:
    """A scan-level class: ``segment`` on the command line, ``segment`` in Python, the reader."""
    return {"input": path, "argv": _segment(ctx, path, root / "out" / "mask.nii.gz"),
            "api": _api_segment(ctx, path), "reader": path}


# ---- files that cannot be read
@case("empty .nii.gz (0 bytes)", "file", "file is empty (0 bytes)")
def _(root, ctx):
    p = root / "in" / "empty.nii.gz"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"")
    return _scan_case(root, ctx, p)


@case("truncated .nii.gz", "file", "truncated")
def _(root, ctx):
    full = good_scan(root, "full.nii.gz").read_bytes()
    p = root / "in" / "truncated.nii.gz"
    p.write_bytes(full[: len(full) // 2])
    (root / "in" / "full.nii.gz").unlink()
    return _scan_case(root, ctx, p)


@case(".nii.gz that is not gzip-compressed", "file", "not gzip-compressed (an uncompressed NIfTI")
def _(root, ctx):
    plain = write_nii(root / "in" / "plain.nii", scan_like())
    p = root / "in" / "plain_named.nii.gz"
    p.write_bytes(plain.read_bytes())
    plain.unlink()
    return _scan_case(root, ctx, p)


@case("random bytes (.nii)", "file", "cannot read as NIfTI")
def _(root, ctx):
    p = root / "in" / "random.nii"
    p.parent.mkdir(parents=True)
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return _scan_case(root, ctx, p)


@case("random bytes, gzip-compressed (.nii.gz)", "file", "cannot read as NIfTI")
def _(root, ctx):
    p = root / "in" / "random.nii.gz"
    p.parent.mkdir(parents=True)
    p.write_bytes(gzip.compress(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes()))
    return _scan_case(root, ctx, p)


@case("a folder named like a file", "file", "is a directory")
def _(root, ctx):
    p = root / "in" / "scan.nii.gz"
    p.mkdir(parents=True)
    (p / "keep.txt").write_text("a folder")
    return _scan_case(root, ctx, p)


@case("missing file", "file", "file not found")
def _(root, ctx):
    (root / "in").mkdir(parents=True)
    return _scan_case(root, ctx, root / "in" / "nowhere.nii.gz")


@case("not a scan (.txt)", "file", "not a readable scan")
def _(root, ctx):
    p = root / "in" / "notes.txt"
    p.parent.mkdir(parents=True)
    p.write_text("PVS notes")
    return _scan_case(root, ctx, p)


# ---- shapes and values
@case("2D image", "array", "image has 2 dimensions")
def _(root, ctx):
    return _scan_case(root, ctx, write_nii(root / "in" / "flat.nii.gz", scan_like()[:, :, 0]))


@case("4D, several volumes", "array", "image has 4 dimensions")
def _(root, ctx):
    return _scan_case(root, ctx, write_nii(root / "in" / "fmri.nii.gz", np.stack([scan_like()] * 3, axis=-1)))


@case("4D with one volume", "array", "", expect="accepted")
def _(root, ctx):
    return _scan_case(root, ctx, write_nii(root / "in" / "one.nii.gz", scan_like()[..., None]))


@case("a zero-length axis", "array", "image has an empty dimension")
def _(root, ctx):
    return _scan_case(root, ctx, write_nii(root / "in" / "empty_axis.nii.gz", np.zeros((40, 0, 8), np.float32)))


@case("NaN voxels", "array", "NaN or infinite voxels")
def _(root, ctx):
    a = scan_like()
    a[3, 3, 3] = np.nan
    return _scan_case(root, ctx, write_nii(root / "in" / "nan.nii.gz", a))


@case("Inf voxels", "array", "NaN or infinite voxels")
def _(root, ctx):
    a = scan_like()
    a[3, 3, 3] = np.inf
    return _scan_case(root, ctx, write_nii(root / "in" / "inf.nii.gz", a))


@case("all-zero volume", "array", "image is constant (every voxel is 0", reader_ok=True)
def _(root, ctx):
    return _scan_case(root, ctx, write_nii(root / "in" / "zeros.nii.gz", np.zeros((40, 40, 8), np.float32)))


@case("constant volume", "array", "image is constant (every voxel is 7", reader_ok=True)
def _(root, ctx):
    return _scan_case(root, ctx, write_nii(root / "in" / "seven.nii.gz", np.full((40, 40, 8), 7, np.int16)))


@case("complex data", "array", "complex data (complex64)")
def _(root, ctx):
    return _scan_case(root, ctx, write_nii(root / "in" / "complex.nii.gz", scan_like().astype(np.complex64)))


@case("RGB data", "array", "RGB or structured data")
def _(root, ctx):
    rgb = np.zeros((40, 40, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return _scan_case(root, ctx, write_nii(root / "in" / "rgb.nii.gz", rgb))


@case("integer overflow through the scaling (scl_slope 1e38)", "array", "overflow 32-bit floats")
def _(root, ctx):
    return _scan_case(root, ctx, write_raw_nii(root / "in" / "overflow.nii.gz", np.full((40, 40, 8), 30000, np.int16),
                                               scl_slope=1e38, scl_inter=0))


@case("integer extremes (int16 -32768..32767)", "array", "", expect="accepted")
def _(root, ctx):
    a = scan_like()
    a = np.where(a > 100, 32767, -32768).astype(np.int16)
    return _scan_case(root, ctx, write_nii(root / "in" / "extremes.nii.gz", a))


@case("int64 data", "array", "", expect="accepted")
def _(root, ctx):
    return _scan_case(root, ctx, write_raw_nii(root / "in" / "int64.nii.gz", scan_like().astype(np.int64),
                                               datatype=1024, bitpix=64))


# ---- geometry
@case("singular affine", "geometry", "singular or non-finite affine")
def _(root, ctx):
    return _scan_case(root, ctx, write_raw_nii(root / "in" / "singular.nii.gz", scan_like(), qform_code=0,
                                               srow_x=[0, 0, 0, 0]))


@case("non-finite affine", "geometry", "singular or non-finite affine")
def _(root, ctx):
    return _scan_case(root, ctx, write_raw_nii(root / "in" / "nan_affine.nii.gz", scan_like(), qform_code=0,
                                               srow_x=[np.nan, 0, 0, 0]))


@case("qform and sform disagree", "geometry", "qform and sform disagree by up to 40.0 mm")
def _(root, ctx):
    return _scan_case(root, ctx, write_raw_nii(root / "in" / "qs.nii.gz", scan_like(), qoffset_x=40.0))


@case("zero voxel size", "geometry", "voxel size (pixdim) (0.0, 1.0, 3.0)")
def _(root, ctx):
    return _scan_case(root, ctx, write_raw_nii(root / "in" / "zero_vox.nii.gz", scan_like(), sform_code=0,
                                               pixdim=[1, 0, 1, 3, 1, 0, 0, 0]))


@case("negative voxel size", "geometry", "voxel size (pixdim) (-1.0, 1.0, 3.0)")
def _(root, ctx):
    return _scan_case(root, ctx, write_raw_nii(root / "in" / "neg_vox.nii.gz", scan_like(), sform_code=0,
                                               pixdim=[1, -1, 1, 3, 1, 0, 0, 0]))


@case("10 mm slices", "geometry", "slices thicker than 7 mm", reader_ok=True)
def _(root, ctx):
    return _scan_case(root, ctx, write_nii(root / "in" / "thick.nii.gz", scan_like(),
                                           np.diag([1.0, 1.0, 10.0, 1.0])))


@case("voxel size in the wrong unit (0.001)", "geometry", "below 0.1 mm", reader_ok=True)
def _(root, ctx):
    return _scan_case(root, ctx, write_nii(root / "in" / "metres.nii.gz", scan_like(),
                                           np.diag([0.001, 0.001, 0.003, 1.0])))


@case("a 1024^3 volume (memory guard)", "memory", "1024x1024x1024 voxels: segmenting needs about 107.4 GB")
def _(root, ctx):
    # the header of a 1024^3 float32 volume; the guard answers from the header, before any data is read
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1024, 1024, 1024))
    hdr.set_data_dtype(np.float32)
    hdr.set_qform(np.eye(4), code=1)
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    p = root / "in" / "huge.nii"
    p.parent.mkdir(parents=True)
    p.write_bytes(hdr.binaryblock + b"\0" * 4)
    return {"input": p, "argv": _segment(ctx, p, root / "out" / "mask.nii.gz"), "api": _api_segment(ctx, p)}


# ---- masks
def _mask_case(root: Path, ctx: Context, mask: Path, image: Path) -> dict:
    def api():
        from napari_pvs.engine.io import load_mask, load_volume

        return load_mask(mask, reference=load_volume(image))
    return {"input": mask, "argv": ["train", "--image", str(image), "--mask", str(mask), "--epochs", "1",
                                    "-o", str(root / "out" / "model.pt")], "api": api}


@case("mask with labels above 1 (a label map)", "mask", "mask holds 3 labels (1, 2, 41)")
def _(root, ctx):
    img = good_scan(root)
    m = np.zeros((40, 40, 8), np.uint8)
    m[5:8, 5:8, 2] = 1
    m[20:22, 20:22, 4] = 2
    m[30, 30, 5] = 41
    return _mask_case(root, ctx, write_nii(root / "in" / "labels.nii.gz", m), img)


@case("float mask of probabilities", "mask", "mask holds non-integer values")
def _(root, ctx):
    img = good_scan(root)
    m = np.random.default_rng(3).random((40, 40, 8)).astype(np.float32)
    return _mask_case(root, ctx, write_nii(root / "in" / "prob.nii.gz", m), img)


@case("mask on another grid", "mask", "differs")
def _(root, ctx):
    img = good_scan(root)
    return _mask_case(root, ctx, write_nii(root / "in" / "small_mask.nii.gz", np.zeros((20, 40, 8), np.uint8)), img)


# ---- DICOM, MGZ, BIDS
@case("a folder without DICOM images", "dicom", "no DICOM image in this folder")
def _(root, ctx):
    d = root / "in" / "dicom_empty"
    d.mkdir(parents=True)
    (d / "readme.txt").write_text("no images")
    return _scan_case(root, ctx, d)


def _series(ctx: Context) -> list[Path]:
    first = ctx.real("dicom/studyforrest_t1w/N2D_0001.dcm")
    return sorted(first.parent.glob("*.dcm"))


def _copy(files, d: Path) -> Path:
    d.mkdir(parents=True)
    for f in files:
        shutil.copy(f, d / Path(f).name)
    return d


@case("DICOM series with missing slices", "dicom", "missing slice(s)", needs_data=True)
def _(root, ctx):
    s = _series(ctx)
    return _scan_case(root, ctx, _copy(s[:30] + s[33:50], root / "in" / "gap"))


@case("DICOM series with a duplicated slice", "dicom", "duplicated slice position", needs_data=True)
def _(root, ctx):
    s = _series(ctx)
    d = _copy(s[:20], root / "in" / "dup")
    shutil.copy(s[5], d / "copy_of_6.dcm")
    return _scan_case(root, ctx, d)


@case("DICOM folder with several series, none chosen", "dicom", "series", needs_data=True)
def _(root, ctx):
    src = ctx.real("dicom/transfer_syntaxes/In")
    d = root / "in" / "several"
    shutil.copytree(src, d)
    return _scan_case(root, ctx, d)


@case("DICOM series number that is not there", "dicom", "99", needs_data=True)
def _(root, ctx):
    src = ctx.real("dicom/transfer_syntaxes/In")
    d = root / "in" / "several"
    shutil.copytree(src, d)
    out = root / "out" / "mask.nii.gz"
    return {"input": d, "argv": _segment(ctx, d, out, "--series", "99"),
            "api": lambda: __import__("napari_pvs.engine.io", fromlist=["load_volume"]).load_volume(d, series=99)}


@case("truncated DICOM file", "dicom", "DICOM", needs_data=True)
def _(root, ctx):
    s = _series(ctx)
    p = root / "in" / "cut.dcm"
    p.parent.mkdir(parents=True)
    p.write_bytes(s[0].read_bytes()[:1500])
    return _scan_case(root, ctx, p)


@case("DICOM object without an image (structured report)", "dicom", "holds no readable image")
def _(root, ctx):
    return _scan_case(root, ctx, structured_report(root / "in" / "report.dcm"))


@case("truncated .mgz", "mgz", "cannot read as MGH", needs_data=True)
def _(root, ctx):
    src = ctx.real("mgz/norm.mgz").read_bytes()
    p = root / "in" / "cut.mgz"
    p.parent.mkdir(parents=True)
    p.write_bytes(src[: len(src) // 3])
    return _scan_case(root, ctx, p)


@case("random bytes named .mgz", "mgz", "named .mgz but not gzip-compressed")
def _(root, ctx):
    p = root / "in" / "noise.mgz"
    p.parent.mkdir(parents=True)
    p.write_bytes(os.urandom(2048))
    return _scan_case(root, ctx, p)


@case("BIDS dataset without a T2w", "bids", "no T2w scan under sub-")
def _(root, ctx):
    b = root / "in" / "bids"
    write_nii(b / "sub-01" / "anat" / "sub-01_T1w.nii.gz", scan_like())
    (b / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')

    def api():
        from napari_pvs.engine.cohort import discover_scans

        return discover_scans(b)
    return {"input": b, "argv": ["cohort", "run", str(b), "-o", str(root / "out" / "derivative")], "api": api}


@case("folder that is neither BIDS nor holds scans", "bids", "no scan")
def _(root, ctx):
    b = root / "in" / "stuff"
    b.mkdir(parents=True)
    (b / "notes.txt").write_text("x")

    def api():
        from napari_pvs.engine.cohort import discover_scans

        return discover_scans(b)
    return {"input": b, "argv": ["cohort", "run", str(b), "-o", str(root / "out" / "derivative")], "api": api}


# ---- checkpoints
def _ckpt_case(root: Path, ctx: Context, ckpt: Path) -> dict:
    img = good_scan(root)

    def api():
        from napari_pvs.engine.usecases import load_segmenter

        return load_segmenter(ckpt)
    return {"input": ckpt, "argv": ["segment", str(img), "-m", str(ckpt), "-o", str(root / "out" / "mask.nii.gz")],
            "api": api}


@case("checkpoint of another program", "checkpoint", "not a napari-pvs checkpoint")
def _(root, ctx):
    import torch

    p = root / "in" / "resnet.pt"
    p.parent.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 3}, p)
    return _ckpt_case(root, ctx, p)


@case("checkpoint of a model this version does not know", "checkpoint", "which this version does not know")
def _(root, ctx):
    import torch

    ck = torch.load(ctx.tiny_ckpt, weights_only=True)
    ck["model_name"] = "segformer3d"
    p = root / "in" / "future.pt"
    p.parent.mkdir(parents=True)
    torch.save(ck, p)
    return _ckpt_case(root, ctx, p)


@case("truncated checkpoint", "checkpoint", "not a readable checkpoint")
def _(root, ctx):
    p = root / "in" / "cut.pt"
    p.parent.mkdir(parents=True)
    data = ctx.tiny_ckpt.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return _ckpt_case(root, ctx, p)


@case("checkpoint whose pickle would run code", "checkpoint", "not a readable checkpoint")
def _(root, ctx):
    import pickle
    import zipfile

    marker = root / "out" / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    p = root / "in" / "evil.pt"
    p.parent.mkdir(parents=True)
    # a torch zip checkpoint whose data.pkl calls os.system on load (refused by weights_only=True)
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"format": "napari-pvs", "x": Evil()}, protocol=2))
        z.writestr("evil/version", "3\n")
        z.writestr("evil/byteorder", "little")
    out = _ckpt_case(root, ctx, p)
    out["never"] = marker
    return out


@case("checkpoint file missing", "checkpoint", "checkpoint not found")
def _(root, ctx):
    (root / "in").mkdir(parents=True)
    return _ckpt_case(root, ctx, root / "in" / "none.pt")


# ---- outputs
@case("output path equal to the input", "output", "the output would overwrite the input")
def _(root, ctx):
    img = good_scan(root)

    def api():
        from napari_pvs.engine.io import check_output_paths

        check_output_paths([img], [img])
    return {"input": img, "argv": _segment(ctx, img, img), "api": api}


@case("output is an existing folder", "output", "is a folder, expected a file name")
def _(root, ctx):
    img = good_scan(root)
    folder = root / "out" / "mask.nii.gz"
    folder.mkdir(parents=True)

    def api():
        from napari_pvs.engine.io import load_volume, save_volume

        v = load_volume(img)
        save_volume(folder, (v.data > 100).astype(np.uint8), v)
    return {"input": folder, "argv": _segment(ctx, img, folder), "api": api}


@case("output folder without write permission", "output", "cannot write here")
def _(root, ctx):
    img = good_scan(root)
    locked = root / "out" / "locked"
    locked.mkdir(parents=True)
    out = locked / "mask.nii.gz"

    def api():
        from napari_pvs.engine.io import load_volume, save_volume

        v = load_volume(img)
        with _no_write_permission(locked):
            save_volume(out, (v.data > 100).astype(np.uint8), v)
    return {"input": out, "argv": _segment(ctx, img, out), "api": api, "subprocess": "no_write_permission",
            "locked": locked}


@case("full disk (a 64 kB file-size limit)", "output", "File too large")
def _(root, ctx):
    img = write_nii(root / "in" / "t2.nii", scan_like((24, 160, 160)))   # a 4 MB mask written uncompressed
    out = root / "out" / "mask.nii"

    def api():
        from napari_pvs.engine.io import load_volume, save_volume

        v = load_volume(img)
        with file_size_limit(64 * 1024):
            save_volume(out, (v.data > 100).astype(np.uint8), v)
    return {"input": out, "argv": _segment(ctx, img, out), "api": api, "subprocess": "file_size_limit"}


# ---- paths and names
@case("paths with spaces and non-ASCII characters", "names", "", expect="accepted")
def _(root, ctx):
    p = write_nii(root / "in" / "Müller scan ä" / "T2 Straße ü.nii.gz", scan_like())
    return {"input": p, "argv": _segment(ctx, p, root / "out" / "résultat final" / "masque ü.nii.gz"),
            "api": _api_segment(ctx, p), "reader": p}


def _project_case(root: Path, subject: str | None = None, rater: str | None = None) -> dict:
    from napari_pvs.engine.project import Project

    img = good_scan(root)
    proj = root / "out" / "project"
    Project.create(proj).close()
    if subject is not None:
        argv = ["project", "add", str(proj), str(img), "--subject", subject]

        def api():
            with Project.open(proj) as p:
                p.add_image(img, subject=subject)
    else:
        mask = write_nii(root / "in" / "mask.nii.gz", (scan_like() > 100).astype(np.uint8))
        argv = ["project", "import-mask", str(proj), str(img), str(mask), "--rater", rater, "--subject", "s01"]

        def api():
            with Project.open(proj) as p:
                p.add_rater(rater)
    return {"input": img, "argv": argv, "api": api, "names": subject or rater}


@case("subject name with ../", "names", "subject name '../../etc' is not allowed")
def _(root, ctx):
    return _project_case(root, subject="../../etc")


@case("subject name with quotes", "names", "is not allowed")
def _(root, ctx):
    return _project_case(root, subject='O"Brien\'s')


@case("rater name with SQL", "names", "rater name \"x'); DROP TABLE versions; --\" is not allowed")
def _(root, ctx):
    return _project_case(root, rater="x'); DROP TABLE versions; --")


# --------------------------------------------------------------------------- running
@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """RLIMIT_FSIZE lowered for this process (SIGXFSZ ignored, so a write fails with EFBIG)."""
    import resource
    import signal

    old_sig = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_sig)


def _chattr(folder: Path, flag: str) -> bool:
    import subprocess

    exe = shutil.which("chattr")
    if exe is None:
        return False
    return subprocess.run([exe, flag, str(folder)], capture_output=True).returncode == 0


@contextlib.contextmanager
def _no_write_permission(folder: Path, *, allow_seteuid: bool = True):
    """``folder`` not writable for this process: chmod 0555; as root (who ignores modes) the
    folder is also made immutable (``chattr +i``), or else the effective uid becomes nobody."""
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    immutable = root and _chattr(folder, "+i")
    switched = False
    try:
        if root and not immutable:
            if not allow_seteuid:
                raise RuntimeError("running as root without chattr: cannot take write permission away")
            os.seteuid(65534)
            switched = True
        yield
    finally:
        if switched:
            os.seteuid(0)
        if immutable:
            _chattr(folder, "-i")
        folder.chmod(mode)


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative names; folders as ``<dir>``)."""
    out = {}
    if not folder.exists():
        return out
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.name == ".writer.json":       # the writer lock's note (pid, host, time), not an output
            continue
        out[rel] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class Outcome:
    """What one front end did with one case."""

    ok: bool                 # the expected behaviour, all checks passed
    detail: str              # the message (refused) or "ran" (accepted), or what went wrong
    problems: list[str] = field(default_factory=list)


def _check(case_: Case, spec: dict, root: Path, before_in: dict, before_out: dict, code: int | None,
           message: str, raised: BaseException | None, *, cli: bool) -> Outcome:
    problems = []
    if case_.expect == "accepted":
        if raised is not None or (code not in (None, 0)):
            problems.append(f"failed: {message or raised}")
    else:
        if cli and code != 2:
            problems.append(f"exit status {code}, expected 2")
        if "Traceback" in message:
            problems.append("traceback printed")
        # progress lines ("segmenting:  66.7 % slices 16/24 | 14.4 s", every 10 s in logs) are not errors
        lines = [ln for ln in message.splitlines() if ln.strip() and not re.match(r"^[\w -]+: +[\d.]+ % ", ln)]
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines")
        if case_.needle and case_.needle not in message:
            problems.append(f"message lacks {case_.needle!r}")
        name = spec.get("names")
        named = (str(name) in message or repr(str(name)) in message) if name else (Path(spec["input"]).name in message)
        if not named:
            problems.append("the file (or name) is not named")
        if fingerprint(root / "out") != before_out:
            problems.append("output folder changed (partial output)")
    if fingerprint(root / "in") != before_in:
        problems.append("input changed")
    if spec.get("never") is not None and Path(spec["never"]).exists():
        problems.append("code in the checkpoint ran")
    leftovers = [p.name for p in root.rglob(".*part*")]
    if leftovers:
        problems.append(f"temporary files left: {leftovers}")
    first = message.strip().splitlines()[0] if message.strip() else ("ran" if not problems else "")
    return Outcome(not problems, first, problems)


def prepare(case_: Case, root: Path, ctx: Context) -> tuple[dict, dict, dict]:
    spec = case_.build(root, ctx)
    (root / "out").mkdir(parents=True, exist_ok=True)
    return spec, fingerprint(root / "in"), fingerprint(root / "out")


def run_cli_inprocess(case_: Case, root: Path, ctx: Context) -> Outcome:
    """The CLI's ``main`` in this process, stderr captured."""
    from napari_pvs.cli import main

    spec, b_in, b_out = prepare(case_, root, ctx)
    err = io.StringIO()
    if spec.get("subprocess") == "file_size_limit":
        ctx_mgr = file_size_limit(64 * 1024)
    elif spec.get("subprocess") == "no_write_permission":
        ctx_mgr = _no_write_permission(spec["locked"])
    else:
        ctx_mgr = contextlib.nullcontext()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), ctx_mgr:
        code = main(spec["argv"])
    return _check(case_, spec, root, b_in, b_out, code, err.getvalue(), None, cli=True)


def run_cli_subprocess(case_: Case, root: Path, ctx: Context, python: str, timeout: float = 300) -> Outcome:
    """``python -m napari_pvs.cli`` in a child process (what a user sees, logging included)."""
    import subprocess

    spec, b_in, b_out = prepare(case_, root, ctx)
    pre = None
    kind = spec.get("subprocess")
    if kind == "file_size_limit":
        def pre():
            import resource
            import signal

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    locked = _no_write_permission(spec["locked"], allow_seteuid=False) if kind == "no_write_permission" \
        else contextlib.nullcontext()
    with locked:
        proc = subprocess.run([python, "-m", "napari_pvs.cli", *spec["argv"]], capture_output=True, text=True,
                              timeout=timeout, preexec_fn=pre, env=env)
    return _check(case_, spec, root, b_in, b_out, proc.returncode, proc.stderr, None, cli=True)


def run_api(case_: Case, root: Path, ctx: Context) -> Outcome:
    """The Python call; a refusal must be a ``PVSInputError`` and nothing else."""
    from napari_pvs.engine.errors import PVSInputError

    spec, b_in, b_out = prepare(case_, root, ctx)
    raised, message = None, ""
    try:
        spec["api"]()
    except PVSInputError as exc:
        raised, message = exc, str(exc)
    except Exception as exc:  # noqa: BLE001 - anything else is what this corpus looks for
        raised, message = exc, f"escaped {type(exc).__name__}: {exc}"
        if case_.expect == "refused":
            return Outcome(False, message, [message])
    if case_.expect == "refused" and raised is None:
        return Outcome(False, "accepted", ["no error raised"])
    return _check(case_, spec, root, b_in, b_out, None, message, raised, cli=False)


def run_reader(case_: Case, root: Path, ctx: Context) -> Outcome | None:
    """The napari reader (``napari_get_reader`` then the reader); None where it does not apply."""
    from napari_pvs.engine.errors import PVSInputError
    from napari_pvs.plugin import reader as rd

    spec, b_in, b_out = prepare(case_, root, ctx)
    path = spec.get("reader")
    if path is None:
        return None
    func = rd.napari_get_reader(str(path))
    if func is None:
        if case_.expect == "accepted":
            return Outcome(False, "not taken by the reader", ["not taken"])
        return Outcome(True, "not offered to napari-pvs (napari tries other readers)")
    raised, message = None, ""
    try:
        layers = func(str(path))
    except PVSInputError as exc:
        raised, message = exc, str(exc)
    except Exception as exc:  # noqa: BLE001
        return Outcome(False, f"escaped {type(exc).__name__}: {exc}", ["escaped"])
    if case_.reader_ok or case_.expect == "accepted":
        if raised is not None:
            return Outcome(False, message, ["refused for viewing"])
        return Outcome(True, f"opened ({layers[0][2]} layer, shape {tuple(layers[0][0].shape)})")
    if raised is None:
        return Outcome(False, "opened", ["opened"])
    return _check(case_, spec, root, b_in, b_out, None, message, raised, cli=False)
