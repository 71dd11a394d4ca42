"""Dock widget "Annotate PVS": experts build PVS masks in an annotation project.

Composed of panels over one shared state, not mixed: this module (project, subject,
slices, saving), :class:`.annotate_candidates.CandidatesPanel` (Suggest, accept / reject /
skip), :class:`.annotate_versions.VersionsPanel` (history, changes) and
:class:`.annotate_agreement.AgreementPanel` (two raters, consensus). Each panel receives the
viewer's :class:`~napari_pvs.widgets.annotation_state.AnnotationState` and listens to its
signals (a subject loaded, slices marked, a version saved, the candidate under review); the
state calls :class:`~napari_pvs.engine.project.Project` and the session object
:class:`~napari_pvs.engine.project.AnnotationSession` (tested headless).

* **Project**: open or create a project folder, add the T2 on screen, choose the rater and
  the subject; the T2 (and the subject's T1/FLAIR, aligned in world space) and a PVS labels
  layer open. After a crash the rater's newest autosave is offered (loaded, with a
  notification). Brush size is set in mm.
* **Slices**: *Done* (key ``Shift+D``) / *Reviewed* (``Shift+R``) mark the slice on screen,
  *Next unfinished* (``N``) jumps to the next slice not done (then to the next subject not
  finished); the progress line shows which slices are done and reviewed, by this rater
  and by the others. *Save version* (``Shift+S``; ``Ctrl+S`` is napari's) writes a
  version; autosave writes one every N seconds and on a slice or subject change, only when
  something changed. The slice numbers are the slider's (:func:`~napari_pvs.plugin.viewer.follow_slices`).
* **Suggest**: candidate proposals on the slice on screen or the whole volume, from the
  vesselness filter or a model (a worker through the shared job lifecycle); *Accept*
  (``K``, keep), *Reject* (``J``, junk), *Skip* (``W``, wait) go through them one by one with
  the camera centred and zoomed on each (the candidate drawn in its own colour); accepted
  ones merge into the mask; decisions are stored with the next version.
* **Keys** (:data:`~.annotation_state.KEYS`) are bound on the viewer while this widget is
  shown, so they work whatever layer is selected (the T2 picked to change its contrast,
  say); none is one of napari's own shortcuts. napari 0.9 lists no plugin keys in its
  shortcut settings (it drops npe2 keybinding contributions).
* **Undo** (``Ctrl+Z``): paint strokes, candidate decisions (an accepted candidate leaves
  the mask and comes back under review), consensus decisions and *Load version* share one
  stack, newest first.
* **Versions**: the list of versions (rater, time, kind, note); load one, or show what
  changed between the selected one and the one loaded (components added / removed).
* **Agreement**: compare with another rater (voxel DSC, detection F1, BG/CSO slice counts),
  jump through the disagreements, accept or reject each, save the consensus.
"""

from __future__ import annotations

import getpass
import logging
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, LineEdit, PushButton, SpinBox
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QWidget

from ..engine.errors import PVSInputError
from ..engine.project.records import format_slices
from ..plugin.viewer import prepare_viewer
from ._job import notify_error, notify_info, optional_path, scroll_column
from .annotation_state import KEYS, annotation_state, key_label
from .annotate_agreement import AgreementPanel
from .annotate_candidates import CandidatesPanel
from .annotate_versions import VersionsPanel

if TYPE_CHECKING:
    import napari

__all__ = ["AnnotateWidget"]

log = logging.getLogger(__name__)


def guarded(fn):
    """A button action whose bad input (``PVSInputError``, ``ValueError``) is one notification."""
    def run(*_):
        try:
            return fn()
        except (PVSInputError, ValueError) as exc:
            notify_error(str(exc))
    return run


