"""Dock widget "Train PVS model": train a 2D PVS segmentation network on T2 + mask pairs.

Pick one or more (T2 Image layer, PVS Labels layer) pairs, a model (every family of the
registry, the weight-free Frangi baseline included) and a few settings, then *Train*. The
*train* use case (:mod:`napari_pvs.engine.usecases.training`) does the work: the request is
checked and planned on the main thread with the engine's own checks (a mask on another grid
than its image is refused, as on the CLI), training runs in a worker through the job runner
(a progress bar here and in napari's activity dock, a live line with epoch/step, loss,
validation DSC (and best) and elapsed time, and *Cancel*, which stops at the next step; the
best checkpoint written so far stays valid), and the run is recorded on the main thread. The checkpoint goes by
default to the per-user data folder (``platformdirs.user_data_dir("napari-pvs")/models``),
never the working directory. An optional *start from* checkpoint fine-tunes it.

Instead of layer pairs, an annotation project folder can be chosen (with its *latest*,
*reviewed* or *consensus* versions): only the slices marked done or reviewed are labelled,
the rest are left out of the loss (:mod:`napari_pvs.engine.training.project`), and the run
is recorded in the project when it ends.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import (ComboBox, Container, FileEdit, FloatSpinBox, LineEdit, PushButton, SpinBox,
                              create_widget)

from .plots import TrainingPlot
from ._job import JobWidget, notify_info, optional_path

if TYPE_CHECKING:
    import napari

__all__ = ["TrainWidget", "default_checkpoint_path", "models_dir", "parse_features"]

log = logging.getLogger(__name__)


def models_dir() -> Path:
    """Per-user folder for trained checkpoints: ``user_data_dir("napari-pvs")/models``."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-pvs", appauthor=False)) / "models"


def default_checkpoint_path(model: str) -> Path:
    """``<models_dir>/<model>-<YYYYmmdd-HHMMSS>.pt``."""
    return models_dir() / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}.pt"


