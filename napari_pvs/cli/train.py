"""``napari-pvs train``: a PVS segmentation model from image/mask pairs or a project
(the *train* use case, :mod:`napari_pvs.engine.usecases.training`)."""

from __future__ import annotations

from ._common import run_with_progress

__all__ = ["add_parsers"]

#: the families offered for training (checked by the engine when the command runs)
MODEL_HELP = ("network family: mfnsde (default), unet, gloms, cmgraph (needs napari-pvs[text]), dynunet, "
              "or frangi (no weights: fits its threshold)")


def _config(args):
    from ..engine.errors import PVSInputError
    from ..engine.training import TrainConfig

    kwargs = dict(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                  max_minutes=args.max_minutes, seed=args.seed, device=args.device, spacing_mm=args.spacing_mm,
                  learning_rate=args.lr, optimizer=args.optimizer, lr_schedule=args.lr_schedule)
    model_config = {}
    if args.features:
        model_config["features"] = tuple(args.features)
    if args.context_slices:
        model_config["context_slices"] = args.context_slices
    if model_config:
        kwargs["model_config"] = model_config
    try:
        return TrainConfig.for_model(args.model, **kwargs)
    except ValueError as exc:
        raise PVSInputError(str(exc)) from None


def cmd_train(args) -> int:
    from ..engine.errors import PVSInputError
    from ..engine.io import check_output_paths, check_scan, load_mask, load_volume
    from ..engine.usecases import TrainRequest, train_job

    images, masks = args.image or [], args.mask or []
    if args.project and (images or masks):
        raise PVSInputError("give either --project or --image/--mask pairs, not both")
    if not args.project and not images:
        raise PVSInputError("nothing to train on: give --image/--mask pairs or --project DIR")
    if len(images) != len(masks):
        raise PVSInputError(f"{len(images)} --image but {len(masks)} --mask; give one --mask after each --image")
    cfg = _config(args)
    check_output_paths([args.output], [*images, *masks, args.init_from])
    vols = [check_scan(load_volume(p)) for p in images]
    mvols = [load_mask(m, reference=v) for m, v in zip(masks, vols, strict=True)]
    project = None
    if args.project:
        from ..engine.project import Project

        project = Project.open(args.project)
    try:
        request = TrainRequest(cfg, args.output, images=vols, masks=mvols, project=project,
                               versions=args.versions, init_from=args.init_from)
        outcome = run_with_progress(train_job(request), f"training {cfg.model}", every_s=args.log_seconds,
                                    note=lambda ev: ev.summary() if ev.kind in ("start", "epoch") else None)
    finally:
        if project is not None:
            project.close()
    print(outcome.summary())
    if outcome.result.diverged:       # the last good checkpoint is kept; say so and fail the command
        import sys

        print("napari-pvs: error: training diverged; kept the last good checkpoint", file=sys.stderr)
        return 1
    return 0


def add_parsers(sub, parent) -> None:
    t = sub.add_parser("train", parents=[parent], help="train a PVS segmentation network",
                       description="Train a 2D (or 2.5D) PVS segmentation network on image/mask pairs or on an "
                                   "annotation project; the best checkpoint (highest validation DSC) goes to -o.")
    t.add_argument("--image", action="append", metavar="IMAGE", help="T2 image (repeat for more volumes)")
    t.add_argument("--mask", action="append", metavar="MASK", help="PVS mask of the preceding --image")
    t.add_argument("--project", metavar="DIR",
                   help="train on an annotation project instead: only slices marked done/reviewed are "
                        "labelled, the rest are left out of the loss; the run is recorded in the project")
    t.add_argument("--versions", choices=("latest", "reviewed", "consensus"), default="latest",
                   help="with --project: which version of each image (default latest)")
    t.add_argument("--model", default="mfnsde", help=MODEL_HELP)
    t.add_argument("--context-slices", type=int, default=0,
                   help="2.5D: neighbouring slices on each side given as extra channels (default 0: 2D)")
    t.add_argument("--optimizer", choices=("adagrad", "adam", "sgd"),
                   help="default: the model's own (Adagrad for mfnsde/unet, Adam for gloms/cmgraph, "
                        "nnU-Net's Nesterov SGD for dynunet)")
    t.add_argument("--lr-schedule", choices=("constant", "poly"), help="default: the model's own")
    t.add_argument("--init-from", metavar="CKPT",
                   help="fine-tune: start from this checkpoint's weights (same model and config)")
    t.add_argument("-o", "--output", required=True, metavar="CKPT", help="checkpoint file to write (.pt)")
    t.add_argument("--epochs", type=int, default=100, help="epochs (default 100)")
    t.add_argument("--steps-per-epoch", type=int, default=50, help="optimisation steps per epoch (default 50)")
    t.add_argument("--batch-size", type=int, default=4, help="mini-batch size (default 4, as in the paper)")
    t.add_argument("--lr", type=float, help="learning rate (default: the model's own; 0.05 for Adagrad)")
    t.add_argument("--max-minutes", type=float, help="stop after this many minutes")
    t.add_argument("--spacing-mm", type=float, help="in-plane spacing to work at (default: the training images')")
    t.add_argument("--features", type=int, nargs="+", help="channels per level, e.g. 16 32 64 128")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    t.add_argument("--log-seconds", type=float, default=10.0, metavar="S",
                   help="without a terminal: a progress line every S seconds (default 10)")
    t.set_defaults(func=cmd_train)
