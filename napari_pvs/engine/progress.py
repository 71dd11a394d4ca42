"""Long jobs are generators of typed progress events; this module holds what they share.

Every engine job (training, inference, simulation of sample data, ...) is a generator that
yields progress events and *returns* its result (``StopIteration.value``). Closing the
generator (``gen.close()``, a napari worker's ``quit()``, a ``break`` in a ``for`` loop)
stops the job at its next yield. Each event type provides:

``fraction``
    Share of the job done, in ``[0, 1]``, or None when unknown.
``summary()``
    One line for a status bar or a log.

A job made of several stages (a use case: register, then count) relays its stages'
events as :class:`StageEvent`. The CLI iterates the generators; the napari widgets run them
in a worker thread through one job runner (:mod:`napari_pvs.plugin.jobs`).

Example
-------
>>> def job():
...     for i in range(3):
...         yield i
...     return "done"
>>> seen = []
>>> run_to_end(job(), seen.append), seen
('done', [0, 1, 2])
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["run_to_end", "map_events", "format_seconds", "StageEvent", "stage"]

R = TypeVar("R")


def run_to_end(gen: Generator[object, None, R], on_event: Callable[[object], None] | None = None) -> R:
    """Run a job generator to its end, calling ``on_event`` with each event; returns the
    generator's return value."""
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(ev)


def map_events(gen: Generator[Any, None, R], fn: Callable[[Any], Any]) -> Generator[Any, None, R]:
    """Relay a job generator, yielding ``fn(event)`` for each of its events and returning its
    return value (use with ``result = yield from map_events(gen, fn)``). Closing the relay
    closes ``gen``."""
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                return stop.value
            yield fn(ev)
    finally:
        gen.close()


def format_seconds(s: float) -> str:
    """``'42.0 s'`` or ``'3 min 05 s'``."""
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec:02d} s"


@dataclass(frozen=True)
class StageEvent:
    """Progress of one stage of a several-stage job.

    Attributes
    ----------
    stage : str
        What the stage does, e.g. ``"register"``, ``"count"``.
    index, n_stages : int
        0-based stage number and how many stages the job has.
    inner : object or None
        The stage's own event (a ``TrainEvent``, ``InferenceProgress``, ...), or None at a
        stage's start.
    message : str
        A note for stages without inner events.
    """

    stage: str
    index: int
    n_stages: int
    inner: Any = None
    message: str = ""

    @property
    def fraction(self) -> float:
        """``(index + inner fraction) / n_stages``."""
        within = getattr(self.inner, "fraction", None) if self.inner is not None else None
        return min(1.0, (self.index + (within or 0.0)) / max(self.n_stages, 1))

    def summary(self) -> str:
        """``"<stage>: <inner summary or message>"``."""
        inner = self.inner.summary() if hasattr(self.inner, "summary") else (self.message or "started")
        return f"{self.stage}: {inner}"


def stage(gen: Generator[Any, None, R], name: str, index: int, n_stages: int) -> Generator[StageEvent, None, R]:
    """Relay ``gen`` as stage ``index`` of ``n_stages`` (``result = yield from stage(...)``):
    one :class:`StageEvent` at the start, then one per event of ``gen``."""
    yield StageEvent(name, index, n_stages)
    return (yield from map_events(gen, lambda ev: StageEvent(name, index, n_stages, ev)))
