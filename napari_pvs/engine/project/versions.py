"""Annotation versions of a project: save a mask as a version, mark slices, list, load.

Mixed into :class:`~napari_pvs.engine.project.store.Project` (which holds the catalogue
connection, the write transaction and the images).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..data import sha256_file
from ..anatomy.morphology import STRUCTURE_26
from ..errors import PVSInputError
from ..io import load_volume, save_volume
from .records import ImageRecord, VersionRecord, _fsync_dir, _now, _safe_name, format_slices, slices_mask
from .schema import DECISIONS, SLICE_STATUSES, VERSION_KINDS

__all__ = ["VersionsMixin"]



class VersionsMixin:
    """The versions part of :class:`~napari_pvs.engine.project.store.Project`."""

    # ------------------------------------------------------------------ versions
    def save_annotation(self, image: str | int | ImageRecord, rater: str, mask: np.ndarray, *,
                        slice_status: dict[int, str] | None = None, parent: int | None = None,
                        kind: str = "manual", note: str = "",
                        decisions: list[dict] | None = None) -> VersionRecord:
        """Save a PVS mask as a new version, atomically (file and row together).

        Parameters
        ----------
        image : subject name (its T2), image id or :class:`ImageRecord`
        rater : str
            Created when new.
        mask : np.ndarray
            ``(Z, Y, X)`` on the image's grid; nonzero = PVS. Stored as uint8 0/1.
        slice_status : dict, optional
            Axial slice -> status (``"todo"``, ``"in_progress"``, ``"done"``,
            ``"reviewed"``). Default: the parent's (or all todo).
        parent : int, optional
            Version this one derives from; default the rater's latest version of the image.
        kind : str
            ``"manual"``, ``"autosave"``, ``"import"`` or ``"consensus"``.
        note : str
        decisions : list of dict, optional
            Candidate decisions made in this version: ``{"candidate": int, "decision":
            "accept"|"reject"|"skip", "source": str, "centre": (z, y, x), "n_voxels": int}``.

        Raises
        ------
        ValueError
            Mask not on the image's grid, unknown status, kind or decision.
        """
        rec = image if isinstance(image, ImageRecord) else self.image(image)
        mask = np.asarray(mask)
        if tuple(mask.shape) != rec.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} differs from the image grid {rec.shape} "
                             f"(Z, Y, X) of {rec.subject} {rec.role}")
        if kind not in VERSION_KINDS:
            raise ValueError(f"kind must be one of {VERSION_KINDS}, got {kind!r}")
        binary = (mask > 0).astype(np.uint8)
        n_components = int(ndi.label(binary, structure=STRUCTURE_26)[1])
        rater = _safe_name(rater, "rater")
        with self._write() as db:
            rid = self._rater_id(db, rater, create=True)
            if parent is None:
                row = db.execute("SELECT id FROM versions WHERE image_id = ? AND rater_id = ? ORDER BY id DESC "
                                 "LIMIT 1", (rec.id, rid)).fetchone()
                parent = int(row[0]) if row else None
            if slice_status is None:
                status = self._slice_status(db, parent) if parent is not None else {}
            else:
                status = self._clean_status(slice_status, rec)
            vid = int(db.execute(
                "INSERT INTO versions (image_id, rater_id, parent_id, kind, created, note, path, sha256,"
                " n_voxels, n_components) VALUES (?, ?, ?, ?, ?, ?, '', '', ?, ?)",
                (rec.id, rid, parent, kind, _now(), note, int(binary.sum()), n_components)).lastrowid)
            rel = Path("annotations") / rec.subject / rec.role / f"v{vid:06d}.nii.gz"
            dest = self.root / rel
            save_volume(dest, binary, self._reference(rec), dtype=np.uint8)
            _fsync_dir(dest.parent)
            db.execute("UPDATE versions SET path = ?, sha256 = ? WHERE id = ?", (rel.as_posix(), sha256_file(dest), vid))
            db.executemany("INSERT INTO slice_status VALUES (?, ?, ?)",
                           [(vid, s, st) for s, st in status.items() if st != "todo"])
            for d in decisions or []:
                if d.get("decision") not in DECISIONS:
                    raise ValueError(f"decision must be one of {DECISIONS}, got {d.get('decision')!r}")
                db.execute("INSERT INTO decisions (version_id, candidate, decision, source, centre, n_voxels)"
                           " VALUES (?, ?, ?, ?, ?, ?)",
                           (vid, int(d["candidate"]), d["decision"], str(d.get("source", "")),
                            json.dumps([float(v) for v in d.get("centre", ())]), int(d.get("n_voxels", 0))))
        return self.version(vid)

    def set_slice_status(self, version: int, slices, status: str, *, rater: str | None = None,
                         note: str = "") -> VersionRecord:
        """Mark axial ``slices`` with ``status`` as a new version on top of ``version``
        (same mask file, no copy; versions are never changed in place).

        Raises
        ------
        ValueError
            Unknown status or slice outside the image.
        """
        base = self.version(version)
        rec = self.image(base.image_id)
        status_map = dict(base.slice_status)
        for s in np.atleast_1d(slices):
            status_map[int(s)] = status
        status_map = self._clean_status(status_map, rec)
        with self._write() as db:
            rid = self._rater_id(db, _safe_name(rater or base.rater, "rater"), create=True)
            vid = int(db.execute(
                "INSERT INTO versions (image_id, rater_id, parent_id, kind, created, note, path, sha256,"
                " n_voxels, n_components) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (base.image_id, rid, base.id, "manual" if base.kind == "autosave" else base.kind, _now(),
                 note or f"slices {format_slices(slices)} {status}", base.path.relative_to(self.root).as_posix(),
                 base.sha256, base.n_voxels, base.n_components)).lastrowid)
            db.executemany("INSERT INTO slice_status VALUES (?, ?, ?)",
                           [(vid, s, st) for s, st in status_map.items() if st != "todo"])
        return self.version(vid)

    def _clean_status(self, status: dict, rec: ImageRecord) -> dict[int, str]:
        n = rec.shape[rec.axial_axis]
        out = {}
        for s, st in status.items():
            if st not in SLICE_STATUSES:
                raise ValueError(f"slice status must be one of {SLICE_STATUSES}, got {st!r}")
            if not 0 <= int(s) < n:
                raise ValueError(f"slice {s} is outside the image's {n} axial slices (0-{n - 1})")
            out[int(s)] = st
        return out

    def _slice_status(self, db, vid: int) -> dict[int, str]:
        return {int(r[0]): r[1] for r in db.execute("SELECT slice, status FROM slice_status WHERE version_id = ?"
                                                    " ORDER BY slice", (vid,))}

    _VERSION_SQL = ("SELECT v.*, r.name AS rater, i.role AS role, s.name AS subject FROM versions v "
                    "JOIN raters r ON r.id = v.rater_id JOIN images i ON i.id = v.image_id "
                    "JOIN subjects s ON s.id = i.subject_id")

    def version(self, vid: int) -> VersionRecord:
        """One version by id.

        Raises
        ------
        PVSInputError
            No such version.
        """
        row = self._db.execute(self._VERSION_SQL + " WHERE v.id = ?", (int(vid),)).fetchone()
        if row is None:
            raise PVSInputError(f"no annotation version {vid} in the project", self.root)
        return self._version_record(row)

    def _version_record(self, r) -> VersionRecord:
        return VersionRecord(id=int(r["id"]), image_id=int(r["image_id"]), subject=r["subject"], role=r["role"],
                             rater=r["rater"], parent_id=r["parent_id"], kind=r["kind"], created=r["created"],
                             note=r["note"], path=self.root / r["path"], sha256=r["sha256"],
                             n_voxels=int(r["n_voxels"]), n_components=int(r["n_components"]),
                             slice_status=self._slice_status(self._db, int(r["id"])))

    def versions(self, image: str | int | ImageRecord | None = None, *, rater: str | None = None,
                 kind: str | None = None) -> list[VersionRecord]:
        """Versions, oldest first, optionally of one image (subject name = its T2), rater
        and kind."""
        where, args = [], []
        if image is not None:
            rec = image if isinstance(image, ImageRecord) else self.image(image)
            where.append("v.image_id = ?")
            args.append(rec.id)
        if rater is not None:
            where.append("r.name = ?")
            args.append(rater)
        if kind is not None:
            where.append("v.kind = ?")
            args.append(kind)
        sql = self._VERSION_SQL + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY v.id"
        return [self._version_record(r) for r in self._db.execute(sql, args)]

    def latest_version(self, image: str | int | ImageRecord, rater: str | None = None, *,
                       include_autosaves: bool = False) -> VersionRecord | None:
        """The newest version of an image (by one rater), skipping autosaves unless asked."""
        vs = [v for v in self.versions(image, rater=rater) if include_autosaves or v.kind != "autosave"]
        return vs[-1] if vs else None

    def newest_autosave(self, image: str | int | ImageRecord, rater: str) -> VersionRecord | None:
        """The rater's newest autosave of an image when it is newer than every other version
        of theirs (work not saved by hand before a crash or a close), else None."""
        vs = self.versions(image, rater=rater)
        return vs[-1] if vs and vs[-1].kind == "autosave" else None

    def load_version(self, vid: int) -> np.ndarray:
        """The mask of a version, uint8 ``(Z, Y, X)`` 0/1, its sha256 checked.

        Raises
        ------
        PVSInputError
            No such version, or its file is missing or altered.
        """
        rec = self.version(vid)
        self._check_file(rec.path, rec.sha256)
        return (np.asarray(load_volume(rec.path).data) > 0).astype(np.uint8)

    def decisions(self, vid: int) -> list[dict]:
        """Candidate decisions stored with a version."""
        return [{"candidate": int(r["candidate"]), "decision": r["decision"], "source": r["source"],
                 "centre": tuple(json.loads(r["centre"])), "n_voxels": int(r["n_voxels"])}
                for r in self._db.execute("SELECT * FROM decisions WHERE version_id = ? ORDER BY id", (int(vid),))]

    def label_mask(self, vid: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, labelled)`` of a version for training: the uint8 mask and a bool
        ``(Z, Y, X)`` map of the voxels whose label is known (the slices marked done or
        reviewed); every other voxel must be ignored by the loss, not taken as background."""
        rec = self.version(vid)
        img = self.image(rec.image_id)
        return self.load_version(vid), slices_mask(img.shape, img.axial_axis, rec.labelled_slices)

