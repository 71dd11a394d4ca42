"""``napari-pvs count`` and ``napari-pvs locate-slices``: the BG/CSO rating slices placed by
atlas registration, and PVS counts on them (the *rate a scan* use case,
:mod:`napari_pvs.engine.usecases.rating`)."""

from __future__ import annotations

from pathlib import Path

from ._common import add_json_arg, check_nifti_out, run_with_progress, say, write_json

__all__ = ["add_parsers"]

METHOD_HELP = ("affine (default: enough for slice-thick landmarks), classical (+ B-spline) or acsgreg "
               "(a trained network, -m)")


def _network(args):
    """The ACSGRegNet of ``-m`` for ``--method acsgreg`` (None otherwise)."""
    from ..engine.errors import PVSInputError

    if args.method != "acsgreg":
        return None
    if not args.checkpoint:
        raise PVSInputError("--method acsgreg needs -m CKPT (from napari-pvs train-registration)")
    from ..engine.models.checkpoint import load_model

    return load_model(args.checkpoint, expected_model="acsgreg").model


def cmd_count(args) -> int:
    from ..engine.errors import PVSInputError
    from ..engine.io import check_scan, load_mask, load_volume
    from ..engine.rating import write_counts_csv
    from ..engine.usecases import rate_scan_job

    if args.slab_mm < 0:   # before the mask is read or the atlas registered
        raise PVSInputError(f"--slab-mm must be >= 0 (mm), got {args.slab_mm}", args.mask)
    if args.csv and not str(args.csv).lower().endswith(".csv"):
        raise PVSInputError("the count table must be a .csv file", args.csv)
    mask = load_mask(args.mask, any_label=True)   # an agreement map (0..n) counts what any member finds
    regions = load_volume(args.regions) if args.regions else None
    need_image = args.bg_slice is None or args.cso_slice is None
    if need_image and not args.image:
        raise PVSInputError("give --bg-slice and --cso-slice, or --image to place them by atlas registration",
                            args.mask)
    image = check_scan(load_volume(args.image, series=args.series)) if args.image else None
    gen = rate_scan_job(mask, image, bg_slice=args.bg_slice, cso_slice=args.cso_slice, regions=regions,
                        whole_slice=args.whole_slice, midline_x_mm=args.midline_x_mm, slab_mm=args.slab_mm,
                        method=args.method, network=_network(args))
    rating = run_with_progress(gen, "rating")
    counts = rating.counts
    if rating.placement is not None:
        rs = rating.placement.slices
        say(f"rating slices placed by atlas registration: BG {rs.bg}, CSO {rs.cso}")
    if args.json:
        write_json({"bg": counts.bg.__dict__, "cso": counts.cso.__dict__, "volume": counts.volume.__dict__,
                    "placement": None if rating.placement is None else rating.placement.slices.as_dict()},
                   args.json)
    if args.json != "-":
        print(f"{'region':6} {'slice':>5} {'left':>5} {'right':>5} {'total':>5} {'grade':>5} {'area mm2':>9} "
              f"{'on slice':>8} {'slab':>4}  counted within; split at")
        for c in (counts.bg, counts.cso):
            print(f"{c.region:6} {c.slice_index:5d} {c.left:5d} {c.right:5d} {c.total:5d} {c.grade:5d} "
                  f"{c.area_mm2:9.1f} {c.on_slice:8d} {c.slab_slices:4d}  {c.within}; {c.split_at} midline")
        print(f"whole volume: {counts.volume.n_components} PVS (3D components), "
              f"{counts.volume.volume_mm3:.1f} mm^3")
    if args.csv:
        write_counts_csv(counts, args.csv)
    if args.derivative:
        say(f"wrote {rating.write_derivative(args.derivative, args.image or args.mask)}")
    return 0


def cmd_locate_slices(args) -> int:
    from ..engine.io import check_output_paths, check_scan, load_volume, save_volume
    from ..engine.usecases import place_rating_slices_job

    if args.output:
        check_nifti_out(args.output, "the regions image")
    check_output_paths([args.output], [args.image])
    image = check_scan(load_volume(args.image, series=args.series))
    placement = run_with_progress(place_rating_slices_job(image, method=args.method, grid_mm=args.grid_mm,
                                                          network=_network(args), with_regions=bool(args.output)),
                                  "registering the atlas")
    rs = placement.slices
    print(f"BG slice {rs.bg}  (anterior commissure at index {rs.bg_index:.2f}, "
          f"RAS {', '.join(f'{v:.1f}' for v in rs.ac_mm)} mm)")
    print(f"CSO slice {rs.cso}  (10 mm above the lateral ventricles' top at RAS "
          f"{', '.join(f'{v:.1f}' for v in rs.lv_top_mm)} mm; index {rs.cso_index:.2f})")
    print(f"axial axis {rs.axial_axis} of (Z, Y, X), {rs.slice_mm:.2f} mm per slice; {rs.method} atlas "
          f"registration, {rs.seconds:.1f} s")
    if args.json:
        write_json({**rs.as_dict(), "image": str(Path(args.image))}, args.json)
    if args.output:
        save_volume(args.output, placement.regions, image, dtype="uint8")
    return 0


