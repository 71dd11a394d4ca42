"""The annotation projects open in this napari session, shared by the widgets.

One :class:`~napari_pvs.engine.project.Project` per folder and process (the project's
writer lock is per process), so the Annotate, Train and Active learning widgets share it
instead of locking each other out.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["open_project", "release_project"]

_OPEN: dict[Path, object] = {}


def open_project(folder, *, create: bool = False):
    """The project of ``folder``, opened for writing once per session (created when
    ``create``); raises the store's one-line errors."""
    from ..engine.project import Project

    key = Path(folder).expanduser().resolve()
    proj = _OPEN.get(key)
    if proj is not None and getattr(proj, "_db", None) is not None:
        if create:
            from ..engine.errors import PVSInputError

            raise PVSInputError("a napari-pvs project already exists here", key)
        return proj
    proj = Project.create(key) if create else Project.open(key)
    _OPEN[key] = proj
    return proj


def release_project(proj) -> None:
    """Close ``proj`` and forget it."""
    if proj is None:
        return
    for key, value in list(_OPEN.items()):
        if value is proj:
            del _OPEN[key]
    proj.close()
