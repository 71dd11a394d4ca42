"""Distance transforms: the ``edt`` library against ``scipy.ndimage.distance_transform_edt``,
in the masks that every segmentation computes (brain mask, wide-CSF mask) and in the
PVS-like objects (candidates), on every shared real T2, one process, the same run.

    python benchmarks/distance_transform.py [--data ../shared/data] [--repeat 2]

For each scan and backend: seconds of ``find_brain_mask``, ``find_wide_csf`` and
``find_pvs_candidates`` (median of ``--repeat`` calls), and whether the two backends give
the same masks and the same number of objects (voxels that differ are counted). Writes
``benchmarks/results/distance_transform.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from napari_pvs.engine.anatomy import morphology  # noqa: E402
from napari_pvs.engine.anatomy.regions import find_brain_mask, find_wide_csf  # noqa: E402
from napari_pvs.engine.candidates import find_pvs_candidates  # noqa: E402
from napari_pvs.engine.io import load_volume  # noqa: E402
from real_scans import SCANS  # noqa: E402   the real-scan benchmark's scans


def _scipy_edt(mask, spacing, black_border=False):
    """The former implementation: scipy, float64 cast to float32 (padding for the border)."""
    m = np.asarray(mask, bool)
    if black_border:
        d = ndi.distance_transform_edt(np.pad(m, 1), sampling=spacing)
        return d[tuple(slice(1, -1) for _ in range(m.ndim))].astype(np.float32)
    return ndi.distance_transform_edt(m, sampling=spacing).astype(np.float32)


def voxels_differing(a, b) -> int:
    """Voxels where two masks differ (0 when the first is None: no mask found)."""
    return int((a != b).sum()) if a is not None else 0


def save_rows(out: Path, rows: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 3), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distance_transform.json")
    args = ap.parse_args(argv)
    library_edt = morphology._edt
    rows = {}
    print("| scan | brain mask s (scipy / edt) | wide CSF s | candidates s | brain / CSF voxels differing | objects (scipy / edt) |")
    print("|---|---|---|---|---|---|")
    for key, (rel, _) in SCANS.items():
        image = load_volume(args.data / rel)
        res = {}
        for name, fn in (("scipy", _scipy_edt), ("edt", library_edt)):
            morphology._edt = fn
            try:
                t_brain, brain = timed(lambda: find_brain_mask(image), args.repeat)  # noqa: B023
                t_csf, csf = timed(lambda: find_wide_csf(image, brain), args.repeat)  # noqa: B023
                t_cand, cand = timed(lambda: find_pvs_candidates(image), 1)  # noqa: B023
            finally:
                morphology._edt = library_edt
            res[name] = {"brain_s": t_brain, "csf_s": t_csf, "candidates_s": t_cand, "brain": brain, "csf": csf,
                         "objects": len(cand.table)}
        s, e = res["scipy"], res["edt"]
        diff_brain, diff_csf = voxels_differing(s["brain"], e["brain"]), voxels_differing(s["csf"], e["csf"])
        rows[key] = {name: {k: v for k, v in r.items() if k not in ("brain", "csf")} for name, r in res.items()}
        rows[key].update(brain_voxels_differing=diff_brain, csf_voxels_differing=diff_csf)
        print(f"| {key} | {s['brain_s']} / {e['brain_s']} | {s['csf_s']} / {e['csf_s']} | "
              f"{s['candidates_s']} / {e['candidates_s']} | {diff_brain} / {diff_csf} | {s['objects']} / {e['objects']} |",
              flush=True)
    save_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
