"""Registration benchmark: classical (SimpleITK) against ACSGRegNet, and atlas-placed
rating slices against slices placed by hand.

Parts (``--parts``):

``slices``
    Every shared T2: the BG and CSO rating slices placed by affine atlas registration
    (``locate_rating_slices``), against the slices I placed by hand from the images
    (:data:`HAND`, how: below), in slices and mm.
``labels``
    The shared real SynthSeg label maps (3 subjects, 1 mm), each painted with a random
    contrast per structure (so every pair is cross-contrast), registered pairwise with
    ``affine``, ``classical`` (affine + B-spline) and ``acsgreg``; Dice of the basal
    ganglia (caudate + putamen + pallidum) and of the lateral ventricles before and after,
    HD95 (mm) of the same, SDlogJ and folding % of the deformable part, seconds per pair.
    ACSGRegNet is trained here on maps 1-2 only (``--train-minutes`` of CPU) unless
    ``--acsgreg CKPT`` is given; pairs with map 3 show it on an unseen brain.
``t1t2``
    T1 -> T2 of the same visit (open_ms patient01 visits 1 and 2, patient04): our mapping
    against the site's own ITK transforms (``*_intrastudy_to_FLAIR.txt``, composed
    T2 -> FLAIR -> T1): distance between the two mappings over the T2's brain voxels
    (mean and 95th percentile, mm).
``visits``
    Visit to visit: patient01's visit-2 T2 registered to its visit-1 T2 (``none`` = the
    scanner coordinates as they are, ``affine``, ``classical``), against the site's own
    transforms (T2 -> FLAIR -> common space, per visit, composed); and masks carried
    across: the visit-2 brain mask (Dice with visit 1's) and the visit-2 PVS detections of
    the default model (3D components; matched when a carried component overlaps a visit-1
    detection dilated by one voxel: sensitivity, PPV and F1 with visit 1 as reference).

Hand placement (``HAND``): zoomed axial slices around each landmark, read by eye. BG =
the slice where the dark (T2-hypointense) anterior commissure band crosses the midline in
front of the third ventricle; CSO = the highest slice that still shows lateral ventricle,
plus half a slice (the ventricles' top lies inside it), plus 10 mm, rounded.

Writes ``<out>/registration.json`` and prints markdown tables.

Usage::

    python benchmarks/registration.py [--parts slices labels t1t2 visits] [--train-minutes 10] [--acsgreg CKPT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_pvs.engine.anatomy import brain_mask  # noqa: E402
from napari_pvs.engine.io import Volume, load_volume  # noqa: E402
from napari_pvs.engine.progress import run_to_end  # noqa: E402
from napari_pvs.engine.registration import (ClassicalConfig, SpatialTransform, dice_per_label,  # noqa: E402
                                            folding_fraction, hd95_mm, jacobian_determinant,
                                            register_classical, sdlogj, warp_volume)
from napari_pvs.engine.registration.atlas import load_atlas, locate_rating_slices  # noqa: E402
from napari_pvs.engine.registration.network import LABEL_GROUPS, label_groups, register_network  # noqa: E402

T2S = {"p01v1": "open_ms/longitudinal/patient01/study1_T2W.nii.gz",
       "p01v2": "open_ms/longitudinal/patient01/study2_T2W.nii.gz",
       "p04": "open_ms/longitudinal/patient04/study1_T2W.nii.gz",
       "p07": "open_ms/mni/patient07/T2.nii.gz",
       "stroke": "stroke/T2.nii.gz"}
#: slices placed by hand (see the module docstring); None where the image did not let me decide
HAND = {"p01v1": {"bg": 14, "cso": 25}, "p01v2": {"bg": 20, "cso": 32}, "p04": {"bg": 20, "cso": 32},
        "p07": {"bg": 72, "cso": 110}, "stroke": {"bg": None, "cso": 102}}
GROUP = {name: i for i, name in enumerate(LABEL_GROUPS, start=1)}
BG_GROUPS = [GROUP["caudate"], GROUP["putamen"], GROUP["pallidum"]]
LV_GROUP = GROUP["lateral ventricles"]


def part_slices(data: Path, methods: list[str]) -> list[dict]:
    atlas = load_atlas(data)
    rows = []
    for name, rel in T2S.items():
        image = load_volume(data / rel)
        brain = brain_mask(image)
        for method in methods:
            cfg = ClassicalConfig(deformable=method == "classical")
            rs = run_to_end(locate_rating_slices(image, atlas=atlas, brain=brain, config=cfg))
            hand = HAND[name]
            row = {"scan": name, "method": method, "slice_mm": rs.slice_mm, "bg": rs.bg, "cso": rs.cso,
                   "bg_index": round(rs.bg_index, 2), "cso_index": round(rs.cso_index, 2),
                   "hand_bg": hand["bg"], "hand_cso": hand["cso"], "seconds": round(rs.seconds, 1)}
            for k in ("bg", "cso"):
                row[f"{k}_off"] = None if hand[k] is None else int(getattr(rs, k) - hand[k])
            rows.append(row)
            print(f"  {name} {method}: BG {rs.bg} (hand {hand['bg']}), CSO {rs.cso} (hand {hand['cso']}) "
                  f"[{rs.seconds:.0f} s]", flush=True)
    return rows


def painted(groups: np.ndarray, seed: int) -> np.ndarray:
    """A random-contrast image of a group label map (one intensity per structure, slight
    noise), brain only."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(0.15, 1.0, len(LABEL_GROUPS) + 1)
    means[0] = 0
    img = means[groups] + rng.normal(0, 0.02, groups.shape) * (groups > 0)
    return img.astype(np.float32)


