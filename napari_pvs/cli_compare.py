"""``napari-pvs compare``: several models on one image, with metrics against a reference
(:mod:`napari_pvs.engine.comparison`); the command behind the "Compare models" widget.
``napari-pvs ensemble``: several checkpoints of one family combined into one (the mean of
their probabilities, :func:`~napari_pvs.engine.checkpoint.ensemble_checkpoint`)."""

from __future__ import annotations

import sys

__all__ = ["add_compare_parser", "add_ensemble_parser"]


def cmd_compare(args) -> int:
    from .cli_registration import progress_printer
    from .engine.models.checkpoint import load_model
    from .engine.data import default_checkpoint
    from .engine.comparison import METRIC_COLUMNS, compare_iter, frangi_baseline, write_metrics_csv
    from .engine.errors import PVSInputError
    from .engine.inference import pick_device
    from .engine.io import load_mask, load_volume
    from .engine.preprocess import inplane_spacing
    from .engine.progress import run_to_end

    image = load_volume(args.image)
    device = pick_device(args.device)
    models = [load_model(p, device=device) for p in (args.model or [])]
    if args.frangi:
        models.append(frangi_baseline(min(inplane_spacing(image)), modality=args.modality))
    if not models:
        models = [load_model(default_checkpoint(), device=device)]
    if len(models) < 2:
        print("note: one model only; add -m CKPT or --frangi to compare", file=sys.stderr)
    reference = load_mask(args.reference, reference=image) if args.reference else None
    if args.csv and not str(args.csv).lower().endswith(".csv"):
        raise PVSInputError("the metrics table must be a .csv file", args.csv)
    result = run_to_end(compare_iter(image, models, reference=reference, device=device,
                                     threshold=args.threshold), progress_printer())
    rows = result.metrics(args.threshold)
    cols = ["model", "parameters", "inference_s"] + (list(METRIC_COLUMNS) if reference is not None else ["n_pred"])
    print("\t".join(cols))
    for r in rows:
        print("\t".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    if args.csv:
        write_metrics_csv(args.csv, rows)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0


def add_compare_parser(sub) -> None:
    """Add ``compare`` to the ``napari-pvs`` sub-parsers."""
    c = sub.add_parser("compare", help="compare PVS models on one image (metrics against a reference mask)",
                       description="Segment IMAGE with every model (-m, repeatable; --frangi adds the "
                                   "unfitted Frangi baseline) and print one row per model: parameters, "
                                   "inference seconds and, with --reference, voxel DSC, sensitivity, PPV, "
                                   "detection F1 (components matched at IoU > 0.1) and the component "
                                   "counts. Without -m the shipped default model is used.")
    c.add_argument("image", help="T2-weighted NIfTI image (T1 for T1 models)")
    c.add_argument("-m", "--model", action="append", metavar="CKPT", help="checkpoint (repeat for more models)")
    c.add_argument("--frangi", action="store_true", help="add the Frangi vesselness baseline")
    c.add_argument("--modality", choices=("T2", "T1"), default="T2",
                   help="contrast of IMAGE for the Frangi baseline (T2: bright PVS, default)")
    c.add_argument("--reference", metavar="MASK", help="reference PVS mask on the image grid")
    c.add_argument("--csv", metavar="OUT", help="write the table as CSV")
    c.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    c.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    c.set_defaults(func=cmd_compare)


def cmd_ensemble(args) -> int:
    from .engine.models.checkpoint import ensemble_checkpoint, read_checkpoint

    out = ensemble_checkpoint(args.checkpoints, args.output)
    cfg = read_checkpoint(out)["model_config"]
    print(f"wrote {out}: ensemble of {cfg['n_members']} {cfg['member']} networks "
          f"({out.stat().st_size / 2**20:.1f} MiB; inference runs every member)")
    return 0


def add_ensemble_parser(sub) -> None:
    """Add ``ensemble`` to the ``napari-pvs`` sub-parsers."""
    e = sub.add_parser("ensemble", help="combine checkpoints of one network family into one (mean probability)",
                       description="Write one checkpoint holding every CKPT (same family, config, spacing, "
                                   "patch size and normalisation, e.g. one recipe trained with different "
                                   "--seed values). segment, compare and the widgets use it like any "
                                   "model: the probability is the mean of the members'. Fine-tuning from "
                                   "it starts from the first member.")
    e.add_argument("checkpoints", nargs="+", metavar="CKPT", help="two or more checkpoints")
    e.add_argument("-o", "--output", required=True, help="output checkpoint (.pt)")
    e.set_defaults(func=cmd_ensemble)
