"""Real-scan benchmark: do the models find the real PVS of real T2 scans?

On every shared real T2 (open_ms patient01 visits 1 and 2, patient04, patient07 in 1 mm
MNI space with its expert lesion mask, the stroke T2, the 1 mm clinical stroke T2 with its
lesion mask, and the two ARC T2s: M2265 stored coronally, M2208 skull-stripped in MNI space),
*without* inserted PVS, for each
model given with ``--model NAME=CKPT``:

* detected PVS (3D components, 26-connectivity) per region: BG, CSO white matter, other
  (the nearest BG/CSO region voxel within 5 mm of the centroid,
  :func:`~napari_pvs.engine.candidates.nearest_region`), and the BG/CSO rating-slice
  counts. The rating slices are placed by atlas registration (``locate_rating_slices``,
  as ``napari-pvs count --image`` does), and the BG slice counts only PVS in the atlas
  basal ganglia, the CSO slice only those in the atlas white matter (``rating_areas``);
  ``--slices landmark`` uses the older ventricle-landmark heuristic and whole slices;
* agreement with a **reference of real PVS-like objects** built without a network
  (:func:`~napari_pvs.engine.candidates.find_pvs_candidates` with the strict
  :func:`~napari_pvs.engine.candidates.reference_config`: CSF-like local contrast >= 0.3
  of the tissue-CSF difference and >= 3 noise sigma, STRIVE width <= 3 mm, in the
  parenchyma away from ventricles, sulci, cortex and lesions). Object-level: share of
  reference objects touched by a detection (sensitivity), share of detections touching a
  reference object (PPV), F1. The reference is imperfect (it misses faint PVS and takes
  some vessels or noise for PVS); its outlines are drawn on the figures to be judged;
* test-retest: patient01's two visits (months apart), relative difference
  ``|a - b| / mean(a, b)`` of the counts per rating slice and per region;
* PVS mimics: share of patient07's expert-lesion voxels called PVS (goal <= 2 %),
  detections touching the lateral ventricles and detections centred outside the brain
  mask (goal 0); also detections touching the ventricles (their edges);
* the same counts on 3 mm rating slabs (:data:`SLAB_MM`; ``count_rating_slices(slab_mm=...)``):
  three slices of a 1 mm scan, the one slice of the 3.3-4 mm visits; and the peak in-slice
  contrast of each reference PVS counted on a rating slice (how visible it is there);
* figures: for every scan, the BG and CSO rating slices zoomed on the brain, the T2 beside
  the T2 with the detections outlined (red) and the reference objects (cyan);
* synthetic check: DSC and PVS-level F1 on synthetic PVS (0.1.0 simulation, seed 3)
  inserted into patient01 visit 2 (not used in training) and into patient07 (1 mm); also
  "excluding real": without the detections the model also makes on the same scan without
  insertions (the scan's own real PVS are not in the synthetic truth, so finding them
  counts against precision).

Writes ``<out>/real_scans.json``, ``<out>/real_scans.md`` (tables) and
``<out>/figures/<model>_<scan>.png``; prints the tables.

A model may be given a threshold, ``--model NAME=CKPT@0.4`` (default 0.5); variants of
one checkpoint share its inference. ``--model NAME=CKPT1+CKPT2+CKPT3`` is an ensemble: the
mean of the members' probabilities (members shared with other models are run once).

Usage::

    python benchmarks/real_scans.py --model before=/tmp/before.pt --model default=napari_pvs/weights/pvs_default.pt
        [--data ../shared/data] [--out benchmarks/results/real_scans] [--figures default]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_pvs.engine.anatomy import REGION_NAMES, analyze_anatomy, rating_slice_levels  # noqa: E402
from napari_pvs.engine.candidates import find_pvs_candidates, nearest_region, reference_config  # noqa: E402
from napari_pvs.engine.models.checkpoint import load_model, update_checkpoint  # noqa: E402
from napari_pvs.engine.inference import predict_volume  # noqa: E402
from napari_pvs.engine.io import load_volume  # noqa: E402
from napari_pvs.engine.metrics import overlap_metrics  # noqa: E402
from napari_pvs.engine.rating.counting import count_rating_slices, count_slice  # noqa: E402
from napari_pvs.engine.synth import simulate_pvs  # noqa: E402

SCANS = {
    "p01_v1": ("open_ms/longitudinal/patient01/study1_T2W.nii.gz", None),
    "p01_v2": ("open_ms/longitudinal/patient01/study2_T2W.nii.gz", None),
    "p04_v1": ("open_ms/longitudinal/patient04/study1_T2W.nii.gz", None),
    "p07_1mm": ("open_ms/mni/patient07/T2.nii.gz", "open_ms/mni/patient07/lesion_mask.nii.gz"),
    "stroke_1mm": ("stroke/T2.nii.gz", None),
    "cstroke_1mm": ("clinical_stroke/T2.nii", "clinical_stroke/lesion_T2.nii"),
    "arc_M2265": ("arc/M2265_T2w.nii.gz", None),
    "arc_M2208_mni": ("arc/M2208_T2w_mni.nii.gz", None),
}
SYNTHETIC = {"p01_v2": 3, "p07_1mm": 3}
CONN = ndi.generate_binary_structure(3, 3)


@dataclass
class Objects:
    """3D components (26-connectivity) of a mask: labels ``(Z, Y, X)``, count, and each
    component's centroid as a voxel index."""

    labels: np.ndarray
    n: int
    centres: list


