"""Distil the shipped ensemble into one fast ``liteunet`` student (the default model's recipe).

Recipe (each stage recorded in the checkpoint):

1. **Teacher maps.** The teacher (default: the shipped deep ensemble of three 2.5D MfNS_De)
   segments every real training scan: every shared real T2 except the held-out patient01
   visit 2 and patient07 (:data:`TRAIN_SCANS`). Maps are cached in ``--out`` (by scan and
   teacher sha256).
2. **Measured PVS distribution.** The real PVS-like objects of each training scan
   (:func:`~napari_pvs.engine.candidates.find_pvs_candidates`, strict reference settings)
   give the width and contrast quantiles (10th-90th percentile, pooled); the simulation
   draws synthetic PVS over that range, widened to the faint end (contrast from
   ``--min-contrast``), so the student sees PVS fainter than those the teacher finds.
3. **Labels.** Self-training as in Xie Q. et al., "Self-training with Noisy Student
   improves ImageNet classification", CVPR 2020 (arXiv:1911.04252): each real scan is
   labelled with the teacher's confident, PVS-shaped detections
   (:func:`~napari_pvs.engine.training.recipe.pseudo_label_example`); its other
   detections and the real PVS-like objects it missed are ignored (unknown), the rest is
   background. With ``--agreement-peak P``, the strict PVS-like objects on which the
   teacher's peak reaches P are labels too (tried, not in the default: see
   ``docs/benchmarks.md``, "Agreement labels"). Each synthetic copy (``--copies`` seeds,
   lesion-like hard negatives inserted) is labelled with its synthetic PVS plus the scan's confident teacher
   detections. With ``--generated N``, each shared SynthSeg label map also gives N
   T2-like images of random contrast and resolution
   (:func:`~napari_pvs.engine.synth.generative.generate_t2`, SynthSeg-style), with
   synthetic PVS placed in the map's true white matter and basal ganglia.
4. **Student.** ``liteunet`` (2.5D, batch norm, whole-slice inference)
   trained ``--minutes`` with Adam, Dice + cross-entropy, at the teacher's 0.6 mm in-plane
   spacing, and SynthSeg-style domain randomisation (noisy student:
   the student sees augmented inputs, the teacher saw clean ones). Validation: a synthetic
   copy of patient04.

``--install`` copies the result to ``napari_pvs/weights/pvs_default.pt``.

Usage::

    python scripts/make_student_model.py --out /tmp/napari-pvs-student [--minutes 25]
        [--teacher CKPT] [--copies 2] [--generated 0] [--features 8 16 32 64 128] [--seed 0] [--install]
        [--workers N] [--device cuda --loader-workers 12 --batch-size 32]

On a GPU (``--device cuda``) the teacher runs with torch there, and ``--loader-workers``
processes crop and augment the patches so that the GPU is not kept waiting (4 min on an
H200: 7131 steps of 32 patches; see ``docs/benchmarks.md``, "On a lent GPU").
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import pickle
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_pvs.engine.candidates import find_pvs_candidates, reference_config  # noqa: E402
from napari_pvs.engine.data import sha256_file  # noqa: E402
from napari_pvs.engine.inference import predict_volume  # noqa: E402
from napari_pvs.engine.io import load_volume  # noqa: E402
from napari_pvs.engine.models.checkpoint import read_checkpoint, update_checkpoint  # noqa: E402
from napari_pvs.engine.registration.network import LABEL_MAPS  # noqa: E402
from napari_pvs.engine.synth import LesionMimicConfig, wide_simulation  # noqa: E402
from napari_pvs.engine.synth.generative import generate_t2  # noqa: E402
from napari_pvs.engine.training import TrainConfig, train  # noqa: E402
from napari_pvs.engine.training.recipe import (PseudoLabelConfig, RecipeConfig, TrainingExample,  # noqa: E402
                                               pseudo_label_example, recipe_to_dict, synthetic_examples)

#: real training scans (shared data path, lesion mask or None); held out: patient01 visit 2, patient07
TRAIN_SCANS = (("open_ms/longitudinal/patient01/study1_T2W.nii.gz", None),
               ("open_ms/longitudinal/patient04/study1_T2W.nii.gz", None),
               ("stroke/T2.nii.gz", None),
               ("clinical_stroke/T2.nii", "clinical_stroke/lesion_T2.nii"),
               ("arc/M2265_T2w.nii.gz", None),
               ("arc/M2208_T2w_mni.nii.gz", None))
HELD_OUT = ("open_ms/longitudinal/patient01/study2_T2W.nii.gz", "open_ms/mni/patient07/T2.nii.gz")
VALIDATION_SCAN = "open_ms/longitudinal/patient04/study1_T2W.nii.gz"
VALIDATION_SEED = 99
DEFAULT_WEIGHTS = ROOT / "napari_pvs" / "weights" / "pvs_default.pt"


def teacher_map(teacher, teacher_sha: str, rel: str, vol, cache: Path) -> np.ndarray:
    """The teacher's probability on ``vol`` (cached as ``cache/<scan>_<sha[:12]>.npy``)."""
    path = cache / f"{rel.replace('/', '_')}_{teacher_sha[:12]}.npy"
    if path.exists():
        return np.load(path)
    t = time.perf_counter()
    prob = predict_volume(teacher, vol).prob.astype(np.float16)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, prob)
    tmp.replace(path)
    print(f"  teacher on {rel}: {time.perf_counter() - t:.0f} s, {(prob >= 0.5).sum()} voxels >= 0.5", flush=True)
    return prob


