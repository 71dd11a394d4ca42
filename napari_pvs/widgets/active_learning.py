"""Dock widget "Active learning": the model asks for the slices that teach it most.

Thin by design: scoring, selection and fine-tuning are the engine's
(:mod:`napari_pvs.engine.active_learning`); annotation is the Annotate PVS widget's.

* **Queue**: *Score slices* ranks the project's slices not annotated yet by the chosen
  strategy (BALD, entropy, random or PVS load; MC dropout or test-time augmentation
  passes) in a worker; the table lists ``(subject, slice, score, strategy, status)``.
  Selecting a row opens that subject in the Annotate PVS widget (docked if needed), jumps
  to the slice and shows the model's objects on it (mean probability of the passes at
  least :data:`CANDIDATE_THRESHOLD`) as candidates that *Accept* / *Reject* apply, so the
  rater corrects instead of drawing from scratch. The uncertainty
  map (BALD) of the subject can be shown as a layer.
* **Retrain**: *Retrain now* fine-tunes the current model on every slice marked done (in a
  worker, with progress, the live validation DSC and *Cancel*) while annotation goes on;
  "retrain automatically" starts it after N newly done slices. When the new model is
  ready the round is recorded in the project and the queue re-scores.
* **History**: validation DSC against annotated slices, one point per round.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (QAbstractItemView, QLabel, QTableWidget, QTableWidgetItem, QWidget)

from ..engine.errors import PVSInputError
from ._job import notify_error, notify_info, scroll_column
from .active_learning_jobs import HistoryPlot, RetrainJob, ScoreJob

if TYPE_CHECKING:
    import napari

__all__ = ["ActiveLearningWidget"]

log = logging.getLogger(__name__)

COLUMNS = ("subject", "slice", "score", "strategy", "status")
#: mean probability above which the model's objects on a queued slice are offered as
#: candidates: below 0.5, so that the objects the model is unsure of (where the passes
#: disagree, the point of asking) are shown for the rater to accept or reject
CANDIDATE_THRESHOLD = 0.3


class ActiveLearningWidget(QWidget):
    """Active-learning queue, retraining and model history (see the module docstring).

    Attributes
    ----------
    queue : list of SliceChoice
    scores : ProjectScores or None
        The last scoring (maps for the candidates and the uncertainty layer).
    score, retrain : ScoreJob, RetrainJob
    history : HistoryPlot
    table : QTableWidget
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        from ..engine.active_learning import SAMPLERS, STRATEGIES

        self.viewer = napari_viewer
        self.queue: list = []
        self.scores = None
        self._maps: dict = {}
        self._retrain_base: int | None = None
        self.folder = FileEdit(label="project folder", mode="d")
        self.strategy = ComboBox(label="strategy", choices=list(STRATEGIES), value="bald")
        self.n = SpinBox(label="slices per round", value=10, min=1, max=500)
        self.sampler = ComboBox(label="sampler", choices=list(SAMPLERS), value="auto",
                                tooltip="stochastic predictions: MC dropout (models with dropout), test-time "
                                        "augmentation (tta) or auto")
        self.samples = SpinBox(label="stochastic passes", value=4, min=1, max=8)
        self.minutes = FloatSpinBox(label="fine-tune budget (min)", value=5.0, min=0.05, max=240.0, step=0.5)
        self.steps = SpinBox(label="fine-tune steps (max)", value=2000, min=1, max=100000)
        self.auto = CheckBox(text="retrain automatically", value=False)
        self.auto_n = SpinBox(label="after newly done slices", value=5, min=1, max=500)
        self.show_map = CheckBox(text="show uncertainty map (BALD)", value=False)
        form = Container(widgets=[self.folder, self.strategy, self.n, self.sampler, self.samples])
        train_form = Container(widgets=[self.minutes, self.steps, self.auto, self.auto_n])
        self.score = ScoreJob(self)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMinimumHeight(180)
        self.table.itemSelectionChanged.connect(self._on_select)
        self.retrain = RetrainJob(self)
        self.history = HistoryPlot()
        self.info = QLabel("choose a project folder (or open one in Annotate PVS) and press Score slices")
        self.info.setWordWrap(True)
        scroll_column(self, (form.native, self.score, QLabel("<b>Queue</b>"), self.table, self.show_map.native, self.info,
                  QLabel("<b>Retrain</b>"), train_form.native, self.retrain, QLabel("<b>Model history</b>"),
                  self.history))
        self.show_map.changed.connect(lambda *_: self._guarded(self._update_map))
        self.folder.changed.connect(lambda *_: self._guarded(self._refresh_history))
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick_quietly)
        self.timer.start(2000)
        from ._state import register_widget

        register_widget(napari_viewer, self)

    # ------------------------------------------------------------------ helpers
    def _guarded(self, fn, *args):
        try:
            return fn(*args)
        except (PVSInputError, ValueError) as exc:
            notify_error(str(exc))

    def _annotator(self, *, create: bool = False):
        from ._state import find_widget
        from .annotate import AnnotateWidget

        w = find_widget(self.viewer, AnnotateWidget)
        if w is None and create:
            w = AnnotateWidget(self.viewer)
            self.viewer.window.add_dock_widget(w, name="Annotate PVS", area="right")
        return w

    def _folder(self) -> Path:
        v = self.folder.value
        if v is None or str(v) in ("", "."):
            ann = self._annotator()
            if ann is not None and ann.project is not None:
                self.folder.value = ann.project.root
                return ann.project.root
            raise PVSInputError("choose a project folder")
        return Path(v)

    def project(self):
        """The project of the folder (shared with the other widgets)."""
        from ._state import open_project

        return open_project(self._folder())

    def config(self):
        """The :class:`~napari_pvs.engine.active_learning.ALConfig` of the form."""
        from ..engine.active_learning import ALConfig, UncertaintyConfig

        steps = int(self.steps.value)
        return ALConfig(strategy=str(self.strategy.value), n_per_round=int(self.n.value),
                        uncertainty=UncertaintyConfig(sampler=str(self.sampler.value), n_samples=int(self.samples.value)),
                        finetune_minutes=float(self.minutes.value), finetune_steps=steps,
                        steps_per_epoch=min(25, steps))

    # ------------------------------------------------------------------ queue
    def set_queue(self, choices, scores) -> None:
        """Show ``choices`` (SliceChoice, best first) and keep ``scores`` for the maps."""
        self.queue, self.scores, self._maps = list(choices), scores, {}
        self.table.setRowCount(len(self.queue))
        for r, c in enumerate(self.queue):
            score = "-" if not math.isfinite(c.score) else (f"{c.score:.1f}" if c.strategy == "load"
                                                             else f"{c.score:.5f}")
            for col, text in enumerate((c.subject, str(c.slice), score, c.strategy, "todo")):
                self.table.setItem(r, col, QTableWidgetItem(text))
        self._update_status_column()
        self.info.setText(f"{len(self.queue)} slices to annotate; select one to open it")

    def _on_select(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        if rows:
            self._guarded(self.open_choice, min(rows))

    def open_choice(self, row: int) -> None:
        """Open queue entry ``row`` in the Annotate PVS widget: its subject, its slice, the
        model's prediction on it as candidates."""
        c = self.queue[row]
        proj = self.project()
        ann = self._annotator(create=True)
        if ann.project is not proj:
            ann.folder.value = proj.root
            ann.open_project()
        if ann.session is None or ann.session.image.subject != c.subject:
            ann.subject.value = c.subject
            ann.load_subject()
        img = ann.session.image
        centre = (np.asarray(img.shape, float) - 1) / 2
        centre[img.axial_axis] = c.slice
        ann.go_to(centre)
        self._update_map()
        prob = self._map(c, "mean_prob")
        if prob is None:
            self.info.setText(f"{c.subject} slice {c.slice}: no model prediction with the random strategy; "
                              "Suggest in Annotate PVS proposes candidates")
            return
        from ..engine.candidates import ProposalConfig, propose_candidates

        props = propose_candidates(proj.load_image(img.id), method="model", probability=prob, slices=[c.slice],
                                   config=ProposalConfig(regions_only=False, threshold=CANDIDATE_THRESHOLD))
        bald_map = self._map(c, "bald_map")
        order = "by probability"
        if props.n and bald_map is not None and c.strategy != "load":
            from ..engine.active_learning import component_scores

            _, per_id = component_scores(bald_map, props.labels)
            for row in props.table:               # the rater sees the most uncertain candidate first
                row["score"] = float(per_id[row["id"] - 1])
            props.table.sort(key=lambda row: -row["score"])
            order = "most uncertain (BALD) first"
        if props.n:
            ann.show_proposals(props)
            ann.go_to(centre)
        self.info.setText(f"{c.subject} slice {c.slice} (rank {c.rank}, {c.strategy} {c.score:.4g}): "
                          f"{props.n} model candidates to accept or reject, {order}; mark the slice done "
                          "when finished")

    def _map(self, c, name: str):
        """A map of the last scoring for the choice's scan on its grid, or None."""
        if self.scores is None:
            return None
        vs = self.scores.volumes.get((c.subject, c.image_id))
        if vs is None:
            return None
        key = (c.subject, name)
        if key not in self._maps:
            self._maps[key] = vs.source_map(name)
        return self._maps[key]

    def _update_map(self) -> None:
        name = "uncertainty (BALD)"
        ann = self._annotator()
        if not self.show_map.value or ann is None or ann.session is None:
            if name in self.viewer.layers:
                self.viewer.layers.remove(self.viewer.layers[name])
            return
        subject = ann.session.image.subject
        c = next((q for q in self.queue if q.subject == subject), None)
        bald = self._map(c, "bald_map") if c is not None else None
        if bald is None:
            notify_info(f"no uncertainty map of {subject}: score with bald or entropy first")
            return
        if name in self.viewer.layers:
            self.viewer.layers.remove(self.viewer.layers[name])
        top = float(np.percentile(bald[bald > 0], 99.5)) if (bald > 0).any() else 1.0
        self.viewer.add_image(bald, name=name, colormap="magma", blending="additive", opacity=0.7,
                              contrast_limits=(0.0, max(top, 1e-6)), **ann._overlay_geometry())
        self.viewer.layers.selection.active = ann.labels_layer

    # ------------------------------------------------------------------ retraining
    def save_annotation(self) -> None:
        """Save the Annotate widget's unsaved work as a version (slices marked done count
        for training only once saved)."""
        ann = self._annotator()
        if ann is not None and ann.session is not None and ann.session.changed:
            ann.save()

    def _done_now(self) -> int:
        """Annotated slices now: the saved ones, with the open session's live statuses."""
        from ..engine.active_learning import labelled_slices

        proj = self.project()
        done = {k: set(v) for k, v in labelled_slices(proj).items()}
        ann = self._annotator()
        if ann is not None and ann.session is not None and ann.project is proj:
            s = ann.session
            done[s.image.id] = done.get(s.image.id, set()) | set(s.slices_done()) | set(s.slices_reviewed())
        return sum(len(v) for v in done.values())

    def note_retrain_started(self, n_slices: int) -> None:
        self._retrain_base = n_slices

    def _tick_quietly(self) -> None:
        """The timer's tick: errors (a folder that is not a project yet) are logged, not
        shown every two seconds."""
        try:
            self._tick()
        except (PVSInputError, ValueError) as exc:
            log.debug("active-learning tick: %s", exc)

    def _tick(self) -> None:
        if self.folder.value is None or str(self.folder.value) in ("", "."):
            return
        self._update_status_column()
        if not self.auto.value or self.retrain.is_running:
            return
        now = self._done_now()
        if self._retrain_base is None:
            rounds = self.project().al_rounds()
            self._retrain_base = rounds[-1]["n_slices"] if rounds else now
        if now - self._retrain_base >= int(self.auto_n.value):
            self.info.setText(f"{now - self._retrain_base} newly done slices: retraining automatically")
            self.retrain.start()

    def _update_status_column(self) -> None:
        if not self.queue:
            return
        from ..engine.active_learning import labelled_slices

        done = labelled_slices(self.project())
        ann = self._annotator()
        live = {}
        if ann is not None and ann.session is not None:
            live[ann.session.image.id] = set(ann.session.slices_done()) | set(ann.session.slices_reviewed())
        for r, c in enumerate(self.queue):
            is_done = c.slice in live.get(c.image_id, done.get(c.image_id, []))
            item = self.table.item(r, len(COLUMNS) - 1)
            if item is not None:
                item.setText("done" if is_done else "todo")

    def _refresh_history(self) -> None:
        self.history.refresh(self.project().al_rounds())

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.timer.stop()
        for job in (self.score, self.retrain):
            job.cancel()
        super().closeEvent(event)
