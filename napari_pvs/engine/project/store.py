"""The annotation project store: an SQLite catalogue plus NIfTI files in one folder.

Layout of a project folder::

    catalogue.sqlite        subjects, images, raters, versions, slice statuses,
                            candidate decisions, training runs, predictions
    images/<subject>/<role>.nii.gz
    annotations/<subject>/<role>/v<id>.nii.gz
    predictions/<subject>/<role>/p<id>.nii.gz
    .writer.lock            held by the process that writes (see :mod:`.lock`)
    .writer.json            which process holds it (host, pid, since)

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

import json
import logging
import re
import shutil
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..data import sha256_file
from ..errors import PVSInputError
from ..io import Volume, atomic_path, load_volume
from .checks import ChecksMixin
from .lock import WriterLock
from .records import (ImageRecord, Problem, VersionRecord, _fsync_dir, _now, _safe_name, common_labelled_slices,
                      slices_mask)
from .runs import RunsMixin
from .schema import MIGRATIONS, SCHEMA_VERSION
from .versions import VersionsMixin

__all__ = ["Project", "ImageRecord", "VersionRecord", "Problem", "CATALOGUE_NAME", "slices_mask",
           "common_labelled_slices"]

log = logging.getLogger(__name__)

CATALOGUE_NAME = "catalogue.sqlite"


class Project(VersionsMixin, RunsMixin, ChecksMixin):
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
        self._ref_cache: tuple[int | None, Volume | None] = (None, None)
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
    def add_image(self, image: str | Path, *, subject: str | None = None, role: str | None = None,
                  series: str | int | None = None) -> ImageRecord:
        """Copy a scan into the project (as NIfTI) and catalogue it.

        Parameters
        ----------
        image : path
            A 3D scan: ``.nii``/``.nii.gz`` (copied as it is), ``.mgz``/``.mgh`` or a DICOM
            series (folder or file; converted to NIfTI on its own grid, no patient data).
        subject : str, optional
            Subject name (created when new); default: for a BIDS name
            ``sub-XX[_ses-YY]``, else the file name without suffix.
        role : str, optional
            Contrast of the image (``"T2"``, ``"T1"``, ``"FLAIR"``); one image per role and
            subject. The T2 is the one annotated. Default: from a BIDS suffix, else ``"T2"``.
        series : str or int, optional
            The DICOM series of a folder with several.

        Raises
        ------
        PVSInputError
            Unreadable or non-3D image, or the subject already has an image of that role.
        """
        from ..io import is_nifti_name, save_volume
        from ..io.bids import bids_entities

        src = Path(image)
        vol = load_volume(src, series=series)
        entities = bids_entities(src) if src.is_file() else None
        name = src.name
        for suffix in (".nii.gz", ".nii", ".mgz", ".mgh", ".dcm"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        if entities is not None and entities.is_bids:
            subject, role = subject or entities.subject_id, role or entities.role
        if not subject:   # a name taken from the file: characters a name may not hold become '_'
            name = re.sub(r"[^\w .-]", "_", name).replace("..", "_").lstrip(" ._-")[:64] or "subject"
        subject = _safe_name(subject or name, "subject")
        role = _safe_name(role or "T2", "role")
        copy = is_nifti_name(src) and src.is_file()
        ext = (".nii.gz" if src.name.lower().endswith(".gz") else ".nii") if copy else ".nii.gz"
        rel = Path("images") / subject / f"{role}{ext}"
        with self._write() as db:
            sid = self._subject_id(db, subject, create=True)
            if db.execute("SELECT 1 FROM images WHERE subject_id = ? AND role = ?", (sid, role)).fetchone():
                raise PVSInputError(f"subject {subject} already has a {role} image in the project", src)
            dest = self.root / rel
            if copy:
                with atomic_path(dest) as tmp:
                    shutil.copyfile(src, tmp)
            else:
                save_volume(dest, vol.data, vol)
            _fsync_dir(dest.parent)
            db.execute(
                "INSERT INTO images (subject_id, role, path, sha256, shape, affine, voxel_size, axial_axis,"
                " source, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sid, role, rel.as_posix(), sha256_file(dest), json.dumps(list(vol.shape)),
                 json.dumps(np.asarray(vol.affine, float).tolist()), json.dumps(list(vol.voxel_size)),
                 int(vol.axial_axis), str(src.resolve()), _now()))
        return self.image(subject, role)

    def add_bids(self, root: str | Path, *, suffixes=("T2w", "T1w", "FLAIR")) -> list[ImageRecord]:
        """Add every subject and session of a BIDS dataset: one subject ``sub-XX[_ses-YY]``
        each, the role from the suffix (``T2w`` -> T2, ``T1w`` -> T1, ``FLAIR``); a second
        scan of one role (another ``acq-`` or ``run-``) gets them in its role
        (``T2_acq-tse_run-2``). Scans already in the project are left as they are.

        Raises
        ------
        PVSInputError
            Not a BIDS root, or no T2w/T1w/FLAIR scan in it.
        """
        from ..io.bids import find_bids_scans

        added = []
        known = {(r.subject, r.role) for r in self.images()}
        sources = {Path(r.source).resolve() if r.source else None for r in self.images()}
        for path, e in find_bids_scans(root, suffixes):
            if path.resolve() in sources:
                continue
            role = e.role
            if (e.subject_id, role) in known:
                role = "_".join([role] + [f"{k}-{v}" for k, v in (("acq", e.acquisition), ("run", e.run)) if v])
            if (e.subject_id, role) in known:
                continue
            added.append(self.add_image(path, subject=e.subject_id, role=role))
            known.add((e.subject_id, role))
        return added

    def _named_id(self, db, table: str, name: str, *, create: bool) -> int:
        """Id of the ``subjects`` or ``raters`` row called ``name`` (inserted when new and
        ``create``)."""
        row = db.execute(f"SELECT id FROM {table} WHERE name = ?", (name,)).fetchone()
        if row:
            return int(row[0])
        if not create:
            raise PVSInputError(f"no {table[:-1]} {name!r} in the project", self.root)
        return int(db.execute(f"INSERT INTO {table} (name, created) VALUES (?, ?)", (name, _now())).lastrowid)

    def _subject_id(self, db, subject: str, *, create: bool = False) -> int:
        return self._named_id(db, "subjects", subject, create=create)

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
        if self._ref_cache[0] != rec.id:
            self._ref_cache = (rec.id, load_volume(rec.path))
        return self._ref_cache[1]

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
        return self._named_id(db, "raters", name, create=create)

    def raters(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM raters ORDER BY id")]



def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]