def add_parsers(sub, parent) -> None:
    c = sub.add_parser("count", parents=[parent], help="count PVS on the BG and CSO rating slices",
                       description="Count PVS (2D connected components) per hemisphere on the basal-ganglia and "
                                   "centrum-semiovale axial slices, with the Potter grade (0-4), plus the "
                                   "whole-volume count and volume. With atlas regions (--image or --regions) the "
                                   "BG slice counts only PVS in the basal ganglia and the CSO slice only those in "
                                   "the white matter; 'on slice' gives all of them. With --image, left and right "
                                   "split at the registered atlas midline.")
    c.add_argument("mask", help="binary PVS mask (.nii/.nii.gz)")
    c.add_argument("--bg-slice", type=int, help="axial slice index (0-based) of the BG rating slice "
                                                 "(default: placed by atlas registration of --image)")
    c.add_argument("--cso-slice", type=int, help="axial slice index (0-based) of the CSO rating slice "
                                                  "(default: placed by atlas registration of --image)")
    c.add_argument("--image", help="the T2 the mask was drawn on: the rating slices a --bg-slice/--cso-slice "
                                   "does not give are placed by registering the atlas to it (locate-slices)")
    c.add_argument("--regions", metavar="NII",
                   help="atlas regions on the mask's grid (from 'locate-slices -o'): count the BG slice within the "
                        "basal ganglia and the CSO slice within the white matter (the default when --image is "
                        "given)")
    c.add_argument("--whole-slice", action="store_true",
                   help="count every PVS on the rating slices, not only those in the atlas BG / white matter")
    c.add_argument("--midline-x-mm", type=float, help="world x (RAS mm) of the mid-sagittal plane (default: the "
                                                       "registered atlas midline with --image, else the centre "
                                                       "of the field of view)")
    c.add_argument("--slab-mm", type=float, default=0.0, metavar="MM",
                   help="rating slab thickness in mm for thin-slice scans: count on the union of the slices "
                        "within half of it (e.g. 3: three slices of a 1 mm scan, one of a 3.3 mm scan; "
                        "default 0: the rating slice alone)")
    c.add_argument("--method", choices=("affine", "classical", "acsgreg"), default="affine", help=METHOD_HELP)
    c.add_argument("-m", "--checkpoint", metavar="CKPT", help="ACSGRegNet checkpoint for --method acsgreg")
    c.add_argument("--series", help="--image is a DICOM folder with several series: the series number or UID")
    c.add_argument("--csv", metavar="PATH", help="write the table to this CSV file")
    c.add_argument("--derivative", metavar="DIR",
                   help="also write the counts into a BIDS derivative: DIR/sub-XX[/ses-YY]/anat/..._desc-pvs_counts.tsv "
                        "with a .json sidecar describing the columns (named after --image, else the mask)")
    add_json_arg(c, "the counts")
    c.set_defaults(func=cmd_count)

    s = sub.add_parser("locate-slices", parents=[parent],
                       help="place the BG and CSO rating slices by registering an atlas",
                       description="Register the MNI template with the Allen atlas labels to IMAGE and print the "
                                   "BG (through the anterior commissure) and CSO (10 mm above the top of the "
                                   "lateral ventricles) rating slices as 0-based indices along the axial axis.")
    s.add_argument("image", help="T2 (or T1, FLAIR) scan: NIfTI, MGZ or a DICOM series (folder or one file)")
    s.add_argument("--series", help="DICOM folder with several series: the series number or UID")
    s.add_argument("-o", "--output", metavar="NII",
                   help="write the atlas regions on the image grid to this file (1 BG, 2 white matter, "
                        "3 lateral ventricles, 4 anterior commissure)")
    add_json_arg(s, "the slices, landmarks (mm) and midline")
    s.add_argument("--method", choices=("affine", "classical", "acsgreg"), default="affine", help=METHOD_HELP)
    s.add_argument("-m", "--checkpoint", metavar="CKPT", help="ACSGRegNet checkpoint for --method acsgreg")
    s.add_argument("--grid-mm", type=float, default=2.0, help="working grid spacing in mm (default 2)")
    s.set_defaults(func=cmd_locate_slices)