def _jacobian_stats(tr: SpatialTransform) -> dict:
    """SDlogJ and folding % of a transform's deformable part ({} for an affine)."""
    if tr.ddf is None:
        return {}
    j = jacobian_determinant(tr.ddf, tr.ddf_affine)
    return {"sdlogj": sdlogj(j), "folding_pct": 100 * folding_fraction(j)}


def _scores(warped: np.ndarray, fixed: np.ndarray, spacing) -> dict:
    d = dice_per_label(warped, fixed, BG_GROUPS + [LV_GROUP])
    bg_w, bg_f = np.isin(warped, BG_GROUPS), np.isin(fixed, BG_GROUPS)
    return {"dice_bg": float(2 * (bg_w & bg_f).sum() / max(1, bg_w.sum() + bg_f.sum())),
            "dice_lv": d[LV_GROUP], "hd95_bg": hd95_mm(bg_w, bg_f, spacing),
            "hd95_lv": hd95_mm(warped == LV_GROUP, fixed == LV_GROUP, spacing)}


def part_labels(data: Path, out: Path, train_minutes: float, ckpt: str | None) -> list[dict]:
    maps = [load_volume(data / f"synthseg/training_seg_0{i}.nii.gz") for i in (1, 2, 3)]
    groups = [Volume(label_groups(np.asarray(m.data)), m.affine) for m in maps]
    net = None
    if ckpt is None and train_minutes > 0:
        from napari_pvs.engine.registration.network import train_acsgreg
        from napari_pvs.engine.training.loop import LoopConfig

        ckpt = str(out / "acsgreg_bench.pt")
        loop = LoopConfig(epochs=1000, steps_per_epoch=20, optimizer="adam", learning_rate=2e-4,
                          max_minutes=train_minutes, device="auto")
        t0 = time.perf_counter()
        res = run_to_end(train_acsgreg(ckpt, label_maps=maps[:2], loop_config=loop))
        print(f"  ACSGRegNet trained on maps 1-2: {res.steps_done} steps in {time.perf_counter() - t0:.0f} s, "
              f"best validation Dice {res.best_val_metric:.3f}", flush=True)
    if ckpt is not None:
        from napari_pvs.engine.models.checkpoint import load_model

        net = load_model(ckpt, expected_model="acsgreg").model
    pairs = [(0, 1), (1, 2), (2, 0), (2, 1)]
    rows = []
    for fi, mi in pairs:
        fixed = groups[fi].with_data(painted(np.asarray(groups[fi].data), 100 + fi))
        moving = groups[mi].with_data(painted(np.asarray(groups[mi].data), 200 + mi))
        f_lab = np.asarray(groups[fi].data)
        spacing = fixed.voxel_size
        before = _scores(warp_volume(groups[mi], fixed, SpatialTransform.identity(), order=0).data, f_lab, spacing)
        rows.append({"pair": f"{mi + 1}->{fi + 1}", "method": "none", **before, "seconds": 0.0})
        masks = {"fixed_mask": f_lab > 0, "moving_mask": np.asarray(groups[mi].data) > 0}
        for method in ("affine", "classical", "acsgreg"):
            if method == "acsgreg" and net is None:
                continue
            t0 = time.perf_counter()
            if method == "acsgreg":
                tr = run_to_end(register_network(fixed, moving, net, **masks))
            else:
                tr = run_to_end(register_classical(fixed, moving, config=ClassicalConfig(
                    deformable=method == "classical"), **masks))
            secs = time.perf_counter() - t0
            warped = warp_volume(groups[mi], fixed, tr, order=0).data
            row = {"pair": f"{mi + 1}->{fi + 1}", "method": method, **_scores(warped, f_lab, spacing),
                   "seconds": round(secs, 1)}
            rows.append({**row, **_jacobian_stats(tr)})
            print(f"  {row['pair']} {method}: Dice BG {row['dice_bg']:.3f} LV {row['dice_lv']:.3f} "
                  f"(before {before['dice_bg']:.3f} / {before['dice_lv']:.3f}) [{secs:.0f} s]", flush=True)
    return rows


