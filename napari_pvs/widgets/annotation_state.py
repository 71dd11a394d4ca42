"""The annotation state of one napari viewer, shared by the widgets that annotate.

:class:`AnnotationState` is not a widget. It holds the open project (one per folder and
process, :mod:`._state`), the rater's :class:`~napari_pvs.engine.project.AnnotationSession`
and the layers it draws on, does what annotating needs (open a subject, go to a slice,
mark slices, save, autosave, show and decide candidates, load a version) and tells the
widgets what changed by Qt signals, so that no widget polls or reaches into another:

``project_changed()``
    A project was opened or closed.
``session_changed()``
    A subject (or one of its versions) was loaded, or the session closed.
``slices_changed()``
    Slice statuses changed (marked done or reviewed, saved or not).
``versions_changed()``
    A version was saved (manual, autosave, consensus).
``candidate_changed(object)``
    The candidate under review (a proposal-table row) or None.

The Annotate PVS widget composes its panels over it; the Active learning widget opens
queued slices through it (:func:`~napari_pvs.widgets._state.annotation_state`).
All the store's work runs on the main thread (SQLite is bound to its thread).
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, Signal

from ..engine.errors import PVSInputError
from ..plugin.viewer import add_labels, follow_slices, go_to_slice, shown_index, source_geometry
from ._state import open_project, release_project

__all__ = ["AnnotationState", "annotation_state", "CANDIDATE_FIELD_MM", "KEYS", "key_label"]

log = logging.getLogger(__name__)

#: the Annotate keys (napari key names), bound on the viewer while the Annotate PVS widget is
#: shown: none is one of napari's own shortcuts (napari binds D, R, S, A, X, V to other
#: actions), so they work whatever layer is selected and take nothing from napari
KEYS = {"done": "Shift-D", "reviewed": "Shift-R", "next": "N", "save": "Shift-S",
        "accept": "K", "reject": "J", "skip": "W", "undo": "Control-Z"}

#: field of view (mm across the canvas) when the camera jumps to a candidate or a disagreement
CANDIDATE_FIELD_MM = 70.0


def key_label(what: str) -> str:
    """How a key of :data:`KEYS` is written on a button (``"Shift+D"``, ``"K"``)."""
    return KEYS[what].replace("-", "+").replace("Control", "Ctrl")


class AnnotationState(QObject):
    """The annotation state of a viewer (see the module docstring).

    Attributes
    ----------
    viewer : napari.viewer.Viewer
    project : Project or None
    session : AnnotationSession or None
    image_layer, labels_layer, candidates_layer : napari layers or None
    rater : str
        The rater's name (the Annotate PVS widget's; used when another widget opens a subject).
    views : WeakSet
        The widgets that show this state (an Annotate PVS widget registers itself).
    """

    project_changed = Signal()
    session_changed = Signal()
    slices_changed = Signal()
    versions_changed = Signal()
    candidate_changed = Signal(object)

    def __init__(self, viewer, parent: QObject | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.project = None
        self.session = None
        self.image_layer = self.labels_layer = self.candidates_layer = None
        self.rater = ""
        self.views: weakref.WeakSet = weakref.WeakSet()
        self._last_slice: int | None = None
        self._undo: list[tuple[str, object]] = []    # (what, revert callable or None for a paint stroke)
        viewer.dims.events.current_step.connect(self._on_step)

    # ------------------------------------------------------------------ basics
    def need_session(self):
        """The session, or a one-line error when no subject is open."""
        if self.session is None:
            raise PVSInputError("open a project and load a subject first")
        return self.session

    def need_project(self):
        if self.project is None:
            raise PVSInputError("open or create a project first")
        return self.project

    def current_slice(self) -> int:
        """The axial slice on screen (0-based index along the image's axial axis)."""
        s = self.need_session()
        k = shown_index(self.viewer, self.labels_layer, s.image.axial_axis)
        return int(np.clip(round(k), 0, s.n_slices - 1))

    def overlay_geometry(self) -> dict:
        """``scale``, ``affine``, ``units`` and ``axis_labels`` of the PVS labels layer, for
        layers drawn over it."""
        geom = source_geometry(self.labels_layer)
        return {k: geom[k] for k in ("scale", "affine", "units", "axis_labels") if k in geom}

    def put_layer(self, name: str, data, kind: str = "labels", **kw):
        """(Re)create layer ``name`` (labels or image) and keep the PVS labels layer selected."""
        if name in self.viewer.layers:
            self.viewer.layers.remove(self.viewer.layers[name])
        if kind == "labels":
            layer = add_labels(self.viewer, data, name=name, **kw)
        else:
            layer = self.viewer.add_image(data, name=name, **kw)
        if self.labels_layer is not None and self.labels_layer in self.viewer.layers:
            self.viewer.layers.selection.active = self.labels_layer
        return layer

    def go_to(self, centre_zyx, *, field_mm: float | None = None) -> None:
        """Put the slice and the camera on a voxel position ``(z, y, x)`` of the annotated
        image; with ``field_mm``, zoom so that about that many mm fill the shorter side of
        the canvas (from the zoom at which napari's ``reset_view`` fits the whole image)."""
        s = self.need_session()
        world = np.asarray(self.labels_layer.data_to_world(np.asarray(centre_zyx, float)))
        self.viewer.dims.point = tuple(float(v) for v in world)
        target = int(round(float(centre_zyx[s.image.axial_axis])))
        if self.viewer.dims.ndisplay == 2 and self.current_slice() != target:
            # the slider snaps to its own grid: step to the one that shows the target slice
            go_to_slice(self.viewer, self.labels_layer, target, s.image.axial_axis)
        cam = self.viewer.camera
        if field_mm:
            self.viewer.reset_view()          # the whole image fills the canvas at this zoom
            extent = [self.viewer.dims.range[d].stop - self.viewer.dims.range[d].start + self.viewer.dims.range[d].step
                      for d in self.viewer.dims.displayed]
            cam.zoom = cam.zoom * max(max(extent), 1e-6) / float(field_mm)
        cam.center = tuple(float(world[d]) for d in self.viewer.dims.displayed)

    # ------------------------------------------------------------------ project
    def open_project(self, folder: str | Path, *, create: bool = False) -> None:
        """Open (or create) the project of ``folder``; the previous one is closed (saved)."""
        self.close_project()
        self.project = open_project(folder, create=create)
        self.project_changed.emit()

    def close_project(self) -> None:
        """Save unsaved work (an autosave) and close the project."""
        if self.session is not None:
            self.autosave(force=True)
        if self.project is not None:
            release_project(self.project)
        had = self.project is not None
        self.project = self.session = None
        self.candidates_layer = None
        if had:
            self.session_changed.emit()
            self.project_changed.emit()

    def add_image_layer(self, layer) -> object:
        """Add the file of an Image layer (opened from a NIfTI file) as a T2; returns its record."""
        path = (layer.metadata or {}).get("source_path") if layer is not None else None
        if not path:
            raise PVSInputError("select an Image layer opened from a NIfTI file to add it")
        rec = self.need_project().add_image(path)
        self.project_changed.emit()
        return rec

    def load_subject(self, subject: str, rater: str, *, autosave_s: float = 30.0, version: int | None = None) -> None:
        """Open a subject's images and the rater's newest work on it (or ``version``)."""
        from ..engine.project import AnnotationSession
        from ..plugin.layers import layer_geometry, volume_metadata

        proj = self.need_project()
        if not subject:
            raise PVSInputError("the project has no subject; add a T2 first")
        if self.session is not None:
            self.autosave(force=True)
        rater = self.rater = rater.strip()
        proj.add_rater(rater)
        s = AnnotationSession.start(proj, subject, rater, autosave_s=autosave_s, version=version)
        self.session = s
        geom = None
        for rec in proj.images(s.image.subject):
            vol = proj.load_image(rec.id)
            lyr = self.put_layer(f"{rec.subject} {rec.role}", np.asarray(vol.data), kind="image",
                                 metadata=volume_metadata(vol), **layer_geometry(vol))
            if rec.id == s.image.id:
                self.image_layer, geom = lyr, layer_geometry(vol)
            else:
                lyr.visible = False
        self.labels_layer = self.put_layer(f"{s.image.subject} PVS ({rater})", s.mask,
                                           metadata=dict(self.image_layer.metadata), opacity=0.7, **geom)
        s.mask = self.labels_layer.data            # the session edits the layer's own array
        self.labels_layer.mode = "paint"
        self.viewer.layers.selection.active = self.labels_layer
        follow_slices(self.viewer, self.labels_layer, s.image.axial_axis)   # slider number = slice number
        self._undo = []
        self.labels_layer.events.paint.connect(self._on_paint)
        self.labels_layer.bind_key("Control-Z", lambda _layer: self.undo(), overwrite=True)
        self._last_slice = None
        self.session_changed.emit()
        self.slices_changed.emit()

    def load_version(self, version_id: int) -> None:
        """Replace the mask with a saved version (unsaved work is autosaved first)."""
        from ..engine.project import AnnotationSession

        s = self.need_session()
        if s.changed:
            self.autosave(force=True)
        new = AnnotationSession.start(self.project, s.image.subject, s.rater, version=version_id,
                                      autosave_s=s.autosave_s)
        old_mask, old_stack = np.array(s.mask, copy=True), list(self._undo)
        self._swap_session(new, new.mask)

        def revert():
            self._swap_session(s, old_mask)
            self._undo = old_stack

        self._undo = [(f"load version {version_id}", revert)]

    def _swap_session(self, session, mask) -> None:
        self.labels_layer.data = mask          # napari resets the layer's own paint history here
        session.mask = self.labels_layer.data
        self.session = session
        self.session_changed.emit()
        self.slices_changed.emit()

    # ------------------------------------------------------------------ slices and saving
    def mark(self, status: str, slice_index: int | None = None) -> None:
        """Mark the slice on screen (or ``slice_index``) ``"done"``, ``"reviewed"`` or ``"todo"``."""
        s = self.need_session()
        s.set_status(self.current_slice() if slice_index is None else int(slice_index), status)
        self.slices_changed.emit()

    def go_to_slice(self, k: int) -> None:
        """Go to axial slice ``k`` of the annotated image (centred)."""
        s = self.need_session()
        centre = (np.asarray(s.image.shape, float) - 1) / 2
        centre[s.image.axial_axis] = k
        self.go_to(centre)

    def next_unfinished_subject(self) -> str | None:
        """The next subject (in project order, after the current one) whose T2 this rater
        has not finished."""
        s = self.need_session()
        subjects = self.project.subjects()
        start = subjects.index(s.image.subject) if s.image.subject in subjects else -1
        for name in subjects[start + 1:] + subjects[:start]:
            try:
                img = self.project.image(name)
            except PVSInputError:
                continue
            v = self.project.latest_version(img, s.rater, include_autosaves=True)
            if v is None or len(v.labelled_slices) < img.shape[img.axial_axis]:
                return name
        return None

    def save(self, note: str = "saved in napari"):
        """Save a version if anything changed; returns it (None when nothing changed)."""
        s = self.need_session()
        v = s.save(note=note)
        if v is not None:
            self.versions_changed.emit()
            self.slices_changed.emit()
        return v

    def autosave(self, force: bool = False, interval_s: float | None = None):
        """An autosave when the interval passed (or ``force``) and something changed."""
        s = self.session
        if s is None:
            return None
        if interval_s is not None:
            s.autosave_s = float(interval_s)
        v = s.save(kind="autosave", note="autosave") if force and s.changed else s.maybe_autosave()
        if v is not None:
            self.versions_changed.emit()
            self.slices_changed.emit()
        return v

    def _on_step(self, *_) -> None:
        """A slice change saves the work on the slice left, when it changed."""
        s = self.session
        if s is None or self.labels_layer is None or self.labels_layer not in self.viewer.layers:
            return
        k = self.current_slice()
        if self._last_slice is not None and k != self._last_slice and s.changed:
            self.autosave(force=True)
        self._last_slice = k
        self.slices_changed.emit()

    # ------------------------------------------------------------------ candidates
    def show_proposals(self, proposals) -> None:
        """Show candidate proposals as a layer and go to the first one."""
        s = self.need_session()
        self.candidates_layer = self.put_layer("PVS candidates", proposals.labels, opacity=0.6,
                                               **self.overlay_geometry())
        s.set_proposals(proposals)
        self._show_candidate(s.next_candidate())

    def _show_candidate(self, cand) -> None:
        if cand is not None:
            # the candidate under review is the one drawn (napari's "show selected label"),
            # centred, at a zoom showing about CANDIDATE_FIELD_MM of the slice
            self.candidates_layer.selected_label = cand["id"]
            self.candidates_layer.show_selected_label = True
            self.go_to(cand["centre"], field_mm=CANDIDATE_FIELD_MM)
        elif self.candidates_layer is not None and self.candidates_layer in self.viewer.layers:
            self.candidates_layer.show_selected_label = False
        self.candidate_changed.emit(cand)

    def decide(self, decision: str) -> None:
        """``"accept"`` (merge into the mask), ``"reject"`` or ``"skip"`` the current
        candidate; undone by :meth:`undo` (Ctrl+Z), which brings the candidate back."""
        s = self.need_session()
        if s.proposals is None:
            raise PVSInputError("no candidates: press Suggest first")
        cur, cursor = s.current, s.cursor
        added = None
        if decision == "accept" and cur is not None:
            added = np.nonzero((s.proposals.labels == cur["id"]) & (s.mask == 0))
        nxt = s.decide(decision)
        self.labels_layer.refresh()
        self._show_candidate(nxt)
        self.slices_changed.emit()
        if cur is None:
            return
        proposals = s.proposals

        def revert():
            if added is not None:
                s.mask[added] = 0
                self.labels_layer.refresh()
            if s.proposals is proposals:
                s.cursor = cursor
                # a decision not saved yet is withdrawn; one an autosave already stored
                # stays in the history, and the new decision on the candidate follows it
                for i in range(len(s.decisions) - 1, -1, -1):
                    if s.decisions[i]["candidate"] == cur["id"]:
                        del s.decisions[i]
                        break
                self._show_candidate(s.current)
            self.slices_changed.emit()

        self.push_undo(f"{decision} candidate {cur['id']}", revert)

    # ------------------------------------------------------------------ undo
    def push_undo(self, what: str, revert) -> None:
        """Put an annotation action on the undo stack that Ctrl+Z walks, in order with the
        paint strokes of the PVS labels layer (napari's own history)."""
        self._undo.append((what, revert))

    def _on_paint(self, event=None) -> None:
        self._undo.append(("paint", None))

    def undo(self) -> str | None:
        """Undo the newest action while annotating (Ctrl+Z): a paint stroke (napari's Labels
        undo), a candidate decision, a consensus decision or a version load. Returns what
        was undone (None when nothing was)."""
        if not self._undo:
            if self.labels_layer is not None:
                self.labels_layer.undo()
            return None
        what, revert = self._undo.pop()
        if revert is None:
            self.labels_layer.undo()
        else:
            revert()
        return what


_STATES: "weakref.WeakKeyDictionary[object, AnnotationState]" = weakref.WeakKeyDictionary()


def annotation_state(viewer) -> AnnotationState:
    """The viewer's :class:`AnnotationState` (made on first use; one per viewer)."""
    state = _STATES.get(viewer)
    if state is None:
        state = _STATES[viewer] = AnnotationState(viewer)
    return state