def objects(mask: np.ndarray) -> Objects:
    lab, n = ndi.label(mask > 0, structure=CONN)
    cents = ndi.center_of_mass(np.ones_like(lab), lab, np.arange(1, n + 1)) if n else []
    return Objects(lab, int(n), [tuple(int(round(v)) for v in c) for c in cents])


@dataclass
class Scan:
    """One shared real scan made ready for the benchmarks: the T2, its expert lesion mask
    (or None), the anatomy, the rating slices ``{"bg": k, "cso": k}`` (axial indices),
    the counting areas ``(bg_area, cso_area)`` (bool ``(Z, Y, X)``; None with landmark
    slices) and the reference of real PVS-like objects (bool ``(Z, Y, X)``)."""

    image: object
    lesion_vol: object
    anat: object
    levels: dict
    areas: tuple | None
    ref_mask: np.ndarray

    @property
    def csf(self) -> float:
        """CSF level: the median T2 in the lateral ventricles (nan when none were found)."""
        v = self.anat.ventricles
        return float(np.median(np.asarray(self.image.data)[v])) if v.any() else float("nan")


def prepare_scan(data: Path, key: str, atlas=None) -> Scan:
    """Load scan ``key`` of :data:`SCANS` and place its rating slices: by registering
    ``atlas`` (counting areas: the atlas BG / white matter), or, when None, by the ventricle
    landmark on whole slices; build its reference (``reference_config()``)."""
    rel, les_rel = SCANS[key]
    image = load_volume(data / rel)
    lesion_vol = load_volume(data / les_rel) if les_rel else None
    anat = analyze_anatomy(image, lesion_vol)
    areas = None
    if atlas is not None:
        from napari_pvs.engine.progress import run_to_end
        from napari_pvs.engine.registration.atlas import atlas_regions, locate_rating_slices, rating_areas

        rs = run_to_end(locate_rating_slices(image, atlas=atlas, brain=anat.brain))
        levels = {"bg": rs.bg, "cso": rs.cso}
        areas = rating_areas(atlas_regions(image, rs.transform, atlas), image.voxel_size)
    else:
        levels = rating_slice_levels(image, anat)
    ref_mask = find_pvs_candidates(image, lesion_vol, config=reference_config()).mask > 0
    return Scan(image, lesion_vol, anat, levels, areas, ref_mask)


