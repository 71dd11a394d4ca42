"""State shared by the widgets: the annotation projects open in this napari session and
the widgets docked in each viewer.

One :class:`~napari_pvs.engine.project.Project` per folder and process (the project's
writer lock is per process), so the Annotate, Train and Active learning widgets share it
instead of locking each other out. The Active learning widget finds the viewer's Annotate
widget through :func:`find_widget` to open a proposed slice in it.
"""

from __future__ import annotations

import weakref
from pathlib import Path

__all__ = ["open_project", "release_project", "register_widget", "find_widget"]

_OPEN: dict[Path, object] = {}
_WIDGETS: dict[int, weakref.WeakSet] = {}


def register_widget(viewer, widget) -> None:
    """Remember ``widget`` as one of ``viewer``'s napari-pvs widgets."""
    _WIDGETS.setdefault(id(viewer), weakref.WeakSet()).add(widget)


def find_widget(viewer, cls):
    """``viewer``'s live widget of class ``cls`` (the newest one), or None."""
    alive = [w for w in _WIDGETS.get(id(viewer), ()) if isinstance(w, cls) and getattr(w, "viewer", None) is viewer]
    return alive[-1] if alive else None


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