def _itk_matrix(path: Path) -> np.ndarray:
    """4x4 RAS matrix of an ITK ``MatrixOffsetTransformBase`` file (fixed -> moving points:
    ``p -> M (p - c) + c + t`` in LPS mm; ``Parameters`` = M row-major then t,
    ``FixedParameters`` = c)."""
    fields = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    par = np.array(fields["Parameters"].split(), float)
    c = np.array(fields["FixedParameters"].split(), float)
    m, t = par[:9].reshape(3, 3), par[9:12]
    lps = np.eye(4)
    lps[:3, :3] = m
    lps[:3, 3] = c + t - m @ c
    f = np.diag([-1.0, -1.0, 1.0, 1.0])
    return f @ lps @ f


def part_t1t2(data: Path, methods: list[str]) -> list[dict]:
    rows = []
    for name, folder, visit in (("p01v1", "patient01", "study1"), ("p01v2", "patient01", "study2"),
                                ("p04", "patient04", "study1")):
        base = data / "open_ms/longitudinal" / folder
        t2, t1 = load_volume(base / f"{visit}_T2W.nii.gz"), load_volume(base / f"{visit}_T1W.nii.gz")
        # site: FLAIR -> T2 and FLAIR -> T1 point maps; T2 -> T1 = (FLAIR -> T1) o (FLAIR -> T2)^-1
        site = _itk_matrix(base / f"{visit}_T1W_intrastudy_to_FLAIR.txt") @ np.linalg.inv(
            _itk_matrix(base / f"{visit}_T2W_intrastudy_to_FLAIR.txt"))
        pts = t2.voxel_to_world(np.argwhere(brain_mask(t2))[::50])
        for method in methods:
            t0 = time.perf_counter()      # whole images, as `register` does by default
            tr = run_to_end(register_classical(t2, t1, config=ClassicalConfig(deformable=method == "classical")))
            secs = time.perf_counter() - t0
            site_pts = pts @ site[:3, :3].T + site[:3, 3]
            err = np.linalg.norm(tr.map_points(pts) - site_pts, axis=1)
            rows.append({"scan": name, "method": method, "mean_mm": float(err.mean()),
                         "p95_mm": float(np.percentile(err, 95)), "seconds": round(secs, 1),
                         "site_vs_identity_mm": float(np.linalg.norm(site_pts - pts, axis=1).mean())})
            print(f"  {name} T1->T2 {method}: {err.mean():.2f} mm mean, {np.percentile(err, 95):.2f} mm p95 from "
                  f"the site's transform [{secs:.0f} s]", flush=True)
    return rows


