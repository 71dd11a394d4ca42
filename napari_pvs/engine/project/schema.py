"""The project catalogue's SQLite schema and its migrations.

The schema version is ``PRAGMA user_version``. :data:`MIGRATIONS` maps each version to
the SQL that brings a catalogue from the version before it; a catalogue whose version is
newer than :data:`SCHEMA_VERSION` is refused (it was written by a newer napari-pvs).
"""

from __future__ import annotations

__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "SLICE_STATUSES", "VERSION_KINDS", "DECISIONS"]

#: per-axial-slice annotation status, in order of progress
SLICE_STATUSES = ("todo", "in_progress", "done", "reviewed")
#: how a version came to be
VERSION_KINDS = ("manual", "autosave", "import", "consensus")
#: what a rater did with a candidate proposal
DECISIONS = ("accept", "reject", "skip")


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


_V1 = f"""
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE subjects (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    name    TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE images (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id INTEGER NOT NULL REFERENCES subjects(id),
    role       TEXT NOT NULL,
    path       TEXT NOT NULL UNIQUE,
    sha256     TEXT NOT NULL,
    shape      TEXT NOT NULL,
    affine     TEXT NOT NULL,
    voxel_size TEXT NOT NULL,
    axial_axis INTEGER NOT NULL,
    source     TEXT NOT NULL,
    added      TEXT NOT NULL,
    UNIQUE (subject_id, role)
);
CREATE TABLE raters (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    name    TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE versions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id     INTEGER NOT NULL REFERENCES images(id),
    rater_id     INTEGER NOT NULL REFERENCES raters(id),
    parent_id    INTEGER REFERENCES versions(id),
    kind         TEXT NOT NULL CHECK (kind IN {_in(VERSION_KINDS)}),
    created      TEXT NOT NULL,
    note         TEXT NOT NULL DEFAULT '',
    path         TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    n_voxels     INTEGER NOT NULL,
    n_components INTEGER NOT NULL
);
CREATE INDEX versions_image_rater ON versions (image_id, rater_id, id);
CREATE TABLE slice_status (
    version_id INTEGER NOT NULL REFERENCES versions(id),
    slice      INTEGER NOT NULL,
    status     TEXT NOT NULL CHECK (status IN {_in(SLICE_STATUSES[1:])}),
    PRIMARY KEY (version_id, slice)
);
CREATE TABLE decisions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    version_id INTEGER NOT NULL REFERENCES versions(id),
    candidate  INTEGER NOT NULL,
    decision   TEXT NOT NULL CHECK (decision IN {_in(DECISIONS)}),
    source     TEXT NOT NULL,
    centre     TEXT NOT NULL,
    n_voxels   INTEGER NOT NULL
);
CREATE TABLE training_runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    created           TEXT NOT NULL,
    config            TEXT NOT NULL,
    metrics           TEXT NOT NULL,
    versions          TEXT NOT NULL,
    checkpoint        TEXT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL
);
CREATE TABLE predictions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id          INTEGER NOT NULL REFERENCES images(id),
    created           TEXT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL,
    path              TEXT NOT NULL,
    sha256            TEXT NOT NULL
);
"""

#: version 2: active-learning rounds (the fine-tuned model, the slices it learnt from, its
#: validation DSC and the suggestions that led to it)
_V2 = """
CREATE TABLE al_rounds (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    created       TEXT NOT NULL,
    run_id        INTEGER REFERENCES training_runs(id),
    checkpoint    TEXT NOT NULL,
    strategy      TEXT NOT NULL,
    n_slices      INTEGER NOT NULL,
    val_dsc       REAL,
    suggestions   TEXT NOT NULL
);
"""

#: the catalogue schema this napari-pvs writes
SCHEMA_VERSION = 2
#: version -> SQL that brings a catalogue from ``version - 1`` to ``version``
MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2}