def measured_distribution(tables) -> dict:
    """Pooled 10th/50th/90th percentiles of the real PVS-like objects' width (mm) and contrast."""
    width = np.array([row["width_mm"] for t in tables for row in t], float)
    contrast = np.array([row["contrast"] for t in tables for row in t], float)
    q = (10, 50, 90)
    return {"n_objects": int(width.size),
            "width_mm_p10_p50_p90": [round(float(v), 3) for v in np.percentile(width, q)],
            "contrast_p10_p50_p90": [round(float(v), 3) for v in np.percentile(contrast, q)]}


def with_pseudo(ex: TrainingExample, pseudo: TrainingExample) -> TrainingExample:
    """A synthetic copy also labelled with the scan's confident teacher detections."""
    mask = (ex.mask > 0) | (pseudo.mask > 0)
    ignore = ((ex.ignore > 0) if ex.ignore is not None else np.zeros_like(mask)) | (pseudo.ignore > 0)
    ignore &= ~mask
    return dataclasses.replace(ex, mask=mask.astype(np.uint8), ignore=ignore.astype(np.uint8),
                               source=ex.source + " + teacher labels")


def _scan_objects(data: Path, rel: str, les: str | None, candidates_cfg):
    """(worker) A training scan, its lesion mask, its PVS-like objects (``candidates_cfg``) and
    its strict ones (``reference_config()``: the measured distribution, agreement labels)."""
    vol = load_volume(data / rel)
    lesion = load_volume(data / les).data > 0 if les else None
    return (vol, lesion, find_pvs_candidates(vol, lesion, config=candidates_cfg),
            find_pvs_candidates(vol, lesion, config=reference_config()))


def _scan_examples(rel: str, vol, lesion, cands, ref, prob, recipe):
    """(worker) A scan's synthetic copies (plus its pseudo-labelled real volume when ``prob`` is given)."""
    t = time.perf_counter()
    syn = synthetic_examples(vol, range(1, recipe.copies + 1), recipe, lesion_mask=lesion, candidates=cands)
    counts = None
    if prob is not None:
        pseudo, counts = pseudo_label_example(prob.astype(np.float32), vol, recipe, lesion_mask=lesion,
                                              candidates=cands, reference=ref)
        syn = [with_pseudo(e, pseudo) for e in syn] + [pseudo]
    return syn, counts, time.perf_counter() - t


def _generated_examples(data: Path, rel: str, seed: int, gen_recipe):
    """(worker) One T2-like image generated from a SynthSeg label map, with synthetic PVS."""
    t = time.perf_counter()
    gen = generate_t2(load_volume(data / rel), seed=seed)
    syn = synthetic_examples(gen.image, [seed], gen_recipe, anatomy=gen.anatomy())
    info = {**gen.image.meta["generated"], "label_map": rel, "pvs_voxels": int(syn[0].mask.sum())}
    return [dataclasses.replace(e, source=f"{rel} generated, {e.source}") for e in syn], info, time.perf_counter() - t


