"""The ``napari-pvs`` command line: simulate, train, segment and count PVS; annotation
projects (``napari-pvs project ...``, :mod:`napari_pvs.cli_project`); active learning
(``napari-pvs al ...``, :mod:`napari_pvs.cli_al`); registration and atlas-placed rating
slices (``register``, ``locate-slices``, ``train-registration``, :mod:`napari_pvs.cli_registration`);
model comparison (``compare``, :mod:`napari_pvs.cli_compare`).

Every GUI action has a command here and a Python function in :mod:`napari_pvs.engine`.
Bad input ends with a one-line ``napari-pvs: error: FILE: problem`` and exit code 2,
never a traceback and never a half-written output file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


def _err(msg: str) -> int:
    print(f"napari-pvs: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _check_nifti_out(path: str, what: str) -> None:
    from .engine.errors import PVSInputError
    from .engine.io import is_nifti_name

    if not is_nifti_name(path):
        raise PVSInputError(f"{what} must be a .nii or .nii.gz file", path)


# ---------------------------------------------------------------------------- simulate
def cmd_simulate(args) -> int:
    from .engine.io import load_mask, load_volume, save_volume
    from .engine.synth import SimulationConfig, simulate_pvs, write_table_csv

    image = load_volume(args.image)
    lesion = load_mask(args.lesion_mask, reference=image) if args.lesion_mask else None
    cfg = SimulationConfig(**{k: v for k, v in (("n_bg", args.n_bg), ("n_cso", args.n_cso)) if v is not None})
    res = simulate_pvs(image, seed=args.seed, lesion_mask=lesion, config=cfg)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_volume(out / "image.nii.gz", res.image.data, image, dtype="float32")
    save_volume(out / "mask.nii.gz", res.mask, image, dtype="uint8")
    save_volume(out / "fraction.nii.gz", res.fraction, image, dtype="float32")
    write_table_csv(res.table, out / "pvs.csv")
    n_vox = int(res.mask.sum())
    print(f"simulated {len(res.table)} PVS ({sum(r['region'] == 'BG' for r in res.table)} BG, "
          f"{sum(r['region'] == 'CSO' for r in res.table)} CSO), {n_vox} mask voxels, "
          f"noise sigma {res.noise_sigma:.2f}; wrote {out}/image.nii.gz, mask.nii.gz, fraction.nii.gz, pvs.csv")
    return 0


# ---------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    from .engine.errors import PVSInputError
    from .engine.io import load_mask, load_volume
    from .engine.training import TrainConfig, train

    images = args.image or []
    masks = args.mask or []
    if args.project and (images or masks):
        raise PVSInputError("give either --project or --image/--mask pairs, not both")
    if not args.project and not images:
        raise PVSInputError("nothing to train on: give --image/--mask pairs or --project DIR")
    if len(images) != len(masks):
        raise PVSInputError(f"{len(images)} --image but {len(masks)} --mask; give one --mask after each --image")
    vols = [load_volume(p) for p in images]
    mvols = [load_mask(m, reference=v) for m, v in zip(masks, vols, strict=True)]
    kwargs = dict(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                  batch_size=args.batch_size, max_minutes=args.max_minutes, seed=args.seed,
                  device=args.device, spacing_mm=args.spacing_mm, learning_rate=args.lr,
                  optimizer=args.optimizer, lr_schedule=args.lr_schedule)
    try:
        model_config = {}
        if args.features:
            model_config["features"] = tuple(args.features)
        if args.context_slices:
            model_config["context_slices"] = args.context_slices
        if model_config:
            kwargs["model_config"] = model_config
        cfg = TrainConfig.for_model(args.model, **kwargs)
    except ValueError as exc:
        raise PVSInputError(str(exc)) from None
    out = Path(args.output)
    project = None
    if args.project:
        from .engine.project import Project
        from .engine.training.project import train_from_project

        project = Project.open(args.project)
        gen = train_from_project(project, cfg, out, versions=args.versions, init_from=args.init_from)
    else:
        gen = train(vols, mvols, cfg, out, init_from=args.init_from)
    try:
        _print_training(gen, cfg, args.log_every)
    finally:
        if project is not None:
            project.close()
    return 0


def _print_training(gen, cfg, log_every: int) -> None:
    for ev in gen:
        if ev.kind == "start":
            print(f"training {cfg.model}: {ev.message}", flush=True)
        elif ev.kind == "step" and (ev.step % log_every == 0):
            print(f"  epoch {ev.epoch} step {ev.step}/{ev.total_steps} loss {ev.loss:.4f} "
                  f"[{ev.elapsed_s:.0f} s]", flush=True)
        elif ev.kind == "epoch":
            print(f"epoch {ev.epoch}: mean loss {ev.loss:.4f}, validation {ev.metric_name} "
                  f"{ev.val_metric:.3f} (best {ev.best_val_metric:.3f}) [{ev.elapsed_s:.0f} s]", flush=True)
        elif ev.kind == "done":
            best = "n/a" if ev.best_val_metric is None else f"{ev.best_val_metric:.3f}"
            print(f"done ({ev.message}): best validation {ev.metric_name} {best}, {ev.step} steps in "
                  f"{ev.elapsed_s:.0f} s ({ev.val_seconds:.0f} s validating); checkpoint {ev.checkpoint}",
                  flush=True)


# ---------------------------------------------------------------------------- segment
def cmd_segment(args) -> int:
    from .engine.models.checkpoint import load_model
    from .engine.data import default_checkpoint
    from .engine.errors import PVSInputError
    from .engine.inference import pick_device, predict_volume
    from .engine.io import load_volume, save_volume

    _check_nifti_out(args.output, "output mask")
    model_path = args.model or default_checkpoint()
    if args.prob:
        _check_nifti_out(args.prob, "probability map")
    if args.agreement:
        _check_nifti_out(args.agreement, "member agreement map")
    image = load_volume(args.image)
    device = pick_device(args.device)
    loaded = load_model(model_path, device=device)
    if args.agreement and loaded.name != "ensemble":
        raise PVSInputError(f"--agreement needs an ensemble checkpoint, this one is a {loaded.name!r} model",
                            model_path)

    def progress(ev):
        if sys.stderr.isatty():
            print(f"\r  slices {ev.done}/{ev.total}", end="", file=sys.stderr, flush=True)

    pred = predict_volume(loaded, image, batch_size=args.batch_size, threshold=args.threshold,
                          members=bool(args.agreement), progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    save_volume(args.output, pred.mask, image, dtype="uint8")
    if args.prob:
        save_volume(args.prob, pred.prob, image, dtype="float32")
    if args.agreement:
        agree = pred.agreement()
        save_volume(args.agreement, agree, image, dtype="uint8")
    vs = image.voxel_size
    print(f"segmented {args.image} with {loaded.name} ({Path(model_path).name}, {loaded.spacing_mm:.2f} mm "
          f"in-plane) in "
          f"{pred.seconds:.1f} s: {int(pred.mask.sum())} PVS voxels "
          f"({pred.mask.sum() * vs[0] * vs[1] * vs[2]:.1f} mm^3); wrote {args.output}"
          + (f" and {args.prob}" if args.prob else "") + (f" and {args.agreement}" if args.agreement else ""))
    if args.agreement:
        n = loaded.config.n_members
        uncertain = int((pred.uncertain() > 0).sum())
        print(f"member agreement: voxels called PVS by k of {n} members: "
              + ", ".join(f"{k}: {int((agree == k).sum())}" for k in range(1, n + 1))
              + f"; {uncertain} voxels called PVS by some member but not by the ensemble")
    return 0


# ---------------------------------------------------------------------------- count
def cmd_count(args) -> int:
    import numpy as np

    from .engine.errors import PVSInputError
    from .engine.io import check_same_grid, load_mask, load_volume
    from .engine.rating import count_rating_slices, write_counts_csv

    if args.slab_mm < 0:   # before the mask is read or the atlas registered
        raise PVSInputError(f"--slab-mm must be >= 0 (mm), got {args.slab_mm}", args.mask)
    mask = load_mask(args.mask)
    bg, cso = args.bg_slice, args.cso_slice
    regions = None
    if args.regions:
        reg = load_volume(args.regions)
        check_same_grid(mask, reg)
        regions = np.asarray(reg.data).astype(np.uint8)
    if bg is None or cso is None or (regions is None and args.image and not args.whole_slice):
        from .engine.progress import run_to_end
        from .engine.registration.atlas import atlas_regions, load_atlas, locate_rating_slices

        if not args.image:
            raise PVSInputError("give --bg-slice and --cso-slice, or --image to place them by atlas registration",
                                args.mask)
        image = load_volume(args.image)
        check_same_grid(mask, image)
        atlas = load_atlas()
        placed = run_to_end(locate_rating_slices(image, atlas=atlas))
        bg = placed.bg if bg is None else bg
        cso = placed.cso if cso is None else cso
        print(f"rating slices placed by atlas registration: BG {placed.bg}, CSO {placed.cso}", file=sys.stderr)
        if regions is None and not args.whole_slice:
            regions = atlas_regions(image, placed.transform, atlas)
    areas = {}
    if regions is not None and not args.whole_slice:
        from .engine.registration.atlas import rating_areas

        areas = dict(zip(("bg_area", "cso_area"), rating_areas(regions, mask.voxel_size), strict=True))
    counts = count_rating_slices(mask, bg, cso, midline_x_mm=args.midline_x_mm, slab_mm=args.slab_mm, **areas)
    if args.json:
        print(json.dumps([counts.bg.__dict__, counts.cso.__dict__, counts.volume.__dict__], indent=1))
    else:
        print(f"{'region':6} {'slice':>5} {'left':>5} {'right':>5} {'total':>5} {'grade':>5} {'area mm2':>9} "
              f"{'on slice':>8} {'slab':>4}  counted within")
        for c in (counts.bg, counts.cso):
            print(f"{c.region:6} {c.slice_index:5d} {c.left:5d} {c.right:5d} {c.total:5d} {c.grade:5d} "
                  f"{c.area_mm2:9.1f} {c.on_slice:8d} {c.slab_slices:4d}  {c.within}")
        print(f"whole volume: {counts.volume.n_components} PVS (3D components), "
              f"{counts.volume.volume_mm3:.1f} mm^3")
    if args.csv:
        write_counts_csv(counts, args.csv)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``napari-pvs`` (sub-commands simulate, train, segment, count)."""
    p = argparse.ArgumentParser(
        prog="napari-pvs",
        description="Perivascular-space (PVS) tools: simulate PVS on real T2 scans, train a "
                    "segmentation network, segment PVS, count them on the BG/CSO rating slices.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="insert realistic synthetic PVS into a real T2 image",
                       description="Insert synthetic PVS (Bernal et al. 2022 digital reference object) "
                                   "into a real T2 image; writes OUT_DIR/image.nii.gz, mask.nii.gz, "
                                   "fraction.nii.gz and pvs.csv.")
    s.add_argument("image", help="T2-weighted NIfTI image (.nii/.nii.gz)")
    s.add_argument("-o", "--out-dir", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--lesion-mask", help="expert lesion mask on the image grid: no PVS are placed there")
    s.add_argument("--n-bg", type=int, help="number of basal-ganglia PVS")
    s.add_argument("--n-cso", type=int, help="number of centrum-semiovale PVS")
    s.set_defaults(func=cmd_simulate)

    t = sub.add_parser("train", help="train a PVS segmentation network",
                       description="Train a 2D PVS segmentation network on image/mask pairs; the best "
                                   "checkpoint (highest validation DSC) is written to -o.")
    t.add_argument("--image", action="append", metavar="IMAGE", help="T2 image (repeat for more volumes)")
    t.add_argument("--mask", action="append", metavar="MASK", help="PVS mask of the preceding --image")
    t.add_argument("--project", metavar="DIR",
                   help="train on an annotation project instead: only slices marked done/reviewed are "
                        "labelled, the rest are left out of the loss; the run is recorded in the project")
    t.add_argument("--versions", choices=("latest", "reviewed", "consensus"), default="latest",
                   help="with --project: which version of each image (default latest)")
    t.add_argument("--model", default="mfnsde",
                   help="model name: mfnsde (default), unet, gloms, cmgraph (needs napari-pvs[text]), dynunet, "
                        "or frangi (fits a threshold)")
    t.add_argument("--context-slices", type=int, default=0,
                   help="2.5D: neighbouring slices on each side given as extra channels (default 0: 2D)")
    t.add_argument("--optimizer", choices=("adagrad", "adam", "sgd"),
                   help="default: the model's own (Adagrad for mfnsde/unet, Adam for gloms/cmgraph, "
                        "nnU-Net's Nesterov SGD for dynunet)")
    t.add_argument("--lr-schedule", choices=("constant", "poly"), help="default: the model's own")
    t.add_argument("--init-from", metavar="CKPT",
                   help="fine-tune: start from this checkpoint's weights (same model and config)")
    t.add_argument("-o", "--output", required=True, metavar="CKPT", help="checkpoint file to write (e.g. model.pt)")
    t.add_argument("--epochs", type=int, default=100, help="epochs (default 100)")
    t.add_argument("--steps-per-epoch", type=int, default=50, help="optimisation steps per epoch (default 50)")
    t.add_argument("--batch-size", type=int, default=4, help="mini-batch size (default 4, as in the paper)")
    t.add_argument("--lr", type=float, help="learning rate (default: the model's own; 0.05 for Adagrad)")
    t.add_argument("--max-minutes", type=float, help="stop after this many minutes")
    t.add_argument("--spacing-mm", type=float, help="in-plane spacing to work at (default: the training images')")
    t.add_argument("--features", type=int, nargs="+", help="channels per level, e.g. 16 32 64 128")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    t.add_argument("--log-every", type=int, default=10, help="print every N steps")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("segment", help="segment PVS in a T2 image (shipped default model or a checkpoint)",
                       description="Segment PVS; the mask (and probability map) get the input's affine and header.")
    g.add_argument("image", help="T2-weighted NIfTI image")
    g.add_argument("-m", "--model", metavar="CKPT",
                   help="checkpoint from 'napari-pvs train' (default: the shipped default model)")
    g.add_argument("-o", "--output", required=True, metavar="MASK", help="output mask (.nii.gz)")
    g.add_argument("--prob", metavar="PROB", help="also write the probability map (.nii.gz)")
    g.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    g.add_argument("--agreement", metavar="MAP",
                   help="ensemble checkpoints (the default model is one): also write how many members call "
                        "each voxel PVS (uint8 0..n, .nii.gz; the same pass, no extra run). Voxels > 0 outside "
                        "the mask are the uncertain ones; 'napari-pvs count MAP' counts what any member finds")
    g.add_argument("--batch-size", type=int, default=8, help="slices per forward pass")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda")
    g.set_defaults(func=cmd_segment)

    c = sub.add_parser("count", help="count PVS on the BG and CSO rating slices",
                       description="Count PVS (2D connected components) per hemisphere on the basal-ganglia "
                                   "and centrum-semiovale axial slices, with the Potter grade (0-4), "
                                   "plus the whole-volume count and volume. With atlas regions (--image or "
                                   "--regions) the BG slice counts only PVS in the basal ganglia and the CSO "
                                   "slice only those in the white matter; 'on slice' gives all of them.")
    c.add_argument("mask", help="binary PVS mask (.nii/.nii.gz)")
    c.add_argument("--bg-slice", type=int, help="axial slice index (0-based) of the BG rating slice "
                                                 "(default: placed by atlas registration of --image)")
    c.add_argument("--cso-slice", type=int, help="axial slice index (0-based) of the CSO rating slice "
                                                  "(default: placed by atlas registration of --image)")
    c.add_argument("--image", help="the T2 the mask was drawn on: the rating slices a --bg-slice/--cso-slice "
                                   "does not give are placed by registering the atlas to it (locate-slices)")
    c.add_argument("--regions", metavar="NII",
                   help="atlas regions on the mask's grid (from 'locate-slices --regions-out'): count the BG slice "
                        "within the basal ganglia and the CSO slice within the white matter (the default when "
                        "--image is given)")
    c.add_argument("--whole-slice", action="store_true",
                   help="count every PVS on the rating slices, not only those in the atlas BG / white matter")
    c.add_argument("--midline-x-mm", type=float, help="world x (RAS mm) of the mid-sagittal plane "
                                                       "(default: centre of the field of view)")
    c.add_argument("--slab-mm", type=float, default=0.0, metavar="MM",
                   help="rating slab thickness in mm for thin-slice scans: count on the union of the slices "
                        "within half of it (e.g. 3: three slices of a 1 mm scan, one of a 3.3 mm scan; "
                        "default 0: the rating slice alone)")
    c.add_argument("--csv", help="write the table to this CSV file")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.set_defaults(func=cmd_count)

    from .cli_al import add_al_parser
    from .cli_project import add_project_parser
    from .cli_compare import add_compare_parser, add_ensemble_parser
    from .cli_registration import add_registration_parsers

    add_registration_parsers(sub)
    add_compare_parser(sub)
    add_ensemble_parser(sub)
    add_project_parser(sub)
    add_al_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-pvs`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from .engine.errors import PVSInputError

    try:
        return int(args.func(args) or 0)
    except PVSInputError as exc:
        return _err(str(exc))
    except KeyboardInterrupt:
        return _err("interrupted")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
