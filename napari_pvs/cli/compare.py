"""``napari-pvs compare``: several models on one scan, with metrics against a reference (the
*compare* use case, :mod:`napari_pvs.engine.usecases.comparison`); ``napari-pvs ensemble``:
checkpoints of one family combined into one."""

from __future__ import annotations

from ._common import add_checkpoint_arg, add_device_arg, add_json_arg, run_with_progress, say, write_json

__all__ = ["add_parsers"]


def cmd_compare(args) -> int:
    from ..engine.comparison import METRIC_COLUMNS, write_metrics_csv
    from ..engine.errors import PVSInputError
    from ..engine.io import load_mask, load_volume
    from ..engine.usecases import compare_job, comparison_models

    if args.output and not str(args.output).lower().endswith(".csv"):
        raise PVSInputError("the metrics table must be a .csv file", args.output)
    image = load_volume(args.image)
    models = comparison_models(image, args.checkpoint or [], frangi=args.frangi, modality=args.modality,
                               device=args.device)
    if len(models) < 2:
        say("note: one model only; add -m CKPT or --frangi to compare")
    reference = load_mask(args.reference, reference=image) if args.reference else None
    result = run_with_progress(compare_job(image, models, reference=reference, threshold=args.threshold),
                               "comparing")
    rows = result.metrics(args.threshold)
    cols = ["model", "parameters", "inference_s"] + (list(METRIC_COLUMNS) if reference is not None else ["n_pred"])
    if args.json:
        write_json(rows, args.json)
    if args.json != "-":
        print("\t".join(cols))
        for r in rows:
            print("\t".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    if args.output:
        write_metrics_csv(args.output, rows)
        say(f"wrote {args.output}")
    return 0


def cmd_ensemble(args) -> int:
    from ..engine.models.checkpoint import ensemble_checkpoint, read_checkpoint

    out = ensemble_checkpoint(args.checkpoints, args.output)
    cfg = read_checkpoint(out)["model_config"]
    print(f"wrote {out}: ensemble of {cfg['n_members']} {cfg['member']} networks "
          f"({out.stat().st_size / 2**20:.1f} MiB; inference runs every member)")
    return 0


def add_parsers(sub, parent) -> None:
    c = sub.add_parser("compare", parents=[parent],
                       help="compare PVS models on one image (metrics against a reference mask)",
                       description="Segment IMAGE with every model (-m, repeatable; --frangi adds the "
                                   "unfitted Frangi baseline) and print one row per model: parameters, "
                                   "inference seconds and, with --reference, voxel DSC, sensitivity, PPV, "
                                   "detection F1 (components matched at IoU > 0.1) and the component "
                                   "counts. Without -m the shipped default model is used.")
    c.add_argument("image", help="T2-weighted NIfTI image (T1 for T1 models)")
    add_checkpoint_arg(c, "checkpoint (repeat for more models)", repeat=True)
    c.add_argument("--frangi", action="store_true", help="add the Frangi vesselness baseline")
    c.add_argument("--modality", choices=("T2", "T1"), default="T2",
                   help="contrast of IMAGE for the Frangi baseline (T2: bright PVS, default)")
    c.add_argument("--reference", metavar="MASK", help="reference PVS mask on the image grid")
    c.add_argument("-o", "--output", metavar="CSV", help="write the metrics table to this CSV file")
    add_json_arg(c, "the metrics rows")
    c.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    add_device_arg(c)
    c.set_defaults(func=cmd_compare)

    e = sub.add_parser("ensemble", parents=[parent],
                       help="combine checkpoints of one network family into one (mean probability)",
                       description="Write one checkpoint holding every CKPT (same family, config, spacing, "
                                   "patch size and normalisation, e.g. one recipe trained with different "
                                   "--seed values). segment, compare and the widgets use it like any "
                                   "model: the probability is the mean of the members'. Fine-tuning from "
                                   "it starts from the first member.")
    e.add_argument("checkpoints", nargs="+", metavar="CKPT", help="two or more checkpoints")
    e.add_argument("-o", "--output", required=True, metavar="CKPT", help="output checkpoint file (.pt)")
    e.set_defaults(func=cmd_ensemble)
