"""The one job runner: an engine job generator in a napari worker thread.

:class:`JobRunner` is not a widget. It owns the worker (``napari.qt.threading``), *Cancel*
(the worker quits at the generator's next yield) and the closing of the generator when
the worker ends, however it ends (frees the model and data at once). While a job runs:

* napari's activity dock shows it (a ``napari.utils.progress`` bar with the event's
  ``summary()``), as do the widgets that listen to the runner's signals;
* an expected error (:class:`~napari_pvs.engine.errors.PVSInputError`: bad input) is one
  napari notification of one line; any other error is one napari error notification
  *with its traceback* (napari's "View traceback"), and is logged with it;
* the event loop is never blocked by the job.

Signals (all on the main thread): ``started(str)``, ``yielded(object)`` per event,
``returned(object)`` with the result, ``failed(object)`` with a :class:`Failed`,
``cancelled()``, ``finished()`` (always last).

Example
-------
>>> runner = JobRunner("segmentation")                         # doctest: +SKIP
>>> runner.returned.connect(show_result)                        # doctest: +SKIP
>>> runner.start(lambda: segment_job(volume), "segmenting ...")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator

from qtpy.QtCore import QObject, Signal

from ..engine.errors import PVSInputError

__all__ = ["JobRunner", "Failed", "notify_error", "notify_info", "notify_exception", "run_job"]

log = logging.getLogger(__name__)


def notify_error(message: str) -> None:
    """A one-line error in napari (and the log)."""
    from napari.utils.notifications import show_error

    log.error(message)
    show_error(message)


def notify_info(message: str) -> None:
    """An information message in napari (and the log)."""
    from napari.utils.notifications import show_info

    log.info(message)
    show_info(message)


def notify_exception(exc: BaseException, context: str = "") -> None:
    """One napari error notification for ``exc``: one line for a :class:`PVSInputError`,
    else napari's error notification carrying the traceback ("View traceback")."""
    if isinstance(exc, PVSInputError):
        notify_error(str(exc))
        return
    from napari.utils.notifications import notification_manager

    log.error("%s%s: %s", f"{context} failed: " if context else "", type(exc).__name__, exc,
              exc_info=(type(exc), exc, exc.__traceback__))
    notification_manager.receive_error(type(exc), exc, exc.__traceback__)


class Failed:
    """An error caught in the worker and *returned* as its result, so that it is shown
    exactly once, on the main thread (see :func:`notify_exception`).

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


def run_job(make_gen: Callable[[], Generator], holder: dict):
    """Worker generator: relays the engine generator's events and returns its result, or
    a :class:`Failed` for any exception."""
    try:
        gen = make_gen()
        holder["gen"] = gen
        result = yield from gen
    except Exception as exc:  # noqa: BLE001 - every error becomes one notification
        return Failed(exc)
    return result


class JobRunner(QObject):
    """Runs one engine job generator at a time in a napari worker (see the module docstring).

    Parameters
    ----------
    name : str
        What the job is, for the activity dock and messages (``"segmentation"``).

    Attributes
    ----------
    worker : GeneratorWorker or None
        The running worker (None when idle).
    last_event : object or None
        The last event of the current or last run.
    n_events : int
        Events of the current or last run.
    result : object or None
        Result of the last run that ended normally.
    """

    started = Signal(str)
    yielded = Signal(object)
    returned = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self.worker = None
        self.last_event = None
        self.n_events = 0
        self.result = None
        self._holder: dict = {}
        self._progress = None
        self._quitting = False
        self._updating = False
        self._pending = None

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, make_gen: Callable[[], Generator], message: str = "") -> bool:
        """Run ``make_gen()`` (called in the worker) unless a job is running; returns whether
        it started."""
        if self.worker is not None:
            return False
        from napari.qt.threading import create_worker
        from napari.utils import progress

        self.last_event, self.n_events, self.result, self._holder = None, 0, None, {}
        self._quitting, self._pending = False, None
        self._progress = progress(total=1000, desc=f"napari-pvs {self.name}")
        worker = create_worker(run_job, make_gen, self._holder, _start_thread=False)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.started.emit(message or f"{self.name} ...")
        worker.start()
        return True

    def cancel(self) -> None:
        """Stop the running job at its next yield."""
        if self.worker is not None:
            self._quitting = True
            self.worker.quit()

    def _on_yielded(self, event) -> None:
        if self._quitting:            # events still queued at a cancel or after the result
            return
        self.last_event = event
        self.n_events += 1
        self.yielded.emit(event)      # the widgets first, in order ...
        self._pending = event
        if not self._updating:        # ... then napari's bar, which processes Qt events itself:
            self._update_progress()   # a nested event only leaves the newest for this loop

    def _update_progress(self) -> None:
        self._updating = True
        try:
            while self._pending is not None and self._progress is not None:
                event, self._pending = self._pending, None
                pbar = self._progress
                fraction = getattr(event, "fraction", None)
                if fraction is not None:
                    target = int(round(1000 * min(max(float(fraction), 0.0), 1.0)))
                    if target > pbar.n:
                        pbar.update(target - pbar.n)
                summary = getattr(event, "summary", None)
                if callable(summary) and self._progress is pbar:
                    pbar.set_description(f"napari-pvs {self.name}: {summary()[:80]}")
        finally:
            self._updating = False

    def _on_returned(self, result) -> None:
        self._quitting = True                 # the result is final: late events are not shown
        if isinstance(result, Failed):
            notify_exception(result.error, self.name)
            self.failed.emit(result)
            return
        if result is None:
            return
        self.result = result
        self.returned.emit(result)

    def _on_aborted(self) -> None:
        self.cancelled.emit()

    def _on_finished(self) -> None:
        gen = self._holder.pop("gen", None)
        if gen is not None:
            try:
                gen.close()  # stop the engine generator now (frees the model and data)
            except (RuntimeError, ValueError):  # pragma: no cover - still running elsewhere
                log.debug("could not close the %s generator", self.name, exc_info=True)
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.worker = None
        self.finished.emit()
