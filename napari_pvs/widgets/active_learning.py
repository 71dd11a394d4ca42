"""Dock widget "Active learning": the model asks for the slices that teach it most.

Thin by design: scoring, selection and fine-tuning are the engine's
(:mod:`napari_pvs.engine.active_learning`); annotation is the viewer's shared annotation
state (:class:`~napari_pvs.widgets.annotation_state.AnnotationState`), which the Annotate PVS
widget shows: this widget opens queued slices through it and follows its signals (slices
marked done, versions saved), with no polling and no call into another widget.

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
  "retrain automatically" starts it after N newly done slices (as they are marked). When
  the new model is ready the round is recorded in the project and the queue re-scores.
  The project is read and the round recorded on the main thread; the scoring and the
  fine-tuning run in the job runner.
* **History**: validation DSC against annotated slices, one point per round.
"""

from __future__ import annotations

import getpass
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox
from qtpy.QtWidgets import QAbstractItemView, QLabel, QTableWidget, QTableWidgetItem, QWidget

from ..engine.errors import PVSInputError
from ..engine.progress import format_seconds
from ..plugin.viewer import prepare_viewer
from ._job import JobPanel, notify_error, notify_info, optional_path, scroll_column
from .annotation_state import annotation_state
from .active_learning_history import HistoryPlot

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
    score, retrain : JobPanel
        Scoring the queue, fine-tuning a round (through the job runner).
    history : HistoryPlot
    table : QTableWidget
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        from ..engine.active_learning import SAMPLERS, STRATEGIES

        self.viewer = napari_viewer
        prepare_viewer(napari_viewer)
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
        self.score = JobPanel("scoring", "Score slices", prepare=self._prepare_scoring, on_result=self._scored)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMinimumHeight(180)
        self.table.itemSelectionChanged.connect(self._on_select)
        self.retrain = JobPanel("fine-tuning", "Retrain now", prepare=self._prepare_retrain,
                                on_result=self._retrained, on_cancelled=lambda: "fine-tuning cancelled: no round "
                                "recorded (the current model is unchanged)")
        self.plan = self._round_config = None
        self._saved_done: dict | None = None
        self.history = HistoryPlot(napari_viewer)
        self.info = QLabel("choose a project folder (or open one in Annotate PVS) and press Score slices")
        self.info.setWordWrap(True)
        scroll_column(self, (form.native, self.score, QLabel("<b>Queue</b>"), self.table, self.show_map.native, self.info,
                  QLabel("<b>Retrain</b>"), train_form.native, self.retrain, QLabel("<b>Model history</b>"),
                  self.history))
        self.show_map.changed.connect(lambda *_: self._guarded(self._update_map))
        self.folder.changed.connect(lambda *_: self._guarded(self._on_folder))
        self.state = annotation_state(napari_viewer)
        self.state.slices_changed.connect(self._on_slices)
        self.state.versions_changed.connect(self._on_versions)

    # ------------------------------------------------------------------ helpers
    def _guarded(self, fn, *args):
        try:
            return fn(*args)
        except (PVSInputError, ValueError) as exc:
            notify_error(str(exc))

    def _folder(self) -> Path:
        folder = optional_path(self.folder.value)
        if folder is None:
            if self.state.project is not None:
                self.folder.value = self.state.project.root
                return self.state.project.root
            raise PVSInputError("choose a project folder")
        return folder

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
        """Open queue entry ``row`` for annotation: its subject, its slice, the model's
        prediction on it as candidates (the Annotate PVS widget is docked when it is not)."""
        c = self.queue[row]
        proj = self.project()
        st = self.state
        if not st.views:
            self.viewer.window.add_plugin_dock_widget("napari-pvs", "Annotate PVS")
        if st.project is not proj:
            st.open_project(proj.root)
        if st.session is None or st.session.image.subject != c.subject:
            st.load_subject(c.subject, st.rater or getpass.getuser() or "rater")
        st.go_to_slice(c.slice)
        self._update_map()
        prob = self._map(c, "mean_prob")
        if prob is None:
            self.info.setText(f"{c.subject} slice {c.slice}: no model prediction with the random strategy; "
                              "Suggest in Annotate PVS proposes candidates")
            return
        from ..engine.candidates import ProposalConfig, propose_candidates

        img = st.session.image
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
            st.show_proposals(props)
            st.go_to_slice(c.slice)
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
        st = self.state
        if not self.show_map.value or st.session is None:
            if name in self.viewer.layers:
                self.viewer.layers.remove(self.viewer.layers[name])
            return
        subject = st.session.image.subject
        c = next((q for q in self.queue if q.subject == subject), None)
        bald = self._map(c, "bald_map") if c is not None else None
        if bald is None:
            notify_info(f"no uncertainty map of {subject}: score with bald or entropy first")
            return
        if name in self.viewer.layers:
            self.viewer.layers.remove(self.viewer.layers[name])
        top = float(np.percentile(bald[bald > 0], 99.5)) if (bald > 0).any() else 1.0
        st.put_layer(name, bald, kind="image", colormap="magma", blending="additive", opacity=0.7,
                     contrast_limits=(0.0, max(top, 1e-6)), **st.overlay_geometry())

    # ------------------------------------------------------------------ jobs
    def _prepare_scoring(self):
        from ..engine.active_learning import score_images, scoring_inputs, select_next

        config = self.config()
        inputs = scoring_inputs(self.project(), config)     # the project is read here, on the main thread

        def gen():
            scores = yield from score_images(inputs, config)
            return select_next(scores, config), scores

        model = inputs.checkpoint.name if inputs.checkpoint is not None else "no model"
        n = sum(len(t) for _, _, t in inputs.items)
        return gen, f"scoring {n} slices of {len(inputs.items)} scans ({config.strategy}, {model}) ..."

    def _scored(self, result) -> None:
        choices, scores = result
        self.set_queue(choices, scores)
        self.score.status.setText(f"{len(choices)} slices proposed ({self.strategy.value}) in "
                                  f"{format_seconds(scores.seconds)}")

    def _prepare_retrain(self):
        from ..engine.active_learning import plan_finetune, run_finetune

        st = self.state
        if st.session is not None and st.session.changed:
            st.save()                       # slices marked done count for training once saved
        self._round_config = config = self.config()
        self.plan = plan = plan_finetune(self.project(), config)
        self._retrain_base = plan.n_slices
        return (lambda: run_finetune(plan),
                f"fine-tuning {plan.init_from.name} on {plan.n_slices} annotated slices "
                f"(at most {config.finetune_minutes:g} min) ...")

    def _retrained(self, result) -> None:
        from ..engine.active_learning import record_finetune, round_message

        record = record_finetune(self.project(), self.plan, result, self._round_config, self.queue)
        msg = round_message(record, result)
        self.retrain.status.setText(msg)
        notify_info(msg)
        self._saved_done = None
        self.history.refresh(self.project().al_rounds())
        self.score.start()                  # the queue re-scores with the new model

    # ------------------------------------------------------------------ following the annotation
    def _done_now(self) -> int:
        """Annotated slices now: the saved ones, with the open session's live statuses."""
        from ..engine.active_learning import labelled_slices

        proj = self.project()
        if self._saved_done is None:          # read once per saved version, not per slice step
            self._saved_done = {k: set(v) for k, v in labelled_slices(proj).items()}
        done = {k: set(v) for k, v in self._saved_done.items()}
        s = self.state.session
        if s is not None and self.state.project is proj:
            done[s.image.id] = done.get(s.image.id, set()) | set(s.slices_done()) | set(s.slices_reviewed())
        return sum(len(v) for v in done.values())

    def _on_versions(self) -> None:
        self._saved_done = None
        self._on_slices()

    def _on_slices(self) -> None:
        """Slices were marked (or a version saved): the queue's status column, and the
        automatic retraining."""
        if optional_path(self.folder.value) is None:
            return
        try:
            self._update_status_column()
            self.check_auto_retrain()
        except (PVSInputError, ValueError) as exc:   # a folder that is not a project (yet)
            log.debug("active learning: %s", exc)

    def check_auto_retrain(self) -> bool:
        """With "retrain automatically": start a round when N slices were newly marked done
        since the last one; returns whether it started."""
        if not self.auto.value or self.retrain.is_running or optional_path(self.folder.value) is None:
            return False
        now = self._done_now()
        if self._retrain_base is None:
            rounds = self.project().al_rounds()
            self._retrain_base = rounds[-1]["n_slices"] if rounds else now
        if now - self._retrain_base >= int(self.auto_n.value):
            self.info.setText(f"{now - self._retrain_base} newly done slices: retraining automatically")
            return self.retrain.start()
        return False

    def _update_status_column(self) -> None:
        if not self.queue:
            return
        from ..engine.active_learning import labelled_slices

        done = labelled_slices(self.project()) if self._saved_done is None else self._saved_done
        s = self.state.session
        live = {} if s is None else {s.image.id: set(s.slices_done()) | set(s.slices_reviewed())}
        for r, c in enumerate(self.queue):
            is_done = c.slice in live.get(c.image_id, done.get(c.image_id, []))
            item = self.table.item(r, len(COLUMNS) - 1)
            if item is not None:
                item.setText("done" if is_done else "todo")

    def _on_folder(self) -> None:
        self._saved_done, self._retrain_base = None, None
        self._refresh_history()

    def _refresh_history(self) -> None:
        self.history.refresh(self.project().al_rounds())

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        for job in (self.score, self.retrain):
            job.cancel()
        super().closeEvent(event)
