"""Export a project's annotations as training data for nnU-Net v2 or MONAI.

* ``nnunet``: an nnU-Net v2 raw data set folder (Isensee et al., "nnU-Net: a
  self-configuring method for deep learning-based biomedical image segmentation", Nat
  Methods 2021, doi:10.1038/s41592-020-01008-z): ``imagesTr/<case>_0000.nii.gz`` (the T2),
  ``labelsTr/<case>.nii.gz`` and ``dataset.json``. Slices not marked done/reviewed get the
  label 2, declared as nnU-Net's ``"ignore"`` label (sparse annotations), so they are left
  out of the loss, not taught as background.
* ``monai``: ``datalist.json`` (``{"training": [{"image", "label", "ignore", ...}]}``, the
  layout of MONAI's ``load_decathlon_datalist``) with ``labels/<case>.nii.gz`` (0/1) and,
  for partly annotated images, ``ignore/<case>.nii.gz`` (1 = unlabelled voxel).

Which version of each T2 image is exported:

* ``latest``: the newest non-autosave version (any rater); its done and reviewed slices
  are labelled;
* ``reviewed``: the newest version with reviewed slices; only those are labelled;
* ``consensus``: the newest consensus version; its done and reviewed slices are labelled.

Images without such a version (or without a labelled slice) are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import PVSInputError
from ..io import atomic_path, save_volume
from .store import Project, VersionRecord, slices_mask

__all__ = ["export_dataset", "chosen_versions", "IGNORE_LABEL"]

#: label value of unlabelled voxels in the nnU-Net export
IGNORE_LABEL = 2


def chosen_versions(project: Project, versions: str = "latest", *, role: str = "T2"
                    ) -> list[tuple[VersionRecord, list[int]]]:
    """``(version, labelled slices)`` per image of ``role`` under the rule ``versions``
    (``"latest"``, ``"reviewed"`` or ``"consensus"``; see the module docstring).

    Raises
    ------
    ValueError
        Unknown rule.
    """
    if versions not in ("latest", "reviewed", "consensus"):
        raise ValueError(f"versions must be 'latest', 'reviewed' or 'consensus', got {versions!r}")
    out = []
    for img in project.images():
        if img.role != role:
            continue
        vs = [v for v in project.versions(img) if v.kind != "autosave"]
        if versions == "reviewed":
            vs = [v for v in vs if v.slices_with("reviewed")]
        elif versions == "consensus":
            vs = [v for v in vs if v.kind == "consensus"]
        if not vs:
            continue
        v = vs[-1]
        slices = v.slices_with("reviewed") if versions == "reviewed" else v.labelled_slices
        if slices:
            out.append((v, slices))
    return out


def export_dataset(project: Project, out: str | Path, *, fmt: str = "nnunet", versions: str = "latest",
                   role: str = "T2") -> dict:
    """Write the chosen versions (:func:`chosen_versions`) as an nnU-Net v2 raw data set or
    a MONAI datalist in ``out`` (see the module docstring). Files are written atomically.

    Returns
    -------
    dict
        ``{"path": str, "n_cases": int, "cases": {case: {"version", "rater", "labelled_slices"}}}``

    Raises
    ------
    ValueError
        Unknown format or rule.
    PVSInputError
        No image has a version with labelled slices under the rule; a file of the
        project is missing or altered.
    """
    if fmt not in ("nnunet", "monai"):
        raise ValueError(f"format must be 'nnunet' or 'monai', got {fmt!r}")
    chosen = chosen_versions(project, versions, role=role)
    if not chosen:
        raise PVSInputError(f"no {role} image has a {versions} version with labelled (done/reviewed) "
                            "slices to export", project.root)
    out = Path(out)
    cases, entries, partial_any = {}, [], False
    for v, slices in chosen:
        img = project.image(v.image_id)
        case = img.subject
        image = project.load_image(img.id)
        mask = project.load_version(v.id)
        labelled = slices_mask(img.shape, img.axial_axis, slices)
        partial = not labelled.all()
        partial_any |= partial
        if fmt == "nnunet":
            save_volume(out / "imagesTr" / f"{case}_0000.nii.gz", np.asarray(image.data), image)
            label = mask.copy()
            label[~labelled] = IGNORE_LABEL
            save_volume(out / "labelsTr" / f"{case}.nii.gz", label, image, dtype=np.uint8)
        else:
            entry = {"image": str(img.path), "label": str(out / "labels" / f"{case}.nii.gz"),
                     "subject": img.subject, "version": v.id, "rater": v.rater,
                     "labelled_slices": slices, "axial_axis": img.axial_axis}
            save_volume(out / "labels" / f"{case}.nii.gz", mask, image, dtype=np.uint8)
            if partial:
                entry["ignore"] = str(out / "ignore" / f"{case}.nii.gz")
                save_volume(out / "ignore" / f"{case}.nii.gz", (~labelled).astype(np.uint8), image, dtype=np.uint8)
            entries.append(entry)
        cases[case] = {"version": v.id, "rater": v.rater, "labelled_slices": len(slices),
                       "slices": img.shape[img.axial_axis], "sha256": v.sha256}
    if fmt == "nnunet":
        labels = {"background": 0, "PVS": 1}
        if partial_any:
            labels["ignore"] = IGNORE_LABEL
        meta = {"channel_names": {"0": role}, "labels": labels, "numTraining": len(cases),
                "file_ending": ".nii.gz", "name": f"PVS_{project.name}",
                "description": f"PVS masks exported by napari-pvs from project {project.name} "
                               f"({versions} versions)",
                "napari_pvs": {"project": str(project.root), "versions": versions, "cases": cases}}
        _write_json(out / "dataset.json", meta)
    else:
        _write_json(out / "datalist.json", {"training": entries,
                                            "napari_pvs": {"project": str(project.root), "versions": versions}})
    return {"path": str(out), "n_cases": len(cases), "cases": cases}


def _write_json(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2))
