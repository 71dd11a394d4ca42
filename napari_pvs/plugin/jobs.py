"""The one job runner: an engine job generator in a napari worker thread.

:class:`JobRunner` is not a widget. It owns the worker (``napari.qt.threading``), *Cancel*
(the worker quits at the generator's next yield) and the closing of the generator when
the worker ends, however it ends (frees the model and data at once). While a job runs:

* napari's activity dock shows it (a ``napari.utils.progress`` bar with the event's
  ``summary()``), as do the widgets that listen to the runner's signals;
* an expected error (:class:`~napari_pvs.engine.errors.PVSInputError`: bad input) is one
  napari notification of one line; any other error is one napari error notification
  *with its traceback* (napari's "View traceback"), and is logged with it;
* the event loop is never blocked by the job, nor by showing its result: a result handler
  may hand :meth:`JobRunner.show_in_turns` a generator that adds one layer per step; each
  step runs in its own event-loop turn (napari's adding of one layer of a 36x448x406 scan
  costs about 0.1-0.2 s on 2 slow cores: three at once froze the viewer for 0.5 s), and the
  job counts as running (``worker`` set, ``finished`` not yet emitted) until the last step;
* Python's full garbage collections skip the objects alive when the job started
  (:mod:`~napari_pvs.plugin.gc_hold`): each visited some 400,000 objects and froze the viewer
  for about 0.4 s.

Signals (all on the main thread): ``started(str)``, ``yielded(object)`` per event,
``progressed(object)`` with the newest event at most every ``progress_interval_s``,
``returned(object)`` with the result, ``failed(object)`` with a :class:`Failed`,
``cancelled()``, ``finished()`` (always last, after the result is shown).

Example
-------
>>> runner = JobRunner("segmentation")                         # doctest: +SKIP
>>> runner.returned.connect(show_result)                        # doctest: +SKIP
>>> runner.start(lambda: segment_job(volume), "segmenting ...")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator

from qtpy.QtCore import QObject, QTimer, Signal

from ..engine.errors import PVSInputError
from . import gc_hold

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


def lower_thread_priority(niceness: int = 10) -> bool:
    """Give the calling thread (and the threads it starts later, such as torch's OpenMP pool)
    a lower CPU priority than the main thread, so that on a machine whose cores a job fills
    the viewer still gets a core when it needs one. Linux only (per-thread ``nice``); returns
    whether it was applied."""
    import os
    import threading

    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), niceness))
    except OSError:
        return False
    return True


def run_job(make_gen: Callable[[], Generator], holder: dict):
    """Worker generator: relays the engine generator's events and returns its result, or
    a :class:`Failed` for any exception. The worker thread runs at a lower priority
    (:func:`lower_thread_priority`)."""
    lower_thread_priority()
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
    progress_interval_s : float
        The progress bars (napari's and ``progressed``) follow the events at most this often:
        under Xvfb's software OpenGL each bar repaint, synchronous in Qt, recomposes the
        window (tens of ms while a job fills the cores).
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
    progressed = Signal(object)
    returned = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    finished = Signal()
    progress_interval_s = 0.25

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
        self._showing = None          # the result's display generator, one step per turn
        self._finish_pending = False
        self._gap_ms = 15
        self._last_progress = 0.0
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
        self._progress_timer.timeout.connect(self._flush_progress)

    @property
    def running(self) -> bool:
        return self.worker is not None

    @property
    def showing(self) -> bool:
        """Whether the result is still being shown (steps of :meth:`show_in_turns` left)."""
        return self._showing is not None

    def show_in_turns(self, steps: Generator, gap_ms: int = 15) -> None:
        """Run the display generator ``steps`` one ``next()`` per event-loop turn, ``gap_ms``
        apart (the viewer draws and answers input between two steps). Called from a
        ``returned`` handler; ``finished`` is emitted after the last step. An error in a step
        is one notification with its traceback, and ends the display."""
        self._showing = steps              # start() refuses a job while one is shown: never two
        self._gap_ms = int(gap_ms)
        QTimer.singleShot(0, self._show_step)

    def _show_step(self) -> None:
        steps = self._showing
        if steps is None:
            return
        t0 = time.perf_counter()
        gc_hold.refresh()
        try:
            next(steps)
            log.debug("%s: result step shown in %.0f ms", self.name, 1000 * (time.perf_counter() - t0))
        except StopIteration:
            self._end_showing()
        except Exception as exc:  # noqa: BLE001 - a display error is reported, the runner goes on
            notify_exception(exc, f"{self.name}: showing the result")
            self._end_showing()
        else:
            QTimer.singleShot(self._gap_ms, self._show_step)

    def _end_showing(self) -> None:
        self._showing = None
        if self._finish_pending:
            self._finish_pending = False
            self._finish()

    def start(self, make_gen: Callable[[], Generator], message: str = "") -> bool:
        """Run ``make_gen()`` (called in the worker) unless a job is running; returns whether
        it started."""
        if self.worker is not None:
            return False
        if self._showing is not None:     # the last result is still being shown: not before it is
            return False
        from napari.qt.threading import create_worker

        self.last_event, self.n_events, self.result, self._holder = None, 0, None, {}
        self._quitting, self._pending = False, None
        worker = create_worker(run_job, make_gen, self._holder, _start_thread=False)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        gc_hold.hold(self)
        self.started.emit(message or f"{self.name} ...")
        worker.start()
        # napari's activity-dock bar in the next event-loop turn: building it (0.1-0.2 s, with
        # napari's own processEvents) in the same turn as the form's checks froze the viewer
        QTimer.singleShot(0, lambda w=worker: self._open_progress(w))
        return True

    def _open_progress(self, worker) -> None:
        from napari.utils import progress

        if self.worker is not worker or self._progress is not None:   # already over, or already open
            return
        self._progress = progress(total=1000, desc=f"napari-pvs {self.name}")
        if self.last_event is not None and not self._updating:
            self._pending = self.last_event          # the events so far, on the new bar
            self._update_progress()

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
        self.yielded.emit(event)      # every event to the widgets, in order ...
        self._pending = event         # ... the bars only the newest, at most every progress_interval_s
        wait = self.progress_interval_s - (time.perf_counter() - self._last_progress)
        if wait <= 0 and not self._updating:
            self._flush_progress()
        elif not self._progress_timer.isActive():
            self._progress_timer.start(max(1, int(wait * 1000)))

    def _flush_progress(self) -> None:
        event = self._pending
        if self._quitting or event is None:
            return
        self._last_progress = time.perf_counter()
        gc_hold.refresh()
        self.progressed.emit(event)
        if not self._updating:        # napari's bar processes Qt events itself: a nested event
            self._update_progress()   # only leaves the newest for this loop

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
        self._progress_timer.stop()
        gc_hold.refresh()
        if isinstance(result, Failed):
            notify_exception(result.error, self.name)
            self.failed.emit(result)
            return
        if result is None:
            return
        self.result = result
        self.returned.emit(result)

    def _on_aborted(self) -> None:
        self._progress_timer.stop()
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
        if self._showing is not None:     # the result's layers are still being added
            self._finish_pending = True
            return
        self._finish()

    def _finish(self) -> None:
        self._progress_timer.stop()
        self.worker = None
        gc_hold.release(self)
        self.finished.emit()
