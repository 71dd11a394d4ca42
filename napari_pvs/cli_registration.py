"""``napari-pvs register`` and ``napari-pvs locate-slices``: registration and atlas-placed
BG/CSO rating slices (:mod:`napari_pvs.engine.registration`)."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_registration_parsers", "progress_printer"]



def progress_printer(every_s: float = 2.0):
    """An ``on_event`` callback printing an event's summary to stderr at most every
    ``every_s`` seconds (and always the last one)."""
    import time

    last = [0.0]

    def show(ev) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s or getattr(ev, "fraction", None) == 1.0:
            last[0] = now
            print(ev.summary(), file=sys.stderr)

    return show


def cmd_register(args) -> int:
    import numpy as np

    from .cli import _check_nifti_out
    from .engine.errors import PVSInputError
    from .engine.io import load_volume, save_volume
    from .engine.progress import run_to_end
    from .engine.registration import register

    _check_nifti_out(args.output, "the warped image")
    if bool(args.labels) != bool(args.labels_out):
        raise PVSInputError("--labels and --labels-out go together", args.labels or args.labels_out)
    if args.labels_out:
        _check_nifti_out(args.labels_out, "the warped labels")
    fixed, moving = load_volume(args.fixed), load_volume(args.moving)
    labels = load_volume(args.labels) if args.labels else None
    res = run_to_end(register(fixed, moving, method=args.method, labels=labels, brain_masks=args.brain_masks,
                              grid_mm=args.grid_mm, model=args.model), progress_printer())
    save_volume(args.output, res.warped.data, fixed, dtype="float32")
    msg = f"registered {args.moving} to {args.fixed} ({args.method}, {res.seconds:.1f} s); wrote {args.output}"
    if res.labels is not None:
        data = res.labels.data
        save_volume(args.labels_out, data if data.dtype.kind in "iu" else np.rint(data).astype(np.int32), fixed)
        msg += f" and {args.labels_out}"
    print(msg)
    return 0


def _network(args):
    """The ACSGRegNet of ``--model`` for ``--method acsgreg`` (None otherwise)."""
    from .engine.errors import PVSInputError

    if args.method != "acsgreg":
        return None
    if not args.model:
        raise PVSInputError("--method acsgreg needs --model CKPT (from napari-pvs train-registration)")
    from .engine.models.checkpoint import load_model

    return load_model(args.model, expected_model="acsgreg").model


def cmd_train_registration(args) -> int:
    from .cli import _err
    from .engine.models import ACSGRegConfig
    from .engine.progress import run_to_end
    from .engine.registration.network import train_acsgreg
    from .engine.training.loop import LoopConfig

    if not args.output.endswith(".pt"):
        return _err(f"{args.output}: the checkpoint must be a .pt file")
    loop = LoopConfig(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, optimizer="adam",
                      learning_rate=args.lr, max_minutes=args.max_minutes, seed=args.seed, device=args.device)
    cfg = ACSGRegConfig(grid_mm=args.grid_mm)
    res = run_to_end(train_acsgreg(args.output, model_config=cfg, loop_config=loop), progress_printer(5.0))
    print(f"trained ACSGRegNet for {res.steps_done} steps in {res.seconds:.0f} s ({res.stop_reason}); best "
          f"validation Dice {res.best_val_metric:.3f}; wrote {res.checkpoint}")
    return 0


def cmd_locate_slices(args) -> int:
    from .cli import _check_nifti_out
    from .engine.io import load_volume, save_volume
    from .engine.progress import run_to_end
    from .engine.registration import ClassicalConfig
    from .engine.registration.atlas import atlas_regions, load_atlas, locate_rating_slices

    if args.regions_out:
        _check_nifti_out(args.regions_out, "the regions image")
    image = load_volume(args.image)
    cfg = ClassicalConfig(deformable=args.method == "classical", grid_mm=args.grid_mm)
    net = _network(args)
    atlas = load_atlas()
    rs = run_to_end(locate_rating_slices(image, atlas=atlas, config=cfg, network=net), progress_printer())
    print(f"BG slice {rs.bg}  (anterior commissure at index {rs.bg_index:.2f}, "
          f"RAS {', '.join(f'{v:.1f}' for v in rs.ac_mm)} mm)")
    print(f"CSO slice {rs.cso}  (10 mm above the lateral ventricles' top at RAS "
          f"{', '.join(f'{v:.1f}' for v in rs.lv_top_mm)} mm; index {rs.cso_index:.2f})")
    print(f"axial axis {rs.axial_axis} of (Z, Y, X), {rs.slice_mm:.2f} mm per slice; {rs.method} atlas "
          f"registration, {rs.seconds:.1f} s")
    if args.json:
        rs.write_json(args.json, image=str(Path(args.image)))
    if args.regions_out:
        save_volume(args.regions_out, atlas_regions(image, rs.transform, atlas), image, dtype="uint8")
    return 0


def add_registration_parsers(sub) -> None:
    """Add ``register`` and ``locate-slices`` to the ``napari-pvs`` sub-parsers."""
    r = sub.add_parser("register", help="register MOVING to FIXED and write MOVING warped onto FIXED's grid",
                       description="Register two scans (same or different contrast: mutual information) and "
                                   "write the moving scan resampled onto the fixed scan's grid. 'affine' is "
                                   "9 then 12 degrees of freedom; 'classical' adds a B-spline (SimpleITK).")
    r.add_argument("fixed", help="fixed NIfTI image (its grid is the output's)")
    r.add_argument("moving", help="moving NIfTI image")
    r.add_argument("-o", "--output", required=True, metavar="WARPED", help="warped moving image (.nii.gz)")
    r.add_argument("--method", choices=("affine", "classical", "acsgreg"), default="affine",
                   help="affine (default; right for two scans of one head: T1 -> T2, visit to visit), "
                        "classical = affine + B-spline (different brains), or acsgreg (a trained network, --model)")
    r.add_argument("--model", metavar="CKPT", help="ACSGRegNet checkpoint for --method acsgreg")
    r.add_argument("--labels", metavar="L", help="label map on MOVING's grid to carry across (nearest neighbour)")
    r.add_argument("--labels-out", metavar="OUT", help="where to write the warped labels")
    r.add_argument("--grid-mm", type=float, default=2.0, help="working grid spacing in mm (default 2)")
    r.add_argument("--brain-masks", action="store_true",
                   help="register the brains only (for a skull-stripped image against one with skull; default: "
                        "whole images, which is better for two scans of one head)")
    r.set_defaults(func=cmd_register)

    s = sub.add_parser("locate-slices", help="place the BG and CSO rating slices by registering an atlas",
                       description="Register the MNI template with the Allen atlas labels to IMAGE and print the "
                                   "BG (through the anterior commissure) and CSO (10 mm above the top of the "
                                   "lateral ventricles) rating slices as 0-based indices along the axial axis.")
    s.add_argument("image", help="T2 (or T1, FLAIR) NIfTI image")
    s.add_argument("--json", metavar="OUT", help="write the slices and landmarks (mm) to this JSON file")
    s.add_argument("--regions-out", metavar="NII",
                   help="write the atlas regions on the image grid (1 BG, 2 white matter, 3 lateral ventricles, "
                        "4 anterior commissure)")
    s.add_argument("--method", choices=("affine", "classical", "acsgreg"), default="affine",
                   help="affine (default: enough for slice-thick landmarks), classical (+ B-spline) or acsgreg "
                        "(a trained network, --model)")
    s.add_argument("--model", metavar="CKPT", help="ACSGRegNet checkpoint for --method acsgreg")
    s.add_argument("--grid-mm", type=float, default=2.0, help="working grid spacing in mm (default 2)")
    s.set_defaults(func=cmd_locate_slices)

    t = sub.add_parser("train-registration", help="train ACSGRegNet on synthetic pairs from the shared label maps",
                       description="Train the ACSGRegNet registration network (Gao and Zheng, ICIMH 2022) on "
                                   "image pairs synthesised from the shared SynthSeg label maps (random shapes "
                                   "and contrasts, SynthMorph-style); the best checkpoint (validation Dice) "
                                   "goes to -o.")
    t.add_argument("-o", "--output", required=True, metavar="CKPT", help="checkpoint to write (.pt)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--steps-per-epoch", type=int, default=25)
    t.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    t.add_argument("--max-minutes", type=float, help="stop after this many minutes")
    t.add_argument("--grid-mm", type=float, default=3.0, help="network grid spacing in mm (default 3)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    t.set_defaults(func=cmd_train_registration)
