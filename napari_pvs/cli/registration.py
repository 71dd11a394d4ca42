"""``napari-pvs register`` and ``napari-pvs train-registration``: registration of two scans
(:mod:`napari_pvs.engine.registration`) and training of the ACSGRegNet network."""

from __future__ import annotations

from ._common import check_nifti_out, run_with_progress

__all__ = ["add_parsers"]


def cmd_register(args) -> int:
    import numpy as np

    from ..engine.errors import PVSInputError
    from ..engine.io import load_volume, save_volume
    from ..engine.registration import register

    check_nifti_out(args.output, "the warped image")
    if bool(args.labels) != bool(args.labels_out):
        raise PVSInputError("--labels and --labels-out go together", args.labels or args.labels_out)
    if args.labels_out:
        check_nifti_out(args.labels_out, "the warped labels")
    fixed, moving = load_volume(args.fixed), load_volume(args.moving)
    labels = load_volume(args.labels) if args.labels else None
    res = run_with_progress(register(fixed, moving, method=args.method, labels=labels, brain_masks=args.brain_masks,
                                     grid_mm=args.grid_mm, model=args.checkpoint), "registering")
    save_volume(args.output, res.warped.data, fixed, dtype="float32")
    msg = f"registered {args.moving} to {args.fixed} ({args.method}, {res.seconds:.1f} s); wrote {args.output}"
    if res.labels is not None:
        data = res.labels.data
        save_volume(args.labels_out, data if data.dtype.kind in "iu" else np.rint(data).astype(np.int32), fixed)
        msg += f" and {args.labels_out}"
    print(msg)
    return 0


def cmd_train_registration(args) -> int:
    from ..engine.errors import PVSInputError
    from ..engine.models import ACSGRegConfig
    from ..engine.registration.network import train_acsgreg
    from ..engine.training.loop import LoopConfig

    if not args.output.endswith(".pt"):
        raise PVSInputError("the checkpoint must be a .pt file", args.output)
    loop = LoopConfig(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, optimizer="adam",
                      learning_rate=args.lr, max_minutes=args.max_minutes, seed=args.seed, device=args.device)
    cfg = ACSGRegConfig(grid_mm=args.grid_mm)
    res = run_with_progress(train_acsgreg(args.output, model_config=cfg, loop_config=loop), "training ACSGRegNet",
                            note=lambda ev: ev.summary() if getattr(ev, "kind", "") == "epoch" else None)
    print(f"trained ACSGRegNet for {res.steps_done} steps in {res.seconds:.0f} s ({res.stop_reason}); best "
          f"validation Dice {res.best_val_metric:.3f}; wrote {res.checkpoint}")
    return 0


def add_parsers(sub, parent) -> None:
    r = sub.add_parser("register", parents=[parent],
                       help="register MOVING to FIXED and write MOVING warped onto FIXED's grid",
                       description="Register two scans (same or different contrast: mutual information) and "
                                   "write the moving scan resampled onto the fixed scan's grid. 'affine' is "
                                   "9 then 12 degrees of freedom; 'classical' adds a B-spline (SimpleITK).")
    r.add_argument("fixed", help="fixed NIfTI image (its grid is the output's)")
    r.add_argument("moving", help="moving NIfTI image")
    r.add_argument("-o", "--output", required=True, metavar="WARPED", help="warped moving image file (.nii.gz)")
    r.add_argument("--method", choices=("affine", "classical", "acsgreg"), default="affine",
                   help="affine (default; right for two scans of one head: T1 -> T2, visit to visit), "
                        "classical = affine + B-spline (different brains), or acsgreg (a trained network, -m)")
    r.add_argument("-m", "--checkpoint", metavar="CKPT", help="ACSGRegNet checkpoint for --method acsgreg")
    r.add_argument("--labels", metavar="L", help="label map on MOVING's grid to carry across (nearest neighbour)")
    r.add_argument("--labels-out", metavar="OUT", help="where to write the warped labels")
    r.add_argument("--grid-mm", type=float, default=2.0, help="working grid spacing in mm (default 2)")
    r.add_argument("--brain-masks", action="store_true",
                   help="register the brains only (for a skull-stripped image against one with skull; default: "
                        "whole images, which is better for two scans of one head)")
    r.set_defaults(func=cmd_register)

    t = sub.add_parser("train-registration", parents=[parent],
                       help="train ACSGRegNet on synthetic pairs from the shared label maps",
                       description="Train the ACSGRegNet registration network (Gao and Zheng, ICIMH 2022) on "
                                   "image pairs synthesised from the shared SynthSeg label maps (random shapes "
                                   "and contrasts, SynthMorph-style); the best checkpoint (validation Dice) "
                                   "goes to -o.")
    t.add_argument("-o", "--output", required=True, metavar="CKPT", help="checkpoint file to write (.pt)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--steps-per-epoch", type=int, default=25)
    t.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    t.add_argument("--max-minutes", type=float, help="stop after this many minutes")
    t.add_argument("--grid-mm", type=float, default=3.0, help="network grid spacing in mm (default 3)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    t.set_defaults(func=cmd_train_registration)
