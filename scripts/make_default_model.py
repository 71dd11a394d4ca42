"""Train the shipped "accurate" PVS model (the default until 2026-12) or an ablation of its recipe.

Since 2026-12 the shipped *default* is a fast ``liteunet`` student distilled from this model
(``scripts/make_student_model.py``, ``make default-model``); this script makes the teacher,
``napari_pvs/weights/pvs_accurate.pt`` (``make accurate-model``, ``--checkpoint accurate``).

Recipe (:mod:`napari_pvs.engine.training.recipe`), each step switchable for the benchmark:

1. synthetic PVS (the widened simulation) inserted into the real T2 of open_ms patient01
   visit 1, patient04 visit 1 and the stroke T2 (1 mm), ``--copies`` seeds each, with an
   ignore mask on the scans' own real PVS-like objects; the 1 mm scan also gives
   3 mm-slice copies;
2. a teacher ``mfnsde`` trained for ``--minutes`` with SynthSeg-style domain
   randomisation (validation: another synthetic copy of patient04);
3. teacher pseudo-labels on the three real scans (no insertion), then a student, started
   from the teacher, trained ``--student-minutes`` on the synthetic and pseudo-labelled
   volumes.

Held out for the benchmark (``benchmarks/real_scans.py``): patient01 visit 2 (another
visit) and patient07 (1 mm, MNI space, expert lesion mask).

The shipped accurate model (``make accurate-model``) is the variant that did best on the real-scan
benchmark: a deep ensemble (``--ensemble``) of three members, each trained with
``--minutes 8 --narrow-simulation --no-thick-slices --no-pseudo-labels --lesion-mimics 8
--context-slices 1`` and ``--seed`` 0, 1 and 2 (synthetic PVS + the ignore mask on real
PVS-like objects, domain randomisation, lesion-like hard negatives, 2.5D input).

The checkpoint records the recipe, the data files (with sha256), the stages and their
numbers. ``--install`` copies it to ``napari_pvs/weights/pvs_accurate.pt`` (``--checkpoint
accurate`` in ``napari-pvs segment``, *accurate (ensemble)* in the Segment widget).

Usage::

    python scripts/make_default_model.py --out /tmp/pvs_models/full [--minutes 12]
        [--student-minutes 6] [--no-ignore] [--narrow-simulation] [--no-domain-randomisation]
        [--no-thick-slices] [--no-pseudo-labels] [--width-mm MIN MAX] [--contrast MIN MAX]
        [--context-slices K] [--lesion-mimics N] [--seed N] [--init-from CKPT] [--learning-rate LR] [--install]
    python scripts/make_default_model.py --out /tmp/pvs_models/ens --ensemble A.pt B.pt C.pt [--install]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_pvs.engine.candidates import find_pvs_candidates  # noqa: E402
from napari_pvs.engine.models.checkpoint import (ensemble_checkpoint, load_model, read_checkpoint,  # noqa: E402
                                                 update_checkpoint)
from napari_pvs.engine.data import sha256_file  # noqa: E402
from napari_pvs.engine.inference import predict_volume  # noqa: E402
from napari_pvs.engine.io import load_volume  # noqa: E402
from napari_pvs.engine.synth import LesionMimicConfig, SimulationConfig, wide_simulation  # noqa: E402
from napari_pvs.engine.training import TrainConfig, train  # noqa: E402
from napari_pvs.engine.training.recipe import (RecipeConfig, pseudo_label_example, recipe_to_dict,  # noqa: E402
                                               synthetic_examples)

#: training scans (paths in the shared data folder)
TRAIN_SCANS = ("open_ms/longitudinal/patient01/study1_T2W.nii.gz",
               "open_ms/longitudinal/patient04/study1_T2W.nii.gz",
               "stroke/T2.nii.gz")
VALIDATION_SCAN = "open_ms/longitudinal/patient04/study1_T2W.nii.gz"
VALIDATION_SEED = 99
DEFAULT_WEIGHTS = ROOT / "napari_pvs" / "weights" / "pvs_accurate.pt"


def run_train(images, masks, ignores, cfg, ckpt, *, val_indices, metadata, init_from=None) -> dict:
    last = None
    for ev in train(images, masks, cfg, ckpt, ignore_masks=ignores, val_indices=val_indices,
                    metadata=metadata, init_from=init_from):
        last = ev
        if ev.kind in ("start", "epoch", "done"):
            print("  " + ev.summary(), flush=True)
    return {"steps": last.step if last else 0, "best_val_dsc": last.best_val_metric if last else None,
            "seconds": last.elapsed_s if last else 0.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", required=True, help="folder for the checkpoints (never the repository)")
    ap.add_argument("--minutes", type=float, default=12.0, help="teacher training budget")
    ap.add_argument("--student-minutes", type=float, default=6.0)
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--steps-per-epoch", type=int, default=100)
    ap.add_argument("--no-ignore", action="store_true", help="no ignore mask on real PVS-like objects")
    ap.add_argument("--narrow-simulation", action="store_true", help="the 0.1.0 simulation")
    ap.add_argument("--width-mm", type=float, nargs=2, metavar=("MIN", "MAX"),
                    help="override the simulation's PVS width range (mm)")
    ap.add_argument("--contrast", type=float, nargs=2, metavar=("MIN", "MAX"),
                    help="override the simulation's PVS contrast range (fraction of the tissue-CSF difference)")
    ap.add_argument("--no-domain-randomisation", action="store_true")
    ap.add_argument("--no-thick-slices", action="store_true")
    ap.add_argument("--no-pseudo-labels", action="store_true")
    ap.add_argument("--lesion-mimics", type=int, default=0, metavar="N",
                    help="insert N lesion-like hard negatives into every synthetic copy (default 0: off)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="training seed (patch sampling, augmentation, weights)")
    ap.add_argument("--context-slices", type=int, default=0,
                    help="2.5D input: this many neighbouring slices on each side as channels (default 0: 2D)")
    ap.add_argument("--init-from", metavar="CKPT",
                    help="fine-tune the teacher from this mfnsde checkpoint (e.g. the shipped model)")
    ap.add_argument("--learning-rate", type=float, default=None,
                    help="teacher learning rate (default the TrainConfig default, Adagrad 0.05)")
    ap.add_argument("--ensemble", nargs="+", metavar="CKPT",
                    help="no training: combine these checkpoints (made by this script) into one ensemble "
                         "checkpoint, the mean of their probabilities")
    ap.add_argument("--install", action="store_true", help=f"copy the result to {DEFAULT_WEIGHTS}")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.ensemble:
        return make_ensemble(args.ensemble, out, args.install, argv)

    simulation = SimulationConfig() if args.narrow_simulation else wide_simulation()
    overrides = {k: tuple(v) for k, v in (("width_mm", args.width_mm), ("contrast", args.contrast)) if v}
    if overrides:
        simulation = dataclasses.replace(simulation, **overrides)
    recipe = RecipeConfig(
        simulation=simulation,
        copies=args.copies, ignore_real_pvs=not args.no_ignore,
        ignore_partial_volume=0.0 if args.no_ignore else 0.15,
        thick_slice_mm=None if args.no_thick_slices else 3.0,
        pseudo_labels=not args.no_pseudo_labels,
        lesion_mimics=LesionMimicConfig(n_lesions=args.lesion_mimics) if args.lesion_mimics > 0 else None)
    t0 = time.perf_counter()
    examples, candidates, scans = [], {}, {}
    for rel in TRAIN_SCANS:
        vol = load_volume(data / rel)
        scans[rel] = vol
        t = time.perf_counter()
        if recipe.ignore_real_pvs or recipe.pseudo_labels:
            candidates[rel] = find_pvs_candidates(vol, config=recipe.candidates)
        seeds = range(1, recipe.copies + 1)
        ex = synthetic_examples(vol, seeds, recipe, candidates=candidates.get(rel))
        examples += ex
        print(f"{rel}: {len(ex)} synthetic volumes, "
              f"{len(candidates[rel].table) if rel in candidates else 0} real PVS-like objects "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    val_recipe = RecipeConfig(simulation=recipe.simulation, copies=1, ignore_real_pvs=recipe.ignore_real_pvs,
                              ignore_partial_volume=recipe.ignore_partial_volume, thick_slice_mm=None)
    val = synthetic_examples(scans[VALIDATION_SCAN], [VALIDATION_SEED], val_recipe,
                             candidates=candidates.get(VALIDATION_SCAN))
    examples += val
    val_idx = [len(examples) - 1]
    prep_s = time.perf_counter() - t0

    sources = [{"path": rel, "sha256": sha256_file(data / rel)} for rel in TRAIN_SCANS]
    model_config = {"context_slices": args.context_slices} if args.context_slices else {}
    cfg = TrainConfig(model="mfnsde", model_config=model_config, epochs=100_000, steps_per_epoch=args.steps_per_epoch,
                      max_minutes=args.minutes, domain_randomisation=not args.no_domain_randomisation,
                      seed=args.seed, **({} if args.learning_rate is None else {"learning_rate": args.learning_rate}),
                      validate_start=args.init_from is not None)
    meta = {"recipe": recipe_to_dict(recipe), "data": sources,
            "held_out": ["open_ms/longitudinal/patient01/study2_T2W.nii.gz", "open_ms/mni/patient07/T2.nii.gz"],
            "script": _script_line(argv), "stages": {}}
    if args.init_from:
        meta["parent"] = parent_record(args.init_from)
    teacher = out / "teacher.pt"
    print(f"teacher: {len(examples)} volumes ({prep_s:.0f} s to prepare), {args.minutes} min", flush=True)
    stage = run_train([e.image for e in examples], [e.mask for e in examples], [e.ignore for e in examples], cfg, teacher,
                      val_indices=val_idx, metadata=meta, init_from=args.init_from)
    meta["stages"]["teacher"] = stage
    final = teacher
    if recipe.pseudo_labels:
        loaded = load_model(teacher)
        pseudo, counts = [], {}
        for rel, vol in scans.items():
            pred = predict_volume(loaded, vol)
            ex, c = pseudo_label_example(pred.prob, vol, recipe, candidates=candidates[rel])
            pseudo.append(ex)
            counts[rel] = c
            print(f"pseudo-labels {rel}: {c}", flush=True)
        meta["stages"]["pseudo_labels"] = counts
        all_ex = examples[:-1] + pseudo + examples[-1:]
        student = out / "student.pt"
        scfg = TrainConfig(**{**cfg.__dict__, "max_minutes": args.student_minutes, "seed": args.seed + 1})
        print(f"student: {len(all_ex)} volumes, {args.student_minutes} min from the teacher", flush=True)
        stage = run_train([e.image for e in all_ex], [e.mask for e in all_ex], [e.ignore for e in all_ex],
                          scfg, student, val_indices=[len(all_ex) - 1], metadata=meta, init_from=teacher)
        meta["stages"]["student"] = stage
        final = student
    update_checkpoint(final, recipe=meta)
    result = out / "model.pt"
    shutil.copyfile(final, result)
    print(json.dumps(meta["stages"], indent=2))
    print(f"wrote {result} ({result.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.0f} s")
    if args.install:
        _install(result)
    return 0


def make_ensemble(paths: list[str], out: Path, install: bool, argv) -> int:
    """Combine trained members into ``out/model.pt`` (an ``ensemble`` checkpoint)."""
    recipes = [read_checkpoint(p).get("recipe") or {} for p in paths]
    data = {d["path"]: d for r in recipes for d in r.get("data", [])}
    held_out = set.intersection(*(set(r.get("held_out", [])) for r in recipes))
    result = ensemble_checkpoint(paths, out / "model.pt", recipe={
        "data": list(data.values()), "held_out": sorted(held_out),
        "script": _script_line(argv)})
    print(f"wrote {result} ({result.stat().st_size / 2**20:.1f} MiB): ensemble of {len(paths)}")
    if install:
        _install(result)
    return 0


def parent_record(path: str | Path) -> dict:
    """What a fine-tune started from: the parent checkpoint's file name, sha256, recipe and
    benchmark numbers (so that a fine-tuned default model still says how its starting
    point was made, after the parent file is replaced by ``--install``)."""
    ck = read_checkpoint(path)
    return {"file": Path(path).name, "sha256": sha256_file(path),
            "recipe": ck.get("recipe"), "benchmark": ck.get("benchmark")}


def _script_line(argv) -> str:
    return "scripts/make_default_model.py " + " ".join(argv if argv is not None else sys.argv[1:])


def _install(result: Path) -> None:
    DEFAULT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result, DEFAULT_WEIGHTS)
    print(f"installed {DEFAULT_WEIGHTS}")


if __name__ == "__main__":
    sys.exit(main())
