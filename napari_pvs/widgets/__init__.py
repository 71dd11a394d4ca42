"""napari dock widgets of napari-pvs: train a model, segment PVS, count PVS.

Thin front ends over :mod:`napari_pvs.engine`: they read values from the GUI, call the
engine (training and inference in a napari ``thread_worker`` so the viewer stays
responsive) and update layers. The engine (and torch) is imported lazily, when a widget
is built or run, never when napari starts.

The widget classes live in ``_train``, ``_segment`` and ``_count`` and are registered in
``napari.yaml``; they are importable from here too (lazily).
"""

from __future__ import annotations

__all__ = ["TrainWidget", "SegmentWidget", "CountWidget", "layer_to_volume"]


def __getattr__(name):
    if name == "TrainWidget":
        from ._train import TrainWidget
        return TrainWidget
    if name == "SegmentWidget":
        from ._segment import SegmentWidget
        return SegmentWidget
    if name == "CountWidget":
        from ._count import CountWidget
        return CountWidget
    if name == "layer_to_volume":
        from ._layers import layer_to_volume
        return layer_to_volume
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
