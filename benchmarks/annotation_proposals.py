"""Annotation proposals benchmark: how much do candidate proposals help a rater?

Synthetic PVS (0.1.0 simulation) are inserted into shared real T2 scans (patient01 visit 2,
0.5 x 0.5 x 4 mm; patient07, 1 mm, with its lesion mask). For each proposal method (the
vesselness filter, and a trained model's prediction: the shipped default model unless
``--model`` is given), per region (BG, CSO, from the simulation's table):

* recall: share of the true (inserted) PVS touched by a proposal;
* false proposals per slice: proposals touching no inserted PVS, per axial slice that
  holds the region's PVS (what a rater has to reject while working through those slices);
  also "excluding real": without the proposals that touch one of the scan's own real
  PVS-like objects (:func:`~napari_pvs.engine.candidates.find_pvs_candidates` with the
  generous :func:`~napari_pvs.engine.candidates.ignore_config`, on the scan before
  insertion), which are not false for a rater;
* seconds per volume (the model's include its inference).

Writes ``<out>/annotation_proposals.json`` and prints a table.

Usage::

    python benchmarks/annotation_proposals.py [--data ../shared/data] [--model CKPT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_pvs.engine.candidates import find_pvs_candidates, ignore_config, propose_candidates  # noqa: E402
from napari_pvs.engine.io import load_volume  # noqa: E402
from napari_pvs.engine.synth import simulate_pvs  # noqa: E402

SCANS = {
    "p01_v2": ("open_ms/longitudinal/patient01/study2_T2W.nii.gz", None, 3),
    "p07_1mm": ("open_ms/mni/patient07/T2.nii.gz", "open_ms/mni/patient07/lesion_mask.nii.gz", 3),
}


def score(props, sim, own_labels: np.ndarray | None, axial_axis: int) -> dict:
    """Per region: recall of inserted PVS, false proposals per slice (raw and excluding the
    proposals also made without insertions)."""
    lab = props.labels
    # the inserted PVS as 3D components of the simulated mask
    t_lab, t_n = ndi.label(sim.mask > 0, structure=ndi.generate_binary_structure(3, 3))
    truth_lab = t_lab
    hit_truth = np.zeros(t_n + 1, bool)
    hit_truth[np.unique(truth_lab[lab > 0])] = True
    prop_true = np.zeros(props.n + 1, bool)
    prop_true[np.unique(lab[sim.mask > 0])] = True
    own = np.zeros(props.n + 1, bool)
    if own_labels is not None:
        own[np.unique(lab[own_labels > 0])] = True
    out = {}
    for region in ("BG", "CSO"):
        rows = [r for r in sim.table if r["region"] == region and r["n_mask_voxels"] > 0]
        comps = set()
        slices = set()
        for r in rows:
            c = tuple(int(round(r[k])) for k in ("centre_z", "centre_y", "centre_x"))
            lbl = int(truth_lab[c])
            if lbl == 0:   # centre off the mask (thin PVS): the nearest voxel of its component
                zz, yy, xx = np.nonzero(t_lab)
                d = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
                lbl = int(t_lab[zz[d.argmin()], yy[d.argmin()], xx[d.argmin()]])
            comps.add(lbl)
            slices.add(c[axial_axis])
        recall = float(np.mean([hit_truth[k] for k in comps])) if comps else float("nan")
        in_slices = [p for p in props.table if p["slice"] in slices]
        false = [p for p in in_slices if not prop_true[p["id"]]]
        false_ex = [p for p in false if not own[p["id"]]]
        ns = max(len(slices), 1)
        out[region] = {"true_pvs": len(comps), "slices": len(slices), "recall": recall,
                       "false_per_slice": len(false) / ns, "false_per_slice_excluding_real": len(false_ex) / ns,
                       "proposals_on_those_slices": len(in_slices)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped default model)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from napari_pvs.engine.models.checkpoint import load_model
    from napari_pvs.engine.data import default_checkpoint
    from napari_pvs.engine.inference import predict_volume

    loaded = load_model(args.model or default_checkpoint())
    data = Path(args.data)
    results = {"model": str(args.model or "default"), "scans": {}}
    for key, (rel, les_rel, seed) in SCANS.items():
        image = load_volume(data / rel)
        lesion_vol = load_volume(data / les_rel) if les_rel else None
        lesion = np.asarray(lesion_vol.data) > 0 if lesion_vol is not None else None
        sim = simulate_pvs(image, seed=seed, lesion_mask=lesion_vol)
        res = {}
        real = find_pvs_candidates(image, lesion_vol, config=ignore_config()).mask
        for method in ("vesselness", "model"):
            t = time.perf_counter()
            prob = predict_volume(loaded, sim.image).prob if method == "model" else None
            props = propose_candidates(sim.image, method=method, probability=prob, lesion_mask=lesion)
            secs = time.perf_counter() - t
            res[method] = {"n_proposals": props.n, "seconds": secs,
                           **score(props, sim, real, image.axial_axis)}
            for region in ("BG", "CSO"):
                r = res[method][region]
                print(f"{key} {method:10s} {region}: recall {r['recall']:.2f} of {r['true_pvs']} PVS, "
                      f"{r['false_per_slice']:.1f} false proposals per slice "
                      f"({r['false_per_slice_excluding_real']:.1f} excluding real) on {r['slices']} slices; "
                      f"{props.n} proposals in {secs:.0f} s", flush=True)
        results["scans"][key] = res
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "annotation_proposals.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'annotation_proposals.json'}")


if __name__ == "__main__":
    main()
