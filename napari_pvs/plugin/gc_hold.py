"""Python's full garbage collections kept off the viewer while a job runs and its result is
shown.

With napari, torch, MONAI and ONNX Runtime loaded a napari process holds about 400,000
objects that the cyclic garbage collector tracks. A full (generation 2) collection visits all
of them and holds the GIL throughout: 383-436 ms on 2 slow cores in a ``gc.callbacks`` timing
of repeated layer adds, and 834 ms during training in ``benchmarks/event_loop.py
--no-gc-hold``. A job's worker thread allocates enough to trigger such collections, and the
viewer freezes for each one.

:func:`hold` (a job starts) moves every object alive now into the collector's permanent
generation (``gc.freeze``, constant time), so collections during the job visit only what was
made since; :func:`refresh` does it again at each progress update and result step (objects
the job made so far); :func:`release` (the last job's result is shown) returns them all to the
oldest generation (``gc.unfreeze``), so cyclic garbage made meanwhile (a layer removed
during a job) is collected as usual afterwards: nothing stays frozen between jobs.

Refer to: the Python documentation of ``gc.freeze`` (Python 3.7+), and Instagram's
"Dismissing Python Garbage Collection at Instagram" (2017), for the idea.

Example
-------
>>> from napari_pvs.plugin import gc_hold
>>> gc_hold.hold("job"); gc_hold.holding()
True
>>> gc_hold.release("job"); gc_hold.holding()
False
"""

from __future__ import annotations

import gc

__all__ = ["hold", "refresh", "release", "holding"]

_holders: set[int] = set()


def hold(owner: object) -> None:
    """``owner`` (a job runner) starts a job: freeze the objects alive now."""
    _holders.add(id(owner))
    gc.freeze()


def refresh() -> None:
    """While a job holds: freeze what was made since (no-op otherwise)."""
    if _holders:
        gc.freeze()


def release(owner: object) -> None:
    """``owner``'s job is over; the last one out unfreezes everything."""
    _holders.discard(id(owner))
    if not _holders:
        gc.unfreeze()


def holding() -> bool:
    """Whether a job holds the collector off."""
    return bool(_holders)
