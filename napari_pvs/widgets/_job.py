"""The view of a background job in a dock widget, over the one job runner.

:class:`JobPanel` is a start button, *Cancel*, a progress bar and a status line bound to a
:class:`~napari_pvs.plugin.jobs.JobRunner` (the non-widget owner of the worker, which also
shows the job in napari's activity dock and notifies errors once). The widget that holds
the panel gives it two callbacks, not itself:

``prepare()``
    Called on the main thread by *Start*: reads the form and checks the inputs with the
    engine's own checks (bad input is refused before any thread starts, with the CLI's
    one-line message), and returns ``(make_generator, starting_message)``.
``on_result(result)``
    Called on the main thread with the job's result. When it is a generator function, the
    runner runs it one step per event-loop turn (``yield`` after each layer added) and the
    job ends after its last step.

:class:`JobWidget` is a dock widget that *is* one job (Train, Segment, Compare): a form and
a panel, with :meth:`JobWidget.prepare` and :meth:`JobWidget.on_result` to override.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea, QVBoxLayout, QWidget

from ..engine.errors import PVSInputError
from ..plugin.jobs import JobRunner, notify_error, notify_info
from ..plugin.viewer import prepare_viewer

if TYPE_CHECKING:
    import napari
    from magicgui.widgets import Container

__all__ = ["JobPanel", "JobWidget", "notify_error", "notify_info", "scroll_column", "optional_path"]

log = logging.getLogger(__name__)


def optional_path(value):
    """A file or folder picker's value as a Path, or None when empty (magicgui gives ``.``)."""
    from pathlib import Path

    return None if value is None or str(value) in ("", ".") else Path(value).expanduser()


def color_key(entries) -> str:
    """Rich text of a colour key: ``[(colour, label), ...]`` as coloured squares and words,
    for a QLabel (the same colours as the layer it explains)."""
    return " &nbsp; ".join(f'<span style="color:{c}">&#9632;</span>&nbsp;{label}' for c, label in entries)


def show_canvas_key(viewer, text: str) -> None:
    """Show ``text`` (a colour key in words) in the canvas's bottom-right corner (napari's
    text overlay); an empty text hides it."""
    overlay = viewer.text_overlay
    overlay.text = text
    overlay.position = "bottom_right"
    overlay.font_size = 10
    overlay.visible = bool(text)


def scroll_column(owner: QWidget, widgets) -> None:
    """Lay ``widgets`` out in one scrollable column filling ``owner`` (a dock widget taller
    than the window stays usable)."""
    content = QWidget()
    layout = QVBoxLayout(content)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(content)
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)      # the scroll area's frame is the margin
    outer.addWidget(scroll)
    for w in widgets:
        layout.addWidget(w)
    layout.addStretch(1)
    # ask napari's dock for the content's width (up to 620 px), so that rows of buttons and
    # pickers are not cut at the right on a 1366-px screen; taller content scrolls. Asked
    # again once shown and whenever the content's layout changes: napari's style sheet,
    # applied when docked, makes the widgets wider than at construction.
    fit = _FitWidth(owner, content, scroll)
    content.installEventFilter(fit)
    owner.installEventFilter(fit)
    owner._fit_width = fit          # kept alive with the owner
    fit.update()


class _FitWidth(QObject):
    """Keeps a dock widget's minimum width at its scroll column's content width (<= 620 px)."""

    LIMIT = 620

    def __init__(self, owner: QWidget, content: QWidget, scroll: QScrollArea):
        super().__init__(owner)
        self.owner, self.content, self.scroll = owner, content, scroll

    def update(self) -> None:
        bar = self.scroll.verticalScrollBar().sizeHint().width()
        frame = 2 * self.scroll.frameWidth()
        want = min(self.content.minimumSizeHint().width() + bar + frame + 4, self.LIMIT)
        if want != self.owner.minimumWidth():
            self.owner.setMinimumWidth(want)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if event.type() in (QEvent.Type.Show, QEvent.Type.LayoutRequest, QEvent.Type.StyleChange,
                            QEvent.Type.Polish):
            self.update()
        return False