def object_agreement(pred: Objects, ref: Objects) -> dict:
    """Object-level agreement (3D components): sensitivity, PPV and F1."""
    lp, npred, lr, nref = pred.labels, pred.n, ref.labels, ref.n
    hit_r = len(np.unique(lr[(lp > 0) & (lr > 0)]))
    hit_p = len(np.unique(lp[(lr > 0) & (lp > 0)]))
    sens = hit_r / nref if nref else float("nan")
    ppv = hit_p / npred if npred else float("nan")
    f1 = 2 * sens * ppv / (sens + ppv) if nref and npred and (sens + ppv) > 0 else 0.0
    return {"n_pred": int(npred), "n_ref": int(nref), "sensitivity": sens, "ppv": ppv, "f1": f1}


def region_counts(obj: Objects, region_map: np.ndarray) -> dict:
    out = {"BG": 0, "CSO": 0, "other": 0, "total": obj.n}
    for c in obj.centres:
        out[REGION_NAMES.get(int(region_map[c]), "other")] += 1
    return out


def mimics(obj: Objects, anat, lesion: np.ndarray | None) -> dict:
    lab = obj.labels
    touch_vent = len(np.unique(lab[anat.ventricles & (lab > 0)])) if obj.n else 0
    out = {"in_ventricles": sum(bool(anat.ventricles[c]) for c in obj.centres),
           "touching_ventricles": int(touch_vent),
           "outside_brain": sum(not anat.brain[c] for c in obj.centres)}
    if lesion is not None:
        out["lesion_voxels_called_pvs_pct"] = 100.0 * float((lab[lesion] > 0).mean()) if lesion.any() else 0.0
        out["lesion_voxels"] = int(lesion.sum())
    return out


