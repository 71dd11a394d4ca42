"""Dock widget "Annotate PVS": experts build PVS masks in an annotation project.

The parts live by what they do: this module (project, subject, slices, saving),
:mod:`.annotate_candidates` (Suggest, accept / reject / skip), :mod:`.annotate_versions`
(history, changes) and :mod:`.annotate_agreement` (two raters, consensus).

Thin by design: every action calls :class:`~napari_pvs.engine.project.Project` or the
session object :class:`~napari_pvs.engine.project.AnnotationSession` (which hold all the
state and are tested headless) and updates layers.

* **Project**: open or create a project folder, add the T2 on screen, choose the rater and
  the subject; the T2 (and the subject's T1/FLAIR, aligned in world space) and a PVS labels
  layer open. After a crash the rater's newest autosave is offered (loaded, with a
  notification). Brush size is set in mm.
* **Slices**: *Done* (key ``d``) / *Reviewed* (key ``r``) mark the slice on screen, *Next
  unfinished* (key ``n``) jumps to the next slice not done (then to the next subject not
  finished); the progress line shows which slices are done and reviewed, by this rater
  and by the others. *Save* (key ``Ctrl+S`` is napari's; here ``v``) writes a
  version; autosave writes one every N seconds and on a slice or subject change, only when
  something changed.
* **Suggest**: candidate proposals on the slice on screen or the whole volume, from the
  vesselness filter or a model (a worker through the shared job lifecycle); *Accept*
  (``a``), *Reject* (``x``), *Skip* (``s``) go through them one by one with the camera on
  each; accepted ones merge into the mask; decisions are stored with the next version.
* **Versions**: the list of versions (rater, time, kind, note); load one, or show what
  changed between the selected one and the one loaded (components added / removed).
* **Agreement**: compare with another rater (voxel DSC, detection F1, BG/CSO slice counts),
  jump through the disagreements, accept or reject each, save the consensus.
"""

from __future__ import annotations

import getpass
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, LineEdit, PushButton, SpinBox
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QListWidget, QWidget

from ..engine.errors import PVSInputError
from ..engine.project.records import format_slices
from ._job import notify_error, notify_info, scroll_column
from ..plugin.viewer import go_to_slice, shown_index
from .annotate_agreement import AgreementMixin
from .annotate_candidates import CandidatesMixin, SuggestJob
from .annotate_versions import VersionsMixin

if TYPE_CHECKING:
    import napari

__all__ = ["AnnotateWidget"]

log = logging.getLogger(__name__)