def _dilate_objects(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.binary_dilation(mask, ndi.generate_binary_structure(3, 1))


def _carried_agreement(carried: np.ndarray, ref: np.ndarray) -> dict:
    """Component agreement of a carried PVS mask with the reference visit's mask."""
    from scipy import ndimage as ndi

    s26 = np.ones((3, 3, 3), bool)
    lc, nc = ndi.label(carried, s26)
    lr, nr = ndi.label(ref, s26)
    hit_c = len(np.setdiff1d(np.unique(lc[_dilate_objects(ref)]), [0]))
    hit_r = len(np.setdiff1d(np.unique(lr[_dilate_objects(carried)]), [0]))
    sens, ppv = hit_r / max(1, nr), hit_c / max(1, nc)
    return {"n_carried": int(nc), "n_reference": int(nr), "pvs_sensitivity": sens, "pvs_ppv": ppv,
            "pvs_f1": 2 * sens * ppv / max(1e-9, sens + ppv)}


def part_visits(data: Path, methods: list[str]) -> list[dict]:
    from napari_pvs.engine.data import default_checkpoint
    from napari_pvs.engine.inference import predict_volume
    from napari_pvs.engine.models.checkpoint import load_model

    base = data / "open_ms/longitudinal/patient01"
    v1, v2 = (load_volume(base / f"study{i}_T2W.nii.gz") for i in (1, 2))
    # site, per visit: common -> FLAIR (FLAIR_to_common_space) and FLAIR -> T2 (T2W_intrastudy_to_FLAIR)
    # point maps; visit-1 T2 -> visit-2 T2 = (FLAIR2 -> T2_2) o (common -> FLAIR2) o (common -> FLAIR1)^-1
    # o (FLAIR1 -> T2_1)^-1
    m = {f"{k}{i}": _itk_matrix(base / f"study{i}_{name}.txt") for i in (1, 2)
         for k, name in (("t2", "T2W_intrastudy_to_FLAIR"), ("fl", "FLAIR_to_common_space"))}
    site = m["t22"] @ m["fl2"] @ np.linalg.inv(m["fl1"]) @ np.linalg.inv(m["t21"])
    b1, b2 = brain_mask(v1), brain_mask(v2)
    pts = v1.voxel_to_world(np.argwhere(b1)[::50])
    site_pts = pts @ site[:3, :3].T + site[:3, 3]
    lm = load_model(default_checkpoint())
    p1, p2 = predict_volume(lm, v1).mask > 0, predict_volume(lm, v2).mask > 0
    rows = []
    for method in ["none"] + methods:
        t0 = time.perf_counter()
        if method == "none":
            tr = SpatialTransform.identity()
        else:
            tr = run_to_end(register_classical(v1, v2, config=ClassicalConfig(deformable=method == "classical")))
        secs = time.perf_counter() - t0
        err = np.linalg.norm(tr.map_points(pts) - site_pts, axis=1)
        brain_c = warp_volume(v2.with_data(b2.astype(np.uint8)), v1, tr, order=0).data > 0
        pvs_c = warp_volume(v2.with_data(p2.astype(np.uint8)), v1, tr, order=0).data > 0
        row = {"method": method, "mean_mm": float(err.mean()), "p95_mm": float(np.percentile(err, 95)),
               "dice_brain": float(2 * (brain_c & b1).sum() / (brain_c.sum() + b1.sum())),
               **_carried_agreement(pvs_c, p1), "seconds": round(secs, 1)}
        rows.append({**row, **_jacobian_stats(tr)})
        print(f"  p01 v2 -> v1 {method}: {row['mean_mm']:.2f} mm mean from the site's transform, brain Dice "
              f"{row['dice_brain']:.3f}, carried PVS F1 {row['pvs_f1']:.2f} [{secs:.0f} s]", flush=True)
    return rows


def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "registration"))
    ap.add_argument("--parts", nargs="+", default=["slices", "labels", "t1t2", "visits"], choices=["slices", "labels", "t1t2", "visits"])
    ap.add_argument("--visit-methods", nargs="+", default=["affine", "classical"], choices=["affine", "classical"])
    ap.add_argument("--slice-methods", nargs="+", default=["affine"], choices=["affine", "classical"])
    ap.add_argument("--t1t2-methods", nargs="+", default=["affine", "classical"], choices=["affine", "classical"])
    ap.add_argument("--train-minutes", type=float, default=10.0, help="CPU budget to train ACSGRegNet (0: skip)")
    ap.add_argument("--acsgreg", metavar="CKPT", help="use this ACSGRegNet checkpoint instead of training one")
    args = ap.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "registration.json"
    res: dict = json.loads(path.read_text()) if path.is_file() else {}    # parts run earlier are kept
    res["args"] = vars(args)
    t0 = time.perf_counter()
    if "slices" in args.parts:
        print("rating slices:", flush=True)
        res["slices"] = part_slices(data, args.slice_methods)
        print(_table(res["slices"], ["scan", "method", "slice_mm", "bg", "hand_bg", "bg_off", "cso", "hand_cso",
                                     "cso_off", "seconds"]))
    if "labels" in args.parts:
        print("label-map pairs:", flush=True)
        res["labels"] = part_labels(data, out, args.train_minutes, args.acsgreg)
        print(_table(res["labels"], ["pair", "method", "dice_bg", "dice_lv", "hd95_bg", "hd95_lv", "sdlogj",
                                     "folding_pct", "seconds"]))
    if "t1t2" in args.parts:
        print("T1 -> T2 against the site's transforms:", flush=True)
        res["t1t2"] = part_t1t2(data, args.t1t2_methods)
        print(_table(res["t1t2"], ["scan", "method", "mean_mm", "p95_mm", "site_vs_identity_mm", "seconds"]))
    if "visits" in args.parts:
        print("visit to visit (patient01 visit 2 -> visit 1):", flush=True)
        res["visits"] = part_visits(data, args.visit_methods)
        print(_table(res["visits"], ["method", "mean_mm", "p95_mm", "dice_brain", "n_carried", "n_reference",
                                     "pvs_sensitivity", "pvs_ppv", "pvs_f1", "sdlogj", "folding_pct", "seconds"]))
    res["seconds"] = time.perf_counter() - t0
    path.write_text(json.dumps(res, indent=1, default=float))
    print(f"wrote {path} ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