def prepare(args, data: Path, out: Path, teacher, teacher_sha: str):
    """Teacher maps, measured distribution, labelled real and synthetic volumes (the last one
    is the validation volume): ``(recipe, distribution, pseudo-label counts, generated images, examples)``.
    The per-scan work runs in ``--workers`` processes (the results do not depend on how many)
    while the teacher runs here."""
    base = RecipeConfig(copies=args.copies, thick_slice_mm=None, pseudo_labels=not args.no_pseudo_labels,
                        pseudo=PseudoLabelConfig(agreement_peak=args.agreement_peak),
                        lesion_mimics=LesionMimicConfig(n_lesions=args.lesion_mimics) if args.lesion_mimics else None)
    with concurrent.futures.ProcessPoolExecutor(max(1, args.workers),
                                                mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {rel: pool.submit(_scan_objects, data, rel, les, base.candidates) for rel, les in TRAIN_SCANS}
        scans, lesions, cands, refs, probs = {}, {}, {}, {}, {}
        for rel, _ in TRAIN_SCANS:
            if not args.no_pseudo_labels:       # the teacher runs here while the workers find the objects
                probs[rel] = teacher_map(teacher, teacher_sha, rel, load_volume(data / rel), out)
        for rel, _ in TRAIN_SCANS:
            scans[rel], lesions[rel], cands[rel], refs[rel] = jobs[rel].result()
            print(f"{rel}: {scans[rel].shape}, {len(cands[rel].table)} PVS-like objects, {len(refs[rel].table)} reference",
                  flush=True)
        dist = measured_distribution([r.table for r in refs.values()])
        (w10, _, w90), (_, _, c90) = dist["width_mm_p10_p50_p90"], dist["contrast_p10_p50_p90"]
        simulation = dataclasses.replace(wide_simulation(), width_mm=(round(max(0.5, w10), 2), round(max(w90, 1.5), 2)),
                                         contrast=(args.min_contrast, round(max(c90, 0.6), 2)))
        recipe = dataclasses.replace(base, simulation=simulation)
        print(f"measured real PVS-like objects: {dist}; simulation width {simulation.width_mm} mm, "
              f"contrast {simulation.contrast}", flush=True)

        jobs = {rel: pool.submit(_scan_examples, rel, vol, lesions[rel], cands[rel], refs[rel], probs.get(rel), recipe)
                for rel, vol in scans.items()}
        gen_recipe = dataclasses.replace(recipe, ignore_real_pvs=False)      # no real PVS in a generated image
        gen_jobs = [pool.submit(_generated_examples, data, rel, 100 * (i + 1) + k, gen_recipe)
                    for i, rel in enumerate(LABEL_MAPS if args.generated else ()) for k in range(args.generated)]
        examples, counts = [], {}
        for rel, job in jobs.items():
            syn, c, sec = job.result()
            if c is not None:
                counts[rel] = c
            examples += syn
            print(f"  {rel}: {len(syn)} volumes ({sec:.0f} s) {counts.get(rel, '')}", flush=True)
        generated: list[dict] = []
        for job in gen_jobs:
            syn, info, sec = job.result()
            examples += syn
            generated.append(info)
            print(f"  {info['label_map']} generated: {syn[0].image.shape} of {info['voxel_size_mm']} "
                  f"mm, {info['pvs_voxels']} PVS voxels ({sec:.0f} s)", flush=True)
    val_recipe = dataclasses.replace(recipe, copies=1, lesion_mimics=None)
    examples += synthetic_examples(scans[VALIDATION_SCAN], [VALIDATION_SEED], val_recipe,
                                   candidates=cands[VALIDATION_SCAN])

    return recipe, dist, counts, generated, examples


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", required=True, help="folder for the checkpoint and the teacher cache")
    ap.add_argument("--teacher", default=str(DEFAULT_WEIGHTS.with_name("pvs_accurate.pt")))
    ap.add_argument("--teacher-backend", default="onnx", choices=("torch", "onnx"))
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--min-contrast", type=float, default=0.15,
                    help="faintest simulated PVS (fraction of the tissue-CSF difference)")
    ap.add_argument("--lesion-mimics", type=int, default=8)
    ap.add_argument("--generated", type=int, default=0,
                    help="T2-like images generated per shared SynthSeg label map (SynthSeg-style), with synthetic PVS")
    ap.add_argument("--features", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--patch", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--spacing", type=float, default=0.6, help="in-plane pixel spacing (mm), the teacher's")
    ap.add_argument("--bce-weight", type=float, default=1.0, help="cross-entropy weight added to the Dice loss")
    ap.add_argument("--steps-per-epoch", type=int, default=100)
    ap.add_argument("--no-pseudo-labels", action="store_true", help="synthetic PVS only (ablation)")
    ap.add_argument("--agreement-peak", type=float, default=None,
                    help="also label the strict PVS-like objects on which the teacher's peak probability "
                         "reaches this (the detector and the teacher agree); default off")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1,
                    help="processes for the per-scan preparation (objects, synthetic copies, generated images), "
                         "beside the teacher")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="where the teacher (torch backend on cuda) and the student's training run")
    ap.add_argument("--loader-workers", type=int, default=0,
                    help="processes that crop and augment the training patches (keeps a GPU fed)")
    ap.add_argument("--learning-rate", type=float, default=None, help="default: the liteunet family's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--install", action="store_true", help=f"copy the result to {DEFAULT_WEIGHTS}")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    from napari_pvs.engine.usecases import load_segmenter
    teacher_sha = sha256_file(args.teacher)
    if args.device == "cuda":
        args.teacher_backend = "torch"     # ONNX Runtime here is the CPU backend
    teacher = load_segmenter(args.teacher, device=args.device, backend=args.teacher_backend)

    key = hashlib.sha256(json.dumps([teacher_sha, args.copies, args.min_contrast, args.lesion_mimics,
                                     args.no_pseudo_labels, str(data), args.generated]
                                    + ([args.agreement_peak] if args.agreement_peak is not None else [])
                                    ).encode()).hexdigest()[:12]
    cached = out / f"examples_{key}.pkl"
    if cached.exists():          # the same data from an earlier run of this recipe (a rerun with other training settings)
        with cached.open("rb") as fh:
            recipe, dist, counts, generated, examples = pickle.load(fh)
        print(f"training volumes from {cached}", flush=True)
    else:
        recipe, dist, counts, generated, examples = prepare(args, data, out, teacher, teacher_sha)
        with cached.with_suffix(".tmp").open("wb") as fh:
            pickle.dump((recipe, dist, counts, generated, examples), fh, protocol=pickle.HIGHEST_PROTOCOL)
        cached.with_suffix(".tmp").replace(cached)
    prep_s = time.perf_counter() - t0

    meta = {"recipe": recipe_to_dict(recipe), "kind": "student",
            "teacher": {"file": Path(args.teacher).name, "sha256": teacher_sha, "backend": args.teacher_backend},
            "measured_pvs": dist, "pseudo_labels": counts, "generated": generated,
            "data": [{"path": rel, "sha256": sha256_file(data / rel)}
                     for rel in [r for r, _ in TRAIN_SCANS] + sorted({g["label_map"] for g in generated})],
            "held_out": list(HELD_OUT), "script": "scripts/make_student_model.py " + " ".join(argv or sys.argv[1:]),
            "stages": {"prepare_s": round(prep_s)}}
    cfg = TrainConfig.for_model("liteunet", model_config={"features": tuple(args.features)}, epochs=100_000,
                                steps_per_epoch=args.steps_per_epoch, max_minutes=args.minutes,
                                batch_size=args.batch_size, patch_size=(args.patch, args.patch),
                                spacing_mm=args.spacing, bce_weight=args.bce_weight,
                                domain_randomisation=True, seed=args.seed, device=args.device,
                                loader_workers=args.loader_workers, learning_rate=args.learning_rate)
    ckpt = out / "student.pt"
    print(f"student: {len(examples)} volumes ({prep_s:.0f} s to prepare), {args.minutes} min", flush=True)
    last = None
    for ev in train([e.image for e in examples], [e.mask for e in examples], cfg, ckpt,
                    ignore_masks=[e.ignore for e in examples], val_indices=[len(examples) - 1], metadata=meta):
        last = ev
        if ev.kind in ("start", "epoch", "done"):
            print("  " + ev.summary(), flush=True)
    meta["stages"]["student"] = {"steps": last.step, "best_val_dsc": last.best_val_metric,
                                 "seconds": round(last.elapsed_s)}
    update_checkpoint(ckpt, recipe=meta)
    result = out / "model.pt"
    shutil.copyfile(ckpt, result)
    print(json.dumps(meta["stages"], indent=2))
    print(f"wrote {result} ({result.stat().st_size / 2**20:.2f} MiB) in {time.perf_counter() - t0:.0f} s; "
          f"recipe: {json.dumps(read_checkpoint(result)['recipe']['measured_pvs'])}")
    if args.install:
        DEFAULT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result, DEFAULT_WEIGHTS)
        print(f"installed {DEFAULT_WEIGHTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