class AnnotateWidget(CandidatesMixin, VersionsMixin, AgreementMixin, QWidget):
    """Annotate PVS in a project (see the module docstring).

    Attributes
    ----------
    project : Project or None
    session : AnnotationSession or None
    image_layer, labels_layer, candidates_layer : napari layers or None
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.project = None
        self.session = None
        self.agreement = None
        self.image_layer = self.labels_layer = self.candidates_layer = None
        self._accepted: set[int] = set()
        self._dis_cursor = -1

        self.folder = FileEdit(label="project folder", mode="d")
        self.rater = LineEdit(label="rater", value=getpass.getuser() or "rater")
        self.subject = ComboBox(label="subject", choices=[])
        self.brush_mm = FloatSpinBox(label="brush (mm)", value=1.0, min=0.2, max=20.0, step=0.2)
        self.autosave_s = SpinBox(label="autosave (s)", value=30, min=5, max=3600)
        b = {name: PushButton(text=name) for name in (
            "Open", "Create", "Add T2 on screen", "Load subject", "Done (d)", "Reviewed (r)",
            "Next unfinished (n)", "Save version (v)", "Accept (a)", "Reject (x)", "Skip (s)",
            "Load version", "Show changes", "Compare", "Next disagreement", "Accept disagreement",
            "Reject disagreement", "Save consensus")}
        self.buttons = b
        self.other_rater = ComboBox(label="compare with rater", choices=[])
        form = Container(widgets=[
            self.folder, Container(widgets=[b["Open"], b["Create"]], layout="horizontal", labels=False),
            self.rater, b["Add T2 on screen"], self.subject, b["Load subject"], self.brush_mm, self.autosave_s,
            Container(widgets=[b["Done (d)"], b["Reviewed (r)"], b["Next unfinished (n)"]], layout="horizontal",
                      labels=False),
            b["Save version (v)"]])
        self.progress_label = QLabel("no project")
        self.progress_label.setWordWrap(True)
        self.suggest = SuggestJob(self)
        cand_buttons = Container(widgets=[b["Accept (a)"], b["Reject (x)"], b["Skip (s)"]], layout="horizontal",
                                 labels=False)
        self.candidate_label = QLabel("no candidates")
        self.versions_list = QListWidget()
        self.versions_list.setMaximumHeight(140)
        version_buttons = Container(widgets=[b["Load version"], b["Show changes"]], layout="horizontal", labels=False)
        agree = Container(widgets=[self.other_rater, b["Compare"],
                                   Container(widgets=[b["Next disagreement"], b["Accept disagreement"],
                                                      b["Reject disagreement"]], layout="horizontal", labels=False),
                                   b["Save consensus"]])
        self.agreement_label = QLabel("")
        self.agreement_label.setWordWrap(True)
        scroll_column(self, (form.native, self.progress_label, QLabel("<b>Candidates</b>"), self.suggest, cand_buttons.native,
                  self.candidate_label, QLabel("<b>Versions</b>"), self.versions_list, version_buttons.native,
                  QLabel("<b>Agreement</b>"), agree.native, self.agreement_label))

        actions = {"Open": self.open_project, "Create": self.create_project, "Add T2 on screen": self.add_image,
                   "Load subject": self.load_subject, "Done (d)": lambda: self.mark("done"),
                   "Reviewed (r)": lambda: self.mark("reviewed"), "Next unfinished (n)": self.next_unfinished,
                   "Save version (v)": self.save, "Accept (a)": lambda: self.decide("accept"),
                   "Reject (x)": lambda: self.decide("reject"), "Skip (s)": lambda: self.decide("skip"),
                   "Load version": self.load_selected_version, "Show changes": self.show_changes,
                   "Compare": self.compare, "Next disagreement": self.next_disagreement,
                   "Accept disagreement": lambda: self.decide_disagreement(True),
                   "Reject disagreement": lambda: self.decide_disagreement(False),
                   "Save consensus": self.save_consensus}
        for name, fn in actions.items():
            b[name].changed.connect(self._guard(fn))
        self.brush_mm.changed.connect(lambda *_: self._apply_brush())
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._guard(self.autosave))
        self.timer.start(1000)
        self.viewer.dims.events.current_step.connect(lambda *_: self._update_progress())
        from ._state import register_widget

        register_widget(napari_viewer, self)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _guard(fn):
        def run(*_):
            try:
                return fn()
            except (PVSInputError, ValueError) as exc:
                notify_error(str(exc))
        return run

    def _need_session(self):
        if self.session is None:
            raise PVSInputError("open a project and load a subject first")
        return self.session

    def _shown_index(self) -> float:
        """Data index (float) of the axial slice napari draws (:func:`napari_pvs.plugin.viewer.shown_index`)."""
        return shown_index(self.viewer, self.labels_layer, self.session.image.axial_axis)

    def current_slice(self) -> int:
        """The axial slice on screen (0-based index along the image's axial axis)."""
        s = self._need_session()
        return int(np.clip(round(self._shown_index()), 0, s.n_slices - 1))

    def _camera(self):
        scene = getattr(self.viewer, "scene", None)          # napari >= 0.9
        return scene.camera if scene is not None and hasattr(scene, "camera") else self.viewer.camera

    def go_to(self, centre_zyx, *, field_mm: float | None = None) -> None:
        """Put the slice and the camera on a voxel position ``(z, y, x)``; with
        ``field_mm``, zoom so that about that many mm fill the canvas."""
        world = np.asarray(self.labels_layer.data_to_world(np.asarray(centre_zyx, float)))
        self.viewer.dims.point = tuple(float(v) for v in world)
        target = int(round(float(centre_zyx[self.session.image.axial_axis])))
        if self.viewer.dims.ndisplay == 2 and self.current_slice() != target:
            # the slider snaps to its own grid: step to the one that shows the target slice
            go_to_slice(self.viewer, self.labels_layer, target, self.session.image.axial_axis)
        cam = self._camera()
        cam.center = tuple(float(v) for v in world)
        if field_mm:
            size = getattr(self.viewer, "_canvas_size", None) or (600, 600)
            cam.zoom = float(min(size)) / float(field_mm)

    def _apply_brush(self) -> None:
        if self.labels_layer is not None and self.session is not None:
            vs = self.session.image.voxel_size
            pix = float(np.mean([v for a, v in enumerate(vs) if a != self.session.image.axial_axis]))
            self.labels_layer.brush_size = max(1, int(round(float(self.brush_mm.value) / pix)))

    def _overlay_geometry(self) -> dict:
        """``scale`` and ``affine`` of the PVS labels layer, for layers drawn over it."""
        return {"scale": tuple(self.labels_layer.scale), "affine": np.asarray(self.labels_layer.affine.affine_matrix)}

    def _layer(self, name, data, kind="labels", **kw):
        if name in self.viewer.layers:
            self.viewer.layers.remove(self.viewer.layers[name])
        add = self.viewer.add_labels if kind == "labels" else self.viewer.add_image
        return add(data, name=name, **kw)

    # ------------------------------------------------------------------ project
    def _folder(self) -> Path:
        v = self.folder.value
        if v is None or str(v) in ("", "."):
            raise PVSInputError("choose a project folder")
        return Path(v)

    def open_project(self, *, create: bool = False) -> None:
        from ._state import open_project

        self.close_project()
        self.project = open_project(self._folder(), create=create)
        self._refresh_subjects()
        problems = self.project.problems          # checked on opening (missing or altered files)
        if problems:
            notify_error(f"{len(problems)} problem(s) in the project: {problems[0]}")
        self.progress_label.setText(f"project {self.project.name}: {len(self.project.subjects())} subjects")

    def create_project(self) -> None:
        self.open_project(create=True)

    def close_project(self) -> None:
        if self.session is not None:
            self.autosave(force=True)
        if self.project is not None:
            from ._state import release_project

            release_project(self.project)
        self.project = self.session = None

    def _refresh_subjects(self) -> None:
        subjects = self.project.subjects() if self.project is not None else []
        self.subject.choices = subjects
        if subjects and self.subject.value not in subjects:
            self.subject.value = subjects[0]
        raters = self.project.raters() if self.project is not None else []
        self.other_rater.choices = [r for r in raters if r != self.rater.value]

    def add_image(self) -> None:
        """Add the selected (or first) Image layer's file to the project as a T2."""
        if self.project is None:
            raise PVSInputError("open or create a project first")
        import napari

        layer = self.viewer.layers.selection.active
        if not isinstance(layer, napari.layers.Image):
            layer = next((ly for ly in self.viewer.layers if isinstance(ly, napari.layers.Image)), None)
        path = (layer.metadata or {}).get("source_path") if layer is not None else None
        if not path:
            raise PVSInputError("select an Image layer opened from a NIfTI file to add it")
        rec = self.project.add_image(path)
        self._refresh_subjects()
        self.subject.value = rec.subject
        notify_info(f"added {rec.subject} ({rec.shape[rec.axial_axis]} axial slices)")

    def load_subject(self) -> None:
        """Open the chosen subject's images and the rater's newest work on it."""
        from ..engine.project import AnnotationSession
        from ..plugin.layers import layer_geometry, volume_metadata

        if self.project is None:
            raise PVSInputError("open or create a project first")
        if not self.subject.value:
            raise PVSInputError("the project has no subject; add a T2 first")
        if self.session is not None:
            self.autosave(force=True)
        rater = self.rater.value.strip()
        self.project.add_rater(rater)
        s = AnnotationSession.start(self.project, self.subject.value, rater, autosave_s=float(self.autosave_s.value))
        self.session = s
        for rec in self.project.images(s.image.subject):
            vol = self.project.load_image(rec.id)
            lyr = self._layer(f"{rec.subject} {rec.role}", np.asarray(vol.data), kind="image",
                              metadata=volume_metadata(vol), **layer_geometry(vol))
            if rec.id == s.image.id:
                self.image_layer, geom = lyr, layer_geometry(vol)
            else:
                lyr.visible = False
        self.labels_layer = self._layer(f"{s.image.subject} PVS ({rater})", s.mask, metadata=dict(
            self.image_layer.metadata), opacity=0.7, **geom)
        s.mask = self.labels_layer.data            # the session edits the layer's own array
        self.labels_layer.mode = "paint"
        self._apply_brush()
        self._bind_keys()
        if s.base is not None and s.base.kind == "autosave":
            notify_info(f"restored the autosave v{s.base.id} of {s.base.created} (newer than your last save)")
        self._refresh_versions()
        self._refresh_subjects()
        self.next_unfinished(from_start=True)

    def _bind_keys(self) -> None:
        keys = {"d": lambda: self.mark("done"), "r": lambda: self.mark("reviewed"), "n": self.next_unfinished,
                "v": self.save, "a": lambda: self.decide("accept"), "x": lambda: self.decide("reject"),
                "s": lambda: self.decide("skip")}
        for layer in (self.labels_layer,):
            for key, fn in keys.items():
                layer.bind_key(key, lambda _layer, fn=fn: self._guard(fn)(), overwrite=True)

    # ------------------------------------------------------------------ slices and saving
    def mark(self, status: str) -> None:
        s = self._need_session()
        k = self.current_slice()
        s.set_status(k, status)
        self._update_progress()

    def next_unfinished(self, *, from_start: bool = False) -> None:
        """Go to the next slice not done or reviewed (after the one on screen, or from the
        first slice)."""
        s = self._need_session()
        k = s.next_unfinished(after=-1 if from_start else self.current_slice())
        if k is None:
            nxt = self._next_unfinished_subject()
            if nxt is None:
                notify_info("every slice of every subject is done or reviewed")
                return
            notify_info(f"every slice of {s.image.subject} is done or reviewed: on to {nxt}")
            self.subject.value = nxt
            self.load_subject()
            return
        centre = (np.asarray(s.image.shape, float) - 1) / 2
        centre[s.image.axial_axis] = k
        self.go_to(centre)
        self._update_progress()

    def _next_unfinished_subject(self) -> str | None:
        """The next subject (in project order, after the current one) whose T2 this rater
        has not finished."""
        s = self.session
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

    def _update_progress(self) -> None:
        s = self.session
        if s is None or self.labels_layer is None:
            return
        k = self.current_slice()
        if k != getattr(self, "_last_slice", k) and s.changed:
            self.autosave(force=True)             # a slice change saves the work, when changed
        self._last_slice = k
        done, rev = s.slices_done(), s.slices_reviewed()
        others = getattr(self, "_others", [])
        self.progress_label.setText(
            f"{s.image.subject}, rater {s.rater}: slice {k} is {s.status_of(k).replace('_', ' ')}\n"
            f"done {len(done)}/{s.n_slices}: {format_slices(done)}; reviewed {len(rev)}: {format_slices(rev)}"
            + (" (unsaved changes)" if s.changed else "")
            + ("\nother raters (done/reviewed): " + "; ".join(others) if others else ""))

    def save(self) -> None:
        s = self._need_session()
        v = s.save(note="saved in napari")
        notify_info(f"saved version {v.id}" if v else "nothing changed since the last save")
        self._refresh_versions()
        self._update_progress()

    def autosave(self, force: bool = False) -> None:
        s = self.session
        if s is None:
            return
        s.autosave_s = float(self.autosave_s.value)
        v = s.save(kind="autosave", note="autosave") if force and s.changed else s.maybe_autosave()
        if v is not None:
            self._refresh_versions()
            self._update_progress()

    # ------------------------------------------------------------------ candidates
    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.timer.stop()
        try:
            self.close_project()
        finally:
            super().closeEvent(event)
