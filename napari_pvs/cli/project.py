"""``napari-pvs project ...``: the annotation project store on the command line.

Each verb calls :class:`napari_pvs.engine.project.Project` (the only writer of the
catalogue); bad input ends with a one-line error and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

from ._common import add_json_arg, write_json

__all__ = ["add_parsers"]


def _open(args, *, readonly: bool = False):
    from ..engine.project import Project

    return Project.open(args.project, readonly=readonly, wait_s=getattr(args, "wait", 0.0))


def cmd_init(args) -> int:
    from ..engine.project import Project

    with Project.create(args.project, name=args.name) as proj:
        print(f"created project {proj.name} in {proj.root}")
    return 0


def cmd_add(args) -> int:
    from ..engine.io.bids import is_bids_root
    from ..engine.project.records import safe_name

    for value, what in ((args.subject, "subject"), (args.role, "role")):
        if value:
            safe_name(value, what)     # refused before the project is opened
    with _open(args) as proj:
        if Path(args.image).is_dir() and is_bids_root(args.image):
            records = proj.add_bids(args.image)
            print(f"added {len(records)} scans of the BIDS dataset {args.image} "
                  f"({len({r.subject for r in records})} subjects/sessions)")
        else:
            records = [proj.add_image(args.image, subject=args.subject, role=args.role, series=args.series)]
        for rec in records:
            vs = " x ".join(f"{v:.2f}" for v in rec.voxel_size)
            print(f"added {rec.subject} {rec.role}: {rec.shape} (Z, Y, X), voxel size {vs} mm, "
                  f"{rec.shape[rec.axial_axis]} axial slices")
    return 0


def cmd_import_mask(args) -> int:
    import numpy as np

    from ..engine.errors import PVSInputError
    from ..engine.io import load_mask
    from ..engine.project.records import safe_name

    safe_name(args.rater, "rater")     # before the image is added
    if args.subject:
        safe_name(args.subject, "subject")
    with _open(args) as proj:
        if Path(args.image_or_subject).exists() and args.image_or_subject not in proj.subjects():
            rec = proj.add_image(args.image_or_subject, subject=args.subject)
        else:
            rec = proj.image(args.image_or_subject, args.role)
        image = proj.load_image(rec.id)
        mask = load_mask(args.mask, reference=image)
        data = np.asarray(mask.data)
        n = rec.shape[rec.axial_axis]
        if args.slices == "all":
            slices = range(n)
        else:
            other = tuple(a for a in range(3) if a != rec.axial_axis)
            slices = np.flatnonzero(data.any(axis=other))
            if slices.size == 0:
                raise PVSInputError("the mask is empty: no slice to mark done (use --slices all for a "
                                    "complete annotation without PVS)", args.mask)
        v = proj.save_annotation(rec, args.rater, data, slice_status={int(s): "done" for s in slices},
                                 kind="import", note=f"imported from {Path(args.mask).resolve()}")
        print(f"version {v.id}: {v.subject} {v.role} by {v.rater}, {v.n_components} PVS "
              f"({v.n_voxels} voxels), {len(v.labelled_slices)} of {n} slices done")
    return 0


def cmd_status(args) -> int:
    with _open(args, readonly=True) as proj:
        rows = proj.status()
        problems = proj.verify()
        if args.json:
            write_json({"project": proj.name, "images": rows, "problems": [str(p) for p in problems]}, args.json)
        if args.json != "-":
            print(f"project {proj.name} ({proj.root}): {len(proj.subjects())} subjects, "
                  f"{len(proj.raters())} raters, {len(proj.versions())} versions")
            for r in rows:
                raters = "; ".join(
                    f"{name}: v{st['version']} {st['done']} done, {st['reviewed']} reviewed, "
                    f"{st['in_progress']} in progress, {st['n_components']} PVS"
                    + (" (autosave)" if st["kind"] == "autosave" else "")
                    for name, st in r["raters"].items()) or "not annotated"
                print(f"  {r['subject']} {r['role']} ({r['slices']} slices): {raters}")
            print("problems: " + ("none" if not problems else ""))
            for p in problems:
                print(f"  {p}")
    return 1 if any(p.kind != "orphan" for p in problems) else 0


def cmd_agreement(args) -> int:
    from ..engine.errors import PVSInputError
    from ..engine.project import common_labelled_slices, consensus_mask, rater_agreement

    with _open(args, readonly=args.consensus_rater is None) as proj:
        rec = proj.image(args.subject, args.role)
        masks = []
        for rater in args.raters:
            v = proj.latest_version(rec, rater)
            if v is None:
                raise PVSInputError(f"rater {rater} has no version of {args.subject} {args.role}", proj.root)
            masks.append(v)
        image = proj.load_image(rec.id)
        slices = None
        if args.bg_slice is not None and args.cso_slice is not None:
            slices = {"bg": args.bg_slice, "cso": args.cso_slice}
        ag = rater_agreement(proj.load_version(masks[0].id), proj.load_version(masks[1].id),
                             rater_a=args.raters[0], rater_b=args.raters[1], image=image, rating_slices=slices)
        out = {"subject": args.subject, "versions": [m.id for m in masks], **ag.summary(),
               "disagreements": [{"index": d.index, "rater": args.raters[0] if d.rater == "A" else args.raters[1],
                                  "centre_zyx": [round(c, 1) for c in d.centre], "n_voxels": d.n_voxels,
                                  "best_iou": round(d.best_iou, 3)} for d in ag.disagreements]}
        if args.consensus_rater:
            cons = consensus_mask(ag)
            v = proj.save_annotation(rec, args.consensus_rater, cons, kind="consensus",
                                     slice_status=common_labelled_slices(masks),
                                     note=f"consensus of v{masks[0].id} ({args.raters[0]}) and "
                                          f"v{masks[1].id} ({args.raters[1]}): agreed components only")
            out["consensus_version"] = v.id
        if args.json:
            write_json(out, args.json)
        if args.json != "-":
            print(f"{args.subject} {args.role}: {args.raters[0]} (v{masks[0].id}) vs {args.raters[1]} "
                  f"(v{masks[1].id})")
            print(f"  voxel DSC {ag.dsc:.3f} (sensitivity {ag.sensitivity:.3f}, PPV {ag.ppv:.3f})")
            print(f"  detection F1 {ag.detection_f1:.3f}: {len(ag.matched)} matched at IoU > 0.1, "
                  f"{out['only_a']} only {args.raters[0]}, {out['only_b']} only {args.raters[1]}")
            for name, c in ag.counts.items():
                print(f"  {name.upper()} slice {c['slice']}: {args.raters[0]} {c[args.raters[0]]}, "
                      f"{args.raters[1]} {c[args.raters[1]]} PVS")
            if "consensus_version" in out:
                print(f"  consensus saved as version {out['consensus_version']} by {args.consensus_rater}")
    return 0


def cmd_export(args) -> int:
    from ..engine.project.export import export_dataset

    with _open(args, readonly=True) as proj:
        info = export_dataset(proj, args.output, fmt=args.format, versions=args.versions)
    print(f"exported {info['n_cases']} cases ({args.format}, {args.versions} versions) to {info['path']}")
    return 0


def add_parsers(sub, parent) -> None:
    """Add ``project`` and its verbs to the ``napari-pvs`` sub-command parser."""
    p = sub.add_parser("project", parents=[parent], help="annotation projects: images, raters, versions, agreement, export",
                       description="An annotation project is a folder with an SQLite catalogue and NIfTI "
                                   "files; every save is a version, written atomically.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name, func, help_, description=None):
        v = verbs.add_parser(name, parents=[parent], help=help_, description=description or help_)
        v.add_argument("project", metavar="DIR", help="project folder")
        v.set_defaults(func=func)
        return v

    v = verb("init", cmd_init, "create a project folder")
    v.add_argument("--name", help="project name (default: the folder's)")

    v = verb("add", cmd_add, "add a scan (NIfTI, MGZ, DICOM series) or a whole BIDS dataset",
             "Copy a scan into the project (NIfTI as it is; MGZ and DICOM converted to NIfTI), or every "
             "T2w/T1w/FLAIR scan of a BIDS dataset: one subject per sub-/ses-, the role from the suffix.")
    v.add_argument("image", help="a scan (.nii/.nii.gz, .mgz, a DICOM file or folder) or a BIDS root folder")
    v.add_argument("--subject", help="subject name (default: sub-XX[_ses-YY] of a BIDS name, else the file name)")
    v.add_argument("--role", help="T2 (the annotated image), T1, FLAIR ... (default: from a BIDS suffix, else T2)")
    v.add_argument("--series", help="DICOM folder with several series: the series number or UID")

    v = verb("import-mask", cmd_import_mask, "import a PVS mask as a new version",
             "Import a binary PVS mask (same grid as the image) as a rater's new version.")
    v.add_argument("image_or_subject", metavar="IMAGE_OR_SUBJECT",
                   help="a subject of the project, or an image file (added to the project first)")
    v.add_argument("mask", help="binary PVS mask (.nii/.nii.gz) on the image's grid")
    v.add_argument("--rater", required=True, help="rater name")
    v.add_argument("--subject", help="subject name when IMAGE_OR_SUBJECT is a file")
    v.add_argument("--role", default="T2", help="image role (default T2)")
    v.add_argument("--slices", choices=("done", "all"), default="all",
                   help="which axial slices to mark done: 'all' (default; the mask is complete: every "
                        "slice without PVS is known to have none) or 'done' (only the slices that hold PVS "
                        "voxels; the rest stay todo and are ignored by training)")

    v = verb("status", cmd_status, "subjects, slices done per rater, versions, problems found",
             "Subjects, slices done per rater, versions and problems (missing or altered files); "
             "exit code 1 when a file is missing or altered.")
    add_json_arg(v, "the result")

    v = verb("agreement", cmd_agreement, "agreement between two raters and their consensus",
             "Voxel DSC, VALDO-style detection F1 (26-connected components matched at IoU > 0.1), "
             "BG/CSO slice counts side by side; optionally save the consensus (agreed components) "
             "as a new version.")
    v.add_argument("subject", help="subject name")
    v.add_argument("--raters", nargs=2, required=True, metavar=("A", "B"))
    v.add_argument("--role", default="T2")
    v.add_argument("--bg-slice", type=int, help="BG rating slice (0-based axial index) for the counts")
    v.add_argument("--cso-slice", type=int, help="CSO rating slice (0-based axial index) for the counts")
    v.add_argument("--consensus-rater", metavar="NAME",
                   help="save the agreed components as a consensus version by this rater")
    add_json_arg(v, "the result")

    v = verb("export", cmd_export, "export training data for nnU-Net v2 or MONAI",
             "Export the chosen versions as an nnU-Net v2 raw data set (imagesTr/, labelsTr/, "
             "dataset.json; unlabelled slices get the ignore label 2) or a MONAI datalist JSON.")
    v.add_argument("--format", choices=("nnunet", "monai"), required=True)
    v.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    v.add_argument("--versions", choices=("latest", "reviewed", "consensus"), default="latest",
                   help="latest (default: each image's newest version), reviewed (the newest version "
                        "with reviewed slices; only those slices are labelled) or consensus")
    for action in verbs.choices.values():
        action.add_argument("--wait", type=float, default=0.0,
                            help="seconds to wait when another process is writing the project")
