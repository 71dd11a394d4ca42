"""Compare the PVS models on simulated PVS in the shared real T2 scans (issue 8).

Protocol (the seed paper's): cross-validation split by subject. Groups: patient01 (both
visits), patient04, patient07 (1 mm isotropic, MNI space, expert lesion mask), the stroke
T2. In each fold one group tests, the next validates, the rest train. ``--folds`` picks
which groups test (default patient07 and patient01: the 1 mm protocol and the thick-slice
protocol with two visits).

Data: every scan is cropped in-plane to the brain (all slices kept, so the rating-slice
numbers hold) and gets synthetic PVS from the widened simulation
(:func:`~napari_pvs.engine.synth.wide_simulation`): training and validation scans through
the training recipe (:func:`~napari_pvs.engine.training.recipe.synthetic_examples`: 2 seeds,
thick-slice copies of thin-slice scans, real PVS-like objects ignored), test scans one
simulation (seed 100) whose mask is the truth.

Models: ``mfnsde``, ``gloms``, ``cmgraph``, ``dynunet``, ``unet`` and ``frangi``, each with
its own training settings (``TrainConfig.for_model``) and the same wall-clock budget
(``--minutes``; ``frangi`` only fits a threshold). Per model and test scan: voxel DSC,
sensitivity, PPV, detection F1 and absolute count difference (26-connected components,
IoU > 0.1), BG/CSO rating-slice counts (hand-placed slices of ``benchmarks/registration.py``)
for a Spearman rho over all test slices, the share of patient07's expert-lesion voxels called
PVS, parameters, training and inference seconds.

Outputs (``benchmarks/results/``): ``compare_models.json`` (rewritten after every model, so
a stopped run resumes with ``--resume``), ``compare_models.md`` and ``compare_models.png``.

``--part t1``: T2 against T1 input for ``cmgraph`` (the paper validated on T1) and ``frangi``.
Only patient07 and the stroke scan have a T1 on the T2's grid; the simulator models T2
contrast, so the PVS are simulated on the T2 and the same PVS rendered into the T1 with the
T1's CSF intensity (:func:`~napari_pvs.engine.synth.insert_same_pvs`: dark on T1). Train on
the stroke scan (2 simulations, seed 1 validates), test on patient07 (seed 100); no ignore
masks, so both inputs get the same labels. Writes ``compare_models_t1.json`` / ``.md``.

Run: ``make benchmark-compare`` (or ``python benchmarks/compare_models.py --minutes 4``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from active_learning import crop_to_brain  # noqa: E402
from registration import HAND  # noqa: E402

from napari_pvs.engine.models.checkpoint import load_model  # noqa: E402
from napari_pvs.engine.comparison import compare_iter  # noqa: E402
from napari_pvs.engine.data import data_dir  # noqa: E402
from napari_pvs.engine.io import load_mask, load_volume  # noqa: E402
from napari_pvs.engine.progress import run_to_end  # noqa: E402
from napari_pvs.engine.rating import count_slice  # noqa: E402
from napari_pvs.engine.synth import insert_same_pvs, simulate_pvs, wide_simulation  # noqa: E402
from napari_pvs.engine.training import TrainConfig, train  # noqa: E402
from napari_pvs.engine.training.recipe import RecipeConfig, synthetic_examples  # noqa: E402

SCANS = {"p01v1": "open_ms/longitudinal/patient01/study1_T2W.nii.gz",
         "p01v2": "open_ms/longitudinal/patient01/study2_T2W.nii.gz",
         "p04": "open_ms/longitudinal/patient04/study1_T2W.nii.gz",
         "p07": "open_ms/mni/patient07/T2.nii.gz",
         "stroke": "stroke/T2.nii.gz"}
LESION = {"p07": "open_ms/mni/patient07/lesion_mask.nii.gz"}
GROUPS = {"patient01": ["p01v1", "p01v2"], "patient04": ["p04"], "patient07": ["p07"], "stroke": ["stroke"]}
ORDER = list(GROUPS)
MODELS = ("mfnsde", "gloms", "cmgraph", "dynunet", "unet", "frangi")
#: the seed papers' own numbers (their data, not ours)
PAPER = {"mfnsde": "DSC 0.702 (MfNS_De paper, 3T T2, manual masks)", "dynunet": "nnU-Net DSC 0.68 (same paper)"}
OUT = ROOT / "benchmarks" / "results"


def fold_groups(test: str) -> tuple[list[str], str, list[str]]:
    """``(train groups, validation group, [test group])``: the validation group is the
    next one after the test group in :data:`ORDER`."""
    i = ORDER.index(test)
    val = ORDER[(i + 1) % len(ORDER)]
    return [g for g in ORDER if g not in (test, val)], val, [test]


def prepare(data: Path, names: list[str], cache: dict) -> dict:
    """Cropped scans (cached), ``name -> Volume``."""
    for n in names:
        if n not in cache:
            cache[n] = crop_to_brain(load_volume(data / SCANS[n]))
    return {n: cache[n] for n in names}


def training_examples(vols: dict, recipe: RecipeConfig, lesions: dict) -> tuple[list, list, list]:
    images, masks, ignores = [], [], []
    for name, vol in vols.items():
        for ex in synthetic_examples(vol, seeds=[0, 1], recipe=recipe, lesion_mask=lesions.get(name)):
            images.append(ex.image)
            masks.append(ex.mask)
            ignores.append(ex.ignore)
    return images, masks, ignores


def spearman(a, b) -> float | None:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    return float(spearmanr(a, b).statistic)


def rating_counts(mask: np.ndarray, vol, name: str) -> dict:
    """PVS counted on the hand-placed BG and CSO rating slices of scan ``name``."""
    hand = HAND.get(name, {})
    m = vol.with_data(mask.astype(np.uint8))
    return {key: count_slice(m, hand[key], key.upper()).total for key in ("bg", "cso") if hand.get(key) is not None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--minutes", type=float, default=4.0, help="training budget per model and fold (minutes)")
    p.add_argument("--folds", nargs="+", default=["patient07", "patient01"], choices=ORDER,
                   help="groups that test, one fold each")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="keep the results already in the JSON")
    p.add_argument("--keep", type=Path, help="copy every checkpoint into this folder (never into the repository)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--part", choices=("t2", "t1"), default="t2", help="t2: the cross-validated comparison; "
                   "t1: T2 against T1 input for cmgraph and frangi")
    args = p.parse_args(argv)
    data = args.data or data_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "t1":
        return t1_part(args, data)
    jpath = args.out / "compare_models.json"
    res = json.loads(jpath.read_text()) if args.resume and jpath.is_file() else {}
    res.setdefault("runs", {})
    res["settings"] = {"minutes": args.minutes, "folds": args.folds, "models": args.models, "device": args.device,
                       "date": time.strftime("%Y-%m-%d")}
    cache: dict = {}
    lesions = {}
    recipe = RecipeConfig(pseudo_labels=False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for test_group in args.folds:
            train_groups, val_group, _ = fold_groups(test_group)
            train_names = [n for g in train_groups for n in GROUPS[g]]
            val_names, test_names = GROUPS[val_group], GROUPS[test_group]
            print(f"fold test={test_group}: train {train_names}, validate {val_names}, test {test_names}", flush=True)
            vols = prepare(data, train_names + val_names + test_names, cache)
            for n in LESION:
                if n in vols and n not in lesions:
                    full = load_volume(data / SCANS[n])
                    lesions[n] = crop_like(load_mask(data / LESION[n], reference=full).data, full, vols[n])
            t = time.perf_counter()
            tr = training_examples({n: vols[n] for n in train_names}, recipe, lesions)
            va = training_examples({n: vols[n] for n in val_names}, recipe, lesions)
            images, masks, ignores = tr[0] + va[0], tr[1] + va[1], tr[2] + va[2]
            val_idx = list(range(len(tr[0]), len(images)))
            tests = {}
            for n in test_names:
                sim = simulate_pvs(vols[n], seed=100, config=wide_simulation(), lesion_mask=lesions.get(n))
                tests[n] = (sim.image, sim.mask.astype(np.uint8))
            print(f"  data: {len(tr[0])} training / {len(va[0])} validation volumes in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
            for model in args.models:
                key = f"{test_group}/{model}"
                if key in res["runs"]:
                    print(f"  {key}: kept from the earlier run", flush=True)
                    continue
                cfg = TrainConfig.for_model(model, epochs=10_000, steps_per_epoch=25, max_minutes=args.minutes,
                                            device=args.device, patch_size=(128, 128))
                ckpt = tmp / f"{test_group}-{model}.pt"
                t = time.perf_counter()
                result = run_to_end(train(images, masks, cfg, ckpt, ignore_masks=ignores, val_indices=val_idx))
                train_s = time.perf_counter() - t
                loaded = load_model(result.checkpoint)
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(result.checkpoint, args.keep / ckpt.name)
                per_scan = {}
                for n, (img, truth) in tests.items():
                    comp = run_to_end(compare_iter(img, [loaded], reference=truth, device=args.device))
                    pred = comp.predictions[0]
                    row = comp.metrics()[0]
                    mask = pred.mask()
                    row["rating_pred"] = rating_counts(mask, vols[n], n)
                    row["rating_ref"] = rating_counts(truth, vols[n], n)
                    if n in lesions:
                        les = np.asarray(lesions[n]) > 0
                        row["lesion_voxels_called_pvs"] = float((mask[les] > 0).mean()) if les.any() else None
                    per_scan[n] = row
                res["runs"][key] = {"model": model, "fold": test_group, "train_s": round(train_s, 1),
                                    "steps": result.steps_done, "best_val_dsc": result.best_val_metric,
                                    "parameters": per_scan[test_names[0]]["parameters"],
                                    "train_config": {k: getattr(cfg, k) for k in ("optimizer", "learning_rate",
                                                                                  "lr_schedule")},
                                    "per_scan": per_scan}
                msg = ", ".join(f"{n}: DSC {r['dsc']:.3f} F1 {r['detection_f1']:.3f}" for n, r in per_scan.items())
                print(f"  {key}: {result.steps_done} steps in {train_s:.0f} s, val DSC "
                      f"{result.best_val_metric:.3f}; {msg}", flush=True)
                jpath.write_text(json.dumps(res, indent=1))
    res["summary"] = summarise(res)
    jpath.write_text(json.dumps(res, indent=1))
    (args.out / "compare_models.md").write_text(table(res))
    plot(res, args.out / "compare_models.png")
    print(table(res))
    return 0


T1S = {"p07": ("open_ms/mni/patient07/T2.nii.gz", "open_ms/mni/patient07/T1.nii.gz"),
       "stroke": ("stroke/T2.nii.gz", "stroke/T1.nii.gz")}


def t1_part(args, data: Path) -> int:
    from napari_pvs.engine.anatomy import brain_mask, wide_csf

    scans = {}
    for name, (t2p, t1p) in T1S.items():
        full = load_volume(data / t2p)
        t2 = crop_to_brain(full)
        t1_full = load_volume(data / t1p)
        t1 = t2.with_data(crop_like(t1_full.data, full, t2).astype(np.float32))
        csf = wide_csf(t2, brain_mask(t2))
        scans[name] = (t2, t1, csf)

    def pair(name, seed):
        t2, t1, csf = scans[name]
        sim = simulate_pvs(t2, seed=seed, config=wide_simulation())
        return sim.image, insert_same_pvs(sim, t1, csf, seed=seed), sim.mask.astype(np.uint8)

    train_sets = [pair("stroke", 0), pair("stroke", 1)]
    test_t2, test_t1, truth = pair("p07", 100)
    res = {"settings": {"minutes": args.minutes, "device": args.device, "date": time.strftime("%Y-%m-%d"),
                        "train": "stroke (seeds 0, 1; seed 1 validates)", "test": "patient07 (seed 100)"},
           "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("cmgraph", "frangi"):
            for modality, k, test in (("T2", 0, test_t2), ("T1", 1, test_t1)):
                cfg = TrainConfig.for_model(model, model_config={"modality": modality}, epochs=10_000,
                                            steps_per_epoch=25, max_minutes=args.minutes, device=args.device,
                                            patch_size=(128, 128))
                t = time.perf_counter()
                result = run_to_end(train([s[k] for s in train_sets], [s[2] for s in train_sets], cfg,
                                          Path(tmp) / f"{model}-{modality}.pt", val_indices=[1]))
                train_s = time.perf_counter() - t
                comp = run_to_end(compare_iter(test, [load_model(result.checkpoint)], reference=truth,
                                               device=args.device))
                row = comp.metrics()[0]
                res["runs"][f"{model}/{modality}"] = {"model": model, "modality": modality, "train_s": round(train_s, 1),
                                                      "steps": result.steps_done,
                                                      "best_val_dsc": result.best_val_metric, **row}
                print(f"  {model} {modality}: {result.steps_done} steps, val DSC {result.best_val_metric:.3f}; "
                      f"p07 DSC {row['dsc']:.3f} F1 {row['detection_f1']:.3f}", flush=True)
                (args.out / "compare_models_t1.json").write_text(json.dumps(res, indent=1))
    lines = [f"T2 against T1 input ({args.minutes:g} min training each; train stroke, test patient07; "
             f"{res['settings']['date']})", "",
             "| model | input | DSC | sensitivity | PPV | detection F1 | val DSC | steps |", "|---|---|---|---|---|---|---|---|"]
    for r in res["runs"].values():
        lines.append(f"| {r['model']} | {r['modality']} | {r['dsc']:.3f} | {r['sensitivity']:.3f} | {r['ppv']:.3f} | "
                     f"{r['detection_f1']:.3f} | {r['best_val_dsc']:.3f} | {r['steps']} |")
    (args.out / "compare_models_t1.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def crop_like(mask: np.ndarray, full, cropped) -> np.ndarray:
    """``mask`` (on ``full``'s grid) cut to ``cropped``'s in-plane box (same slices)."""
    off = np.linalg.solve(full.affine, cropped.affine)[:3, 3].round().astype(int)[::-1]  # (Z, Y, X) offsets
    sl = tuple(slice(o, o + s) for o, s in zip(off, cropped.shape, strict=True))
    return np.asarray(mask)[sl]


def summarise(res: dict) -> dict:
    out = {}
    for model in MODELS:
        runs = [r for r in res["runs"].values() if r["model"] == model]
        if not runs:
            continue
        scans = [s for r in runs for s in r["per_scan"].values()]
        pred = [s["rating_pred"][k] for s in scans for k in ("bg", "cso") if k in s["rating_pred"]]
        ref = [s["rating_ref"][k] for s in scans for k in ("bg", "cso") if k in s["rating_ref"]]
        les = [s["lesion_voxels_called_pvs"] for s in scans if s.get("lesion_voxels_called_pvs") is not None]
        out[model] = {
            **{m: float(np.mean([s[m] for s in scans])) for m in ("dsc", "sensitivity", "ppv", "detection_f1",
                                                                  "count_abs_diff", "inference_s")},
            "rating_rho": spearman(pred, ref), "rating_slices": len(pred),
            "lesion_voxels_called_pvs": float(np.mean(les)) if les else None,
            "parameters": runs[0]["parameters"], "train_s": float(np.mean([r["train_s"] for r in runs])),
            "steps": float(np.mean([r["steps"] for r in runs])),
            "per_scan_dsc": {f"{r['fold']}:{n}": s["dsc"] for r in runs for n, s in r["per_scan"].items()},
        }
    return out


def table(res: dict) -> str:
    s = res.get("summary") or summarise(res)
    st = res["settings"]
    lines = [f"Compare models: {st['minutes']:g} min training per model and fold, folds (test group) "
             f"{', '.join(st['folds'])}, device {st['device']}, {st['date']}", "",
             "| model | DSC | sensitivity | PPV | detection F1 | abs count diff | BG/CSO count rho (n) | "
             "lesion voxels called PVS | parameters | steps | train s | inference s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, r in s.items():
        rho = "n/a" if r["rating_rho"] is None else f"{r['rating_rho']:.2f}"
        les = "n/a" if r["lesion_voxels_called_pvs"] is None else f"{100 * r['lesion_voxels_called_pvs']:.2f} %"
        lines.append(f"| {m} | {r['dsc']:.3f} | {r['sensitivity']:.3f} | {r['ppv']:.3f} | {r['detection_f1']:.3f} | "
                     f"{r['count_abs_diff']:.1f} | {rho} ({r['rating_slices']}) | {les} | {r['parameters']:,} | "
                     f"{r['steps']:.0f} | {r['train_s']:.0f} | {r['inference_s']:.1f} |")
    lines += ["", "Per test scan DSC:", ""]
    for m, r in s.items():
        lines.append(f"- {m}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["per_scan_dsc"].items()))
    lines += ["", "The seed papers' own figures (their data and manual masks): "
              + "; ".join(f"{k}: {v}" for k, v in PAPER.items())]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res.get("summary") or summarise(res)
    models = list(s)
    metrics = [("dsc", "voxel DSC"), ("sensitivity", "sensitivity"), ("ppv", "PPV"), ("detection_f1", "detection F1")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6), sharey=True)
    for ax, (key, title) in zip(axes, metrics, strict=True):
        ax.bar(range(len(models)), [s[m][key] for m in models], color="#4c72b0")
        for i, m in enumerate(models):
            runs = [r for r in res["runs"].values() if r["model"] == m]
            pts = [sc[key] for r in runs for sc in r["per_scan"].values()]
            ax.plot([i] * len(pts), pts, "k.", ms=5)
        ax.set_xticks(range(len(models)), models, rotation=45)
        ax.set_title(title)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("mean over test scans (dots: each scan)")
    fig.suptitle(f"Simulated PVS in real T2 scans: {res['settings']['minutes']:g} min training per model, "
                 f"test groups {', '.join(res['settings']['folds'])}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
