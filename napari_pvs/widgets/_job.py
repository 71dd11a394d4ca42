"""The one job lifecycle shared by every widget that runs engine work in the background.

:class:`JobWidget` owns it: a form (magicgui ``Container``), a start button, *Cancel*, a
progress bar and a status line. *Start* calls the subclass's :meth:`JobWidget.prepare` on
the main thread, which reads the form and validates the inputs with the engine's own
checks (so bad input is refused before any thread starts, with the same one-line message
as the CLI), and returns a factory of the engine generator. The generator then runs in a
napari worker (``napari.qt.threading.create_worker``); each event it yields updates the
bar (its ``fraction``) and the status line (its ``summary()``); *Cancel* quits the worker,
which stops the generator at its next yield; the result goes to
:meth:`JobWidget.on_result`. Any error, expected (:class:`PVSInputError`) or not, is
caught in the worker and shown as exactly one napari notification. The event loop is
never blocked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea, QVBoxLayout, QWidget

from ..engine.errors import PVSInputError

if TYPE_CHECKING:
    import napari
    from magicgui.widgets import Container

__all__ = ["JobWidget", "Failed", "notify_error", "notify_info", "run_job", "scroll_column"]

log = logging.getLogger(__name__)


def notify_error(message: str) -> None:
    """Show a one-line error in napari (and log it)."""
    from napari.utils.notifications import show_error

    log.error(message)
    show_error(message)


def notify_info(message: str) -> None:
    """Show an information message in napari (and log it)."""
    from napari.utils.notifications import show_info

    log.info(message)
    show_info(message)


class Failed:
    """An error caught in the worker and *returned* as its result, so that the widget
    shows it once, as one line (an exception raised in a napari worker would also be
    shown by napari itself, with a traceback).

    Attributes
    ----------
    error : Exception
    expected : bool
        True for a :class:`PVSInputError` (bad input the user can fix).
    """

    def __init__(self, error: Exception):
        self.error = error
        self.expected = isinstance(error, PVSInputError)

    def __str__(self) -> str:
        return str(self.error) if self.expected else f"{type(self.error).__name__}: {self.error}"


def scroll_column(owner: QWidget, widgets) -> None:
    """Lay ``widgets`` out in one scrollable column filling ``owner`` (a dock widget taller
    than the window stays usable)."""
    content = QWidget()
    layout = QVBoxLayout(content)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(content)
    QVBoxLayout(owner).addWidget(scroll)
    for w in widgets:
        layout.addWidget(w)
    layout.addStretch(1)


def run_job(make_gen: Callable[[], Generator], holder: dict):
    """Worker generator: relays the engine generator's events and returns its result, or
    a :class:`Failed` for any exception (logged with its traceback unless expected)."""
    try:
        gen = make_gen()
        holder["gen"] = gen
        result = yield from gen
    except Exception as exc:  # noqa: BLE001 - every error becomes one notification
        if not isinstance(exc, PVSInputError):
            log.exception("background job failed")
        return Failed(exc)
    return result


class JobWidget(QWidget):
    """Base class of the dock widgets that run an engine job generator in a worker.

    Subclasses build their magicgui form, call :meth:`_build` with it, and implement
    :meth:`prepare` and :meth:`on_result` (and optionally :meth:`on_event`).

    Attributes
    ----------
    viewer : napari.viewer.Viewer
    worker : GeneratorWorker or None
        The running worker (None when idle).
    last_event : object or None
        The last progress event of the current or last run.
    n_events : int
        Events received in the current or last run.
    result : object or None
        Result of the last run that ended normally.
    start_button, cancel_button : QPushButton
    progress : QProgressBar
    status : QLabel
    """

    start_text = "Run"
    job_name = "job"

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.last_event = None
        self.n_events = 0
        self.result = None
        self._holder: dict = {}
        self._form: Container | None = None

    # ------------------------------------------------------------------ layout
    def _build(self, form: "Container", extra: list[QWidget] | None = None) -> None:
        self._form = form
        self.start_button = QPushButton(self.start_text)
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
        layout.addWidget(form.native)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        for w in extra or []:
            layout.addWidget(w)
        layout.addStretch(1)

    def reset_choices(self, *_) -> None:
        """Refresh the layer pickers (napari calls this when layers change)."""
        if self._form is not None:
            self._form.reset_choices()

    # ------------------------------------------------------------------ subclass API
    def prepare(self) -> tuple[Callable[[], Generator], str]:  # pragma: no cover - abstract
        """Read and validate the form on the main thread.

        Returns ``(make_generator, starting_message)``; raises :class:`PVSInputError` or
        ``ValueError`` with a one-line message for bad input."""
        raise NotImplementedError

    def on_event(self, event) -> None:
        """Called on the main thread with each progress event (after the bar and status)."""

    def on_result(self, result) -> None:  # pragma: no cover - abstract
        """Called on the main thread with the job's result."""
        raise NotImplementedError

    def on_cancelled(self) -> str:
        """Status message after a cancel."""
        return f"{self.job_name} cancelled"

    # ------------------------------------------------------------------ lifecycle
    @property
    def is_running(self) -> bool:
        return self.worker is not None

    def start(self, *_) -> None:
        """Validate the inputs, then run the job in a worker thread (the start button)."""
        if self.worker is not None:
            return
        try:
            make_gen, message = self.prepare()
        except (PVSInputError, ValueError) as exc:
            notify_error(str(exc))
            self.status.setText(f"not started: {exc}")
            return
        from napari.qt.threading import create_worker

        self.last_event, self.n_events, self.result, self._holder = None, 0, None, {}
        self.progress.setRange(0, 0)  # busy until the first event with a fraction
        self.status.setText(message)
        worker = create_worker(run_job, make_gen, self._holder, _start_thread=False)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._set_running(True)
        worker.start()

    def cancel(self, *_) -> None:
        """Stop the running job at its next yield (the *Cancel* button)."""
        if self.worker is None:
            return
        self.worker.quit()
        self.cancel_button.setEnabled(False)
        self.status.setText(self.status.text() + "\ncancelling ...")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if self._form is not None:
            self._form.enabled = not running

    def _on_yielded(self, event) -> None:
        self.last_event = event
        self.n_events += 1
        fraction = getattr(event, "fraction", None)
        if fraction is not None:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(round(1000 * fraction)))
        summary = getattr(event, "summary", None)
        if callable(summary):
            self.status.setText(summary())
        self.on_event(event)

    def _on_returned(self, result) -> None:
        if isinstance(result, Failed):
            notify_error(f"{self.job_name} failed: {result}" if not result.expected else str(result))
            self.status.setText(f"failed: {result}")
            return
        if result is None:
            return
        self.result = result
        self.progress.setRange(0, 1000)
        self.progress.setValue(1000)
        self.on_result(result)

    def _on_aborted(self) -> None:
        msg = self.on_cancelled()
        self.status.setText(msg)
        notify_info(msg)

    def _on_finished(self) -> None:
        gen = self._holder.pop("gen", None)
        if gen is not None:
            try:
                gen.close()  # stop the engine generator now (frees the model and data)
            except (RuntimeError, ValueError):  # pragma: no cover - still running elsewhere
                log.debug("could not close the %s generator", self.job_name, exc_info=True)
        self.worker = None
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1000)
        self._set_running(False)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.cancel()
        super().closeEvent(event)
