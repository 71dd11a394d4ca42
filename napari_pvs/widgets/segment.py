"""Dock widget "Segment PVS": apply a trained checkpoint to a T2 Image layer.

Pick the T2 layer, a model (*default (fast)*, the shipped student; *accurate (ensemble)*,
the shipped ensemble it is distilled from) or a checkpoint (``.pt`` written by the Train
widget or by ``napari-pvs train``; it starts on the shipped default model, so one click on a
real scan gives the overlay) and a probability threshold, then *Segment*. The checkpoint is read
on the main thread (a missing or foreign file is refused at once); inference (the *segment*
use case, :func:`napari_pvs.engine.usecases.segment_job`) runs in a worker through the job
runner, with a progress bar (here and in napari's activity dock) and *Cancel*. The result is shown as two layers on the T2's
geometry (same ``scale`` and ``affine``):

* ``"<name> PVS probability"``: Image, colormap ``magma``, additive blending, contrast 0-1;
* ``"<name> PVS mask"``: Labels, with the T2's ``affine`` and ``nifti_header`` in its
  metadata, so *File > Save Selected Layers* (``.nii.gz``) writes it on the T2's grid;
* with an ensemble checkpoint (*accurate* is one), ``"<name> PVS uncertain"``:
  Labels, the voxels outside the mask that some members call PVS, each labelled with how
  many (``Prediction.uncertain``; the same pass, no extra network run). These are the
  objects a rater should look at: on patient07's 1 mm BG rating slice the earlier 2D
  default ensemble counted 0 PVS where one member found the 2 of the reference (README,
  "Uncertain PVS").

Running again updates those layers in place. Changing the threshold afterwards
re-thresholds the last probability maps without running the model again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, SpinBox, create_widget

from ..engine.data import resolve_checkpoint
from ..engine.errors import PVSInputError
from ..engine.progress import format_seconds
from ..plugin.layers import geometry_metadata
from ..plugin.viewer import add_labels, put_layer, source_geometry
from ._job import JobWidget, notify_info, optional_path

if TYPE_CHECKING:
    import napari

__all__ = ["SegmentWidget"]

log = logging.getLogger(__name__)

#: the model box's choices -> shipped model names (:func:`~napari_pvs.engine.data.resolve_checkpoint`)
SHIPPED_CHOICES = {"default (fast)": "default", "accurate (ensemble)": "accurate"}


class SegmentWidget(JobWidget):
    """Segment PVS in a T2 Image layer with a trained checkpoint.

    Attributes
    ----------
    prediction : Prediction or None
        Last result (probability and mask, ``(Z, Y, X)``; the members' probabilities with an
        ensemble checkpoint).
    prob_layer, mask_layer, uncertain_layer : napari layers or None
        The layers written by the last run (``uncertain_layer`` with an ensemble only).
    """

    start_text = "Segment"
    job_name = "segmentation"

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__(napari_viewer)
        self.prediction = None
        self.prob_layer = None
        self.mask_layer = None
        self.uncertain_layer = None
        self._uncertain = None      # (threshold, uncertain map, objects) computed in the worker
        self._source = None
        self.image = create_widget(annotation="napari.layers.Image", label="T2 image")
        self.model = ComboBox(label="model", choices=list(SHIPPED_CHOICES), value="default (fast)")
        self.model.tooltip = ("default (fast): the shipped student, seconds on a CPU; accurate (ensemble): the "
                              "three networks it is distilled from, slower, with a member-agreement map; "
                              "or any checkpoint below")
        self.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt")
        self.checkpoint.tooltip = "a .pt checkpoint; empty: the shipped default model"
        self.model.changed.connect(self._pick_shipped)
        self._pick_shipped(self.model.value)
        self.threshold = FloatSpinBox(label="threshold", value=0.5, min=0.01, max=0.99, step=0.05)
        self.batch_size = SpinBox(label="slices / batch", value=8, min=1, max=256)
        self.threshold.changed.connect(self._rethreshold)
        self._build(Container(widgets=[self.image, self.model, self.checkpoint, self.threshold, self.batch_size]))
        self.segment_button = self.start_button

    def _pick_shipped(self, choice: str) -> None:
        """Put the chosen shipped model's file in the checkpoint box."""
        try:
            self.checkpoint.value = resolve_checkpoint(SHIPPED_CHOICES[choice])
        except PVSInputError:
            log.warning("the shipped %s model is not installed; choose a checkpoint", SHIPPED_CHOICES[choice])

    @property
    def checkpoint_path(self) -> Path | None:
        return optional_path(self.checkpoint.value)

    @checkpoint_path.setter
    def checkpoint_path(self, path) -> None:
        self.checkpoint.value = Path(path)

    # ------------------------------------------------------------------ job
    def prepare(self):
        from ..engine.models.checkpoint import check_checkpoint_file
        from ..engine.usecases import load_segmenter, segment_job
        from ..plugin.layers import layer_to_volume

        layer = self.image.value
        if layer is None:
            raise PVSInputError("choose a T2 Image layer to segment")
        volume = layer_to_volume(layer)
        path = self.checkpoint_path
        if path is not None:
            check_checkpoint_file(path)    # a missing or foreign file is refused here, on the main thread
        self._source = layer
        self._uncertain = None
        threshold, batch = float(self.threshold.value), int(self.batch_size.value)

        def job():   # the model is loaded in the worker: torch's first import and the read take seconds
            _warm_layer_imports()
            loaded = load_segmenter(path)
            result = yield from segment_job(volume, loaded, threshold=threshold, batch_size=batch)
            pred = result.prediction
            if pred.member_probs is not None:   # the uncertain map and its objects here, not on the main thread
                self._uncertain = (threshold, *_uncertain_objects(pred, threshold))
            return result
        return job, f"segmenting '{layer.name}' with {path.name if path else 'the default model'} ..."

    def on_result(self, result):
        """Show the probability, uncertain and mask layers, one per event-loop turn, then the
        summary (a generator: see :meth:`JobWidget.on_result`)."""
        self.prediction = result.prediction
        yield from self._show(result.prediction)
        msg = (f"Segmented '{self._source.name}' in {format_seconds(result.prediction.seconds)}: "
               f"{self._summary(result.prediction.threshold)}")
        self.status.setText(msg)
        notify_info(msg)

    # ------------------------------------------------------------------ layers
    def _show(self, prediction):
        """Add or update the result layers; yields after each (one per event-loop turn)."""
        src = self._source
        geom = source_geometry(src)
        meta = {**geometry_metadata(src), "source_layer": src.name, "threshold": prediction.threshold}
        self.prob_layer = put_layer(
            self.viewer, f"{src.name} PVS probability", prediction.prob, geom, meta,
            lambda d, **kw: self.viewer.add_image(d, colormap="magma", blending="additive",
                                                  contrast_limits=(0.0, 1.0), opacity=0.7, **kw))
        yield
        old = self.uncertain_layer
        self.uncertain_layer = None
        if prediction.member_probs is not None:  # below the mask, which stays on top and selected
            cached = self._uncertain
            data = cached[1] if cached is not None and cached[0] == prediction.threshold else prediction.uncertain()
            self.uncertain_layer = put_layer(
                self.viewer, f"{src.name} PVS uncertain", data, geom,
                {**meta, "members": int(prediction.member_probs.shape[0])},
                lambda d, **kw: add_labels(self.viewer, d, opacity=0.5, **kw))
            yield
        elif old is not None and old in self.viewer.layers:  # a single model has no member agreement
            self.viewer.layers.remove(old)
        self.mask_layer = put_layer(self.viewer, f"{src.name} PVS mask", prediction.mask, geom, meta,
                                    lambda d, **kw: add_labels(self.viewer, d, opacity=0.6, **kw))
        yield

    def _summary(self, threshold: float) -> str:
        """"N PVS voxels at threshold t" and, with an ensemble, the uncertain objects."""
        pred = self.prediction
        text = f"{int((pred.prob >= threshold).sum())} PVS voxels at threshold {threshold:g}"
        if self.uncertain_layer is not None and self.uncertain_layer in self.viewer.layers:
            cached = self._uncertain
            if cached is not None and cached[0] == threshold:
                n = cached[2]
            else:
                n = _uncertain_objects(pred, threshold, self.uncertain_layer.data)[1]
            text += (f"; {n} uncertain object(s) that only some of the {pred.member_probs.shape[0]} members "
                     f"call PVS (layer '{self.uncertain_layer.name}')")
        return text

    def _rethreshold(self, value) -> None:
        """Re-threshold the last probability map when the threshold changes."""
        pred, mask = self.prediction, self.mask_layer
        if pred is None or mask is None or mask not in self.viewer.layers or self.worker is not None:
            return
        mask.data = (pred.prob >= float(value)).astype(np.uint8)
        mask.metadata["threshold"] = float(value)
        if self.uncertain_layer is not None and self.uncertain_layer in self.viewer.layers:
            self.uncertain_layer.data = pred.uncertain(float(value))
            self.uncertain_layer.metadata["threshold"] = float(value)
        self.status.setText(self._summary(float(value)))


def _warm_layer_imports() -> None:
    """Import in the worker what napari imports when the first Labels layer is added
    (its colour maps use ``skimage.color``: 0.18 s of the main thread otherwise)."""
    import skimage.color  # noqa: F401


def _uncertain_objects(pred, threshold: float, uncertain=None) -> tuple:
    """``(uncertain map, number of its 26-connected objects)`` of an ensemble's prediction."""
    from scipy import ndimage as ndi

    data = pred.uncertain(threshold) if uncertain is None else uncertain
    return data, int(ndi.label(np.asarray(data) > 0, structure=np.ones((3, 3, 3)))[1])
