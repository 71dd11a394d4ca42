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
