"""Long jobs are generators of typed progress events; this module holds what they share.

Every engine job (training, inference, simulation of sample data, ...) is a generator that
yields progress events and *returns* its result (``StopIteration.value``). Closing the
generator (``gen.close()``, a napari worker's ``quit()``, a ``break`` in a ``for`` loop)
stops the job at its next yield. Each event type provides:

``fraction``
    Share of the job done, in ``[0, 1]``, or None when unknown.
``summary()``
    One line for a status bar or a log.

The CLI iterates the generators; the napari widgets run them in a worker thread through
one shared job lifecycle (``napari_pvs.widgets._job``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any
from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["ProgressEvent", "run_to_end", "map_events", "format_seconds"]

R = TypeVar("R")


@runtime_checkable
class ProgressEvent(Protocol):
    """What every progress event of an engine job offers."""

    @property
    def fraction(self) -> float | None: ...  # pragma: no cover - protocol

    def summary(self) -> str: ...  # pragma: no cover - protocol


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
