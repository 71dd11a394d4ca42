"""One rater's annotation session on one image: the state the annotation widget shares.

GUI-free, so every action the widget offers is also a Python call (and is tested
headless): the working mask, the per-slice statuses, the candidate proposals with a
cursor and the decisions taken on them, autosave (only when something changed), the
next unfinished slice, and the difference between two versions.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..anatomy.morphology import STRUCTURE_26
from .store import ImageRecord, Project, VersionRecord

__all__ = ["AnnotationSession", "VersionDiff", "version_diff"]



def _digest(mask: np.ndarray, status: dict) -> str:
    h = hashlib.sha256(np.ascontiguousarray(np.asarray(mask) > 0).tobytes())
    h.update(repr(sorted(status.items())).encode())
    return h.hexdigest()


@dataclass
class VersionDiff:
    """Components (26-connectivity) added and removed between two masks.

    ``labels`` is uint8 ``(Z, Y, X)``: 1 on components of the new mask that do not
    overlap the old one (added), 2 on components of the old mask that do not overlap the
    new one (removed); ``added`` and ``removed`` count them."""

    labels: np.ndarray
    added: int
    removed: int


def version_diff(old: np.ndarray, new: np.ndarray) -> VersionDiff:
    """What changed from mask ``old`` to mask ``new`` (both ``(Z, Y, X)``), component by
    component (see :class:`VersionDiff`).

    Raises
    ------
    ValueError
        The masks differ in shape.
    """
    a, b = np.asarray(old) > 0, np.asarray(new) > 0
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    out = np.zeros(a.shape, np.uint8)
    lb, nb = ndi.label(b, structure=STRUCTURE_26)
    new_only = np.ones(nb + 1, bool)
    new_only[np.unique(lb[a & b])] = False
    new_only[0] = False
    la, na = ndi.label(a, structure=STRUCTURE_26)
    old_only = np.ones(na + 1, bool)
    old_only[np.unique(la[a & b])] = False
    old_only[0] = False
    out[new_only[lb]] = 1
    out[old_only[la]] = 2
    return VersionDiff(out, int(new_only.sum()), int(old_only.sum()))


@dataclass
class AnnotationSession:
    """A rater working on one image of a project.

    Attributes
    ----------
    project : Project
    image : ImageRecord
    rater : str
    mask : np.ndarray
        uint8 ``(Z, Y, X)``: the working mask (the widget's labels layer data).
    slice_status : dict
        Axial slice -> status (``"in_progress"``, ``"done"``, ``"reviewed"``).
    base : VersionRecord or None
        The version the work started from (parent of the next save).
    proposals : Proposals or None
        Candidate proposals under review; ``cursor`` is the index in its table.
    decisions : list of dict
        Decisions on candidates since the last save (stored with the next version).
    autosave_s : float
        Seconds between autosaves.
    """

    project: Project
    image: ImageRecord
    rater: str
    mask: np.ndarray
    slice_status: dict = field(default_factory=dict)
    base: VersionRecord | None = None
    proposals: object | None = None
    cursor: int = -1
    decisions: list = field(default_factory=list)
    autosave_s: float = 30.0
    _saved_digest: str = ""
    _last_save_t: float = 0.0
    _pending: list = field(default_factory=list)

    @classmethod
    def start(cls, project: Project, subject: str, rater: str, *, role: str = "T2", version: int | None = None,
              use_autosave: bool = True, autosave_s: float = 30.0) -> "AnnotationSession":
        """Open ``subject``'s image for ``rater``: from ``version``, else the rater's newest
        autosave when it is newer than their last save (work lost in a crash) and
        ``use_autosave``, else their latest version, else an empty mask."""
        img = project.image(subject, role)
        base = None
        if version is not None:
            base = project.version(version)
        else:
            auto = project.newest_autosave(img, rater) if use_autosave else None
            base = auto or project.latest_version(img, rater)
        mask = project.load_version(base.id) if base is not None else np.zeros(img.shape, np.uint8)
        status = dict(base.slice_status) if base is not None else {}
        s = cls(project, img, rater, mask, status, base, autosave_s=autosave_s)
        s._saved_digest = _digest(mask, status)
        s._last_save_t = time.monotonic()
        return s

    # ------------------------------------------------------------------ slices
    @property
    def n_slices(self) -> int:
        return self.image.shape[self.image.axial_axis]

    def set_status(self, slice_index: int, status: str) -> None:
        """Mark an axial slice (``"todo"`` removes the mark)."""
        from .schema import SLICE_STATUSES

        if status not in SLICE_STATUSES:
            raise ValueError(f"slice status must be one of {SLICE_STATUSES}, got {status!r}")
        if not 0 <= int(slice_index) < self.n_slices:
            raise ValueError(f"slice {slice_index} is outside the image's {self.n_slices} axial slices")
        if status == "todo":
            self.slice_status.pop(int(slice_index), None)
        else:
            self.slice_status[int(slice_index)] = status

    def slices_done(self) -> list[int]:
        return sorted(s for s, st in self.slice_status.items() if st == "done")

    def slices_reviewed(self) -> list[int]:
        return sorted(s for s, st in self.slice_status.items() if st == "reviewed")

    def status_of(self, slice_index: int) -> str:
        return self.slice_status.get(int(slice_index), "todo")

    def next_unfinished(self, after: int = -1) -> int | None:
        """The first axial slice after ``after`` (wrapping round) not marked done or
        reviewed, or None when every slice is."""
        n = self.n_slices
        for k in range(1, n + 1):
            s = (after + k) % n
            if self.status_of(s) not in ("done", "reviewed"):
                return s
        return None

    # ------------------------------------------------------------------ saving
    @property
    def changed(self) -> bool:
        """True when the mask or the statuses differ from the last save."""
        return _digest(self.mask, self.slice_status) != self._saved_digest

    def save(self, *, kind: str = "manual", note: str = "") -> VersionRecord | None:
        """Save a new version when something changed (else None); decisions go with it. A
        manual save right after an autosave of the same work still makes a manual version
        (the rater's explicit save is what :meth:`Project.latest_version` returns)."""
        promote = kind == "manual" and self.base is not None and self.base.kind == "autosave"
        if not self.changed and not self.decisions and not promote:
            return None
        v = self.project.save_annotation(self.image, self.rater, self.mask, slice_status=self.slice_status,
                                         parent=self.base.id if self.base is not None else None, kind=kind,
                                         note=note, decisions=self.decisions)
        self.base = v
        self.decisions = []
        self._saved_digest = _digest(self.mask, self.slice_status)
        self._last_save_t = time.monotonic()
        return v

    def maybe_autosave(self, now: float | None = None) -> VersionRecord | None:
        """Autosave when ``autosave_s`` have passed since the last save and something
        changed; returns the new version or None."""
        now = time.monotonic() if now is None else now
        if now - self._last_save_t < self.autosave_s:
            return None
        self._last_save_t = now
        return self.save(kind="autosave", note="autosave") if self.changed else None

    # ------------------------------------------------------------------ candidates
    def set_proposals(self, proposals) -> None:
        """Start reviewing new proposals (from :func:`~napari_pvs.engine.candidates.propose_candidates`);
        proposals that already lie in the mask are skipped."""
        self.proposals = proposals
        self.cursor = -1
        self._pending = [p for p in proposals.table
                         if not (self.mask[proposals.labels == p["id"]] > 0).all()]

    @property
    def current(self) -> dict | None:
        return self._pending[self.cursor] if 0 <= self.cursor < len(self._pending) else None

    @property
    def remaining(self) -> int:
        return max(len(self._pending) - self.cursor - 1, 0)

    def next_candidate(self) -> dict | None:
        """Move to the next undecided candidate and return it (None at the end)."""
        self.cursor += 1
        return self.current

    def decide(self, decision: str) -> dict | None:
        """Accept, reject or skip the current candidate (accepted ones merge into the
        mask), record the decision, and move to the next; returns the next candidate."""
        from .schema import DECISIONS

        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        cur = self.current
        if cur is None:
            return self.next_candidate()
        if decision == "accept":
            self.mask[self.proposals.labels == cur["id"]] = 1
        self.decisions.append({"candidate": cur["id"], "decision": decision, "source": self.proposals.method,
                               "centre": cur["centre"], "n_voxels": cur["n_voxels"]})
        return self.next_candidate()
