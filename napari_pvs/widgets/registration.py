"""Dock widget "Register images": align a moving scan (T1, FLAIR, another visit, an atlas)
to a fixed one.

Pick the fixed and the moving Image layers, the method (``affine``: 9 then 12 degrees of
freedom, the default, right for two scans of one head; ``classical``: affine + B-spline,
for different brains; SimpleITK, mutual information, so contrasts may differ) and *Register*. The registration runs in a worker through the shared job
lifecycle (progress per optimiser iteration, *Cancel*). The result is shown on the fixed
layer's grid (:func:`napari_pvs.engine.registration.register`):

* ``"<moving> on <fixed>"``: the warped moving image, colormap ``magenta``, additive over
  the fixed image (aligned structures turn white);
* for ``classical``: ``"deformation grid"`` (grid lines every 8 mm deformed by the
  B-spline, affine left out) and ``"Jacobian determinant"`` (1 = volume kept, blue <1
  contraction, red >1 expansion; <= 0 would be folding), with SDlogJ and the folding
  share in the status line.

**QC views** (*QC view*, once registered): *overlay* (the warped image in magenta over the
fixed one), *checkerboard* (10 mm squares alternating fixed and warped, both scaled to their
99.5th percentile: edges that jump at the squares' borders are misaligned), *edges* (the
fixed image's edges, in-plane Sobel, in cyan over the warped image) and *flicker* (fixed and
warped shown in turn every 0.5 s).

*Warp labels* carries a Labels layer drawn on the moving grid (e.g. a lesion mask on the
FLAIR, or last visit's PVS) onto the fixed grid with the last transform (nearest
neighbour), as a new Labels layer saved on the fixed image's geometry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, create_widget
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QPushButton

from ..engine.errors import PVSInputError
from ..engine.progress import format_seconds
from ..plugin.layers import geometry_metadata, layer_to_volume
from ._job import JobWidget, notify_error, notify_info
from ..plugin.viewer import add_labels, put_layer, source_geometry

if TYPE_CHECKING:
    import napari

__all__ = ["RegistrationWidget", "QC_VIEWS", "checkerboard", "edge_map"]

#: the registration QC views
QC_VIEWS = ("overlay", "checkerboard", "edges", "flicker")


def _unit(a: np.ndarray) -> np.ndarray:
    hi = float(np.percentile(a[a > 0], 99.5)) if (a > 0).any() else 1.0
    return np.clip(a / max(hi, 1e-6), 0.0, 1.0).astype(np.float32)


def _qc_maps(result) -> dict:
    """What the registration widget shows besides the warped image, computed in the worker:
    ``warped_max`` (its 99.5th percentile of the nonzero voxels, the display ceiling) and, for a
    deformable transform, ``grid`` (deformation grid), ``jacobian`` (the determinant map on the
    fixed grid), ``sdlogj`` and ``folding`` (fraction of voxels with a determinant <= 0)."""
    from ..engine.registration import (deformation_grid, folding_fraction, jacobian_determinant, jacobian_map,
                                       sdlogj)

    data = result.warped.data
    maps = {"warped_max": float(np.percentile(data[data > 0], 99.5)) if (data > 0).any() else 1.0}
    if result.transform.ddf is not None:
        fixed = result.warped
        maps["grid"] = deformation_grid(fixed, result.transform)
        j = jacobian_determinant(result.transform.ddf, result.transform.ddf_affine)
        maps["jacobian"] = jacobian_map(fixed, result.transform, det=j)
        maps["sdlogj"], maps["folding"] = float(sdlogj(j)), float(folding_fraction(j))
    return maps


def checkerboard(fixed: np.ndarray, warped: np.ndarray, voxel_size, square_mm: float = 10.0) -> np.ndarray:
    """Squares of ``square_mm`` alternating ``fixed`` and ``warped`` (both ``(Z, Y, X)`` on one
    grid, each scaled to [0, 1] by its 99.5th percentile); float32, same shape. In-plane
    squares (axes Y, X), the same pattern on every slice."""
    if fixed.shape != warped.shape:
        raise PVSInputError(f"checkerboard: fixed {fixed.shape} and warped {warped.shape} differ in shape")
    vy, vx = (float(v) for v in voxel_size[-2:])
    y = (np.arange(fixed.shape[-2]) * vy // square_mm).astype(int)
    x = (np.arange(fixed.shape[-1]) * vx // square_mm).astype(int)
    pick = ((y[:, None] + x[None, :]) % 2).astype(bool)
    return np.where(pick[None], _unit(warped), _unit(fixed))


def edge_map(image: np.ndarray) -> np.ndarray:
    """In-plane edge strength of ``image`` ``(Z, Y, X)`` (Sobel over Y and X, per slice),
    scaled to [0, 1] by its 99th percentile; float32."""
    from scipy import ndimage as ndi

    img = _unit(np.asarray(image, np.float32))
    mag = np.hypot(ndi.sobel(img, axis=-1), ndi.sobel(img, axis=-2))
    hi = float(np.percentile(mag, 99)) or 1.0
    return np.clip(mag / hi, 0, 1).astype(np.float32)


class RegistrationWidget(JobWidget):
    """Register a moving Image layer to a fixed one and show the result.

    Attributes
    ----------
    last : RegistrationResult or None
        The last result (transform, warped image).
    warped_layer, grid_layer, jacobian_layer : napari layers or None
    """

    start_text = "Register"
    job_name = "registration"

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__(napari_viewer)
        from ..engine.registration import METHODS

        self.last = None
        self._fixed_layer = self._moving_layer = None
        self.warped_layer = self.grid_layer = self.jacobian_layer = None
        self.fixed = create_widget(annotation="napari.layers.Image", label="fixed")
        self.moving = create_widget(annotation="napari.layers.Image", label="moving")
        self.method = ComboBox(label="method", choices=list(METHODS), value="affine",
                               tooltip="affine: 9 then 12 dof; classical: affine + B-spline (SimpleITK)")
        self.brain_masks = CheckBox(label="brains only", value=False,
                                    tooltip="register the brain masks' contents: for a skull-stripped image (an "
                                            "atlas) against one with skull; leave off for two scans of one head")
        self.grid_mm = FloatSpinBox(label="working grid (mm)", value=2.0, min=1.0, max=6.0, step=0.5)
        self.labels = create_widget(annotation="napari.layers.Labels", label="labels (moving grid)")
        self.warp_button = QPushButton("Warp labels to the fixed grid")
        self.warp_button.setEnabled(False)
        self.warp_button.clicked.connect(self.warp_labels)
        self._labels_form = Container(widgets=[self.labels])
        self.qc_view = ComboBox(label="QC view", choices=list(QC_VIEWS), value="overlay",
                                tooltip="how to judge the alignment: magenta overlay, checkerboard of fixed and "
                                        "warped, fixed edges over warped, or flicker between them")
        self.qc_view.changed.connect(lambda value: self.show_qc(str(value)))
        self._qc_form = Container(widgets=[self.qc_view])
        self._qc_layers: list = []
        self._flicker = QTimer(self)
        self._flicker.setInterval(500)
        self._flicker.timeout.connect(self._flip)
        self._build(Container(widgets=[self.fixed, self.moving, self.method, self.brain_masks, self.grid_mm]),
                    extra=[self._qc_form.native, self._labels_form.native, self.warp_button])

    def reset_choices(self, *_) -> None:
        super().reset_choices()
        self._labels_form.reset_choices()

    # ------------------------------------------------------------------ job
    def prepare(self):
        from ..engine.registration import register

        f_layer, m_layer = self.fixed.value, self.moving.value
        if f_layer is None or m_layer is None:
            raise PVSInputError("choose a fixed and a moving Image layer")
        if f_layer is m_layer:
            raise PVSInputError(f"fixed and moving are the same layer '{f_layer.name}'")
        fixed, moving = layer_to_volume(f_layer), layer_to_volume(m_layer)
        method, masks, grid = str(self.method.value), bool(self.brain_masks.value), float(self.grid_mm.value)
        self._fixed_layer, self._moving_layer = f_layer, m_layer

        def job():   # the QC maps too, in the worker: the result's arrival only adds layers
            result = yield from register(fixed, moving, method=method, brain_masks=masks, grid_mm=grid)
            return result, _qc_maps(result)
        return job, f"registering '{m_layer.name}' to '{f_layer.name}' ({method}) ..."


    def on_result(self, result):
        """Show the warped image, the deformation grid and the Jacobian map, one layer per
        event-loop turn (a generator: see :meth:`JobWidget.on_result`)."""
        result, maps = result
        self.last = result
        src, mov = self._fixed_layer, self._moving_layer
        geom = source_geometry(src)
        meta = {**geometry_metadata(src), "registered_from": mov.name}
        data = result.warped.data
        self.warped_layer = put_layer(
            self.viewer, f"{mov.name} on {src.name}", data, geom, meta,
            lambda d, **kw: self.viewer.add_image(d, colormap="magenta", blending="additive",
                                                  contrast_limits=(0.0, maps["warped_max"]), **kw))
        yield
        msg = f"'{mov.name}' registered to '{src.name}' ({result.transform.method}) in {format_seconds(result.seconds)}"
        if "grid" in maps:
            self.grid_layer = put_layer(
                self.viewer, "deformation grid", maps["grid"], geom, meta,
                lambda d, **kw: self.viewer.add_image(d, colormap="yellow", blending="additive",
                                                      contrast_limits=(0, 1), opacity=0.6, **kw))
            yield
            self.jacobian_layer = put_layer(
                self.viewer, "Jacobian determinant", maps["jacobian"], geom, meta,
                lambda d, **kw: self.viewer.add_image(d, colormap="bwr", contrast_limits=(0.5, 1.5),
                                                      visible=False, **kw))
            yield
            msg += f"; SDlogJ {maps['sdlogj']:.3f}, folding {100 * maps['folding']:.2f} %"
        self.warp_button.setEnabled(True)
        self.status.setText(msg)
        notify_info(msg)
        if self.qc_view.value != "overlay":
            yield
            self.show_qc(str(self.qc_view.value))

    # ------------------------------------------------------------------ QC views
    def show_qc(self, view: str) -> None:
        """Show the registration QC ``view`` (one of :data:`QC_VIEWS`)."""
        self._flicker.stop()
        for layer in self._qc_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self._qc_layers = []
        src, warped = self._fixed_layer, self.warped_layer
        if self.last is None or src is None or warped is None or warped not in self.viewer.layers:
            return
        src.visible = warped.visible = True
        warped.colormap, warped.blending = "magenta", "additive"
        if view == "overlay":
            return
        geom, meta = source_geometry(src), geometry_metadata(src)
        fixed = np.asarray(src.data, np.float32)
        moved = np.asarray(warped.data, np.float32)
        if view == "checkerboard":
            board = checkerboard(fixed, moved, self.last.warped.voxel_size)
            self._qc_layers = [self.viewer.add_image(board, name="checkerboard fixed / warped", colormap="gray",
                                                     contrast_limits=(0.0, 1.0), metadata=meta, **geom)]
        elif view == "edges":
            warped.colormap, warped.blending = "gray", "translucent"
            self._qc_layers = [self.viewer.add_image(edge_map(fixed), name=f"edges of {src.name}",
                                                     colormap="cyan", blending="additive",
                                                     contrast_limits=(0.0, 1.0), metadata=meta, **geom)]
        elif view == "flicker":
            warped.colormap, warped.blending = "gray", "translucent"
            warped.contrast_limits = src.contrast_limits
            self._flicker.start()

    def _flip(self) -> None:
        warped = self.warped_layer
        if warped is None or warped not in self.viewer.layers:
            self._flicker.stop()
            return
        warped.visible = not warped.visible

    # ------------------------------------------------------------------ labels
    def warp_labels(self, *_):
        """Warp the chosen Labels layer (on the moving grid) onto the fixed grid with the
        last transform; returns the new layer (None on error)."""
        from ..engine.registration import warp_volume

        layer = self.labels.value
        if self.last is None or layer is None:
            notify_error("register first, then choose a Labels layer drawn on the moving image")
            return None
        try:
            moving = layer_to_volume(self._moving_layer)
            labels = layer_to_volume(layer)
            from ..engine.io import check_same_grid

            check_same_grid(moving, labels)
            warped = warp_volume(labels, self.last.warped, self.last.transform, order=0)
        except PVSInputError as exc:
            notify_error(str(exc))
            return None
        src = self._fixed_layer
        meta = {**geometry_metadata(src), "registered_from": layer.name}
        out = put_layer(self.viewer, f"{layer.name} on {src.name}", np.asarray(warped.data), source_geometry(src),
                        meta, lambda d, **kw: add_labels(self.viewer, d, opacity=0.6, **kw))
        notify_info(f"'{layer.name}' warped onto '{src.name}': {int((warped.data > 0).sum())} voxels labelled")
        return out
