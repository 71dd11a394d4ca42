"""napari dock widgets of napari-pvs: train a model, segment PVS, count PVS, annotate PVS,
active learning.

Thin front ends over :mod:`napari_pvs.engine`: they read values from the GUI, validate
them with the engine's checks, run the engine's job generators through one shared job
lifecycle (:mod:`._job`: worker thread, progress, cancel, one notification per error) and
update layers. Layer pickers are magicgui's napari layer widgets, which napari refreshes.
The engine (and torch) is imported when a widget is built or run, never when napari
starts.

The widget classes live in :mod:`.train`, :mod:`.segment`, :mod:`.count`,
:mod:`.annotate`, :mod:`.active_learning`, :mod:`.registration` and :mod:`.compare` and are
registered in ``napari.yaml``; they are importable from here too (lazily).
"""

from __future__ import annotations

__all__ = ["TrainWidget", "SegmentWidget", "CountWidget", "AnnotateWidget", "ActiveLearningWidget",
           "CompareWidget"]


def __getattr__(name):
    if name == "TrainWidget":
        from .train import TrainWidget
        return TrainWidget
    if name == "SegmentWidget":
        from .segment import SegmentWidget
        return SegmentWidget
    if name == "CountWidget":
        from .count import CountWidget
        return CountWidget
    if name == "AnnotateWidget":
        from .annotate import AnnotateWidget
        return AnnotateWidget
    if name == "ActiveLearningWidget":
        from .active_learning import ActiveLearningWidget
        return ActiveLearningWidget
    if name == "CompareWidget":
        from .compare import CompareWidget
        return CompareWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
