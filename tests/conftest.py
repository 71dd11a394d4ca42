"""Shared fixtures: where the real data lives, small synthetic volumes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    env = os.environ.get("NAPARI_PVS_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def real_file(rel: str) -> Path:
    """A file of the shared real data, or skip the test when it is not there."""
    path = data_root() / rel
    if not path.is_file():
        pytest.skip(f"real data not found: {path}")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = data_root()
    if not (d / "MANIFEST.tsv").is_file():
        pytest.skip(f"real data not found at {d}")
    return d


@pytest.fixture(scope="session")
def study1_t2(data_dir) -> Path:
    return data_dir / "open_ms/longitudinal/patient01/study1_T2W.nii.gz"


@pytest.fixture
def lps_affine() -> np.ndarray:
    """A 0.5 x 0.5 x 3 mm LPS-oriented affine (like the clinical open_ms scans)."""
    return np.array([[-0.5, 0, 0, 60.0], [0, -0.5, 0, 70.0], [0, 0, 3.0, -20.0], [0, 0, 0, 1]])


# --------------------------------------------------------------------------- shared helpers


def write_nifti(path: Path, data_ijk: np.ndarray, affine: np.ndarray, *, qform_code: int = 1,
                sform_code: int = 1) -> Path:
    """Write ``data_ijk`` (NIfTI (i, j, k) order) with ``affine`` and both codes; returns ``path``."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data_ijk), np.asarray(affine, dtype=float))
    img.header.set_qform(affine, code=qform_code)
    img.header.set_sform(affine, code=sform_code)
    nib.save(img, str(path))
    return path


def blob_mask(shape=(6, 96, 96), *, n=30, size=(3, 3), seed=0) -> np.ndarray:
    """uint8 ``(Z, Y, X)`` mask of ``n`` rectangles of ``size`` voxels in-plane (PVS stand-ins),
    placed at random (seeded) at least 4 voxels from the in-plane border."""
    r = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    for _ in range(n):
        z, y, x = r.integers([0, 4, 4], [shape[0], shape[1] - 4, shape[2] - 4])
        mask[z, y:y + size[0], x:x + size[1]] = 1
    return mask


def blob_volume(seed: int, shape=(6, 96, 96), spacing=(3.0, 0.5, 0.5)):
    """``(Volume, mask)``: noisy background (100 +- 5) with bright (+60) :func:`blob_mask`
    blobs, on a diagonal RAS affine of ``spacing`` mm ``(Z, Y, X)``."""
    from napari_pvs.engine.io import Volume

    mask = blob_mask(shape, seed=seed)
    img = np.random.default_rng(seed).normal(100, 5, shape).astype(np.float32)
    img[mask > 0] += 60
    return Volume(img, np.diag([spacing[2], spacing[1], spacing[0], 1.0])), mask


def make_phantom(noise: float = 10.0, seed: int = 123) -> tuple:
    """A T2-like head phantom: ellipsoidal brain (WM core 300, GM shell 450), a CSF
    rim and two lateral ventricles (900), background 0, Gaussian noise ``noise``.
    LPS-like orientation, 1 mm in-plane, 3 mm slices. Returns the volume and the label
    map (0 background, 1 WM, 2 GM, 3 CSF)."""
    shape = (44, 176, 146)  # (Z, Y, X)
    aff = np.array([[-1.0, 0, 0, 72.5], [0, -1.0, 0, 87.5], [0, 0, 3.0, -64.5], [0, 0, 0, 1]])
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    x = aff[0, 0] * i + aff[0, 3]
    y = aff[1, 1] * j + aff[1, 3]
    z = aff[2, 2] * k + aff[2, 3]
    rho = np.sqrt((x / 62) ** 2 + (y / 78) ** 2 + (z / 58) ** 2)
    lab = np.zeros(shape, np.uint8)
    lab[rho <= 1.06] = 3
    lab[rho <= 1.0] = 2
    lab[rho <= 0.92] = 1
    for sx in (-9.0, 9.0):
        lab[((x - sx) / 6) ** 2 + (y / 22) ** 2 + ((z - 8) / 12) ** 2 <= 1] = 3
    vals = np.array([0.0, 300.0, 450.0, 900.0])
    rng = np.random.default_rng(seed)
    data = (vals[lab] + rng.normal(0.0, noise, shape)).astype(np.float32)
    from napari_pvs.engine.io import Volume

    return Volume(data=data, affine=aff), lab



#: network sizes used in the tests (features per level)
TINY_FEATURES = (4, 8, 16)
SMALL_FEATURES = (8, 16, 32)


def tiny_ensemble(folder: Path, *, n: int = 3, spacing_mm: float = 0.6) -> tuple[Path, list[Path]]:
    """An ``ensemble`` checkpoint of ``n`` tiny random ``mfnsde`` members (seeds 0..n-1,
    patch 32 x 32) in ``folder``: ``(ensemble path, member paths)``."""
    import torch

    from napari_pvs.engine.models.checkpoint import ensemble_checkpoint, save_checkpoint
    from napari_pvs.engine.models import MfNSDeConfig, build_model

    cfg = MfNSDeConfig(features=(4, 8))
    members = []
    for k in range(n):
        torch.manual_seed(k)
        members.append(save_checkpoint(folder / f"member{k}.pt", model=build_model("mfnsde", cfg),
                                       model_name="mfnsde", model_config=cfg, spacing_mm=spacing_mm,
                                       percentiles=(0.5, 99.5), patch_size=(32, 32)))
    return ensemble_checkpoint(members, folder / "ensemble.pt"), members


def open_annotate(make_napari_viewer, project: Path, scan: Path, rater: str = "alice"):
    """A shown viewer with the Annotate PVS widget docked, a new project in ``project``, the
    scan ``scan`` opened, added and loaded for ``rater``; returns ``(viewer, widget)``."""
    from napari_pvs.widgets.annotate import AnnotateWidget

    viewer = make_napari_viewer()
    w = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.folder.value = project
    w.rater.value = rater
    w.create_project()
    viewer.open(str(scan), plugin="napari-pvs")
    w.add_image()
    w.load_subject()
    return viewer, w
