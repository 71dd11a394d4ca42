"""Dock widget "Compare models": several models on one image, side by side.

Pick a T2 Image layer, two or more checkpoints (and/or the Frangi baseline) and, if there
is one, a reference Labels layer (a project version or a simulated truth); *Compare* runs
every model in a worker (the *compare* use case,
:func:`napari_pvs.engine.usecases.compare_job`: the same inference as Segment) with
progress and *Cancel*. The viewer then switches to napari's grid
mode: one grid cell per model, each holding the T2 (the same data, not a copy) under that
model's layer, all cells sharing one camera and one slice position; the *3D* box renders
them as volumes. The other layers are hidden while comparing; *Stop comparing* removes the
comparison layers and restores the layout.

With a reference, each model's layer colours true positives green, false positives red
and false negatives blue, voxel by voxel or component by component (26-connected, IoU >
0.1), and the table gives per model the voxel DSC, sensitivity, PPV, detection F1 and the
component counts for the volume and for the slice on screen. Clicking a model's row lists
its false-positive and false-negative components (largest first); clicking one jumps to it.
The threshold slider re-thresholds the stored probability maps: masks, colours and metrics
follow at once, with no new inference.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSlider, create_widget
from qtpy.QtWidgets import QAbstractItemView, QLabel, QPushButton, QTableWidget, QTableWidgetItem

from ..engine.errors import PVSInputError
from ._job import JobWidget, color_key, notify_info, optional_path, show_canvas_key
from ..plugin.viewer import add_labels, shown_index, source_geometry

if TYPE_CHECKING:
    import napari

__all__ = ["CompareWidget", "ERROR_COLORS", "LAYER_PREFIX"]

log = logging.getLogger(__name__)

#: colours of the error maps: TP green, FP red, FN blue
ERROR_COLORS = {0: "transparent", 1: "#33cc33", 2: "#ff3333", 3: "#3388ff", None: "transparent"}
#: names of the layers the widget owns start with this
LAYER_PREFIX = "compare: "
_TABLE_COLUMNS = [("model", "model"), ("dsc", "DSC"), ("sensitivity", "sens."), ("ppv", "PPV"),
                  ("detection_f1", "det. F1"), ("n_pred", "n pred"), ("n_ref", "n ref"),
                  ("count_abs_diff", "|n diff|"), ("slice_dsc", "slice DSC"), ("slice_f1", "slice F1"),
                  ("parameters", "params"), ("inference_s", "infer. s")]


class CompareWidget(JobWidget):
    """Compare PVS models on one image (see the module docstring).

    Attributes
    ----------
    comparison : Comparison or None
        The last result (probability maps of every model).
    model_layers : list of napari layers
        One layer per model (error map with a reference, mask without), in model order.
    metrics_table, components_table : QTableWidget
    components : list of ErrorComponent
        The components listed for the selected model.
    """

    start_text = "Compare"
    job_name = "comparison"

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__(napari_viewer)
        from typing import Optional

        import napari

        from ..engine.data import default_checkpoint

        self.comparison = None
        self.model_layers: list = []
        self.components: list = []
        self.metrics_rows: list[dict] = []
        self._volume_rows: list[dict] = []
        self._building = False
        self._masks: list = []
        self._source = None
        self._reference_layer = None
        self._hidden: list = []
        self._selected = 0
        self.image = create_widget(annotation="napari.layers.Image", label="T2 image")
        self.checkpoints = FileEdit(label="checkpoints", mode="rm", filter="*.pt",
                                    tooltip="one or more .pt checkpoints (Ctrl/Shift to pick several)")
        try:
            self.checkpoints.value = [default_checkpoint()]
        except PVSInputError:
            log.warning("the shipped default model is not installed; choose checkpoints")
        self.frangi = CheckBox(label="add the Frangi baseline", value=True)
        self.reference = create_widget(annotation=Optional[napari.layers.Labels], label="reference mask")  # noqa: UP007
        self.errors = ComboBox(label="colour errors by", choices=["voxels", "components"], value="components")
        self.threshold = FloatSlider(label="threshold", value=0.5, min=0.05, max=0.95, step=0.05)
        self.three_d = CheckBox(label="3D", value=False)
        self.threshold.changed.connect(lambda *_: self.refresh())
        self.errors.changed.connect(lambda *_: (self.refresh(), self._show_key()))
        self.three_d.changed.connect(self._on_3d)
        self.metrics_table = QTableWidget(0, len(_TABLE_COLUMNS))
        self.metrics_table.setHorizontalHeaderLabels([h for _, h in _TABLE_COLUMNS])
        self.metrics_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metrics_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.metrics_table.cellClicked.connect(lambda row, _col: self.select_model(row))
        self.key_label = QLabel("")
        self.key_label.setWordWrap(True)
        self.components_label = QLabel("errors of the selected model (click to jump)")
        self.components_table = QTableWidget(0, 4)
        self.components_table.setHorizontalHeaderLabels(["kind", "slice", "(y, x)", "voxels"])
        self.components_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.components_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.components_table.cellClicked.connect(lambda row, _col: self.jump_to_component(row))
        self.stop_button = QPushButton("Stop comparing")
        self.stop_button.clicked.connect(self.stop_comparing)
        self._build(Container(widgets=[self.image, self.checkpoints, self.frangi, self.reference, self.errors,
                                       self.threshold, self.three_d]),
                    extra=[self.key_label, self.metrics_table, self.components_label, self.components_table, self.stop_button])
        self.compare_button = self.start_button
        self.viewer.dims.events.current_step.connect(self._on_step)

    # ------------------------------------------------------------------ job
    def _checkpoint_paths(self) -> list[Path]:
        value = self.checkpoints.value
        paths = value if isinstance(value, (list, tuple)) else [value]
        return [p for p in map(optional_path, paths) if p is not None]

    def prepare(self):
        from ..engine.usecases import compare_job, comparison_models
        from ..plugin.layers import layer_to_volume

        layer = self.image.value
        if layer is None:
            raise PVSInputError("choose a T2 Image layer to compare the models on")
        volume = layer_to_volume(layer)
        models = comparison_models(volume, self._checkpoint_paths(), frangi=bool(self.frangi.value),
                                   default_if_empty=False, min_models=2)   # bad files are refused here
        ref_layer = self.reference.value
        reference = None
        if ref_layer is not None:
            reference = np.asarray(ref_layer.data)
            if reference.shape != volume.shape:
                raise PVSInputError(f"reference mask '{ref_layer.name}' has shape {reference.shape}, the image "
                                    f"'{layer.name}' {volume.shape}; they must share the grid")
        self._source, self._reference_layer = layer, ref_layer
        return (lambda: compare_job(volume, models, reference=reference),
                f"comparing {len(models)} models on '{layer.name}' ...")

    def on_result(self, result):
        """Show the grid (one layer per event-loop turn: a generator, see
        :meth:`JobWidget.on_result`), then the metrics."""
        self.comparison = result
        self._masks, self._volume_rows = [], []      # no metrics until refresh(): the grid is built first
        yield from self._show()
        self.refresh()
        msg = (f"compared {len(result.predictions)} models on '{self._source.name}'"
               + (" (TP green, FP red, FN blue)" if result.reference is not None else ""))
        self.status.setText(msg)
        notify_info(msg)

    # ------------------------------------------------------------------ layers
    def _comparison_layers(self) -> list:
        return [ly for ly in self.viewer.layers if ly.name.startswith(LAYER_PREFIX)]

    def _show(self):
        """Grid mode: (T2, model) pairs at the bottom of the layer list, one cell each; yields
        after each layer added."""

        self._building = True
        try:
            yield from self._build_grid()
        finally:
            self._building = False

    def _build_grid(self):
        from napari.utils.colormaps import DirectLabelColormap

        for ly in self._comparison_layers():
            self.viewer.layers.remove(ly)
        src, comp = self._source, self.comparison
        geom = source_geometry(src)
        self._hidden = [ly for ly in self.viewer.layers if ly.visible]
        for ly in self._hidden:
            ly.visible = False
        self.model_layers = []
        for j, pred in enumerate(comp.predictions):
            t2 = self.viewer.add_image(src.data, name=f"{LAYER_PREFIX}T2 · {pred.label}", colormap="gray",
                                       contrast_limits=src.contrast_limits, **geom)
            yield
            lab = add_labels(self.viewer, np.zeros(pred.prob.shape, np.uint8), name=f"{LAYER_PREFIX}{pred.label}",
                             opacity=0.8, metadata={"model": pred.label}, **geom)
            if comp.reference is not None:
                lab.colormap = DirectLabelColormap(color_dict=ERROR_COLORS)
            for k, ly in enumerate((t2, lab)):
                self.viewer.layers.move(self.viewer.layers.index(ly), 2 * j + k)
            lab.name_overlay.visible = True          # the cell's title: the model's name
            self.model_layers.append(lab)
            yield
        self.viewer.grid.stride = 2
        self.viewer.grid.enabled = True
        self._show_key()

    def _show_key(self) -> None:
        """The colour key, in the widget and in the canvas."""
        comp = self.comparison
        if comp is None or comp.reference is None:
            self.key_label.setText("each cell: one model's PVS mask over the T2 (title: the model)")
            show_canvas_key(self.viewer, "")
            return
        unit = "components (IoU > 0.1)" if self.errors.value == "components" else "voxels"
        self.key_label.setText(color_key([(ERROR_COLORS[1], "true positive"), (ERROR_COLORS[2], "false positive"),
                                          (ERROR_COLORS[3], "false negative")]) + f" &nbsp; ({unit})")
        short = "components" if self.errors.value == "components" else "voxels"
        show_canvas_key(self.viewer, f"green TP · red FP · blue FN ({short})")

    def stop_comparing(self, *_) -> None:
        """Remove the comparison layers, leave grid mode and show the hidden layers again."""
        for ly in self._comparison_layers():
            self.viewer.layers.remove(ly)
        self.viewer.grid.enabled = False
        self.viewer.grid.stride = 1
        for ly in self._hidden:
            if ly in self.viewer.layers:
                ly.visible = True
        self._hidden, self.model_layers, self.comparison, self._masks = [], [], None, []
        show_canvas_key(self.viewer, "")
        self.key_label.setText("")
        self.metrics_table.setRowCount(0)
        self.components_table.setRowCount(0)

    def _on_3d(self, value) -> None:
        self.viewer.dims.ndisplay = 3 if value else 2

    # ------------------------------------------------------------------ threshold, metrics, errors
    @property
    def current_slice(self) -> int | None:
        """The axial slice on screen (index into the image's ``(Z, Y, X)`` axial axis)."""
        if self.comparison is None or not self.model_layers:
            return None
        layer = self.model_layers[0]
        ax = self.comparison.image.axial_axis
        n = self.comparison.image.shape[ax]
        return int(np.clip(round(shown_index(self.viewer, layer, ax)), 0, n - 1))

    def masks(self) -> list[np.ndarray]:
        """Every model's mask at the slider's threshold."""
        return self.comparison.masks(float(self.threshold.value))

    def refresh(self) -> None:
        """Re-threshold, recolour and recompute the metrics (threshold or colouring changed)."""
        from ..engine.comparison import error_map

        comp = self.comparison
        if comp is None or self._building:       # the grid is still being built, one layer per turn
            return
        masks = self._masks = self.masks()
        for layer, mask in zip(self.model_layers, masks, strict=True):
            if layer not in self.viewer.layers:
                continue
            layer.data = (mask if comp.reference is None
                          else error_map(mask, comp.reference, components=self.errors.value == "components"))
        self._volume_rows = comp.metrics(float(self.threshold.value), masks=masks)
        self._fill_metrics()
        self.select_model(min(self._selected, len(masks) - 1), jump=False)

    def _fill_metrics(self) -> None:
        """The table: the volume metrics of the last :meth:`refresh` and the slice on screen's."""
        from ..engine.comparison import mask_metrics

        comp = self.comparison
        rows = [dict(r) for r in self._volume_rows]
        z = self.current_slice
        for row, mask in zip(rows, self._masks, strict=True):
            if comp.reference is not None and z is not None:
                sl = mask_metrics(mask, comp.reference, axial_axis=comp.image.axial_axis, slice_index=z)
                row["slice_dsc"], row["slice_f1"] = sl["dsc"], sl["detection_f1"]
        self.metrics_rows = rows
        t = self.metrics_table
        t.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, (key, _) in enumerate(_TABLE_COLUMNS):
                v = row.get(key, "")
                text = f"{v:.3f}" if isinstance(v, float) and key != "inference_s" else (
                    f"{v:.1f}" if isinstance(v, float) else (f"{v:,}" if key == "parameters" else str(v)))
                t.setItem(i, j, QTableWidgetItem(text))
        t.resizeColumnsToContents()

    def _on_step(self, *_) -> None:
        """A new slice on screen: only the slice columns change (the volume's are kept)."""
        if (self.comparison is not None and self.comparison.reference is not None and self._masks
                and len(self._masks) == len(self._volume_rows)):
            self._fill_metrics()

    def select_model(self, row: int, *, jump: bool = True) -> None:
        """Select model ``row``: its layer becomes the active one and its false-positive and
        false-negative components are listed (largest first); with ``jump``, go to the
        largest."""
        from ..engine.comparison import error_components, error_map

        comp = self.comparison
        if comp is None or not 0 <= row < len(self.model_layers):
            return
        self._selected = row
        layer = self.model_layers[row]
        if layer in self.viewer.layers:
            self.viewer.layers.selection.active = layer
        self.components = []
        if comp.reference is not None:
            if self.errors.value == "components" and layer in self.viewer.layers:
                errors = layer.data  # the component error map refresh() just drew
            else:
                mask = self._masks[row] if self._masks else comp.predictions[row].mask(float(self.threshold.value))
                errors = error_map(mask, comp.reference, components=True)
            self.components = error_components(errors)
        t = self.components_table
        t.setRowCount(len(self.components))
        for i, c in enumerate(self.components):
            for j, text in enumerate((c.kind, str(c.centre[0]), f"({c.centre[1]}, {c.centre[2]})", str(c.n_voxels))):
                t.setItem(i, j, QTableWidgetItem(text))
        self.components_label.setText(f"errors of {comp.predictions[row].label}: "
                                      f"{sum(c.kind == 'FP' for c in self.components)} FP, "
                                      f"{sum(c.kind == 'FN' for c in self.components)} FN components (click to jump)")
        if jump and self.components:
            self.jump_to_component(0)

    def jump_to_component(self, row: int) -> None:
        """Move every grid cell (one camera) and the slice to component ``row`` of the list."""
        if not 0 <= row < len(self.components) or not self.model_layers:
            return
        world = np.asarray(self.model_layers[self._selected].data_to_world(self.components[row].centre), float)
        self.viewer.dims.set_point(range(len(world)), world)
        displayed = list(self.viewer.dims.displayed)
        self.viewer.camera.center = tuple(world[displayed])
