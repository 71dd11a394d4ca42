"""A rater-like check: PVS counted by eye on the BG and CSO rating slices, beside the models' counts.

Two steps:

1. ``--figures``: for every shared real T2 (:data:`real_scans.SCANS`), the rating slices are
   placed by atlas registration exactly as ``benchmarks/real_scans.py`` places them, and each
   slice is saved as a zoomed, windowed figure (``<out>/<scan>_<bg|cso>.png``): the T2 on the
   counting area's bounding box (+5 mm), grey levels from the 1st to the 99.5th percentile of
   the brain on that slice, each voxel drawn as a square (no smoothing), a 10 mm grid to keep
   track while counting, and the counting area (atlas BG grown 3 mm on the BG slice, atlas
   white matter on the CSO slice) outlined in dashed yellow. Slice indices go to
   ``<out>/levels.json``.
2. A person counts the PVS visible in each figure (round or linear bright objects inside the
   dashed outline, at most about 3 mm wide; not the ventricles, sulci, lesions or vessels'
   flow voids) and writes them in ``benchmarks/visual_counts.csv`` (scan, slice, index,
   visible_pvs, counted_by, notes). It is one careful rater's count, not truth.
3. ``--compare real_scans.json``: the counts beside each model's rating-slice counts from
   ``benchmarks/real_scans.py`` (same slices, same areas), as a table, with the ratio
   model / visual (goal: within 30 %, i.e. 0.7-1.3).

    python benchmarks/visual_counts.py --figures [--data ../shared/data] [--out benchmarks/results/visual_counts]
    python benchmarks/visual_counts.py --compare benchmarks/results/real_scans/real_scans.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CSV = ROOT / "benchmarks" / "visual_counts.csv"


def slice_figure(path: Path, image, s: int, area: np.ndarray, brain: np.ndarray, title: str) -> None:
    """The axial slice ``s`` of ``image`` zoomed on ``area`` (+5 mm), windowed, 10 mm grid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = image.axial_axis
    sl = np.moveaxis(np.asarray(image.data, dtype=np.float32), ax, 0)[s]
    a = np.moveaxis(area, ax, 0)[s]
    b = np.moveaxis(brain, ax, 0)[s]
    vy, vx = [v for k, v in enumerate(image.voxel_size) if k != ax]
    ys, xs = np.nonzero(a if a.any() else b)
    py, px = int(np.ceil(5 / vy)), int(np.ceil(5 / vx))
    box = (slice(max(ys.min() - py, 0), ys.max() + py + 1), slice(max(xs.min() - px, 0), xs.max() + px + 1))
    crop = sl[box]
    lo, hi = np.percentile(sl[b] if b.any() else sl, [1, 99.5])
    h_mm, w_mm = crop.shape[0] * vy, crop.shape[1] * vx
    scale = 11.0 / max(h_mm, w_mm)
    fig, axis = plt.subplots(figsize=(max(w_mm * scale, 4), max(h_mm * scale, 4) + 0.4))
    axis.imshow(crop, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", extent=(0, w_mm, h_mm, 0))
    if a[box].any():
        axis.contour(np.linspace(0, w_mm, crop.shape[1]), np.linspace(0, h_mm, crop.shape[0]), a[box],
                     levels=[0.5], colors="yellow", linewidths=0.8, linestyles="dashed")
    axis.set_xticks(np.arange(0, w_mm, 10))
    axis.set_yticks(np.arange(0, h_mm, 10))
    axis.grid(color="#3af", alpha=0.35, linewidth=0.5)
    axis.tick_params(labelsize=6)
    axis.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_figures(data: Path, out: Path, scans: list[str]) -> None:
    from real_scans import prepare_scan

    from napari_pvs.engine.registration.atlas import load_atlas

    atlas = load_atlas(data)
    levels = {}
    for key in scans:
        scan = prepare_scan(data, key, atlas)
        levels[key] = {k: int(v) for k, v in scan.levels.items()}
        vs = scan.image.voxel_size
        for row, name in enumerate(("bg", "cso")):
            s = int(scan.levels[name])
            title = (f"{key} {name.upper()} rating slice {s} (voxel {vs[0]:.2g} x {vs[1]:.2g} x {vs[2]:.2g} mm); "
                     f"axes in mm; dashed: counting area")
            slice_figure(out / f"{key}_{name}.png", scan.image, s, scan.areas[row], scan.anat.brain, title)
        print(f"{key}: BG slice {levels[key]['bg']}, CSO slice {levels[key]['cso']}", flush=True)
    (out / "levels.json").write_text(json.dumps(levels, indent=1))


def compare(results_path: Path) -> int:
    res = json.loads(results_path.read_text())
    rows = list(csv.DictReader(CSV.open()))
    models = list(res["per_model"])
    print("| scan | slice | index | visual | " + " | ".join(f"{m} (ratio)" for m in models) + " |")
    print("|---|---|---|---|" + "---|" * len(models))
    within = {m: [] for m in models}
    for r in rows:
        key, name, visual = r["scan"], r["slice"].lower(), int(r["visible_pvs"])
        levels = res["scans"].get(key, {}).get("rating_slices", {})
        if key not in res["scans"]:
            continue
        if int(levels[name]) != int(r["index"]):
            print(f"warning: {key} {name} slice {levels[name]} in the results, {r['index']} in the CSV")
        cells = []
        for m in models:
            n = res["per_model"][m][key]["rating"][name]
            ratio = n / visual if visual else float("nan")
            within[m].append(0.7 <= ratio <= 1.3 if visual else n == 0)
            cells.append(f"{n} ({ratio:.2f})" if visual else f"{n} (-)")
        print(f"| {key} | {name.upper()} | {r['index']} | {visual} | " + " | ".join(cells) + " |")
    for m in models:
        print(f"{m}: within 30 % of the visual count on {sum(within[m])} of {len(within[m])} slices")
    return 0


def main(argv=None) -> int:
    from real_scans import SCANS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "visual_counts")
    ap.add_argument("--scans", default=",".join(SCANS))
    ap.add_argument("--figures", action="store_true")
    ap.add_argument("--compare", type=Path, metavar="REAL_SCANS_JSON")
    args = ap.parse_args(argv)
    if args.figures:
        make_figures(args.data, args.out, args.scans.split(","))
    if args.compare:
        return compare(args.compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
