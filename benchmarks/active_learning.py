"""Active-learning benchmark: does uncertainty selection need fewer annotated slices?

A simulated annotator "annotates" a proposed slice by copying the simulator's truth for it
(synthetic PVS inserted into the shared real T2 scans, :func:`simulate_pvs`, seed 0). Set-up:

* pool (annotated during the loop): open_ms patient01 visit 1 and patient04; held back
  (evaluated after every round): patient01 visit 2, with its own synthetic PVS;
* scans cropped in-plane to the brain's bounding box plus 5 mm (the CPU budget);
* start: one annotated slice per pool scan (random among the slices holding synthetic
  PVS, seeded per repeat) and an mfnsde model (dropout 0.2, for MC dropout) trained on
  them for ``--init-steps`` steps; every strategy starts from the same model and slices
  within a repeat;
* each round proposes ``--per-round`` slices, the annotator annotates them, the model is
  fine-tuned from the round before for ``--round-steps`` steps (equal budget per round);
* strategies: ``bald`` and ``entropy`` (MC dropout, ``--samples`` passes), ``random``,
  ``load`` (highest predicted PVS load); ``--repeats`` repeats each;
* measures on the held-back scan: voxel DSC and detection F1 (26-connected components
  matched at IoU > 0.1), against the number of annotated slices.

The claim tested: uncertainty selection reaches random selection's final DSC with at most
half of the slices.

Writes ``<out>/active_learning.json`` and ``<out>/active_learning.png``; prints a table.

Usage::

    python benchmarks/active_learning.py [--data ../shared/data] [--out benchmarks/results/active_learning]
        [--repeats 3] [--rounds 3] [--per-round 2]
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
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_pvs.engine.active_learning import (ALConfig, UncertaintyConfig, active_learning_loop,  # noqa: E402
                                               labelled_slices)
from napari_pvs.engine.anatomy import brain_mask  # noqa: E402
from napari_pvs.engine.models.checkpoint import load_model  # noqa: E402
from napari_pvs.engine.inference import predict_volume  # noqa: E402
from napari_pvs.engine.io import Volume, load_volume, save_volume  # noqa: E402
from napari_pvs.engine.progress import run_to_end  # noqa: E402
from napari_pvs.engine.project import Project, rater_agreement  # noqa: E402
from napari_pvs.engine.training.project import train_from_project  # noqa: E402
from napari_pvs.engine.synth import simulate_pvs  # noqa: E402
from napari_pvs.engine.training import TrainConfig  # noqa: E402

POOL = {"p01v1": "open_ms/longitudinal/patient01/study1_T2W.nii.gz",
        "p04": "open_ms/longitudinal/patient04/study1_T2W.nii.gz"}
HELD_BACK = {"p01v2": "open_ms/longitudinal/patient01/study2_T2W.nii.gz"}
STRATEGIES = ("bald", "entropy", "random", "load")
RATER = "simulated"


def crop_to_brain(vol: Volume, margin_mm: float = 5.0) -> Volume:
    """The volume cropped in-plane (all slices kept) to the brain's bounding box plus
    ``margin_mm``; the affine is shifted so that world positions stay the same."""
    brain = brain_mask(vol)
    lo, hi = [], []
    for ax in range(3):
        if ax == vol.axial_axis:
            lo.append(0)
            hi.append(vol.shape[ax])
            continue
        other = tuple(a for a in range(3) if a != ax)
        idx = np.flatnonzero(brain.any(axis=other))
        m = int(np.ceil(margin_mm / vol.voxel_size[ax]))
        lo.append(max(0, idx[0] - m))
        hi.append(min(vol.shape[ax], idx[-1] + 1 + m))
    data = np.ascontiguousarray(vol.data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
    shift = np.eye(4)
    shift[:3, 3] = lo[::-1]  # the affine maps NIfTI (i, j, k) = array (X, Y, Z) reversed
    return Volume(data, vol.affine @ shift, header=None, path=vol.path)


def prepare(data: Path, work: Path) -> dict:
    """Cropped scans with synthetic PVS, saved as NIfTI: ``name -> (path, truth mask)``."""
    out = {}
    for name, rel in {**POOL, **HELD_BACK}.items():
        vol = crop_to_brain(load_volume(data / rel))
        sim = simulate_pvs(vol, seed=0)
        path = save_volume(work / f"{name}_sim.nii.gz", sim.image.data, sim.image)
        out[name] = (path, sim.mask.astype(np.uint8))
        print(f"  {name}: {vol.shape} (Z, Y, X), {int(sim.mask.sum())} PVS voxels, {len(sim.table)} PVS", flush=True)
    return out


def evaluate(ckpt: Path, scans: dict) -> dict:
    loaded = load_model(ckpt)
    out = {}
    for name in HELD_BACK:
        path, truth = scans[name]
        pred = predict_volume(loaded, load_volume(path))
        ag = rater_agreement(pred.mask, truth)
        out[name] = {"dsc": float(ag.dsc), "detection_f1": float(ag.detection_f1),
                     "sensitivity": float(ag.sensitivity), "ppv": float(ag.ppv)}
    return {"dsc": float(np.mean([v["dsc"] for v in out.values()])),
            "detection_f1": float(np.mean([v["detection_f1"] for v in out.values()])), "per_scan": out}


def annotator_for(project: Project, scans: dict):
    def annotate(batch):
        done = labelled_slices(project)
        for subject in sorted({c.subject for c in batch}):
            rec = project.image(subject)
            slices = set(done.get(rec.id, [])) | {c.slice for c in batch if c.subject == subject}
            project.save_annotation(rec, RATER, scans[subject][1], slice_status={k: "done" for k in slices},
                                    note="simulated annotator: the simulator's truth")
    return annotate


def initial_project(root: Path, scans: dict, rep: int, init_steps: int) -> tuple[Path, list]:
    rng = np.random.default_rng(1000 + rep)
    first = []
    with Project.create(root) as p:
        for name in POOL:
            rec = p.add_image(scans[name][0], subject=name)
            truth = scans[name][1]
            with_pvs = np.flatnonzero(np.moveaxis(truth, rec.axial_axis, 0).any(axis=(1, 2)))
            k = int(rng.choice(with_pvs))
            first.append((name, k))
            p.save_annotation(rec, RATER, truth, slice_status={k: "done"}, note="initial slice")
        cfg = TrainConfig(model="mfnsde", model_config={"dropout": 0.2}, epochs=max(1, init_steps // 25),
                          steps_per_epoch=25, seed=rep, val_patches=32)
        result = run_to_end(train_from_project(p, cfg, root / "models" / "initial.pt", val_indices="all"))
    return Path(result.checkpoint), first


def run_strategy(init_root: Path, init_ckpt: Path, strategy: str, rep: int, args, scans: dict, work: Path) -> dict:
    root = work / f"rep{rep}_{strategy}"
    shutil.copytree(init_root, root)
    cfg = ALConfig(strategy=strategy, n_per_round=args.per_round, seed=rep,
                   uncertainty=UncertaintyConfig(sampler="mc_dropout", n_samples=args.samples, seed=rep),
                   finetune_steps=args.round_steps, steps_per_epoch=min(25, args.round_steps), finetune_minutes=60,
                   lr_factor=args.lr_factor, validate_start=args.validate_start)
    curve = [{"n_slices": len(POOL), **evaluate(init_ckpt, scans), "seconds": 0.0}]
    t0 = time.perf_counter()
    with Project.open(root) as p:
        gen = active_learning_loop(p, cfg, rounds=args.rounds, annotator=annotator_for(p, scans), checkpoint=init_ckpt)
        picked = []
        for ev in gen:
            if ev.kind == "proposed":
                picked.append([(c.subject, c.slice) for c in ev.queue])
            if ev.kind == "round":
                m = evaluate(Path(ev.record["checkpoint"]), scans)
                curve.append({"n_slices": ev.record["n_slices"], **m, "val_dsc": ev.record["val_dsc"],
                              "seconds": time.perf_counter() - t0})
                print(f"    {strategy} rep {rep} round {ev.round}: {ev.record['n_slices']} slices, held-back DSC "
                      f"{m['dsc']:.3f}, F1 {m['detection_f1']:.3f} [{time.perf_counter() - t0:.0f} s]", flush=True)
    return {"strategy": strategy, "repeat": rep, "curve": curve, "picked": picked,
            "seconds": time.perf_counter() - t0}


def summarise(runs: list[dict]) -> dict:
    table = {}
    for s in STRATEGIES:
        rs = [r for r in runs if r["strategy"] == s]
        if not rs:
            continue
        n = [c["n_slices"] for c in rs[0]["curve"]]
        dsc = np.array([[c["dsc"] for c in r["curve"]] for r in rs])
        f1 = np.array([[c["detection_f1"] for c in r["curve"]] for r in rs])
        table[s] = {"n_slices": n, "dsc_mean": dsc.mean(0).tolist(), "dsc_sd": dsc.std(0).tolist(),
                    "f1_mean": f1.mean(0).tolist(), "f1_sd": f1.std(0).tolist(),
                    "seconds_mean": float(np.mean([r["seconds"] for r in rs]))}
    if "random" in table:
        target = table["random"]["dsc_mean"][-1]
        for t in table.values():
            reach = [n for n, d in zip(t["n_slices"], t["dsc_mean"], strict=True) if d >= target]
            t["slices_to_reach_random_final"] = reach[0] if reach else None
        table["random_final_dsc"] = target
    return table


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for s in STRATEGIES:
        if s not in table:
            continue
        t = table[s]
        for ax, key in zip(axes, ("dsc", "f1"), strict=True):
            m, sd = np.array(t[f"{key}_mean"]), np.array(t[f"{key}_sd"])
            ax.plot(t["n_slices"], m, marker="o", label=s)
            ax.fill_between(t["n_slices"], m - sd, m + sd, alpha=0.15)
    for ax, name in zip(axes, ("voxel DSC", "detection F1 (IoU > 0.1)"), strict=True):
        ax.set_xlabel("annotated slices")
        ax.set_ylabel(f"held-back {name}")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Active learning on synthetic PVS in real T2 (mean +- SD over repeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "active_learning"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--first-repeat", type=int, default=0,
                    help="number of the first repeat (its seeds): run more repeats later and merge the JSON runs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-round", type=int, default=2)
    ap.add_argument("--init-steps", type=int, default=150)
    ap.add_argument("--round-steps", type=int, default=50)
    ap.add_argument("--samples", type=int, default=2, help="MC dropout passes (2 keeps 3 repeats within about 75 min on 2 CPU cores)")
    ap.add_argument("--merge", type=Path, nargs="*", default=[],
                    help="active_learning.json files of earlier runs (other repeats) to include in the summary")
    ap.add_argument("--lr-factor", type=float, default=1.0,
                    help="fine-tuning learning rate as a share of the initial model's (Adagrad 0.05); the fresh "
                         "initial model is far from converged, so the full rate (default 1)")
    ap.add_argument("--validate-start", action=argparse.BooleanOptionalAction, default=False,
                    help="keep the round's starting model unless fine-tuning beats it on the annotated slices "
                         "(the widget's and CLI's default; off here: every round's fine-tuned model is measured)")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs = [r for f in args.merge for r in json.loads(Path(f).read_text())["runs"]]

    def save() -> None:
        (out / "active_learning.json").write_text(json.dumps(
            {"args": vars(args), "runs": runs, "summary": summarise(runs), "seconds": time.perf_counter() - t0},
            indent=2, default=lambda o: str(o) if isinstance(o, Path) else float(o)))

    if args.repeats > 0:  # --repeats 0 --merge FILE: only the table and the plot of earlier runs
        with tempfile.TemporaryDirectory(prefix="napari-pvs-al-") as tmp:
            work = Path(tmp)
            print("preparing scans (cropped, synthetic PVS):", flush=True)
            scans = prepare(Path(args.data), work)
            for rep in range(args.first_repeat, args.first_repeat + args.repeats):
                init_root = work / f"rep{rep}_initial"
                init_ckpt, first = initial_project(init_root, scans, rep, args.init_steps)
                print(f"  repeat {rep}: initial slices {first}, initial model {init_ckpt.name} "
                      f"[{time.perf_counter() - t0:.0f} s]", flush=True)
                for s in args.strategies:
                    runs.append(run_strategy(init_root, init_ckpt, s, rep, args, scans, work))
                    runs[-1]["initial_slices"] = first
                    save()
    table = summarise(runs)
    plot(table, out / "active_learning.png")
    n_rep = {s: sum(r["strategy"] == s for r in runs) for s in args.strategies}
    print(f"\nheld-back DSC / detection F1 (mean +- SD over repeats {n_rep}), in "
          f"{(time.perf_counter() - t0) / 60:.1f} min:")
    for s in args.strategies:
        if s not in table:
            continue
        t = table[s]
        cells = "  ".join(f"{n}: {d:.3f}+-{sd:.3f} / {f:.3f}" for n, d, sd, f in
                          zip(t["n_slices"], t["dsc_mean"], t["dsc_sd"], t["f1_mean"], strict=True))
        print(f"  {s:<8} {cells}  (reaches random's final DSC at {t.get('slices_to_reach_random_final')} slices)")
    save()
    if "random_final_dsc" in table:
        print(f"random's final DSC: {table['random_final_dsc']:.3f}")
    print(f"wrote {out / 'active_learning.json'} and {out / 'active_learning.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
