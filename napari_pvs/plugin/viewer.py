"""Viewer helpers: the slice napari draws of a layer, moving to a slice, and derived layers
placed on a source layer's grid. Public napari API only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["source_geometry", "put_layer", "shown_index", "go_to_slice"]


def source_geometry(src) -> dict:
    """The data-to-world keywords (``scale``, ``translate``, ``rotate``, ``shear``,
    ``affine``) of layer ``src``, to place a derived layer on the same grid."""
    return {"scale": tuple(src.scale), "translate": tuple(src.translate), "rotate": np.asarray(src.rotate),
            "shear": np.asarray(src.shear), "affine": np.asarray(src.affine.affine_matrix)}


def put_layer(viewer, name: str, data: np.ndarray, geom: dict, meta: dict, add: Callable):
    """Update layer ``name`` in place (same shape) or (re)create it with ``add(data, name=,
    metadata=, **geom)``; returns the layer."""
    layer = viewer.layers[name] if name in viewer.layers else None
    if layer is not None and layer.data.shape == data.shape:
        layer.data = data
        for key, value in geom.items():
            setattr(layer, key, value)
        layer.metadata.update(meta)
        return layer
    if layer is not None:
        viewer.layers.remove(layer)
    return add(data, name=name, metadata=dict(meta), **geom)


def _on_screen(viewer, layer, axis: int) -> bool:
    """Whether data ``axis`` of ``layer`` is one of the displayed dims (no slice along it)."""
    return axis + len(viewer.dims.point) - layer.ndim in viewer.dims.displayed


def _drawn_index_at(viewer, layer, axis: int, dim: int, world: float) -> float:
    """The data index along ``axis`` that napari draws with slider ``dim`` at world
    coordinate ``world``: ``world_to_data`` with the displayed coordinates set to 0 (they do
    not count in napari's slicing). Computed without moving the slider."""
    point = np.asarray(viewer.dims.point, dtype=float).copy()
    point[list(viewer.dims.displayed)] = 0.0
    point[dim] = world
    return float(np.asarray(layer.world_to_data(point[-layer.ndim:]))[axis])


def shown_index(viewer, layer, axis: int) -> float:
    """Data index (float) along ``axis`` of the slice that napari draws of ``layer``.

    napari maps only the slider's world coordinate to data (the out-of-plane part of an
    oblique affine is dropped), so on an oblique scan this can differ by a slice or more
    from ``world_to_data`` of the full point; it is computed here the same way, with
    napari's public API only (:func:`_drawn_index_at`).
    """
    if _on_screen(viewer, layer, axis):
        # e.g. a coronally stored volume shown in its data order: napari draws no slice
        # along this axis; the slider position is the answer
        point = np.asarray(viewer.dims.point, dtype=float)
        return float(np.asarray(layer.world_to_data(point[-layer.ndim:]))[axis])
    dim = int(viewer.dims.not_displayed[0])
    return _drawn_index_at(viewer, layer, axis, dim, float(viewer.dims.point[dim]))


def go_to_slice(viewer, layer, k: int, axis: int = 0) -> int:
    """Move the slider so that napari draws data slice ``k`` of ``layer`` along ``axis``
    (or the nearest one the slider's world grid reaches); returns the slice drawn. The
    slider moves once (each move re-slices every layer and tells the widgets)."""
    if viewer.dims.ndisplay != 2 or _on_screen(viewer, layer, axis):
        centre = (np.asarray(layer.data.shape, float) - 1) / 2.0
        centre[axis] = float(k)
        viewer.dims.point = tuple(float(v) for v in np.asarray(layer.data_to_world(centre), float))
        return int(round(shown_index(viewer, layer, axis)))
    dim = int(viewer.dims.not_displayed[0])
    rng = viewer.dims.range[dim]
    worlds = rng.start + rng.step * np.arange(int(viewer.dims.nsteps[dim]))
    drawn = np.array([_drawn_index_at(viewer, layer, axis, dim, w) for w in worlds])
    viewer.dims.set_current_step(dim, int(np.argmin(np.abs(drawn - k))))
    return int(round(shown_index(viewer, layer, axis)))