def parse_features(text: str) -> tuple[int, ...]:
    """``"16, 32, 64"`` -> ``(16, 32, 64)``; ValueError with a one-line message otherwise."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"features must be integers separated by commas, got {text!r}") from None


class _PairRow:
    """One (T2 image, PVS labels) training pair: two napari layer pickers."""

    def __init__(self, index: int, on_remove=None):
        self.image = create_widget(annotation="napari.layers.Image", label=f"T2 image {index}")
        self.labels = create_widget(annotation="napari.layers.Labels", label=f"PVS mask {index}")
        widgets = [self.image, self.labels]
        if on_remove is not None:
            self.remove_button = PushButton(text=f"Remove pair {index}")
            self.remove_button.changed.connect(lambda *_: on_remove(self))
            widgets.append(self.remove_button)
        self.container = Container(widgets=widgets, labels=True)


class TrainWidget(JobWidget):
    """Train a PVS segmentation model from image/mask layer pairs.

    Attributes
    ----------
    result : TrainResult or None
        Result of the last training that ran to its end.
    checkpoint_path : Path
        Where the checkpoint is (or will be) written.
    """

    start_text = "Train"
    job_name = "training"

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__(napari_viewer)
        from ..engine.models import available_models

        models = available_models()
        default_model = "mfnsde" if "mfnsde" in models else models[0]
        self._auto_path = True
        self._pairs: list[_PairRow] = []
        self._pairs_box = Container(widgets=[], labels=False)
        self._add_pair()
        self.add_pair_button = PushButton(text="Add another image/mask pair")
        self.add_pair_button.changed.connect(lambda *_: self._add_pair())

        self.model = ComboBox(label="model", choices=models, value=default_model)
        self.features = LineEdit(label="features", value="16, 32, 64, 128",
                                 tooltip="feature channels per level (network size)")
        self.epochs = SpinBox(label="epochs", value=100, min=1, max=100000)
        self.steps_per_epoch = SpinBox(label="steps / epoch", value=50, min=1, max=1000000)
        self.batch_size = SpinBox(label="batch size", value=4, min=1, max=256)
        self.patch_size = SpinBox(label="patch size (px)", value=128, min=16, max=1024, step=16)
        self.context_slices = SpinBox(label="2.5D context slices", value=0, min=0, max=8,
                                      tooltip="neighbouring slices on each side given to the network as channels "
                                              "(0: 2D)")
        self.learning_rate = FloatSpinBox(label="learning rate", value=0.05, min=1e-5, max=10.0, step=0.0005)
        self.max_minutes = FloatSpinBox(label="max minutes (0 = none)", value=0.0, min=0.0, max=100000.0, step=1.0)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda"], value="auto")
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.init_from = FileEdit(label="start from (optional)", mode="r", filter="*.pt",
                                  tooltip="fine-tune: start from this checkpoint's weights")
        self.checkpoint = FileEdit(label="checkpoint", mode="w", filter="*.pt",
                                   value=default_checkpoint_path(default_model))
        self.project = FileEdit(label="or a project (optional)", mode="d",
                                tooltip="train on an annotation project instead of the layer pairs: only "
                                        "slices marked done/reviewed are labelled")
        self.project_versions = ComboBox(label="project versions", choices=["latest", "reviewed", "consensus"],
                                         value="latest")
        self.plan = None
        self.model.changed.connect(self._on_model_changed)
        self.checkpoint.changed.connect(self._on_checkpoint_edited)
        self.plot = TrainingPlot(napari_viewer)     # loss and validation DSC, live
        self._build(Container(widgets=[
            self._pairs_box, self.add_pair_button, self.project, self.project_versions, self.model, self.features,
            self.context_slices, self.epochs, self.steps_per_epoch, self.batch_size, self.patch_size, self.learning_rate,
            self.max_minutes, self.device, self.seed, self.init_from, self.checkpoint]),
            extra=[self.plot])
        self.train_button = self.start_button

    # ------------------------------------------------------------------ form
    def _add_pair(self) -> _PairRow:
        row = _PairRow(len(self._pairs) + 1, on_remove=self._remove_pair if self._pairs else None)
        self._pairs.append(row)
        self._pairs_box.append(row.container)
        row.container.reset_choices()
        return row

    def _remove_pair(self, row: _PairRow) -> None:
        if row in self._pairs and len(self._pairs) > 1:
            self._pairs.remove(row)
            self._pairs_box.remove(row.container)

    @property
    def pairs(self) -> list[_PairRow]:
        """The pair rows, each with ``.image`` and ``.labels`` layer pickers."""
        return list(self._pairs)

    def _on_model_changed(self, value):
        from ..engine.models import model_spec

        lr = model_spec(str(value)).train_defaults.get("learning_rate", 0.05)
        self.learning_rate.value = lr  # each family's own optimiser and learning rate
        if self._auto_path:
            self._set_checkpoint(default_checkpoint_path(str(value)))

    def _set_checkpoint(self, path: Path):
        with self.checkpoint.changed.blocked():
            self.checkpoint.value = path

    def _on_checkpoint_edited(self, value):
        self._auto_path = False

    @property
    def checkpoint_path(self) -> Path:
        """Where the checkpoint is (or will be) written."""
        return Path(self.checkpoint.value).expanduser()

    @checkpoint_path.setter
    def checkpoint_path(self, path) -> None:
        self._auto_path = False
        self._set_checkpoint(Path(path))

    # ------------------------------------------------------------------ job
    def config(self):
        """The :class:`~napari_pvs.engine.training.TrainConfig` of the form.

        Raises
        ------
        ValueError
            Bad settings (one line).
        """
        from ..engine.training import TrainConfig

        max_min = float(self.max_minutes.value)
        patch = int(self.patch_size.value)
        return TrainConfig.for_model(
            str(self.model.value), model_config={"features": parse_features(self.features.value),
                                                 "context_slices": int(self.context_slices.value)},
            learning_rate=float(self.learning_rate.value), batch_size=int(self.batch_size.value),
            epochs=int(self.epochs.value), steps_per_epoch=int(self.steps_per_epoch.value),
            patch_size=(patch, patch), max_minutes=max_min if max_min > 0 else None,
            seed=int(self.seed.value), device=str(self.device.value))

    def request(self):
        """The :class:`~napari_pvs.engine.usecases.TrainRequest` of the form: the layer pairs
        (or the project), the config, the checkpoint and the one to start from.

        Raises
        ------
        PVSInputError, ValueError
            One-line messages: no pair chosen, a layer that is not 3D, bad settings.
        """
        from ..engine.errors import PVSInputError
        from ..engine.usecases import TrainRequest
        from ..plugin.layers import layer_to_volume

        config = self.config()
        if self._auto_path:
            self._set_checkpoint(default_checkpoint_path(config.model))
        project_dir = optional_path(self.project.value)
        if project_dir is not None:
            from ._state import open_project

            return TrainRequest(config, self.checkpoint_path, project=open_project(project_dir),
                                versions=str(self.project_versions.value),
                                init_from=optional_path(self.init_from.value))
        images, masks = [], []
        for i, row in enumerate(self._pairs, 1):
            img_layer, lab_layer = row.image.value, row.labels.value
            if img_layer is None or lab_layer is None:
                if i == 1:
                    raise PVSInputError("choose a T2 Image layer and a PVS Labels layer to train on")
                continue
            images.append(layer_to_volume(img_layer))
            mask = layer_to_volume(lab_layer)
            masks.append(mask.with_data((mask.data > 0).astype("uint8")))
        return TrainRequest(config, self.checkpoint_path, images=images, masks=masks,
                            init_from=optional_path(self.init_from.value))

    def prepare(self):
        from ..engine.usecases import plan_training, run_training_plan

        plan = self.plan = plan_training(self.request())   # checks the inputs here, on the main thread
        log.info("training %s into %s", plan.config.model, plan.checkpoint)
        return lambda: run_training_plan(plan), f"starting: {plan.description} ..."

    def on_event(self, event) -> None:
        self.plot.add(event)

    def on_result(self, result) -> None:
        from ..engine.usecases import record_training

        msg = record_training(self.plan, result).summary()
        msg = msg[0].upper() + msg[1:]
        if self.plan.project is not None:
            msg += f" {self.plan.project.name}"
        self.status.setText(msg)
        notify_info(msg)

    def on_cancelled(self) -> str:
        ev = self.last_event
        where = f" at step {ev.step}/{ev.total_steps}" if ev is not None else ""
        ckpt = ev.checkpoint if ev is not None and ev.checkpoint else None
        return f"Training cancelled{where}." + (f" Best checkpoint so far: {ckpt}" if ckpt else
                                                 " No checkpoint written.")