class AnnotateWidget(QWidget):
    """Annotate PVS in a project (see the module docstring).

    Attributes
    ----------
    state : AnnotationState
        The viewer's annotation state (project, session, layers).
    candidates, versions, agreement_panel : panels
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.state = st = annotation_state(napari_viewer)
        prepare_viewer(napari_viewer)
        self.folder = FileEdit(label="project folder", mode="d")
        self.rater = LineEdit(label="rater", value=getpass.getuser() or "rater")
        self.subject = ComboBox(label="subject", choices=[])
        self.brush_mm = FloatSpinBox(label="brush (mm)", value=1.0, min=0.2, max=20.0, step=0.2)
        self.autosave_s = SpinBox(label="autosave (s)", value=30, min=5, max=3600)
        b = {name: PushButton(text=name) for name in (
            "Open", "Create", "Add T2 on screen", "Load subject", "Done", "Reviewed", "Next unfinished",
            "Save version")}
        for name, what in (("Done", "done"), ("Reviewed", "reviewed"), ("Next unfinished", "next"),
                           ("Save version", "save")):
            b[name].text = f"{name} ({key_label(what)})"
        self.buttons = b
        form = Container(widgets=[
            self.folder, Container(widgets=[b["Open"], b["Create"]], layout="horizontal", labels=False),
            self.rater, b["Add T2 on screen"], self.subject, b["Load subject"], self.brush_mm, self.autosave_s,
            Container(widgets=[b["Done"], b["Reviewed"], b["Next unfinished"]], layout="horizontal",
                      labels=False),
            b["Save version"]])
        self.progress_label = QLabel("no project")
        self.progress_label.setWordWrap(True)
        self.candidates = CandidatesPanel(st, guarded)
        self.versions = VersionsPanel(st, guarded)
        self.agreement_panel = AgreementPanel(st, guarded)
        scroll_column(self, (form.native, self.progress_label, QLabel("<b>Candidates</b>"), self.candidates,
                             QLabel("<b>Versions</b>"), self.versions, QLabel("<b>Agreement</b>"),
                             self.agreement_panel))
        actions = {"Open": self.open_project, "Create": self.create_project, "Add T2 on screen": self.add_image,
                   "Load subject": self.load_subject, "Done": lambda: self.mark("done"),
                   "Reviewed": lambda: self.mark("reviewed"), "Next unfinished": self.next_unfinished,
                   "Save version": self.save}
        for name, fn in actions.items():
            b[name].changed.connect(guarded(fn))
        self.brush_mm.changed.connect(lambda *_: self._apply_brush())
        self.timer = QTimer(self)                      # the autosave clock
        self.timer.timeout.connect(guarded(self.autosave))
        self.timer.start(1000)
        self._others: list[str] = []
        self._keys_bound = False
        st.views.add(self)
        st.rater = self.rater.value
        self.rater.changed.connect(lambda value: setattr(st, "rater", str(value).strip()))
        st.project_changed.connect(self._refresh_subjects)
        st.session_changed.connect(self._on_session)
        st.slices_changed.connect(self._update_progress)
        st.versions_changed.connect(self._on_versions)

    # ------------------------------------------------------------------ the state's
    session = property(lambda self: self.state.session, doc="The rater's AnnotationSession (or None).")
    project = property(lambda self: self.state.project, doc="The open Project (or None).")
    labels_layer = property(lambda self: self.state.labels_layer)
    image_layer = property(lambda self: self.state.image_layer)

    def current_slice(self) -> int:
        """The axial slice on screen (0-based along the image's axial axis)."""
        return self.state.current_slice()

    def go_to(self, centre_zyx, *, field_mm: float | None = None) -> None:
        """Put the slice and the camera on a voxel ``(z, y, x)`` of the annotated image."""
        self.state.go_to(centre_zyx, field_mm=field_mm)

    # ------------------------------------------------------------------ project
    def open_project(self, *, create: bool = False) -> None:
        folder = optional_path(self.folder.value)
        if folder is None:
            raise PVSInputError("choose a project folder")
        self.state.open_project(folder, create=create)
        problems = self.state.project.problems          # checked on opening (missing or altered files)
        if problems:
            notify_error(f"{len(problems)} problem(s) in the project: {problems[0]}")
        self.progress_label.setText(f"project {self.project.name}: {len(self.project.subjects())} subjects")

    def create_project(self) -> None:
        self.open_project(create=True)

    def close_project(self) -> None:
        self.state.close_project()

    def _refresh_subjects(self) -> None:
        subjects = self.project.subjects() if self.project is not None else []
        with self.subject.changed.blocked():
            self.subject.choices = subjects
            if subjects and self.subject.value not in subjects:
                self.subject.value = subjects[0]

    def add_image(self) -> None:
        """Add the selected (or first) Image layer's file to the project as a T2."""
        import napari

        layer = self.viewer.layers.selection.active
        if not isinstance(layer, napari.layers.Image):
            layer = next((ly for ly in self.viewer.layers if isinstance(ly, napari.layers.Image)), None)
        rec = self.state.add_image_layer(layer)
        self.subject.value = rec.subject
        notify_info(f"added {rec.subject} ({rec.shape[rec.axial_axis]} axial slices)")

    def load_subject(self) -> None:
        """Open the chosen subject's images and the rater's newest work on it."""
        self.state.need_project()
        self.state.load_subject(self.subject.value, self.rater.value, autosave_s=float(self.autosave_s.value))
        s = self.session
        if s.base is not None and s.base.kind == "autosave":
            notify_info(f"restored the autosave v{s.base.id} of {s.base.created} (newer than your last save)")
        self.next_unfinished(from_start=True)

    def _on_session(self) -> None:
        if self.session is None:
            return
        if self.subject.value != self.session.image.subject:
            with self.subject.changed.blocked():
                self.subject.value = self.session.image.subject
        self._apply_brush()
        self._bind_keys()
        self._on_versions()

    def _on_versions(self) -> None:
        self._others = self._others_done() if self.session is not None else []
        self._update_progress()

    def _apply_brush(self) -> None:
        s, layer = self.session, self.labels_layer
        if layer is not None and s is not None:
            vs = s.image.voxel_size
            pix = float(sum(v for a, v in enumerate(vs) if a != s.image.axial_axis) / 2)
            layer.brush_size = max(1, int(round(float(self.brush_mm.value) / pix)))

    def _key_actions(self) -> dict:
        return {"done": lambda: self.mark("done"), "reviewed": lambda: self.mark("reviewed"),
                "next": self.next_unfinished, "save": self.save, "accept": lambda: self.state.decide("accept"),
                "reject": lambda: self.state.decide("reject"), "skip": lambda: self.state.decide("skip"),
                "undo": self.state.undo}

    def _bind_keys(self) -> None:
        """Bind :data:`KEYS` on the viewer (they work whatever layer is selected: no napari
        layer binds them) while this widget is shown and a subject is open."""
        if self._keys_bound or self.session is None:
            return
        actions = self._key_actions()
        for what, key in KEYS.items():
            self.viewer.bind_key(key, lambda _viewer, fn=actions[what]: guarded(fn)(), overwrite=True)
        self._keys_bound = True

    def _unbind_keys(self) -> None:
        if not self._keys_bound:
            return
        for key in KEYS.values():
            try:
                self.viewer.bind_key(key, None)
            except (KeyError, ValueError):
                pass
        self._keys_bound = False

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        self._bind_keys()

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._unbind_keys()
        super().hideEvent(event)

    # ------------------------------------------------------------------ slices and saving
    def mark(self, status: str) -> None:
        self.state.mark(status)

    def next_unfinished(self, *, from_start: bool = False) -> None:
        """Go to the next slice not done or reviewed (after the one on screen, or from the
        first slice); at the end of a subject, on to the next subject not finished."""
        st = self.state
        s = st.need_session()
        k = s.next_unfinished(after=-1 if from_start else st.current_slice())
        if k is None:
            nxt = st.next_unfinished_subject()
            if nxt is None:
                notify_info("every slice of every subject is done or reviewed")
                return
            notify_info(f"every slice of {s.image.subject} is done or reviewed: on to {nxt}")
            self.subject.value = nxt
            self.load_subject()
            return
        st.go_to_slice(k)
        self._update_progress()

    def _others_done(self) -> list[str]:
        """Slices done by the other raters (their newest manual version)."""
        s = self.session
        latest = {}
        for v in self.project.versions(s.image):       # oldest first: the last one per rater wins
            if v.kind != "autosave":
                latest[v.rater] = v
        return [f"{r}: {format_slices(v.labelled_slices)}" for r, v in latest.items()
                if r != s.rater and v.labelled_slices]

    def _update_progress(self) -> None:
        s = self.session
        if s is None or self.labels_layer is None:
            return
        k = self.current_slice()
        done, rev = s.slices_done(), s.slices_reviewed()
        others = self._others
        self.progress_label.setText(
            f"{s.image.subject}, rater {s.rater}: slice {k} is {s.status_of(k).replace('_', ' ')}\n"
            f"done {len(done)}/{s.n_slices}: {format_slices(done)}; reviewed {len(rev)}: {format_slices(rev)}"
            + (" (unsaved changes)" if s.changed else "")
            + ("\nother raters (done/reviewed): " + "; ".join(others) if others else ""))

    def save(self) -> None:
        v = self.state.save()
        notify_info(f"saved version {v.id}" if v else "nothing changed since the last save")

    def autosave(self, force: bool = False) -> None:
        self.state.autosave(force, interval_s=float(self.autosave_s.value))

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._unbind_keys()
        self.timer.stop()
        self.candidates.suggest.cancel()
        try:
            self.close_project()
        finally:
            super().closeEvent(event)