class JobPanel(QWidget):
    """Start / Cancel / progress / status of one job (see the module docstring).

    Parameters
    ----------
    name : str
        The job, for messages and napari's activity dock (``"segmentation"``).
    start_text : str
        The start button's text.
    prepare : callable
        ``() -> (make_generator, message)``; raises :class:`PVSInputError` or ``ValueError``
        with a one-line message for bad input.
    on_result : callable
        ``(result) -> None``.
    on_event, on_cancelled : callable, optional
        ``(event) -> None`` after the bar and status are updated; ``() -> str`` the status
        after a cancel.
    form : magicgui Container, optional
        Shown above the buttons, disabled while the job runs.
    extra : list of QWidget, optional
        Shown below the status line.

    Attributes
    ----------
    runner : JobRunner
    start_button, cancel_button : QPushButton
    progress : QProgressBar
    status : QLabel
    """

    def __init__(self, name: str, start_text: str, *, prepare: Callable[[], tuple[Callable[[], Generator], str]],
                 on_result: Callable[[object], None], on_event: Callable[[object], None] | None = None,
                 on_cancelled: Callable[[], str] | None = None, form: "Container | None" = None,
                 extra: list[QWidget] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.name = name
        self._prepare, self._on_result = prepare, on_result
        self._on_event, self._on_cancelled = on_event, on_cancelled
        self._form = form
        self.runner = JobRunner(name, self)
        self.start_button = QPushButton(start_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        if form is not None:
            layout.addWidget(form.native)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        for w in extra or []:
            layout.addWidget(w)
        r = self.runner
        r.started.connect(self._started)
        r.yielded.connect(self._yielded)
        r.progressed.connect(self._progressed)
        r.returned.connect(self._returned)
        r.failed.connect(lambda failed: self.status.setText(f"failed: {failed}"))
        r.cancelled.connect(self._cancelled)
        r.finished.connect(self._finished)

    # ------------------------------------------------------------------ state
    @property
    def worker(self):
        """The running worker (None when idle)."""
        return self.runner.worker

    @property
    def is_running(self) -> bool:
        return self.runner.running

    @property
    def last_event(self):
        return self.runner.last_event

    @property
    def n_events(self) -> int:
        return self.runner.n_events

    @property
    def result(self):
        """Result of the last run that ended normally."""
        return self.runner.result

    def reset_choices(self, *_) -> None:
        """Refresh the form's layer pickers."""
        if self._form is not None:
            self._form.reset_choices()

    # ------------------------------------------------------------------ actions
    def start(self, *_) -> bool:
        """Check the inputs (main thread), then run the job in a worker; returns whether it
        started."""
        if self.runner.running:
            return False
        try:
            make_gen, message = self._prepare()
        except (PVSInputError, ValueError) as exc:
            notify_error(str(exc))
            self.status.setText(f"not started: {exc}")
            return False
        return self.runner.start(make_gen, message)

    def cancel(self, *_) -> None:
        """Stop the running job at its next yield (the *Cancel* button)."""
        if self.runner.running:
            self.runner.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText(self.status.text() + "\ncancelling ...")

    # ------------------------------------------------------------------ runner signals
    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if self._form is not None:
            self._form.enabled = not running

    def _started(self, message: str) -> None:
        self.progress.setRange(0, 0)  # busy until the first event with a fraction
        self.status.setText(message)
        self._set_running(True)

    def _yielded(self, event) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _progressed(self, event) -> None:
        """The bar and the status line, with the newest event (a few times a second)."""
        fraction = getattr(event, "fraction", None)
        if fraction is not None:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(round(1000 * fraction)))
        summary = getattr(event, "summary", None)
        if callable(summary):
            self.status.setText(summary())

    def _returned(self, result) -> None:
        self.progress.setRange(0, 1000)
        self.progress.setValue(1000)
        shown = self._on_result(result)
        if inspect.isgenerator(shown):    # a result shown in steps: one layer per event-loop turn
            self.runner.show_in_turns(shown)

    def _cancelled(self) -> None:
        msg = self._on_cancelled() if self._on_cancelled is not None else f"{self.name} cancelled"
        self.status.setText(msg)
        notify_info(msg)

    def _finished(self) -> None:
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1000)
        self._set_running(False)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.cancel()
        super().closeEvent(event)


class JobWidget(QWidget):
    """A dock widget that is one background job (see the module docstring).

    Subclasses build their magicgui form, call :meth:`_build` with it, and implement
    :meth:`prepare` and :meth:`on_result` (optionally :meth:`on_event`, :meth:`on_cancelled`).
    The job's state (``worker``, ``status``, ``progress``, ``last_event``, ``result``, ...)
    is the :class:`JobPanel`'s.
    """

    start_text = "Run"
    job_name = "job"

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.job: JobPanel | None = None
        self._form: Container | None = None
        prepare_viewer(napari_viewer)

    def _build(self, form: "Container", extra: list[QWidget] | None = None) -> None:
        self._form = form
        self.job = JobPanel(self.job_name, self.start_text, prepare=self.prepare, on_result=self.on_result,
                            on_event=self.on_event, on_cancelled=self.on_cancelled, form=form, extra=extra)
        scroll_column(self, (self.job,))

    # the job's state and controls are the panel's
    worker = property(lambda self: self.job.worker, doc="The running worker (None when idle).")
    is_running = property(lambda self: self.job.is_running)
    runner = property(lambda self: self.job.runner)
    status = property(lambda self: self.job.status)
    progress = property(lambda self: self.job.progress)
    start_button = property(lambda self: self.job.start_button)
    cancel_button = property(lambda self: self.job.cancel_button)
    last_event = property(lambda self: self.job.last_event)
    n_events = property(lambda self: self.job.n_events)
    result = property(lambda self: self.job.result, doc="Result of the last run that ended normally.")

    def reset_choices(self, *_) -> None:
        """Refresh the layer pickers (napari calls this when layers change)."""
        if self._form is not None:
            self._form.reset_choices()

    def start(self, *_) -> bool:
        return self.job.start()

    def cancel(self, *_) -> None:
        self.job.cancel()

    # ------------------------------------------------------------------ subclass API
    def prepare(self) -> tuple[Callable[[], Generator], str]:  # pragma: no cover - abstract
        """Read and validate the form on the main thread; ``(make_generator, message)``."""
        raise NotImplementedError

    def on_event(self, event) -> None:
        """Called on the main thread with each progress event."""

    def on_result(self, result) -> None:  # pragma: no cover - abstract
        """Show the result (main thread). A generator function is run one step per event-loop
        turn (``yield`` after adding each layer): the viewer never freezes on a result."""
        raise NotImplementedError

    def on_cancelled(self) -> str:
        return f"{self.job_name} cancelled"

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self.job is not None:
            self.job.cancel()
        super().closeEvent(event)
