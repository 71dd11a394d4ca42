"""Dock widget "Segment PVS": apply a trained checkpoint to a T2 Image layer.

Pick the T2 layer, a checkpoint (``.pt`` written by the Train widget or by
``napari-pvs train``) and a probability threshold, then *Segment*. Inference
(:func:`napari_pvs.engine.inference.segment_iter`) runs slice batch by slice batch in a
napari ``thread_worker`` with a progress bar. The result is shown as two layers on the
T2's grid (same scale and translate):

* ``"<name> PVS probability"``: Image, colormap ``magma``, additive blending, contrast 0-1;
* ``"<name> PVS mask"``: Labels, with the T2's ``affine`` and ``nifti_header`` in its
  metadata, so *File > Save Selected Layers* (``.nii.gz``) writes it on the T2's grid.

Running again updates those layers in place. Changing the threshold afterwards
re-thresholds the last probability map without running the model again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from magicgui.widgets import Container, FileEdit, FloatSpinBox, SpinBox
from qtpy.QtWidgets import QWidget

from ._common import RunControls, Failed, LayerPicker, format_seconds, notify_error, notify_info
from ._layers import geometry_metadata, layer_to_volume

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

__all__ = ["SegmentWidget"]

log = logging.getLogger(__name__)


def _segment_job(checkpoint: Path, image, threshold: float, batch_size: int, holder: dict):
    """Worker generator: load the model, yield InferenceProgress, return the Prediction
    (or a PVSInputError wrapped in Failed, so the widget shows it as one line)."""
    from ..engine.checkpoint import load_model
    from ..engine.errors import PVSInputError
    from ..engine.inference import segment_iter

    try:
        loaded = load_model(checkpoint)
        gen = segment_iter(loaded, image, batch_size=batch_size, threshold=threshold)
        holder["gen"] = gen
        prediction = yield from gen
    except PVSInputError as exc:
        return Failed(exc)
    return prediction


class SegmentWidget(QWidget):
    """Segment PVS in a T2 Image layer with a trained checkpoint.

    Attributes
    ----------
    worker : GeneratorWorker or None
        The running inference worker (None when idle).
    prediction : Prediction or None
        Last result (probability and mask, ``(Z, Y, X)``).
    prob_layer, mask_layer : napari layers or None
        The layers written by the last run.
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.prediction = None
        self.prob_layer = None
        self.mask_layer = None
        self._source = None
        self._holder: dict = {}

        self.image = LayerPicker(napari_viewer, "image", "T2 image")
        self.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt")
        self.threshold = FloatSpinBox(label="threshold", value=0.5, min=0.01, max=0.99, step=0.05)
        self.batch_size = SpinBox(label="slices / batch", value=8, min=1, max=256)
        self.threshold.changed.connect(self._rethreshold)
        self._form = Container(widgets=[self.image.combo, self.checkpoint, self.threshold, self.batch_size])

        controls = RunControls(self, self._form, "Segment", self.start, self.cancel)
        self.segment_button, self.cancel_button = controls.start_button, controls.cancel_button
        self.progress, self.status = controls.progress, controls.status

    def reset_choices(self, *_):
        """Refresh the layer picker (napari calls this when layers change)."""
        self.image.refresh()

    @property
    def checkpoint_path(self) -> Path | None:
        v = self.checkpoint.value
        return None if v is None or str(v) in ("", ".") else Path(v).expanduser()

    @checkpoint_path.setter
    def checkpoint_path(self, path) -> None:
        self.checkpoint.value = Path(path)

    # ------------------------------------------------------------------ run
    def start(self, *_) -> None:
        """Run the model on the selected layer in a worker thread (the *Segment* button)."""
        if self.worker is not None:
            return
        from ..engine.errors import PVSInputError

        layer = self.image.value
        if layer is None:
            notify_error("choose a T2 Image layer to segment")
            return
        ckpt = self.checkpoint_path
        if ckpt is None or not ckpt.is_file():
            notify_error(f"{ckpt or 'checkpoint'}: checkpoint not found; choose a .pt file written by training")
            return
        try:
            volume = layer_to_volume(layer)
        except PVSInputError as exc:
            notify_error(str(exc))
            return

        from napari.qt.threading import create_worker

        self._source = layer
        self._holder = {}
        self.progress.setRange(0, 0)  # busy until the first event gives the total
        self.status.setText(f"loading {ckpt.name} ...")
        worker = create_worker(_segment_job, ckpt, volume, float(self.threshold.value),
                               int(self.batch_size.value), self._holder, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._set_running(True)
        worker.start()

    def cancel(self, *_) -> None:
        if self.worker is not None:
            self.worker.quit()
            self.cancel_button.setEnabled(False)

    def _set_running(self, running: bool) -> None:
        self.segment_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self._form.enabled = not running

    # ------------------------------------------------------------------ worker signals
    def _on_progress(self, ev) -> None:
        self.progress.setRange(0, max(1, int(ev.total)))
        self.progress.setValue(int(ev.done))
        self.status.setText(f"slices {ev.done}/{ev.total} | {format_seconds(ev.elapsed_s)}")

    def _on_returned(self, result) -> None:
        if isinstance(result, Failed):
            notify_error(str(result))
            self.status.setText(f"failed: {result}")
            return
        if result is None:
            return
        self.prediction = result
        self._show(result)
        n_vox = int(result.mask.sum())
        msg = (f"Segmented '{self._source.name}' in {format_seconds(result.seconds)}: "
               f"{n_vox} PVS voxels at threshold {result.threshold:g}")
        self.status.setText(msg)
        notify_info(msg)

    def _on_errored(self, exc) -> None:
        log.error("segmentation failed: %s: %s", type(exc).__name__, exc)
        self.status.setText(f"failed: {type(exc).__name__}: {exc}")

    def _on_aborted(self) -> None:
        self.status.setText("cancelled")

    def _on_finished(self) -> None:
        gen = self._holder.pop("gen", None)
        if gen is not None:
            try:
                gen.close()
            except (RuntimeError, ValueError):  # pragma: no cover
                pass
        self.worker = None
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self._set_running(False)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.cancel()
        super().closeEvent(event)

    # ------------------------------------------------------------------ layers
    def _layer(self, name: str):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _show(self, prediction) -> None:
        src = self._source
        geom = dict(scale=tuple(src.scale), translate=tuple(src.translate))
        meta = {**geometry_metadata(src), "source_layer": src.name, "threshold": prediction.threshold}
        prob_name = f"{src.name} PVS probability"
        mask_name = f"{src.name} PVS mask"

        prob = self._layer(prob_name)
        if prob is not None and prob.data.shape == prediction.prob.shape:
            prob.data = prediction.prob
            prob.scale, prob.translate = geom["scale"], geom["translate"]
            prob.metadata.update(meta)
        else:
            if prob is not None:
                self.viewer.layers.remove(prob)
            prob = self.viewer.add_image(prediction.prob, name=prob_name, colormap="magma",
                                         blending="additive", contrast_limits=(0.0, 1.0),
                                         opacity=0.7, metadata=dict(meta), **geom)
        mask = self._layer(mask_name)
        if mask is not None and mask.data.shape == prediction.mask.shape:
            mask.data = prediction.mask
            mask.scale, mask.translate = geom["scale"], geom["translate"]
            mask.metadata.update(meta)
        else:
            if mask is not None:
                self.viewer.layers.remove(mask)
            mask = self.viewer.add_labels(prediction.mask, name=mask_name, opacity=0.6,
                                          metadata=dict(meta), **geom)
        self.prob_layer, self.mask_layer = prob, mask

    def _rethreshold(self, value) -> None:
        """Re-threshold the last probability map when the threshold changes."""
        pred, mask = self.prediction, self.mask_layer
        if pred is None or mask is None or mask not in self.viewer.layers or self.worker is not None:
            return
        new = (pred.prob >= float(value)).astype(np.uint8)
        mask.data = new
        mask.metadata["threshold"] = float(value)
        self.status.setText(f"threshold {float(value):g}: {int(new.sum())} PVS voxels")
