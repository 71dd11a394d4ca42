"""The annotation project store: an SQLite catalogue plus NIfTI files in one folder.

Layout of a project folder::

    catalogue.sqlite        subjects, images, raters, versions, slice statuses,
                            candidate decisions, training runs, predictions
    images/<subject>/<role>.nii.gz
    annotations/<subject>/<role>/v<id>.nii.gz
    predictions/<subject>/<role>/p<id>.nii.gz
    .writer.lock            held by the process that writes (see :mod:`.lock`)

Guarantees:

* every file is written to a temporary name in its folder, flushed (``fsync``) and
  renamed, and its catalogue row is committed only after the rename (and the folder's
  ``fsync``), in one transaction: a version row never points to a half-written file. A
  crash between the rename and the commit leaves an unreferenced file that
  :meth:`Project.verify` reports as an orphan and never takes for a version;
* the catalogue runs in WAL mode with foreign keys on and ``synchronous=FULL``;
  ``PRAGMA user_version`` is its schema version, upgraded by :mod:`.schema`'s migrations
  and refused when newer than this napari-pvs knows;
* one writing process per project (:class:`~.lock.WriterLock`); readers never block;
* opening checks the catalogue (``PRAGMA quick_check``) and, with ``verify=True``, every
  file's sha256, and reports what is missing or altered, naming the file.

Nothing but this class writes the catalogue: the napari widgets and the CLI call it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from scipy import ndimage as ndi

from ..errors import PVSInputError
from ..io import Volume, atomic_path, load_volume, save_volume
from .lock import WriterLock
from .schema import DECISIONS, MIGRATIONS, SCHEMA_VERSION, SLICE_STATUSES, VERSION_KINDS

__all__ = ["Project", "ImageRecord", "VersionRecord", "Problem", "CATALOGUE_NAME", "sha256_of", "slices_mask",
           "common_labelled_slices"]

log = logging.getLogger(__name__)

CATALOGUE_NAME = "catalogue.sqlite"
_CONN26 = ndi.generate_binary_structure(3, 3)


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def _safe_name(text: str, what: str) -> str:
    name = str(text).strip()
    if not name or any(c in name for c in '/\\:*?"<>|') or name.startswith("."):
        raise ValueError(f"{what} must be a non-empty name without path characters, got {text!r}")
    return name


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


class Project:
    """An annotation project folder (see the module docstring). Open it with
    :meth:`create` or :meth:`open`; use it as a context manager or call :meth:`close`.

    Parameters
    ----------
    root : Path
        Project folder.
    readonly : bool
        Open without the writer lock; every writing method raises.
    wait_s : float
        Seconds to wait for another writer to close the project.

    Raises
    ------
    PVSInputError
        Not a project folder, a catalogue from a newer schema, a damaged catalogue.
    ProjectLockedError
        Open for writing in another process (host and pid named).
    """

    def __init__(self, root: str | Path, *, readonly: bool = False, wait_s: float = 0.0,
                 _create: bool = False):
        self.root = Path(root).resolve()
        self.readonly = readonly
        self.problems: list[Problem] = []
        db = self.root / CATALOGUE_NAME
        if not _create and not db.is_file():
            raise PVSInputError(f"not a napari-pvs project (no {CATALOGUE_NAME})", self.root)
        self._lock = None if readonly else WriterLock(self.root, wait_s=wait_s)
        try:
            uri = f"file:{db}?mode=ro" if readonly else f"file:{db}"
            self._db = sqlite3.connect(uri, uri=True, timeout=max(wait_s, 5.0), isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = FULL")
            self._check_catalogue(db)
            if not readonly:
                self._migrate(db)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, root: str | Path, *, name: str | None = None) -> "Project":
        """Create a new project in ``root`` (created if needed; must not hold a project).

        Raises
        ------
        PVSInputError
            ``root`` already holds a project.
        """
        root = Path(root)
        if (root / CATALOGUE_NAME).exists():
            raise PVSInputError("a napari-pvs project already exists here", root)
        root.mkdir(parents=True, exist_ok=True)
        proj = cls(root, _create=True)
        with proj._write() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('name', ?)", (name or root.resolve().name,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('created', ?)", (_now(),))
        return proj

    @classmethod
    def open(cls, root: str | Path, *, readonly: bool = False, wait_s: float = 0.0,
             verify: bool | str = "report") -> "Project":
        """Open an existing project and check every file against the catalogue.

        ``verify="report"`` (default): every missing or altered file is logged as a warning
        naming it, and kept in :attr:`problems`; ``True``: raise
        :class:`~napari_pvs.engine.errors.PVSInputError` naming the first one; ``False``: no
        check (fast). Orphans (files of interrupted saves) are never errors."""
        proj = cls(root, readonly=readonly, wait_s=wait_s)
        if verify:
            bad = [p for p in proj.verify() if p.kind != "orphan"]
            proj.problems = bad
            for p in bad if verify == "report" else []:
                log.warning("%s", p)
            if bad and verify is True:
                proj.close()
                raise PVSInputError(f"{bad[0].kind}: {bad[0].detail}"
                                    + (f" (and {len(bad) - 1} more problems)" if len(bad) > 1 else ""),
                                    bad[0].path)
        return proj

    def _check_catalogue(self, db: Path) -> None:
        try:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            ok = self._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise PVSInputError(f"the catalogue is not a readable SQLite database ({exc})", db) from None
        if version > SCHEMA_VERSION:
            raise PVSInputError(
                f"catalogue schema version {version} is newer than this napari-pvs supports "
                f"({SCHEMA_VERSION}); update napari-pvs to open it", db)
        if ok != "ok":
            raise PVSInputError(f"the catalogue is damaged (quick_check: {ok})", db)

    def _migrate(self, db: Path) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        for v in range(version + 1, SCHEMA_VERSION + 1):
            with self._write() as cur:
                for stmt in _statements(MIGRATIONS[v]):
                    cur.execute(stmt)
                cur.execute(f"PRAGMA user_version = {v}")
            log.info("%s: catalogue schema upgraded to version %d", db, v)

    def close(self) -> None:
        """Close the catalogue and release the writer lock (idempotent)."""
        if getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except (sqlite3.Error, OSError, AttributeError):
            pass

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error)."""
        if self.readonly:
            raise PVSInputError("the project is open read-only", self.root)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @property
    def name(self) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'name'").fetchone()
        return row[0] if row else self.root.name

    # ------------------------------------------------------------------ subjects and images
    def add_image(self, image: str | Path, *, subject: str | None = None, role: str = "T2") -> ImageRecord:
        """Copy a NIfTI image into the project and catalogue it.

        Parameters
        ----------
        image : path
            ``.nii``/``.nii.gz`` file (3D).
        subject : str, optional
            Subject name (created when new); default the file name without suffix.
        role : str
            Contrast of the image (``"T2"``, ``"T1"``, ``"FLAIR"``); one image per role and
            subject. The T2 is the one annotated.

        Raises
        ------
        PVSInputError
            Unreadable or non-3D image, or the subject already has an image of that role.
        """
        src = Path(image)
        vol = load_volume(src)
        stem = src.name[:-7] if src.name.lower().endswith(".nii.gz") else src.stem
        subject = _safe_name(subject or stem, "subject")
        role = _safe_name(role, "role")
        ext = ".nii.gz" if src.name.lower().endswith(".gz") else ".nii"
        rel = Path("images") / subject / f"{role}{ext}"
        with self._write() as db:
            sid = self._subject_id(db, subject, create=True)
            if db.execute("SELECT 1 FROM images WHERE subject_id = ? AND role = ?", (sid, role)).fetchone():
                raise PVSInputError(f"subject {subject} already has a {role} image in the project", src)
            dest = self.root / rel
            with atomic_path(dest) as tmp:
                shutil.copyfile(src, tmp)
            _fsync_dir(dest.parent)
            db.execute(
                "INSERT INTO images (subject_id, role, path, sha256, shape, affine, voxel_size, axial_axis,"
                " source, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sid, role, rel.as_posix(), sha256_of(dest), json.dumps(list(vol.shape)),
                 json.dumps(np.asarray(vol.affine, float).tolist()), json.dumps(list(vol.voxel_size)),
                 int(vol.axial_axis), str(src.resolve()), _now()))
        return self.image(subject, role)

    def _subject_id(self, db, subject: str, *, create: bool = False) -> int:
        row = db.execute("SELECT id FROM subjects WHERE name = ?", (subject,)).fetchone()
        if row:
            return int(row[0])
        if not create:
            raise PVSInputError(f"no subject {subject!r} in the project", self.root)
        return int(db.execute("INSERT INTO subjects (name, created) VALUES (?, ?)", (subject, _now())).lastrowid)

    def subjects(self) -> list[str]:
        """Subject names in the order they were added."""
        return [r[0] for r in self._db.execute("SELECT name FROM subjects ORDER BY id")]

    def images(self, subject: str | None = None) -> list[ImageRecord]:
        """All images (of one subject), in the order they were added."""
        sql = ("SELECT i.*, s.name AS subject FROM images i JOIN subjects s ON s.id = i.subject_id"
               + (" WHERE s.name = ?" if subject is not None else "") + " ORDER BY i.id")
        return [self._image_record(r) for r in self._db.execute(sql, (subject,) if subject is not None else ())]

    def image(self, subject_or_id: str | int, role: str = "T2") -> ImageRecord:
        """The image of a subject and role, or the image with catalogue id ``subject_or_id``.

        Raises
        ------
        PVSInputError
            No such image.
        """
        if isinstance(subject_or_id, (int, np.integer)):
            row = self._db.execute("SELECT i.*, s.name AS subject FROM images i JOIN subjects s "
                                   "ON s.id = i.subject_id WHERE i.id = ?", (int(subject_or_id),)).fetchone()
        else:
            row = self._db.execute("SELECT i.*, s.name AS subject FROM images i JOIN subjects s "
                                   "ON s.id = i.subject_id WHERE s.name = ? AND i.role = ?",
                                   (subject_or_id, role)).fetchone()
        if row is None:
            raise PVSInputError(f"no {role} image of subject {subject_or_id!r} in the project", self.root)
        return self._image_record(row)

    def _image_record(self, r) -> ImageRecord:
        return ImageRecord(id=int(r["id"]), subject=r["subject"], role=r["role"], path=self.root / r["path"],
                           sha256=r["sha256"], shape=tuple(json.loads(r["shape"])),
                           affine=np.array(json.loads(r["affine"])),
                           voxel_size=tuple(json.loads(r["voxel_size"])), axial_axis=int(r["axial_axis"]),
                           source=r["source"])

    def _reference(self, rec: ImageRecord) -> Volume:
        """The image as the geometry (affine, header) of its masks; kept for the next save."""
        cache = self.__dict__.setdefault("_ref_cache", {})
        if rec.id not in cache:
            cache.clear()
            cache[rec.id] = load_volume(rec.path)
        return cache[rec.id]

    def load_image(self, subject_or_id: str | int, role: str = "T2") -> Volume:
        """The image as a :class:`~napari_pvs.engine.io.Volume` ``(Z, Y, X)``, its sha256
        checked.

        Raises
        ------
        PVSInputError
            The file is missing or was altered behind the catalogue's back.
        """
        rec = self.image(subject_or_id, role)
        self._check_file(rec.path, rec.sha256)
        return load_volume(rec.path)

    # ------------------------------------------------------------------ raters
    def add_rater(self, name: str) -> str:
        """Register a rater (idempotent); returns the name."""
        name = _safe_name(name, "rater")
        with self._write() as db:
            self._rater_id(db, name, create=True)
        return name

    def _rater_id(self, db, name: str, *, create: bool = False) -> int:
        row = db.execute("SELECT id FROM raters WHERE name = ?", (name,)).fetchone()
        if row:
            return int(row[0])
        if not create:
            raise PVSInputError(f"no rater {name!r} in the project", self.root)
        return int(db.execute("INSERT INTO raters (name, created) VALUES (?, ?)", (name, _now())).lastrowid)

    def raters(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM raters ORDER BY id")]

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
        n_components = int(ndi.label(binary, structure=_CONN26)[1])
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
            db.execute("UPDATE versions SET path = ?, sha256 = ? WHERE id = ?", (rel.as_posix(), sha256_of(dest), vid))
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
                 note or f"slices {_ranges(slices)} {status}", base.path.relative_to(self.root).as_posix(),
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

    # ------------------------------------------------------------------ runs and predictions
    def record_training_run(self, checkpoint: str | Path, *, config: dict, metrics: dict,
                            versions: list[int]) -> int:
        """Catalogue a training run (checkpoint path and sha256, config, metrics, the
        versions it trained on); the checkpoint stays where it is. Returns the run id."""
        ck = Path(checkpoint).resolve()
        with self._write() as db:
            return int(db.execute(
                "INSERT INTO training_runs (created, config, metrics, versions, checkpoint, checkpoint_sha256)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (_now(), json.dumps(config, default=str), json.dumps(metrics, default=str),
                 json.dumps([int(v) for v in versions]), str(ck), sha256_of(ck))).lastrowid)

    def training_runs(self) -> list[dict]:
        return [{"id": int(r["id"]), "created": r["created"], "config": json.loads(r["config"]),
                 "metrics": json.loads(r["metrics"]), "versions": json.loads(r["versions"]),
                 "checkpoint": r["checkpoint"], "checkpoint_sha256": r["checkpoint_sha256"]}
                for r in self._db.execute("SELECT * FROM training_runs ORDER BY id")]

    def save_prediction(self, image: str | int | ImageRecord, mask: np.ndarray, *, checkpoint_sha256: str) -> int:
        """Store a model's prediction mask for an image (atomically, like versions)."""
        rec = image if isinstance(image, ImageRecord) else self.image(image)
        if tuple(np.shape(mask)) != rec.shape:
            raise ValueError(f"prediction shape {tuple(np.shape(mask))} differs from the image grid {rec.shape}")
        with self._write() as db:
            pid = int(db.execute("INSERT INTO predictions (image_id, created, checkpoint_sha256, path, sha256)"
                                 " VALUES (?, ?, ?, '', '')", (rec.id, _now(), checkpoint_sha256)).lastrowid)
            rel = Path("predictions") / rec.subject / rec.role / f"p{pid:06d}.nii.gz"
            dest = self.root / rel
            save_volume(dest, (np.asarray(mask) > 0).astype(np.uint8), self._reference(rec), dtype=np.uint8)
            _fsync_dir(dest.parent)
            db.execute("UPDATE predictions SET path = ?, sha256 = ? WHERE id = ?", (rel.as_posix(), sha256_of(dest), pid))
        return pid

    # ------------------------------------------------------------------ checks
    def _check_file(self, path: Path, sha: str) -> None:
        if not path.is_file():
            raise PVSInputError("missing: the catalogue lists this file but it is gone", path)
        if sha256_of(path) != sha:
            raise PVSInputError("altered: the file's sha256 differs from the catalogue's "
                                "(edited or replaced outside napari-pvs)", path)

    def verify(self) -> list[Problem]:
        """Check every catalogued file (exists, sha256) and look for orphans (files under
        ``annotations/`` or ``predictions/`` that no row references: left by a save that
        was interrupted before its commit). Returns the problems found (empty: all well)."""
        problems: list[Problem] = []
        known: dict[Path, str] = {}
        for table in ("images", "versions", "predictions"):
            for r in self._db.execute(f"SELECT path, sha256 FROM {table}"):
                known[self.root / r[0]] = r[1]
        for path, sha in known.items():
            if not path.is_file():
                problems.append(Problem("missing", path, "listed in the catalogue but not on disk"))
            elif sha256_of(path) != sha:
                problems.append(Problem("altered", path, "sha256 differs from the catalogue's"))
        for sub in ("images", "annotations", "predictions"):
            for p in sorted((self.root / sub).rglob("*")) if (self.root / sub).is_dir() else []:
                if p.is_file() and p not in known:
                    problems.append(Problem("orphan", p, "no catalogue row references it "
                                            "(an interrupted save); it is ignored"))
        return problems

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` of the catalogue (``"ok"`` when whole)."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # ------------------------------------------------------------------ summaries
    def status(self) -> list[dict]:
        """Per subject and image: versions, and per rater the latest version's slices done,
        reviewed and in progress out of the image's axial slices."""
        out = []
        for img in self.images():
            n = img.shape[img.axial_axis]
            row = {"subject": img.subject, "role": img.role, "slices": n, "raters": {},
                   "versions": len(self.versions(img))}
            for rater in self.raters():
                v = self.latest_version(img, rater, include_autosaves=True)
                if v is None:
                    continue
                row["raters"][rater] = {"version": v.id, "kind": v.kind, "created": v.created,
                                        "done": len(v.slices_with("done")),
                                        "reviewed": len(v.slices_with("reviewed")),
                                        "in_progress": len(v.slices_with("in_progress")),
                                        "n_components": v.n_components}
            out.append(row)
        return out


def common_labelled_slices(versions: list[VersionRecord]) -> dict[int, str]:
    """``{slice: "done"}`` for the slices labelled (done or reviewed) in every one of
    ``versions``: the slices a consensus of them is known on."""
    if not versions:
        return {}
    common = set(versions[0].labelled_slices)
    for v in versions[1:]:
        common &= set(v.labelled_slices)
    return {s: "done" for s in sorted(common)}


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _ranges(slices) -> str:
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
