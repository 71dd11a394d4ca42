"""Viewer helpers: the slice napari draws of a layer, moving to a slice, and derived layers
placed on a source layer's grid. Public napari API, except :func:`add_labels` (a Labels
layer's paint overlays, ``layer._overlays``, built on first use; without them it is plain
``viewer.add_labels``)."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np

__all__ = ["source_geometry", "put_layer", "add_labels", "shown_index", "go_to_slice", "follow_slices", "follow_default_layer",
           "followed_layer", "prepare_viewer", "axial_axis_of"]


def source_geometry(src) -> dict:
    """The data-to-world keywords (``scale``, ``translate``, ``rotate``, ``shear``,
    ``affine``, ``units``, ``axis_labels``) of layer ``src``, to place a derived layer on the same grid."""
    geom = {"scale": tuple(src.scale), "translate": tuple(src.translate), "rotate": np.asarray(src.rotate),
            "shear": np.asarray(src.shear), "affine": np.asarray(src.affine.affine_matrix)}
    units = getattr(src, "units", None)
    if units is not None:
        geom["units"] = tuple(str(u) for u in units)
        geom["axis_labels"] = tuple(src.axis_labels)
    return geom


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


#: napari's Labels overlays (polygon and brush outline) whose visuals it builds when the layer
#: is added; built when the layer's mode first changes instead
_PAINT_OVERLAYS = ("polygon", "brush_stroke")


def add_labels(viewer, data: np.ndarray, **kwargs):
    """``viewer.add_labels(data, **kwargs)``, its paint overlays built on first use.

    napari builds the vispy visuals of a Labels layer's polygon and brush-outline overlays
    (dashed lines and a mesh: 120 ms in a cProfile of one add, under Xvfb) when the layer is added,
    but only for visible overlays. Here they are hidden while the layer is added and shown
    when its mode first changes (a rater picking the brush or polygon tool, the only modes
    that draw them), so showing a job's result does not pay for them. Adding a 36x448x406
    mask took 214-258 ms with them and 99-158 ms without (six adds each, 2 cores, Xvfb).

    Parameters
    ----------
    viewer : napari.Viewer
    data : np.ndarray
        Integer labels, ``(Z, Y, X)`` for a volume.
    **kwargs
        Any keyword of ``napari.layers.Labels`` (``name``, ``scale``, ``opacity``, ...).

    Returns
    -------
    napari.layers.Labels
        The layer, as ``viewer.add_labels`` returns it.

    Example
    -------
    >>> mask = add_labels(viewer, np.zeros((36, 448, 406), np.uint8), name="PVS")  # doctest: +SKIP
    >>> mask.mode = "paint"      # the brush outline is built now               # doctest: +SKIP
    """
    from napari.layers import Labels

    layer = Labels(data, **kwargs)
    overlays = getattr(layer, "_overlays", {})
    hidden = [o for k, o in overlays.items() if k in _PAINT_OVERLAYS and getattr(o, "visible", False)]
    for overlay in hidden:
        overlay.visible = False
    if hidden:
        def show(_event=None):
            layer.events.mode.disconnect(show)
            for o in hidden:
                o.visible = True

        layer.events.mode.connect(show)
    viewer.layers.append(layer)
    return layer


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


# --------------------------------------------------------------------------- slider = slice
#: viewers whose slider follows a layer's slices: viewer -> _SliceSync
_SYNCS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def axial_axis_of(layer) -> int:
    """Data axis of a 3D layer that runs closest to the head's superior-inferior axis,
    from the NIfTI affine in its metadata (napari-pvs layers) or else 0."""
    affine = (getattr(layer, "metadata", None) or {}).get("affine")
    if affine is None or getattr(layer, "ndim", 0) != 3:
        return 0
    a = np.asarray(affine, float)[:3, :3]           # columns: NIfTI i, j, k in RAS
    col = int(np.argmax(np.abs(a[2, :])))            # the voxel axis with the largest S part
    return 2 - col                                    # data (Z, Y, X) = (k, j, i)


class _SliceSync:
    """Keeps one slider stepping through the data slices of ``layer`` along ``axis``,
    numbered as the data indices (see :func:`follow_slices`)."""

    def __init__(self, viewer, layer, axis: int):
        self.viewer = weakref.ref(viewer)
        self.layer = weakref.ref(layer)
        self.axis = int(axis)
        self.dim: int | None = None
        self.reversed = False
        self._busy = False
        viewer.dims.events.range.connect(self.apply)
        viewer.dims.events.ndisplay.connect(self.apply)
        viewer.layers.events.removed.connect(self._on_removed)

    def disconnect(self) -> None:
        viewer = self.viewer()
        if viewer is None:
            return
        for ev, cb in ((viewer.dims.events.range, self.apply), (viewer.dims.events.ndisplay, self.apply),
                       (viewer.layers.events.removed, self._on_removed)):
            try:
                ev.disconnect(cb)
            except (TypeError, ValueError, RuntimeError):
                pass

    def _on_removed(self, event=None) -> None:
        viewer, layer = self.viewer(), self.layer()
        if viewer is not None and (layer is None or layer not in viewer.layers):
            self.disconnect()
            _SYNCS.pop(viewer, None)
            follow_default_layer(viewer)

    def target(self):
        """``(dim, RangeTuple)`` the slider of the followed axis should have, or None."""
        from napari.components.dims import RangeTuple

        viewer, layer = self.viewer(), self.layer()
        if viewer is None or layer is None or layer not in viewer.layers or viewer.dims.ndim < layer.ndim:
            return None
        dim = self.axis + viewer.dims.ndim - layer.ndim
        n = int(layer.data.shape[self.axis])
        f0 = _drawn_index_at(viewer, layer, self.axis, dim, 0.0)
        f1 = _drawn_index_at(viewer, layer, self.axis, dim, 1.0)
        slope = f1 - f0                                   # data slices per world mm
        if n < 2 or not np.isfinite(slope) or abs(slope) < 1e-9:
            return None
        step = 1.0 / abs(slope)
        w_first, w_last = -f0 / slope, (n - 1 - f0) / slope   # world of slices 0 and n-1
        self.reversed = slope < 0
        start = min(w_first, w_last)
        # napari counts int((stop - start) / step) + 1 steps: keep that n under rounding
        return dim, RangeTuple(start, start + step * (n - 1 + 1e-6), step)

    def apply(self, event=None) -> None:
        """(Re)impose the range of the followed slider after napari recomputed it (a layer
        was added or removed, a layer's data or transform changed)."""
        viewer = self.viewer()
        if self._busy or viewer is None:
            return
        self._busy = True
        try:
            got = self.target()
            if got is None:
                return
            dim, rng = got
            self.dim = dim
            if viewer.dims.ndisplay == 2 and dim in viewer.dims.displayed:
                order = [d for d in viewer.dims.order if d != dim]
                viewer.dims.order = tuple(order[:-2] + [dim] + order[-2:])
            old = viewer.dims.range[dim]
            if not np.allclose([old.start, old.stop, old.step], list(rng), rtol=0, atol=1e-9):
                ranges = list(viewer.dims.range)
                ranges[dim] = rng
                point = float(viewer.dims.point[dim])
                viewer.dims.range = tuple(ranges)
                # stay on the slice shown before (snapped to the new grid)
                s = int(np.clip(round((point - rng.start) / rng.step), 0, round((rng.stop - rng.start) / rng.step)))
                viewer.dims.set_current_step(dim, s)
        finally:
            self._busy = False


def follow_slices(viewer, layer, axis: int | None = None) -> None:
    """Make the slider that moves through ``layer``'s ``axis`` (default: its axial axis,
    :func:`axial_axis_of`) take one step per data slice, numbered as the data index: the
    number on napari's slider is then the slice number the widgets show and take.

    On an oblique scan napari's slider otherwise steps on a world grid that starts at the
    corner of the rotated bounding box (slider 18 draws slice 16), and adding a Points layer
    (1 mm steps) makes it step in mm. A coronally stored scan (e.g. FreeSurfer ``LIA``)
    gets its axial axis put on the slider (``dims.order``), so its slices are axial. The
    range is re-imposed whenever napari recomputes it (layers added or removed); it is
    dropped when ``layer`` is removed (another napari-pvs scan is then followed).

    Parameters
    ----------
    viewer : napari.Viewer
    layer : napari layer, 3D
    axis : int, optional
        Data axis (0-based, of ``(Z, Y, X)``).

    Examples
    --------
    >>> follow_slices(viewer, t2_layer)          # doctest: +SKIP
    >>> viewer.dims.current_step[0]               # doctest: +SKIP
    16
    """
    old = _SYNCS.pop(viewer, None)
    if old is not None:
        old.disconnect()
    if layer is None or getattr(layer, "ndim", 0) < 3:
        return
    sync = _SYNCS[viewer] = _SliceSync(viewer, layer, axial_axis_of(layer) if axis is None else axis)
    sync.apply()


def follow_default_layer(viewer) -> None:
    """Follow (:func:`follow_slices`) the bottom-most 3D layer opened by napari-pvs (one
    with a NIfTI ``affine`` in its metadata), unless one is followed already."""
    current = _SYNCS.get(viewer)
    if current is not None and current.layer() is not None and current.layer() in viewer.layers:
        return
    for layer in viewer.layers:
        if getattr(layer, "ndim", 0) == 3 and (layer.metadata or {}).get("affine") is not None:
            follow_slices(viewer, layer)
            return


def followed_layer(viewer):
    """The layer whose slices the slider follows, or None."""
    sync = _SYNCS.get(viewer)
    return None if sync is None else sync.layer()


def prepare_viewer(viewer) -> None:
    """What every napari-pvs widget sets up in its viewer (idempotent): the slider follows
    the napari-pvs scans (:func:`follow_slices`: the first one open, then the first one
    added when none is followed), and the scale bar (in the layers' units, mm for scans
    napari-pvs opened) is shown."""
    if viewer in _PREPARED:
        return
    _PREPARED.add(viewer)
    viewer.scale_bar.visible = True
    viewer.scale_bar.ticks = True
    viewer.layers.events.inserted.connect(lambda event: _on_inserted(viewer, event))
    viewer.events.status.connect(lambda event: _status_in_mm(viewer), position="last")
    follow_default_layer(viewer)


def anatomical_coordinates(position, axis_labels) -> str | None:
    """The cursor's world position named by anatomy, in mm: ``"S -11.96, P 3.50, L 0.25 mm"``.

    Parameters
    ----------
    position : sequence of float
        World coordinates (mm) of the layer's axes, in napari's axis order (napari-pvs:
        ``(S, P, L)`` for axially stored scans, see :func:`napari_pvs.plugin.layers.layer_geometry`).
    axis_labels : sequence of str
        napari axis labels such as ``"I→S"``: the letter after the arrow names the direction in
        which the coordinate grows.

    Returns
    -------
    str or None
        None when a label does not name a direction (not a napari-pvs scan).

    Example
    -------
    >>> anatomical_coordinates([-11.958, 3.5, 0.25], ("I→S", "A→P", "R→L"))
    'S -11.96, P 3.50, L 0.25 mm'
    """
    labels = [str(lab) for lab in axis_labels]
    if len(labels) != len(position) or not labels or not all("→" in lab for lab in labels):
        return None
    return ", ".join(f"{lab.split('→')[-1]} {float(v):.2f}" for lab, v in zip(labels, position, strict=True)) + " mm"


def _status_in_mm(viewer) -> None:
    """napari's status bar prints a layer's world coordinates without units; for a layer in mm
    with anatomical axis labels (every napari-pvs scan and result), say which direction and
    mm: ``"S -11.96, P 3.50, L 0.25 mm: 812"``."""
    status = viewer.status
    layer = viewer.layers.selection.active
    if not isinstance(status, dict) or layer is None or not status.get("coords") \
            or str(status["coords"]).endswith(" mm"):
        return
    try:
        if {str(u) for u in layer.units} != {"millimeter"}:
            return
        text = anatomical_coordinates(np.asarray(viewer.cursor.position)[-layer.ndim:], layer.axis_labels)
    except (AttributeError, TypeError, ValueError):
        return
    if text is not None:
        value = status.get("value", "")
        viewer.status = {**status, "coords": text,
                         "coordinates": f"{text}: {value}" if value != "" else text}


def _on_inserted(viewer, event) -> None:
    """A layer added without units (napari's default, pixels) among napari-pvs scans (mm)
    is in the same world: give it mm too, so the scale bar and the status bar keep their
    units; then follow a scan if none is followed."""
    layer = getattr(event, "value", None)
    try:
        units = [str(u) for u in layer.units]
        others = {str(u) for lyr in viewer.layers if lyr is not layer for u in lyr.units}
        if units and all(u == "pixel" for u in units) and others == {"millimeter"}:
            layer.units = ("mm",) * len(units)
    except (AttributeError, TypeError, ValueError):
        pass
    follow_default_layer(viewer)


_PREPARED: "weakref.WeakSet" = weakref.WeakSet()
