"""What a cohort run reads: a BIDS root (T2w scans by suffix, ``acq-``/``run-`` kept apart),
a folder of scans (NIfTI, MGZ, DICOM series folders), or a text file with one path per line
and an optional subject id after a tab or comma."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PVSInputError
from ..io import is_mgh_name, is_nifti_name
from ..io.bids import BidsEntities, bids_entities, find_bids_scans, is_bids_root

__all__ = ["CohortScan", "discover_scans"]


@dataclass(frozen=True)
class CohortScan:
    """One scan of a cohort.

    Attributes
    ----------
    path : str
        The scan (a file, or a DICOM series folder).
    scan_id : str
        Unique name: ``sub-XX[_ses-YY][_acq-..][_run-..]`` for BIDS, else the subject id
        given in a list file, else the file name without suffix.
    subject, session : str
        BIDS subject and session (or the id and "").
    entities : BidsEntities
        For the derivative's names (a non-BIDS scan gets ``sub-<scan_id>``).
    """

    path: str
    scan_id: str
    subject: str
    session: str = ""
    entities: BidsEntities = field(default_factory=BidsEntities)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".mgz", ".mgh"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _plain(path: Path, scan_id: str | None = None) -> CohortScan:
    e = bids_entities(path) if path.is_file() else BidsEntities()
    if e.is_bids and not scan_id:
        return CohortScan(str(path), e.prefix, f"sub-{e.subject}", f"ses-{e.session}" if e.session else "", e)
    sid = "".join(c if c.isalnum() or c in "-." else "_" for c in (scan_id or _stem(path)))
    label = sid.replace("_", "").replace("-", "").replace(".", "") or "scan"
    return CohortScan(str(path), sid, sid, "", BidsEntities(subject=label))


def discover_scans(source: str | Path) -> list[CohortScan]:
    """The scans of a cohort input (see the module docstring), in a stable order.

    Raises
    ------
    PVSInputError
        Nothing found; a list file naming missing files; two scans with one id.
    """
    source = Path(source)
    if not source.exists():
        raise PVSInputError("not found", source)
    if source.is_dir() and is_bids_root(source):
        scans = [CohortScan(str(p), e.prefix, f"sub-{e.subject}", f"ses-{e.session}" if e.session else "", e)
                 for p, e in find_bids_scans(source, ("T2w",))]
    elif source.is_dir():
        items = sorted(p for p in source.iterdir() if not p.name.startswith("."))
        scans = [_plain(p) for p in items if (p.is_file() and (is_nifti_name(p) or is_mgh_name(p))) or p.is_dir()]
        if not scans:
            raise PVSInputError("no scan here (NIfTI, MGZ or DICOM folders)", source)
    else:
        scans = []
        for n, line in enumerate(source.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.replace(",", "\t").split("\t")]
            path = Path(parts[0]).expanduser()
            if not path.is_absolute():
                path = source.parent / path
            if not path.exists():
                raise PVSInputError(f"line {n}: {parts[0]} not found", source)
            scans.append(_plain(path, parts[1] if len(parts) > 1 and parts[1] else None))
        if not scans:
            raise PVSInputError("the list names no scan", source)
    seen: dict[str, str] = {}
    for s in scans:
        if s.scan_id in seen:
            raise PVSInputError(f"two scans with one id {s.scan_id!r}: {seen[s.scan_id]} and {s.path}", source)
        seen[s.scan_id] = s.path
    return scans
