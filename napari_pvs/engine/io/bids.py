"""BIDS datasets in and BIDS derivatives out.

Names are parsed by pybids (``bids.layout.parse_file_entities``: ``sub-``, ``ses-``,
``acq-``, ``run-`` and the suffix), not by our own patterns; a BIDS root is searched for
its anatomical scans (``sub-*/[ses-*/]anat/*_T2w|T1w|FLAIR.nii[.gz]``). Outputs go into a
BIDS derivative dataset: ``dataset_description.json`` (``DatasetType: derivative``,
``GeneratedBy`` with napari-pvs's version and the model's sha256) and per scan

* ``sub-XX[/ses-YY]/anat/sub-XX[_ses-YY][_acq-..][_run-..]_desc-pvs_mask.nii.gz`` (uint8),
* ``..._desc-pvs_probseg.nii.gz`` (float32 probability),
* ``..._desc-pvs_counts.tsv`` with its ``.json`` sidecar describing each column,
* from cohort runs: ``_desc-pvs_objects.tsv`` (per-PVS shape), ``_desc-pvs_qc.png``,
  ``_desc-pvs_summary.json`` and ``_desc-atlas_dseg.nii.gz`` (the atlas regions on the scan).

Refer to: Gorgolewski K. J. et al., "The brain imaging data structure", Scientific Data 3,
2016, doi:10.1038/sdata.2016.44; BIDS specification, "Derivatives" (common data types,
``desc-`` entity, ``_mask``, ``_probseg``); Yarkoni T. et al., "PyBIDS", JOSS 2019,
doi:10.21105/joss.01294.

Example
-------
>>> from napari_pvs.engine.io.bids import bids_entities, derivative_path
>>> e = bids_entities("ds/sub-01/ses-1/anat/sub-01_ses-1_acq-tse_T2w.nii.gz")   # doctest: +SKIP
>>> e.subject_id, e.role                                                          # doctest: +SKIP
('sub-01_ses-1', 'T2')
>>> derivative_path("out", e, "mask").as_posix()                                  # doctest: +SKIP
'out/sub-01/ses-1/anat/sub-01_ses-1_acq-tse_desc-pvs_mask.nii.gz'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import PVSInputError

__all__ = ["BidsEntities", "bids_entities", "is_bids_root", "find_bids_scans", "derivative_path",
           "write_dataset_description", "write_tsv_with_sidecar", "ROLE_OF_SUFFIX", "DERIVATIVE_KINDS"]

#: BIDS anatomical suffix -> the role of the image in napari-pvs
ROLE_OF_SUFFIX = {"T2w": "T2", "T1w": "T1", "FLAIR": "FLAIR"}
#: derivative kind -> the end of its file name (after ``sub-XX[_ses-YY][_acq-..][_run-..]_``)
DERIVATIVE_KINDS = {"mask": "desc-pvs_mask.nii.gz", "probseg": "desc-pvs_probseg.nii.gz",
                    "agreement": "desc-pvs_agreement.nii.gz", "counts": "desc-pvs_counts.tsv",
                    "objects": "desc-pvs_objects.tsv", "summary": "desc-pvs_summary.json", "qc": "desc-pvs_qc.png",
                    "regions": "desc-atlas_dseg.nii.gz"}


@dataclass(frozen=True)
class BidsEntities:
    """The BIDS entities of a scan's file name (empty strings when absent)."""

    subject: str = ""
    session: str = ""
    acquisition: str = ""
    run: str = ""
    suffix: str = ""

    @property
    def is_bids(self) -> bool:
        return bool(self.subject)

    @property
    def subject_id(self) -> str:
        """``sub-XX[_ses-YY]``: one napari-pvs subject per subject and session."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def role(self) -> str:
        """``T2``, ``T1``, ``FLAIR`` from the suffix (``T2`` when unknown)."""
        return ROLE_OF_SUFFIX.get(self.suffix, "T2")

    @property
    def prefix(self) -> str:
        """``sub-XX[_ses-YY][_acq-..][_run-..]``: the start of every derivative name."""
        parts = [f"sub-{self.subject}"]
        if self.session:
            parts.append(f"ses-{self.session}")
        if self.acquisition:
            parts.append(f"acq-{self.acquisition}")
        if self.run:
            parts.append(f"run-{self.run}")
        return "_".join(parts)

    @property
    def folder(self) -> Path:
        """``sub-XX[/ses-YY]/anat``."""
        return Path(f"sub-{self.subject}") / (f"ses-{self.session}" if self.session else "") / "anat"

    def as_dict(self) -> dict:
        return {"subject": self.subject, "session": self.session, "acquisition": self.acquisition,
                "run": self.run, "suffix": self.suffix}


def bids_entities(path: str | Path) -> BidsEntities:
    """The BIDS entities of a file name (pybids' ``parse_file_entities``); all empty for a
    name that is not BIDS."""
    from bids.layout import parse_file_entities

    e = parse_file_entities(str(path))
    return BidsEntities(str(e.get("subject", "")), str(e.get("session", "")), str(e.get("acquisition", "")),
                        str(e.get("run", "")), str(e.get("suffix", "")))


def is_bids_root(folder: str | Path) -> bool:
    """A folder with ``dataset_description.json`` or ``sub-*`` folders."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / "dataset_description.json").is_file()
                                or any(p.is_dir() for p in folder.glob("sub-*")))