def figure(path: Path, image, pred: np.ndarray, ref: np.ndarray, levels: dict, anat, title: str,
           areas=None, counts: dict | None = None) -> None:
    """The BG and CSO rating slices, zoomed: T2 | T2 with detections (red), reference
    (cyan) and, when given, the counting areas (yellow: atlas BG on the BG slice, white
    matter on the CSO slice) with ``counts`` (the counts within them) in the titles."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = image.axial_axis
    data = np.moveaxis(np.asarray(image.data, dtype=np.float32), ax, 0)
    p = np.moveaxis(pred, ax, 0)
    r = np.moveaxis(ref, ax, 0)
    brain = np.moveaxis(anat.brain, ax, 0)
    vs = [v for a, v in enumerate(image.voxel_size) if a != ax]
    fig, axes = plt.subplots(2, 2, figsize=(12, 12.5))
    for row, name in enumerate(("bg", "cso")):
        s = int(levels[name])
        sl = data[s]
        b = brain[s]
        if b.any():
            ys, xs = np.nonzero(b)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            # zoom: the central 70 % of the brain's extent on this slice
            cy, cx, hy, hx = (y0 + y1) / 2, (x0 + x1) / 2, 0.35 * (y1 - y0), 0.35 * (x1 - x0)
            box = (slice(int(cy - hy), int(cy + hy)), slice(int(cx - hx), int(cx + hx)))
        else:
            box = (slice(None), slice(None))
        crop = sl[box]
        lo, hi = np.percentile(sl[b] if b.any() else sl, [1, 99.5])
        extent = None
        for col in range(2):
            a = axes[row, col]
            a.imshow(crop, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest",
                     aspect=vs[0] / vs[1])
            if col == 1:
                if r[s][box].any():
                    a.contour(r[s][box] > 0, levels=[0.5], colors="cyan", linewidths=0.7)
                if p[s][box].any():
                    a.contour(p[s][box] > 0, levels=[0.5], colors="red", linewidths=0.9)
                if areas is not None:
                    area = np.moveaxis(areas[row], ax, 0)[s][box]
                    if area.any():
                        a.contour(area, levels=[0.5], colors="yellow", linewidths=0.6, linestyles="dashed")
            a.set_xticks([])
            a.set_yticks([])
        eight = np.ones((3, 3), bool)                      # as the counting: 8-connected in-plane
        n_pred = ndi.label(p[s] > 0, eight)[1]
        n_ref = ndi.label(r[s] > 0, eight)[1]
        axes[row, 0].set_title(f"{name.upper()} rating slice {s}: T2")
        within = "" if counts is None else f", {counts[name]} in the {'BG' if name == 'bg' else 'WM'} area (yellow)"
        axes[row, 1].set_title(f"detections (red, {n_pred} on slice{within}) / reference (cyan, {n_ref})")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rel_diff(a: float, b: float) -> float:
    return abs(a - b) / ((a + b) / 2) if (a + b) > 0 else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--model", action="append", required=True, metavar="NAME=CKPT")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "real_scans"))
    ap.add_argument("--figures", action="append", default=None, metavar="NAME[,NAME...]",
                    help="models to draw figures for, comma-separated or repeated (default all)")
    ap.add_argument("--scans", default=",".join(SCANS), help="comma-separated subset of " + ",".join(SCANS))
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                    help="inference backend of every model (default auto: ONNX Runtime when installed; "
                         "probabilities within 1e-3 of torch)")
    ap.add_argument("--slices", choices=["atlas", "landmark"], default="atlas",
                    help="rating slices by atlas registration, counted within the atlas BG / white matter "
                         "(default), or by the ventricle landmark on whole slices")
    ap.add_argument("--record", action="append", default=[], metavar="NAME=CKPT",
                    help="also write model NAME's numbers into checkpoint CKPT (under 'benchmark'); repeatable")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = dict(m.split("=", 1) for m in args.model)
    figure_models = {n for f in args.figures for n in f.split(",")} if args.figures else set(models)
    if unknown := figure_models - set(models):
        ap.error(f"--figures names no --model: {', '.join(sorted(unknown))}")
    t_start = time.perf_counter()
    results: dict = {"models": {k: str(v) for k, v in models.items()}, "scans": {}, "per_model": {}}
    thresholds = {name: float(path.rsplit("@", 1)[1]) if "@" in path else 0.5 for name, path in models.items()}
    models = {name: path.rsplit("@", 1)[0] for name, path in models.items()}
    members = {name: path.split("+") for name, path in models.items()}
    from napari_pvs.engine.inference.onnx_backend import onnx_available, onnx_model

    backend = ("onnx" if onnx_available() else "torch") if args.backend == "auto" else args.backend
    by_path = {path: load_model(path) for paths in members.values() for path in paths}
    if backend == "onnx":
        by_path = {path: onnx_model(loaded) for path, loaded in by_path.items()}
    results["backend"] = backend
    probs: dict = {}

    def member_prob(path: str, key: str, image) -> tuple[np.ndarray, float]:
        """(probability, inference seconds) of one checkpoint; one inference per checkpoint."""
        if (path, key) not in probs:
            pred = predict_volume(by_path[path], image)
            probs[(path, key)] = (pred.prob, pred.seconds)
        return probs[(path, key)]

    def predict(name: str, key: str, image) -> tuple[np.ndarray, float]:
        """(mask at the model's threshold, inference seconds); ``A+B`` averages the members'
        probabilities (an ensemble; seconds summed)."""
        out = [member_prob(p, key, image) for p in members[name]]
        prob = out[0][0] if len(out) == 1 else np.mean([o[0] for o in out], axis=0)
        return prob >= thresholds[name], sum(o[1] for o in out)

    atlas = None
    if args.slices == "atlas":
        from napari_pvs.engine.registration.atlas import load_atlas

        atlas = load_atlas(data)
    real_masks: dict = {}

    for key in args.scans.split(","):
        rel = SCANS[key][0]
        t = time.perf_counter()
        scan = prepare_scan(data, key, atlas)
        image, lesion_vol, anat, levels, areas, ref_mask = (scan.image, scan.lesion_vol, scan.anat, scan.levels,
                                                            scan.areas, scan.ref_mask)
        lesion = np.asarray(lesion_vol.data) > 0 if lesion_vol is not None else None
        region_map = nearest_region(anat.regions, np.asarray(image.voxel_size))
        ref_obj = objects(ref_mask)
        results["scans"][key] = {"path": rel, "rating_slices": levels,
                                 "reference": region_counts(ref_obj, region_map),
                                 "reference_rating": _rating(ref_mask, image, levels, areas),
                                 "reference_on_slice_contrast": on_slice_contrast(scan),
                                 "voxel_size_mm": [round(v, 3) for v in image.voxel_size]}
        print(f"{key}: rating slices {levels}, reference {results['scans'][key]['reference']} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
        for name in members:
            mask, secs = predict(name, key, image)
            real_masks.setdefault(key, {})[name] = mask
            obj = objects(mask)
            row = {"regions": region_counts(obj, region_map), "rating": _rating(mask, image, levels, areas),
                   "reference_agreement": object_agreement(obj, ref_obj),
                   "mimics": mimics(obj, anat, lesion), "inference_s": secs}
            results["per_model"].setdefault(name, {})[key] = row
            print(f"  {name}: {row['regions']} rating {row['rating']} agreement "
                  f"F1 {row['reference_agreement']['f1']:.2f} mimics {row['mimics']} ({secs:.0f} s)",
                  flush=True)
            if name in figure_models:
                figure(out / "figures" / f"{name}_{key}.png", image, mask, ref_mask, levels, anat,
                       f"{name} on {rel} (rating slices from the {args.slices})", areas, row["rating"])
        if key in SYNTHETIC and not args.no_synthetic:
            sim = simulate_pvs(image, seed=SYNTHETIC[key], lesion_mask=lesion_vol)
            truth = objects(sim.mask)
            for name in members:
                sim_mask, _ = predict(name, key + "+sim", sim.image)
                m = overlap_metrics(sim_mask, sim.mask)
                pred_obj = objects(sim_mask)
                agree = object_agreement(pred_obj, truth)
                # the scan's own real PVS are not in the synthetic truth: detections that the
                # same model also makes on the scan without insertions (and that touch no
                # synthetic PVS) are left out of the "excluding real" scores
                lp, n = pred_obj.labels, pred_obj.n
                hit_sim = np.zeros(n + 1, bool)
                hit_sim[np.unique(lp[sim.mask > 0])] = True
                hit_own = np.zeros(n + 1, bool)
                hit_own[np.unique(lp[real_masks[key][name]])] = True
                drop = hit_own & ~hit_sim
                drop[0] = False
                kept = (lp > 0) & ~drop[lp]
                m2 = overlap_metrics(kept, sim.mask)
                agree2 = object_agreement(objects(kept), truth)
                results["per_model"][name].setdefault("synthetic", {})[key] = {
                    "dsc": m.dsc, "sensitivity": m.sensitivity, "ppv": m.ppv,
                    "pvs_sensitivity": agree["sensitivity"], "pvs_ppv": agree["ppv"], "pvs_f1": agree["f1"],
                    "n_true_pvs": agree["n_ref"],
                    "dsc_excluding_real": m2.dsc, "pvs_f1_excluding_real": agree2["f1"],
                    "pvs_ppv_excluding_real": agree2["ppv"]}
                print(f"  {name} synthetic {key}: DSC {m.dsc:.3f} PVS F1 {agree['f1']:.3f} "
                      f"(sens {agree['sensitivity']:.2f}, PPV {agree['ppv']:.2f}); excluding its real "
                      f"detections: DSC {m2.dsc:.3f}, PVS F1 {agree2['f1']:.3f}", flush=True)

    for name in members:
        r = results["per_model"][name]
        if "p01_v1" in r and "p01_v2" in r:
            a, b = r["p01_v1"], r["p01_v2"]
            r["test_retest_rel_diff"] = {
                "bg_slice": rel_diff(a["rating"]["bg"], b["rating"]["bg"]),
                "cso_slice": rel_diff(a["rating"]["cso"], b["rating"]["cso"]),
                "BG_region": rel_diff(a["regions"]["BG"], b["regions"]["BG"]),
                "CSO_region": rel_diff(a["regions"]["CSO"], b["regions"]["CSO"]),
                "total": rel_diff(a["regions"]["total"], b["regions"]["total"])}
    results["seconds"] = time.perf_counter() - t_start
    results["device"] = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    (out / "real_scans.json").write_text(json.dumps(results, indent=2))
    md = tables(results)
    (out / "real_scans.md").write_text(md)
    print(md)
    print(f"benchmark took {results['seconds']:.0f} s")
    for rec in args.record:
        name, ckpt = rec.split("=", 1)
        update_checkpoint(ckpt, benchmark={
            "script": "benchmarks/real_scans.py", "date": time.strftime("%Y-%m-%d"), "device": results["device"],
            "scans": {k: v["path"] for k, v in results["scans"].items()},
            "reference": "find_pvs_candidates(reference_config())", **results["per_model"][name]})
        print(f"recorded the numbers of {name} in {ckpt}")
    return 0


#: rating slab (mm) also reported: three slices of a 1 mm scan, the one slice of a 3.3-4 mm scan
SLAB_MM = 3.0


def _rating(mask: np.ndarray, image, levels: dict, areas=None) -> dict:
    """Counts and grades on the rating slices, and on :data:`SLAB_MM` slabs around them."""
    kw = dict(zip(("bg_area", "cso_area"), areas, strict=True)) if areas is not None else {}
    vol = image.with_data(mask.astype(np.uint8))
    c = count_rating_slices(vol, levels["bg"], levels["cso"], **kw)
    s = {k: count_slice(vol, levels[k], k.upper(), area=kw.get(f"{k}_area"), slab_mm=SLAB_MM)  # no 2nd 3D count
         for k in ("bg", "cso")}
    return {"bg": c.bg.total, "cso": c.cso.total, "bg_grade": c.bg.grade, "cso_grade": c.cso.grade,
            "bg_slab": s["bg"].total, "cso_slab": s["cso"].total, "bg_slab_grade": s["bg"].grade,
            "cso_slab_grade": s["cso"].grade, "slab_slices": s["bg"].slab_slices}


def ring_contrast(sl: np.ndarray, m: np.ndarray, csf: float) -> float:
    """Peak contrast of a 2D object ``m`` (bool, the slice's shape) on slice ``sl``:
    ``(max T2 in m - median T2 of a 1-3 pixel ring around m) / (csf - that median)``, 2 decimals."""
    ring = ndi.binary_dilation(m, iterations=3) & ~ndi.binary_dilation(m)
    bg = float(np.median(sl[ring]))
    return round((float(sl[m].max()) - bg) / (csf - bg), 2)


def on_slice_contrast(scan: Scan) -> dict:
    """Peak in-slice contrast of each reference PVS counted on each rating slice.

    For each 2D component (8-connectivity) of the reference on the slice (centroid in the
    counting area when given): :func:`ring_contrast` with :attr:`Scan.csf`; sorted. A rater
    sees a dot of contrast 1 as bright as CSF; tube ends entering the slice may show 0.2-0.3
    there."""
    ax, csf = scan.image.axial_axis, scan.csf
    img = np.moveaxis(np.asarray(scan.image.data, dtype=np.float32), ax, 0)
    ref = np.moveaxis(scan.ref_mask, ax, 0)
    out = {}
    for i, key in enumerate(("bg", "cso")):
        z = scan.levels[key]
        lab, n = ndi.label(ref[z], structure=np.ones((3, 3), bool))
        area = np.moveaxis(scan.areas[i], ax, 0)[z] if scan.areas is not None else None
        vals = []
        for j in range(1, n + 1):
            m = lab == j
            cy, cx = (int(round(v)) for v in np.argwhere(m).mean(0))
            if area is not None and not area[cy, cx]:
                continue
            vals.append(ring_contrast(img[z], m, csf))
        out[key] = sorted(vals)
    return out


def tables(res: dict) -> str:
    scans = list(res["scans"])
    lines = ["### Detections on real scans (no inserted PVS)", "",
             f"| model | scan | BG | CSO | other | BG slice | CSO slice | BG / CSO {SLAB_MM:g} mm slab (slices) | "
             "ref. F1 (sens / PPV) | in (touching) ventricles | outside brain | lesion % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def slab(r: dict) -> str:
        return f"{r['bg_slab']} / {r['cso_slab']} ({r['slab_slices']})" if "bg_slab" in r else "-"

    for k in scans:
        s = res["scans"][k]
        lines.append(f"| reference | {k} | {s['reference']['BG']} | {s['reference']['CSO']} | "
                     f"{s['reference']['other']} | {s['reference_rating']['bg']} | {s['reference_rating']['cso']} "
                     f"| {slab(s['reference_rating'])} | - | - | - | - |")
    for name, r in res["per_model"].items():
        for k in scans:
            if k not in r:
                continue
            x = r[k]
            ag, mi = x["reference_agreement"], x["mimics"]
            les = f"{mi['lesion_voxels_called_pvs_pct']:.2f}" if "lesion_voxels_called_pvs_pct" in mi else "-"
            lines.append(f"| {name} | {k} | {x['regions']['BG']} | {x['regions']['CSO']} | {x['regions']['other']} | "
                         f"{x['rating']['bg']} | {x['rating']['cso']} | {slab(x['rating'])} | "
                         f"{ag['f1']:.2f} ({ag['sensitivity']:.2f} / "
                         f"{ag['ppv']:.2f}) | {mi['in_ventricles']} ({mi['touching_ventricles']}) | {mi['outside_brain']} | {les} |")
    lines += ["", "### Reference PVS on the rating slices: peak in-slice contrast", "",
              "(T2 max - ring median) / (CSF - ring median) of each reference PVS counted on the slice.", "",
              "| scan | BG slice | CSO slice |", "|---|---|---|"]
    for k in scans:
        c = res["scans"][k].get("reference_on_slice_contrast")
        if c:
            lines.append(f"| {k} | {', '.join(map(str, c['bg'])) or '-'} | {', '.join(map(str, c['cso'])) or '-'} |")
    lines += ["", "### Test-retest (patient01 visit 1 vs visit 2, relative difference)", "",
              "| model | BG slice | CSO slice | BG region | CSO region | all |", "|---|---|---|---|---|---|"]
    for name, r in res["per_model"].items():
        if "test_retest_rel_diff" in r:
            t = r["test_retest_rel_diff"]
            lines.append(f"| {name} | {t['bg_slice']:.2f} | {t['cso_slice']:.2f} | {t['BG_region']:.2f} | "
                         f"{t['CSO_region']:.2f} | {t['total']:.2f} |")
    lines += ["", "### Synthetic PVS (0.1.0 simulation, seed 3) in held-out scans", "",
              "Excl. real: detections that the model also makes on the same scan without insertions",
              "(the scan's own real PVS, absent from the synthetic truth) are left out.", "",
              "| model | scan | DSC | PVS F1 | PVS sensitivity | PVS PPV | DSC excl. real | PVS F1 excl. real |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in res["per_model"].items():
        for k, x in r.get("synthetic", {}).items():
            lines.append(f"| {name} | {k} | {x['dsc']:.3f} | {x['pvs_f1']:.3f} | {x['pvs_sensitivity']:.2f} | "
                         f"{x['pvs_ppv']:.2f} | {x.get('dsc_excluding_real', float('nan')):.3f} | "
                         f"{x.get('pvs_f1_excluding_real', float('nan')):.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
