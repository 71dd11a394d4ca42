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
    res = run_to_end(register(fixed, moving, method=args.method, labels=labels, brain_masks=not args.no_mask,
                              grid_mm=args.grid_mm), progress_printer())
    save_volume(args.output, res.warped.data, fixed, dtype="float32")
    msg = f"registered {args.moving} to {args.fixed} ({args.method}, {res.seconds:.1f} s); wrote {args.output}"
    if res.labels is not None:
        data = res.labels.data
        save_volume(args.labels_out, data if data.dtype.kind in "iu" else np.rint(data).astype(np.int32), fixed)
        msg += f" and {args.labels_out}"
    print(msg)
    return 0


def cmd_locate_slices(args) -> int:
    from .cli import _check_nifti_out
    from .engine.io import load_volume, save_volume
    from .engine.progress import run_to_end
    from .engine.registration import ClassicalConfig
    from .engine.registration.atlas import atlas_regions, locate_rating_slices

    if args.regions_out:
        _check_nifti_out(args.regions_out, "the regions image")
    image = load_volume(args.image)
    cfg = ClassicalConfig(deformable=args.method == "classical", grid_mm=args.grid_mm)
    rs = run_to_end(locate_rating_slices(image, config=cfg), progress_printer())
    print(f"BG slice {rs.bg}  (anterior commissure at index {rs.bg_index:.2f}, "
          f"RAS {', '.join(f'{v:.1f}' for v in rs.ac_mm)} mm)")
    print(f"CSO slice {rs.cso}  (10 mm above the lateral ventricles' top at RAS "
          f"{', '.join(f'{v:.1f}' for v in rs.lv_top_mm)} mm; index {rs.cso_index:.2f})")
    print(f"axial axis {rs.axial_axis} of (Z, Y, X), {rs.slice_mm:.2f} mm per slice; {rs.method} atlas "
          f"registration, {rs.seconds:.1f} s")
    if args.json:
        rs.write_json(args.json, image=str(Path(args.image)))
    if args.regions_out:
        save_volume(args.regions_out, atlas_regions(image, rs.transform), image, dtype="uint8")
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
    r.add_argument("--method", choices=("affine", "classical"), default="classical",
                   help="affine, or classical = affine + B-spline (default)")
    r.add_argument("--labels", metavar="L", help="label map on MOVING's grid to carry across (nearest neighbour)")
    r.add_argument("--labels-out", metavar="OUT", help="where to write the warped labels")
    r.add_argument("--grid-mm", type=float, default=2.0, help="working grid spacing in mm (default 2)")
    r.add_argument("--no-mask", action="store_true", help="register whole images (default: brain masks first)")
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
    s.add_argument("--method", choices=("affine", "classical"), default="affine",
                   help="affine (default: enough for slice-thick landmarks) or classical (+ B-spline)")
    s.add_argument("--grid-mm", type=float, default=2.0, help="working grid spacing in mm (default 2)")
    s.set_defaults(func=cmd_locate_slices)
