"""Checks of a project against its catalogue (missing, altered and orphan files,
SQLite integrity) and the per-subject progress summary.

Mixed into :class:`~napari_pvs.engine.project.store.Project`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..data import sha256_file
from ..errors import PVSInputError
from .records import Problem

__all__ = ["ChecksMixin", "HASH_CACHE"]

#: where a project remembers the files it has hashed: relative path -> [size, mtime_ns, sha256]
HASH_CACHE = Path(".cache") / "verified.json"


class ChecksMixin:
    """The checking and summary part of :class:`~napari_pvs.engine.project.store.Project`."""

    # ------------------------------------------------------------------ checks
    def _check_file(self, path: Path, sha: str) -> None:
        if not path.is_file():
            raise PVSInputError("missing: the catalogue lists this file but it is gone", path)
        if sha256_file(path) != sha:
            raise PVSInputError("altered: the file's sha256 differs from the catalogue's "
                                "(edited or replaced outside napari-pvs)", path)

    def verify(self) -> list[Problem]:
        """Check every catalogued file (exists, sha256; a file whose size and modification
        time match :data:`HASH_CACHE` is not hashed again) and look for orphans (files under
        ``annotations/`` or ``predictions/`` that no row references: left by a save that
        was interrupted before its commit). Returns the problems found (empty: all well)."""
        problems: list[Problem] = []
        known: dict[Path, str] = {}
        for table in ("images", "versions", "predictions"):
            for r in self._db.execute(f"SELECT path, sha256 FROM {table}"):
                known[self.root / r[0]] = r[1]
        cache = self._read_hash_cache()
        fresh: dict[str, list] = {}
        for path, sha in known.items():
            try:
                st = path.stat()
            except OSError:
                problems.append(Problem("missing", path, "listed in the catalogue but not on disk"))
                continue
            rel = path.relative_to(self.root).as_posix()
            stamp = [st.st_size, st.st_mtime_ns]
            hit = cache.get(rel)
            actual = hit[2] if hit is not None and hit[:2] == stamp else sha256_file(path)
            fresh[rel] = [*stamp, actual]
            if actual != sha:
                problems.append(Problem("altered", path, "sha256 differs from the catalogue's"))
        if fresh != cache:
            self._write_hash_cache(fresh)
        for sub in ("images", "annotations", "predictions"):
            for p in sorted((self.root / sub).rglob("*")) if (self.root / sub).is_dir() else []:
                if p.is_file() and p not in known:
                    problems.append(Problem("orphan", p, "no catalogue row references it "
                                            "(an interrupted save); it is ignored"))
        return problems

    def _read_hash_cache(self) -> dict:
        """The sha256 of files hashed before, by size and modification time (a file whose
        size and mtime are unchanged is not hashed again when the project is opened)."""
        try:
            data = json.loads((self.root / HASH_CACHE).read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_hash_cache(self, entries: dict) -> None:
        """Write the cache atomically; a read-only project or folder just goes without it."""
        if getattr(self, "readonly", False):
            return
        path = self.root / HASH_CACHE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            path.parent.mkdir(exist_ok=True)
            tmp.write_text(json.dumps(entries, separators=(",", ":")))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)

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