def find_bids_scans(root: str | Path, suffixes=("T2w",)) -> list[tuple[Path, BidsEntities]]:
    """The anatomical scans of a BIDS root with one of ``suffixes``, sorted by subject,
    session, acquisition and run.

    Raises
    ------
    PVSInputError
        Not a BIDS root, or no scan with those suffixes.
    """
    root = Path(root)
    if not is_bids_root(root):
        raise PVSInputError("not a BIDS dataset (no dataset_description.json and no sub-* folders)", root)
    found = []
    for pattern in ("sub-*/anat/*", "sub-*/ses-*/anat/*"):
        for p in root.glob(pattern):
            name = p.name.lower()
            if not (name.endswith(".nii.gz") or name.endswith(".nii")):
                continue
            e = bids_entities(p)
            if e.is_bids and e.suffix in suffixes:
                found.append((p, e))
    if not found:
        raise PVSInputError(f"no {' or '.join(suffixes)} scan under sub-*/[ses-*/]anat/", root)
    return sorted(found, key=lambda pe: (pe[1].subject, pe[1].session, pe[1].acquisition, pe[1].run, pe[0].name))


def derivative_path(root: str | Path, entities: BidsEntities, kind: str) -> Path:
    """Where a derivative of a scan goes (see the module docstring); ``kind`` is one of
    :data:`DERIVATIVE_KINDS`.

    Raises
    ------
    PVSInputError
        A scan without BIDS entities; an unknown kind.
    """
    if not entities.is_bids:
        raise PVSInputError("a BIDS derivative needs a BIDS-named input (sub-XX[_ses-YY]_..._T2w.nii.gz)")
    if kind not in DERIVATIVE_KINDS:
        raise PVSInputError(f"unknown derivative {kind!r}; expected one of {', '.join(DERIVATIVE_KINDS)}")
    return Path(root) / entities.folder / f"{entities.prefix}_{DERIVATIVE_KINDS[kind]}"


def write_dataset_description(root: str | Path, *, model_sha256: str | None = None, model_name: str = "",
                              source: str | Path | None = None) -> Path:
    """Write (or keep) the derivative's ``dataset_description.json`` (atomically)."""
    from ... import __version__
    from .nifti import atomic_path

    root = Path(root)
    path = root / "dataset_description.json"
    generated = {"Name": "napari-pvs", "Version": __version__,
                 "Description": "perivascular space (PVS) segmentation and BG/CSO rating-slice counts"}
    if model_sha256:
        generated["ModelSHA256"] = model_sha256
    if model_name:
        generated["ModelName"] = model_name
    desc = {"Name": "napari-pvs PVS derivatives", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
            "GeneratedBy": [generated]}
    if source is not None:
        desc["SourceDatasets"] = [{"URL": Path(source).resolve().as_uri()}]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(desc, indent=2) + "\n")
    return path


def write_tsv_with_sidecar(path: str | Path, rows: list[dict], columns: dict[str, str]) -> Path:
    """Write ``rows`` as a BIDS ``.tsv`` (``n/a`` for missing values) with a ``.json``
    sidecar giving each column's description (``columns``: name -> description with units),
    both atomically."""
    from .nifti import atomic_path

    path = Path(path)
    names = list(columns)
    lines = ["\t".join(names)]
    for r in rows:
        cells = []
        for c in names:
            v = r.get(c)
            cells.append("n/a" if v is None or v == "" else (f"{v:.4g}" if isinstance(v, float) else str(v)))
        lines.append("\t".join(cells))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({c: {"Description": d} for c, d in columns.items()}, indent=2) + "\n")
    return path
