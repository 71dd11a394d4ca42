"""Dock widget "Train PVS model": train a 2D PVS segmentation network on T2 + mask pairs.

Pick one or more (T2 Image layer, PVS Labels layer) pairs, a model and a few settings,
then *Train*. The inputs are checked on the main thread with the engine's own checks (a
mask on another grid than its image is refused, as on the CLI); training
(:func:`napari_pvs.engine.training.train`) then runs in a worker through the shared job
lifecycle (:class:`~napari_pvs.widgets._job.JobWidget`): a progress bar, a live line with
epoch/step, loss, validation DSC (and best) and elapsed time, and *Cancel*, which stops at
the next step (the best checkpoint written so far stays valid). The checkpoint goes by
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

from ..engine.progress import format_seconds
from ._job import JobWidget, notify_info

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


def _optional_path(value) -> Path | None:
    return None if value is None or str(value) in ("", ".") else Path(value).expanduser()


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
        self._project_data = None
        self.model.changed.connect(self._on_model_changed)
        self.checkpoint.changed.connect(self._on_checkpoint_edited)
        self._build(Container(widgets=[
            self._pairs_box, self.add_pair_button, self.project, self.project_versions, self.model, self.features,
            self.context_slices, self.epochs, self.steps_per_epoch, self.batch_size, self.patch_size, self.learning_rate,
            self.max_minutes, self.device, self.seed, self.init_from, self.checkpoint]))
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
    def collect(self):
        """Volumes, masks, config and the optional checkpoint to start from, read from the
        form and checked with the engine's own checks (the same as the CLI's).

        Returns
        -------
        (task, config, init_from)
            A :class:`~napari_pvs.engine.training.SegmentationTask` (its constructor checks
            the pairs), the :class:`~napari_pvs.engine.training.TrainConfig` and a Path or None.

        Raises
        ------
        PVSInputError, ValueError
            One-line messages: no pair chosen, a layer that is not 3D, a mask on another
            grid than its image, masks without PVS, bad settings, a missing checkpoint.
        """
        from ..engine.errors import PVSInputError
        from ..engine.io import check_same_grid
        from ..engine.training import SegmentationTask, TrainConfig
        from ..plugin.layers import layer_to_volume

        images, masks = [], []
        project_dir = _optional_path(self.project.value)
        self._project_data = None
        for i, row in enumerate(self._pairs if project_dir is None else [], 1):
            img_layer, lab_layer = row.image.value, row.labels.value
            if img_layer is None or lab_layer is None:
                if i == 1:
                    raise PVSInputError("choose a T2 Image layer and a PVS Labels layer to train on")
                continue
            image = layer_to_volume(img_layer)
            mask = layer_to_volume(lab_layer)
            check_same_grid(image, mask)  # the same rule as the CLI's --mask
            images.append(image)
            masks.append(mask.with_data((mask.data > 0).astype("uint8")))
        max_min = float(self.max_minutes.value)
        patch = int(self.patch_size.value)
        config = TrainConfig.for_model(
            str(self.model.value), model_config={"features": parse_features(self.features.value),
                                                 "context_slices": int(self.context_slices.value)},
            learning_rate=float(self.learning_rate.value), batch_size=int(self.batch_size.value),
            epochs=int(self.epochs.value), steps_per_epoch=int(self.steps_per_epoch.value),
            patch_size=(patch, patch), max_minutes=max_min if max_min > 0 else None,
            seed=int(self.seed.value), device=str(self.device.value))
        init_from = _optional_path(self.init_from.value)
        if init_from is not None and not init_from.is_file():
            raise PVSInputError("checkpoint to start from not found", init_from)
        if project_dir is not None:
            from ..engine.training.project import project_training_data, training_metadata
            from ._state import open_project

            proj = open_project(project_dir)
            data = project_training_data(proj, str(self.project_versions.value))
            self._project_data = (proj, data)
            meta = training_metadata(proj, data, str(self.project_versions.value))
            return (SegmentationTask(data.images, data.masks, config, ignore_masks=data.ignore_masks,
                                     metadata=meta), config, init_from)
        return SegmentationTask(images, masks, config), config, init_from

    def prepare(self):
        from ..engine.errors import PVSInputError
        from ..engine.training import run_training

        task, config, init_from = self.collect()
        self._config = config
        if self._auto_path:
            self._set_checkpoint(default_checkpoint_path(config.model))
        ckpt = self.checkpoint_path
        try:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PVSInputError(f"cannot create the checkpoint folder ({exc.strerror})", ckpt.parent) from None
        log.info("training %s into %s", config.model, ckpt)
        total = config.epochs * config.steps_per_epoch
        return (lambda: run_training(task, config.loop_config(), ckpt, init_from=init_from),
                f"starting: {config.model}, {len(task.images)} volume(s), {total} steps ...")

    def on_result(self, result) -> None:
        best = "n/a" if result.best_val_metric is None else f"{result.best_val_metric:.3f}"
        msg = (f"Training done ({result.stop_reason}): {result.steps_done} steps in "
               f"{format_seconds(result.seconds)} ({100 * result.val_share:.0f} % validating), best "
               f"validation {result.metric_name} {best}; checkpoint {result.checkpoint}")
        if self._project_data is not None:
            from ..engine.training.project import record_project_run

            proj, data = self._project_data
            run = record_project_run(proj, result, self._config, data)
            if run is not None:
                msg += f"; recorded as run {run} in project {proj.name}"
        self.status.setText(msg)
        notify_info(msg)

    def on_cancelled(self) -> str:
        ev = self.last_event
        where = f" at step {ev.step}/{ev.total_steps}" if ev is not None else ""
        ckpt = ev.checkpoint if ev is not None and ev.checkpoint else None
        return f"Training cancelled{where}." + (f" Best checkpoint so far: {ckpt}" if ckpt else
                                                 " No checkpoint written.")
