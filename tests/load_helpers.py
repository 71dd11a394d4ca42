"""Builders for the load trials (``tests/test_load.py``, ``benchmarks/reliability.py``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["build_large_project", "time_open"]


def build_large_project(root: Path, n_subjects: int, n_versions: int, *, seed: int = 0) -> Path:
    """A project of ``n_subjects`` small T2s (4x16x16) and ``n_versions`` versions spread
    over them and two raters, all through the public API (every save a real version file
    and catalogue row). Returns the project folder."""
    from napari_pvs.engine.io import Volume, save_volume
    from napari_pvs.engine.project import Project

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    vol = Volume((rng.random((4, 16, 16)) * 100).astype(np.float32), np.diag([1.0, 1.0, 3.0, 1.0]))
    img = save_volume(root / "t2.nii.gz", vol.data, vol)
    proj = root / "project"
    with Project.create(proj) as p:
        for i in range(n_subjects):
            p.add_image(img, subject=f"sub-{i:03d}")
        mask = np.zeros(vol.shape, np.uint8)
        for k in range(n_versions):
            mask[k % 4, (k // 4) % 16, (k // 64) % 16] ^= 1
            p.save_annotation(f"sub-{k % n_subjects:03d}", ("rater_a", "rater_b")[k % 2], mask,
                              slice_status={k % 4: "done"}, kind="autosave" if k % 3 else "manual")
    return proj


def time_open(proj: Path, **kw) -> tuple[float, object]:
    """Seconds to open the project (with its default file check), and the problems found."""
    from napari_pvs.engine.project import Project

    t = time.perf_counter()
    with Project.open(proj, **kw) as p:
        problems = list(p.problems)
        n = len(p.subjects())
    return time.perf_counter() - t, (problems, n)
