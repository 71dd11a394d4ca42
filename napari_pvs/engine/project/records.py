"""What the project catalogue describes (images, versions, problems) and the small file
helpers of the store: sha256, folder fsync, names, slice masks and ranges."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PVSInputError

__all__ = ["ImageRecord", "VersionRecord", "Problem", "slices_mask", "common_labelled_slices",
           "format_slices", "safe_name", "NAME_PATTERN"]


def slices_mask(shape: tuple[int, int, int], axial_axis: int, slices) -> np.ndarray:
    """bool ``(Z, Y, X)`` of ``shape``: True on the given axial slices (0-based indices
    along ``axial_axis``)."""
    out = np.zeros(shape, dtype=bool)
    idx = [slice(None)] * 3
    for s in slices:
        idx[axial_axis] = int(s)
        out[tuple(idx)] = True
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: a subject or rater name: letters (any script), digits, spaces, ``_``, ``-`` and ``.``, starting
#: with a letter or digit, at most 64 characters; no path, quote or SQL characters
NAME_PATTERN = re.compile(r"\w[\w .-]{0,63}")


def _safe_name(text: str, what: str) -> str:
    """``text`` stripped, if it is a safe subject or rater name (:data:`NAME_PATTERN`).

    Raises
    ------
    PVSInputError
        A name with path characters (``/``, ``..``), quotes, ``;`` or other punctuation.
    """
    name = str(text).strip()
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise PVSInputError(f"{what} name {text!r} is not allowed: use letters, digits, spaces, '_', '-' and '.' "
                            "(at most 64, starting with a letter or digit)")
    return name


#: public name of the subject/rater name check
safe_name = _safe_name


@dataclass(frozen=True)
class ImageRecord:
    """An image of the project.

    Attributes
    ----------
    id, subject, role : catalogue id, subject name, role (``"T2"``, ``"T1"``, ``"FLAIR"``...).
    path : absolute path of the project's copy.
    sha256 : of that file.
    shape : ``(Z, Y, X)``; affine : 4x4 voxel (i, j, k) -> world RAS mm;
    voxel_size : mm along ``(Z, Y, X)``; axial_axis : array axis of the axial slices.
    source : the file it was copied from.
    """

    id: int
    subject: str
    role: str
    path: Path
    sha256: str
    shape: tuple[int, int, int]
    affine: np.ndarray = field(repr=False)
    voxel_size: tuple[float, float, float]
    axial_axis: int
    source: str


@dataclass(frozen=True)
class VersionRecord:
    """One saved annotation version of an image by a rater.

    ``slice_status`` maps axial slice index (0-based, along the image's ``axial_axis``)
    to ``"in_progress"``, ``"done"`` or ``"reviewed"``; slices not in it are ``"todo"``.
    """

    id: int
    image_id: int
    subject: str
    role: str
    rater: str
    parent_id: int | None
    kind: str
    created: str
    note: str
    path: Path
    sha256: str
    n_voxels: int
    n_components: int
    slice_status: dict[int, str]

    def slices_with(self, *statuses: str) -> list[int]:
        """Sorted slice indices whose status is one of ``statuses``."""
        return sorted(s for s, st in self.slice_status.items() if st in statuses)

    @property
    def labelled_slices(self) -> list[int]:
        """Slices marked done or reviewed: the only ones whose background is known."""
        return self.slices_with("done", "reviewed")


@dataclass(frozen=True)
class Problem:
    """Something wrong in a project: ``kind`` is ``"missing"``, ``"altered"`` or
    ``"orphan"`` (a file no row references, left by an interrupted save: harmless)."""

    kind: str
    path: Path
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.detail}"



def common_labelled_slices(versions: list[VersionRecord]) -> dict[int, str]:
    """``{slice: "done"}`` for the slices labelled (done or reviewed) in every one of
    ``versions``: the slices a consensus of them is known on."""
    if not versions:
        return {}
    common = set(versions[0].labelled_slices)
    for v in versions[1:]:
        common &= set(v.labelled_slices)
    return {s: "done" for s in sorted(common)}



def format_slices(slices) -> str:
    """Slice indices as ranges: ``[1, 2, 3, 7]`` -> ``"1-3,7"`` (``"none"`` when empty)."""
    s = sorted(int(v) for v in np.atleast_1d(slices))
    if not s:
        return "none"
    parts, start, prev = [], s[0], s[0]
    for v in s[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(parts)
