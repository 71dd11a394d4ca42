"""``napari-pvs segment``: PVS mask (and probability, member agreement) of a T2 scan
(the *segment* use case, :mod:`napari_pvs.engine.usecases.segmentation`)."""

from __future__ import annotations

from ._common import add_checkpoint_arg, add_device_arg, check_nifti_out, run_with_progress

__all__ = ["add_parsers"]


def cmd_segment(args) -> int:
    from ..engine.errors import PVSInputError
    from ..engine.io import check_output_paths, load_scan
    from ..engine.usecases import load_segmenter, segment_job

    if not args.output and not args.derivative:
        raise PVSInputError("give -o MASK, --derivative DIR or both", args.image)
    if args.output:
        check_nifti_out(args.output, "output mask")
    if args.prob:
        check_nifti_out(args.prob, "probability map")
    if args.agreement:
        check_nifti_out(args.agreement, "member agreement map")
    check_output_paths([args.output, args.prob, args.agreement], [args.image, args.checkpoint])
    image = load_scan(args.image, series=args.series)
    loaded = load_segmenter(args.checkpoint, device=args.device, backend=args.backend)
    if args.agreement and loaded.name != "ensemble":
        raise PVSInputError(f"--agreement needs an ensemble checkpoint, this one is a {loaded.name!r} model",
                            loaded.path)
    gen = segment_job(image, loaded, threshold=args.threshold, batch_size=args.batch_size,
                      members=bool(args.agreement))
    seg = run_with_progress(gen, "segmenting")
    written = seg.write(args.output, prob=args.prob, agreement=args.agreement) if args.output else []
    if args.derivative:
        written += seg.write_derivative(args.derivative)
    print(f"{seg.summary()}; {loaded.spacing_mm:.2f} mm in-plane; wrote {', '.join(str(p) for p in written)}")
    if args.agreement:
        print(seg.agreement_summary())
    return 0


def add_parsers(sub, parent) -> None:
    g = sub.add_parser("segment", parents=[parent],
                       help="segment PVS in a T2 image (shipped default model or a checkpoint)",
                       description="Segment PVS; the mask (and probability map) get the input's affine and header.")
    g.add_argument("image", help="T2-weighted scan: NIfTI, MGZ, or a DICOM series (folder or one file)")
    add_checkpoint_arg(g, "checkpoint from 'napari-pvs train', or 'default' (the shipped fast model, the default) "
                          "or 'accurate' (the shipped ensemble: slower, with --agreement)")
    g.add_argument("-o", "--output", metavar="MASK", help="output mask file (.nii.gz)")
    g.add_argument("--derivative", metavar="DIR",
                   help="also (or instead) write a BIDS derivative: DIR/sub-XX[/ses-YY]/anat/..._desc-pvs_mask.nii.gz "
                        "and _desc-pvs_probseg.nii.gz, with dataset_description.json (needs a BIDS-named scan)")
    g.add_argument("--series", help="DICOM folder with several series: the series number or UID")
    g.add_argument("--prob", metavar="PROB", help="also write the probability map (.nii.gz)")
    g.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    g.add_argument("--agreement", metavar="MAP",
                   help="ensemble checkpoints ('-m accurate' is one): also write how many members call "
                        "each voxel PVS (uint8 0..n, .nii.gz; the same pass, no extra run). Voxels > 0 outside "
                        "the mask are the uncertain ones; 'napari-pvs count MAP' counts what any member finds")
    g.add_argument("--batch-size", type=int, default=8, help="slices per forward pass")
    g.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="run the network with torch (the reference) or ONNX Runtime on the CPU (needs "
                        "napari-pvs[fast]; the ONNX file is made once and cached); auto (default): ONNX Runtime "
                        "for the whole-slice default model on the CPU when it is installed, else torch")
    add_device_arg(g)
    g.set_defaults(func=cmd_segment)
