"""Layer helpers shared by the widgets that show engine results on a source layer's grid."""

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


def shown_index(viewer, layer, axis: int) -> float:
    """Data index (float) along ``axis`` of the slice that napari draws of ``layer``.

    napari maps only the slider's world coordinate to data (the out-of-plane part of an
    oblique affine is dropped), so on an oblique scan this can differ by a slice or more
    from ``world_to_data`` of the full point. napari's own slicing is read when the layer
    has it; otherwise it is computed the same way: ``world_to_data`` of the point with the
    displayed coordinates set to 0.
    """
    point = np.asarray(viewer.dims.point, dtype=float).copy()
    if axis + len(point) - layer.ndim in viewer.dims.displayed:
        # the axis is on screen (e.g. a coronally stored volume shown in its data order):
        # napari draws no slice along it; the slider position is the answer
        return float(np.asarray(layer.world_to_data(point[-layer.ndim:]))[axis])
    try:
        value = float(layer._data_slice.point[axis])  # napari's own slicing
        if np.isfinite(value):
            return value
    except (AttributeError, IndexError, TypeError):
        pass
    point[list(viewer.dims.displayed)] = 0.0
    data = np.asarray(layer.world_to_data(point[-layer.ndim:]))
    return float(data[axis])


def _drawn_index_at(viewer, layer, axis: int, dim: int, world: float) -> float:
    """The data index along ``axis`` that napari would draw with slider ``dim`` at world
    coordinate ``world`` (the displayed coordinates do not count), without moving it."""
    point = np.asarray(viewer.dims.point, dtype=float).copy()
    point[list(viewer.dims.displayed)] = 0.0
    point[dim] = world
    return float(np.asarray(layer.world_to_data(point[-layer.ndim:]))[axis])


def go_to_slice(viewer, layer, k: int, axis: int = 0) -> int:
    """Move the slider so that napari draws data slice ``k`` of ``layer`` along ``axis``
    (or the nearest one the slider's world grid reaches); returns the slice drawn. The
    slider moves once (each move re-slices every layer and tells the widgets)."""
    dim = int(viewer.dims.not_displayed[0]) if viewer.dims.ndisplay == 2 else None
    if dim is None or axis + len(viewer.dims.point) - layer.ndim in viewer.dims.displayed:
        centre = np.asarray((np.asarray(layer.data.shape, float) - 1) / 2.0)
        centre[axis] = float(k)
        viewer.dims.point = tuple(float(v) for v in np.asarray(layer.data_to_world(centre), float))
        return int(round(shown_index(viewer, layer, axis)))
    rng = viewer.dims.range[dim]
    n_steps = int(viewer.dims.nsteps[dim])
    worlds = rng.start + rng.step * np.arange(n_steps)
    drawn = np.array([_drawn_index_at(viewer, layer, axis, dim, w) for w in worlds])
    viewer.dims.set_current_step(dim, int(np.argmin(np.abs(drawn - k))))
    return int(round(shown_index(viewer, layer, axis)))
