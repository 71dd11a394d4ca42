"""Why a rating-slice count differs: the rating slice and its neighbours, per PVS.

For each scan (default: the two 1 mm scans, where one slice is thin), with one model
(default: the shipped default model):

* the rating slices placed by atlas registration (as ``benchmarks/real_scans.py``), the
  model's mask at its threshold and the network-free reference of real PVS-like objects
  (``find_pvs_candidates(config=reference_config())``);
* for every reference object (3D, 26-connectivity) that the BG or CSO rating slice cuts
  inside its counting area (atlas BG / white matter): per axial slice it spans, its voxels
  there, its peak in-slice contrast ``(T2 max - ring median) / (CSF - ring median)`` and
  the model's peak probability there. A PVS that is bright on a neighbouring slice but
  enters the rating slice only as a faint tail shows up here;
* the counts on the rating slice alone and on 3 and 5 mm slabs
  (``count_rating_slices(slab_mm=...)``) for the model and the reference;
* a figure per scan: the rating slice and two slices either side, cropped to the counting
  area, T2 with the model's mask (red) and the reference (cyan) outlined.

Writes ``<out>/rating_neighbours.json`` and ``<out>/rating_neighbours_<scan>.png``; prints a
table. CPU, 2 threads: about 4 min for the two 1 mm scans with the default model.

Usage::

    python benchmarks/rating_neighbours.py [--model CKPT[@THR]] [--scans p07_1mm,stroke_1mm]
        [--data ../shared/data] [--out benchmarks/results/rating_neighbours]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_scans import SCANS, objects, prepare_scan, ring_contrast  # noqa: E402

from napari_pvs.engine.models.checkpoint import load_model  # noqa: E402
from napari_pvs.engine.data import default_checkpoint  # noqa: E402
from napari_pvs.engine.inference import predict_volume  # noqa: E402
from napari_pvs.engine.rating import count_slice  # noqa: E402
from napari_pvs.engine.registration.atlas import load_atlas  # noqa: E402

SLABS_MM = (0.0, 3.0, 5.0)


def per_slice(obj: np.ndarray, img: np.ndarray, prob: np.ndarray, csf: float) -> list[dict]:
    """Per axial slice of one object ``(Z, Y, X)`` bool: voxels, peak in-slice contrast, peak
    model probability."""
    rows = []
    for z in np.nonzero(obj.any(axis=(1, 2)))[0]:
        m = obj[z]
        rows.append({"slice": int(z), "voxels": int(m.sum()), "contrast": ring_contrast(img[z], m, csf),
                     "p_max": round(float(prob[z][m].max()), 2)})
    return rows


def figure(path: Path, img, mask, ref, levels: dict, areas, title: str, half: int = 2) -> None:
    """Rating slice and ``half`` slices either side, cropped to the counting area (axial first)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2 * half + 1, figsize=(4.4 * (2 * half + 1), 9.6))
    for row, key in enumerate(("bg", "cso")):
        s, area = int(levels[key]), areas[row][int(levels[key])]
        ys, xs = np.nonzero(area) if area.any() else np.nonzero(np.ones_like(area))
        box = (slice(max(ys.min() - 4, 0), ys.max() + 5), slice(max(xs.min() - 4, 0), xs.max() + 5))
        lo, hi = np.percentile(img[s][box], [1, 99.5])
        for col, z in enumerate(range(s - half, s + half + 1)):
            a = axes[row, col]
            a.set_xticks([])
            a.set_yticks([])
            if not 0 <= z < img.shape[0]:
                continue
            a.imshow(img[z][box], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            for m, colour in ((ref, "cyan"), (mask, "red")):
                if m[z][box].any():
                    a.contour(m[z][box], levels=[0.5], colors=colour, linewidths=0.8)
            a.contour(area[box], levels=[0.5], colors="yellow", linewidths=0.5, linestyles="dashed")
            a.set_title(f"{key.upper()} {'rating slice ' if z == s else ''}{z}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--model", default=None, metavar="CKPT[@THR]", help="default: the shipped default model")
    ap.add_argument("--scans", default="p07_1mm,stroke_1mm", help="comma-separated subset of " + ",".join(SCANS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rating_neighbours"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data, out = Path(args.data), Path(args.out)
    ckpt, thr = (args.model.rsplit("@", 1) if args.model and "@" in args.model
                 else (args.model or str(default_checkpoint()), "0.5"))
    model, thr = load_model(ckpt), float(thr)
    atlas = load_atlas(data)
    t0 = time.perf_counter()
    results = {"model": ckpt, "threshold": thr, "scans": {}}
    for key in args.scans.split(","):
        rel = SCANS[key][0]
        scan = prepare_scan(data, key, atlas)
        image, ref, levels, areas = scan.image, scan.ref_mask, scan.levels, scan.areas
        prob = predict_volume(model, image).prob
        mask = prob >= thr
        ax = image.axial_axis
        img = np.moveaxis(np.asarray(image.data, dtype=np.float32), ax, 0)
        pr, rf, mk = (np.moveaxis(a, ax, 0) for a in (prob, ref, mask))
        ar = [np.moveaxis(a, ax, 0) for a in areas]
        csf = scan.csf
        ro = objects(rf)
        entry = {"path": rel, "rating_slices": levels, "counts": {}, "reference_objects": {}}
        vols = {who: image.with_data(m.astype(np.uint8)) for who, m in (("model", mask), ("reference", ref))}
        for slab in SLABS_MM:
            c = {who: [count_slice(v, levels[k], k.upper(), area=areas[i], slab_mm=slab)
                       for i, k in enumerate(("bg", "cso"))] for who, v in vols.items()}
            entry["counts"][f"{slab:g} mm"] = {"model": [x.total for x in c["model"]],
                                               "reference": [x.total for x in c["reference"]],
                                               "slices": [x.slab_slices for x in c["model"]]}
        for i, k in enumerate(("bg", "cso")):
            z = levels[k]
            rows = []
            for j in np.unique(ro.labels[z][ar[i][z] & (ro.labels[z] > 0)]):
                rows.append({"id": int(j), "slices": per_slice(ro.labels == j, img, pr, csf)})
            entry["reference_objects"][k] = rows
        results["scans"][key] = entry
        figure(out / f"rating_neighbours_{key}.png", img, mk, rf, levels, ar,
               f"{Path(ckpt).name} on {rel}: rating slices and neighbours (red: model, cyan: reference, "
               f"yellow: counting area)")
        print(f"{key}: rating slices BG {levels['bg']}, CSO {levels['cso']}")
        for slab, c in entry["counts"].items():
            print(f"  {slab:>6} slab: model BG {c['model'][0]} CSO {c['model'][1]}, reference BG "
                  f"{c['reference'][0]} CSO {c['reference'][1]} ({c['slices'][0]} slices)")
        for k, rows in entry["reference_objects"].items():
            for r in rows:
                cells = "  ".join(f"{s['slice']}: n {s['voxels']} c {s['contrast']:.2f} p {s['p_max']:.2f}"
                                  for s in r["slices"])
                print(f"  {k.upper()} reference PVS {r['id']}: {cells}")
    results["seconds"] = round(time.perf_counter() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rating_neighbours.json").write_text(json.dumps(results, indent=1))
    print(f"took {results['seconds']:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
