"""Layer helpers shared by the widgets that show engine results on a source layer's grid."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["source_geometry", "put_layer"]


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
