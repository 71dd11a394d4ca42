"""The background jobs of the Active learning widget (through the shared job lifecycle) and
its model-history plot.

* :class:`ScoreJob`: the project's images and annotated slices are read on the main thread
  (:func:`~napari_pvs.engine.active_learning.scoring_inputs`), the stochastic predictions
  run in the worker (:func:`~napari_pvs.engine.active_learning.score_images`), the queue is
  filled when they end.
* :class:`RetrainJob`: the annotated data are read on the main thread
  (:func:`~napari_pvs.engine.active_learning.plan_finetune`), fine-tuning runs in the worker
  with progress and the live validation DSC, and the round is recorded on the main thread
  (:func:`~napari_pvs.engine.active_learning.record_finetune`); then the queue re-scores.
  Cancel stops it at the next step: nothing is recorded.
* :class:`HistoryPlot`: validation DSC against annotated slices, one point per round
  (matplotlib in Qt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import Container
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..engine.progress import format_seconds
from ._job import JobWidget, notify_info

if TYPE_CHECKING:
    from .active_learning import ActiveLearningWidget

__all__ = ["ScoreJob", "RetrainJob", "HistoryPlot"]


class ScoreJob(JobWidget):
    """Score the slices not annotated yet and fill the queue."""

    start_text = "Score slices"
    job_name = "scoring"

    def __init__(self, owner: "ActiveLearningWidget"):
        super().__init__(owner.viewer)
        self.owner = owner
        self._build(Container(widgets=[]))

    def prepare(self):
        from ..engine.active_learning import score_images, scoring_inputs, select_next

        proj = self.owner.project()
        config = self.owner.config()
        inputs = scoring_inputs(proj, config)

        def gen():
            scores = yield from score_images(inputs, config)
            return select_next(scores, config), scores

        model = inputs.checkpoint.name if inputs.checkpoint is not None else "no model"
        n = sum(len(t) for _, _, t in inputs.items)
        return gen, f"scoring {n} slices of {len(inputs.items)} scans ({config.strategy}, {model}) ..."

    def on_result(self, result) -> None:
        choices, scores = result
        self.owner.set_queue(choices, scores)
        self.status.setText(f"{len(choices)} slices proposed ({self.owner.strategy.value}) in "
                            f"{format_seconds(scores.seconds)}")


class RetrainJob(JobWidget):
    """Fine-tune the current model on every annotated slice and record the round."""

    start_text = "Retrain now"
    job_name = "fine-tuning"

    def __init__(self, owner: "ActiveLearningWidget"):
        super().__init__(owner.viewer)
        self.owner = owner
        self.plan = None
        self._config = None
        self._build(Container(widgets=[]))

    def prepare(self):
        from ..engine.active_learning import plan_finetune, run_finetune

        self.owner.save_annotation()
        proj = self.owner.project()
        self._config = config = self.owner.config()
        self.plan = plan = plan_finetune(proj, config)
        self.owner.note_retrain_started(plan.n_slices)
        return (lambda: run_finetune(plan),
                f"fine-tuning {plan.init_from.name} on {plan.n_slices} annotated slices "
                f"(at most {config.finetune_minutes:g} min) ...")

    def on_result(self, result) -> None:
        from ..engine.active_learning import record_finetune, round_message

        record = record_finetune(self.owner.project(), self.plan, result, self._config, self.owner.queue)
        msg = round_message(record, result)
        self.status.setText(msg)
        notify_info(msg)
        self.owner.history.refresh(self.owner.project().al_rounds())
        self.owner.score.start()                  # the queue re-scores with the new model

    def on_cancelled(self) -> str:
        return "fine-tuning cancelled: no round recorded (the current model is unchanged)"


class HistoryPlot(QWidget):
    """Validation DSC against the number of annotated slices, one point per round."""

    def __init__(self):
        super().__init__()
        self.label = QLabel("no round yet")
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        self.canvas = None
        try:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure

            self.figure = Figure(figsize=(3.2, 1.8), dpi=100, tight_layout=True)
            self.canvas = FigureCanvasQTAgg(self.figure)
            self.canvas.setMinimumHeight(160)
            layout.addWidget(self.canvas)
        except ImportError:  # pragma: no cover - matplotlib is a dependency
            pass
        layout.addWidget(self.label)
        self.points: list[tuple[int, float]] = []

    def refresh(self, rounds: list[dict]) -> None:
        self.points = [(r["n_slices"], r["val_dsc"]) for r in rounds if r["val_dsc"] is not None]
        if rounds:
            last = rounds[-1]
            dsc = "n/a" if last["val_dsc"] is None else f"{last['val_dsc']:.3f}"
            self.label.setText(f"{len(rounds)} rounds; last: {last['n_slices']} annotated slices, "
                               f"validation DSC {dsc}")
        else:
            self.label.setText("no round yet")
        if self.canvas is None:
            return
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        if self.points:
            x, y = zip(*self.points, strict=True)
            ax.plot(x, y, marker="o")
            ax.set_xlim(0, max(x) + 1)
        ax.set_xlabel("annotated slices", fontsize=8)
        ax.set_ylabel("validation DSC", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        self.canvas.draw_idle()
