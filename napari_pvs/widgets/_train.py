"""Dock widget "Train PVS model": train a 2D PVS segmentation network on T2 + mask pairs.

Pick one or more (T2 Image layer, PVS Labels layer) pairs, a model and a few settings,
then *Train*. Training (:func:`napari_pvs.engine.training.train`) runs in a napari
``thread_worker`` so the viewer stays responsive; a live line shows epoch/step, loss,
validation DSC (and best) and elapsed time; *Cancel* stops it at the next step (the best
checkpoint written so far stays valid). The checkpoint goes by default to the per-user
data folder (``platformdirs.user_data_dir("napari-pvs")/models``), never the working
directory.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, LineEdit, PushButton, SpinBox
from qtpy.QtWidgets import QWidget

from ._common import RunControls, Failed, LayerPicker, format_seconds, notify_error, notify_info
from ._layers import layer_to_volume

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

__all__ = ["TrainWidget", "default_checkpoint_path", "models_dir"]

log = logging.getLogger(__name__)

_FALLBACK_MODELS = ("mfnsde", "unet")


def models_dir() -> Path:
    """Per-user folder for trained checkpoints: ``user_data_dir("napari-pvs")/models``."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-pvs", appauthor=False)) / "models"


def default_checkpoint_path(model: str) -> Path:
    """``<models_dir>/<model>-<YYYYmmdd-HHMMSS>.pt``."""
    return models_dir() / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}.pt"


def _parse_features(text: str) -> tuple[int, ...]:
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    try:
        feats = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"features must be integers separated by commas, got {text!r}") from None
    return feats


def _train_job(images, masks, config, checkpoint_path, holder: dict):
    """Generator run by the worker thread: yields the engine's TrainEvents and returns
    its TrainResult; a PVSInputError is returned (wrapped in Failed) to be shown as one line."""
    from ..engine.errors import PVSInputError
    from ..engine.training import train

    gen = train(images, masks, config, checkpoint_path)
    holder["gen"] = gen
    try:
        result = yield from gen
    except PVSInputError as exc:
        return Failed(exc)
    return result


class _PairRow:
    """One (T2 image, PVS labels) training pair."""

    def __init__(self, viewer, index: int, removable: bool, on_remove=None):
        self.image = LayerPicker(viewer, "image", f"T2 image {index}")
        self.labels = LayerPicker(viewer, "labels", f"PVS mask {index}")
        widgets = [self.image.combo, self.labels.combo]
        if removable:
            self.remove_button = PushButton(text=f"Remove pair {index}")
            if on_remove is not None:
                self.remove_button.changed.connect(lambda *_: on_remove(self))
            widgets.append(self.remove_button)
        self.container = Container(widgets=widgets, labels=True)


class TrainWidget(QWidget):
    """Train a PVS segmentation model from image/mask layer pairs.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer

    Attributes
    ----------
    worker : GeneratorWorker or None
        The running training worker (None when idle).
    last_event : TrainEvent or None
        The last progress event received.
    n_events : int
        Events received during the current/last run.
    result : TrainResult or None
        Result of the last training that ran to its end.
    checkpoint_path : Path
        Where the checkpoint is (or will be) written.
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.last_event = None
        self.n_events = 0
        self.result = None
        self._holder: dict = {}
        self._auto_path = True
        self._budget_s: float | None = None

        try:
            from ..engine.models import available_models

            models = available_models()
        except Exception:  # pragma: no cover - engine broken: still show the widget
            log.exception("cannot list the models")
            models = list(_FALLBACK_MODELS)
        default_model = "mfnsde" if "mfnsde" in models else models[0]

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
        self.learning_rate = FloatSpinBox(label="learning rate", value=0.05, min=1e-5, max=10.0, step=0.005)
        self.max_minutes = FloatSpinBox(label="max minutes (0 = none)", value=0.0, min=0.0, max=100000.0, step=1.0)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda"], value="auto")
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.checkpoint = FileEdit(label="checkpoint", mode="w", filter="*.pt",
                                   value=default_checkpoint_path(default_model))
        self.model.changed.connect(self._on_model_changed)
        self.checkpoint.changed.connect(self._on_checkpoint_edited)
        self._form = Container(widgets=[
            self._pairs_box, self.add_pair_button, self.model, self.features, self.epochs,
            self.steps_per_epoch, self.batch_size, self.patch_size, self.learning_rate,
            self.max_minutes, self.device, self.seed, self.checkpoint])

        controls = RunControls(self, self._form, "Train", self.start, self.cancel)
        self.train_button, self.cancel_button = controls.start_button, controls.cancel_button
        self.progress, self.status = controls.progress, controls.status

    # ------------------------------------------------------------------ form
    def _add_pair(self) -> _PairRow:
        row = _PairRow(self.viewer, len(self._pairs) + 1, removable=bool(self._pairs),
                       on_remove=self._remove_pair)
        self._pairs.append(row)
        self._pairs_box.append(row.container)
        return row

    def _remove_pair(self, row: _PairRow) -> None:
        if row in self._pairs and len(self._pairs) > 1:
            self._pairs.remove(row)
            self._pairs_box.remove(row.container)

    @property
    def pairs(self) -> list:
        """The pair pickers, each with ``.image`` and ``.labels`` (:class:`LayerPicker`)."""
        return list(self._pairs)

    def reset_choices(self, *_):
        """Refresh the layer pickers (napari calls this when layers change)."""
        for row in self._pairs:
            row.image.refresh()
            row.labels.refresh()

    def _on_model_changed(self, value):
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

    @property
    def is_running(self) -> bool:
        return self.worker is not None

    # ------------------------------------------------------------------ run
    def _collect(self):
        """Volumes, masks and config from the form; raises ValueError with a user message."""
        from ..engine.models import ModelConfig
        from ..engine.training import TrainConfig

        images, masks = [], []
        for i, row in enumerate(self._pairs, 1):
            img_layer, lab_layer = row.image.value, row.labels.value
            if img_layer is None or lab_layer is None:
                if i == 1:
                    raise ValueError("choose a T2 Image layer and a PVS Labels layer to train on")
                continue
            image = layer_to_volume(img_layer)
            mask = np.asarray(lab_layer.data)
            if mask.shape != image.shape:
                raise ValueError(f"mask '{lab_layer.name}' has shape {mask.shape}, image "
                                 f"'{img_layer.name}' has {image.shape}; they must be on the same grid")
            images.append(image)
            masks.append(mask > 0)
        model = str(self.model.value)
        features = _parse_features(self.features.value)
        mcfg = ModelConfig(features=features)
        patch = int(self.patch_size.value)
        max_min = float(self.max_minutes.value)
        config = TrainConfig(
            model=model, model_config=mcfg, learning_rate=float(self.learning_rate.value),
            batch_size=int(self.batch_size.value), epochs=int(self.epochs.value),
            steps_per_epoch=int(self.steps_per_epoch.value), patch_size=(patch, patch),
            max_minutes=max_min if max_min > 0 else None, seed=int(self.seed.value),
            device=str(self.device.value))
        return images, masks, config

    def start(self, *_) -> None:
        """Start training in a worker thread (the *Train* button)."""
        if self.worker is not None:
            return
        from ..engine.errors import PVSInputError

        try:
            images, masks, config = self._collect()
        except (PVSInputError, ValueError) as exc:
            notify_error(str(exc))
            return
        if self._auto_path:
            self._set_checkpoint(default_checkpoint_path(config.model))
        ckpt = self.checkpoint_path
        try:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            notify_error(f"{ckpt.parent}: cannot create the checkpoint folder ({exc.strerror})")
            return

        from napari.qt.threading import create_worker

        self.last_event = None
        self.n_events = 0
        self.result = None
        self._holder = {}
        total = config.epochs * config.steps_per_epoch
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(0)
        self._budget_s = None if config.max_minutes is None else config.max_minutes * 60.0
        self.status.setText(f"starting: {config.model}, {len(images)} volume(s), {total} steps ...")
        worker = create_worker(_train_job, images, masks, config, ckpt, self._holder,
                               _start_thread=False)
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._set_running(True)
        log.info("training %s into %s", config.model, ckpt)
        worker.start()

    def cancel(self, *_) -> None:
        """Ask the running training to stop after its current step (the *Cancel* button)."""
        if self.worker is None:
            return
        self.worker.quit()
        self.cancel_button.setEnabled(False)
        self.status.setText(self.status.text() + "\ncancelling ...")

    def _set_running(self, running: bool) -> None:
        self.train_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self._form.enabled = not running

    # ------------------------------------------------------------------ worker signals
    def _on_event(self, ev) -> None:
        self.last_event = ev
        self.n_events += 1
        if ev.kind == "start":
            self.status.setText(f"started: {ev.message}")
            return
        total = self.progress.maximum()
        done = int(ev.step)
        if self._budget_s:  # with a time budget, show whichever limit is nearer
            done = max(done, int(total * min(1.0, ev.elapsed_s / self._budget_s)))
        if ev.kind == "done":
            done = total
        self.progress.setValue(min(done, total))
        parts = [f"epoch {ev.epoch}", f"step {ev.step}/{ev.total_steps}"]
        if ev.loss is not None:
            parts.append(f"loss {ev.loss:.4f}")
        if ev.val_dice is not None:
            parts.append(f"val DSC {ev.val_dice:.3f}")
        if ev.best_val_dice is not None:
            parts.append(f"best {ev.best_val_dice:.3f}")
        parts.append(format_seconds(ev.elapsed_s))
        self.status.setText(" | ".join(parts))

    def _on_returned(self, result) -> None:
        if isinstance(result, Failed):
            notify_error(str(result))
            self.status.setText(f"failed: {result}")
            return
        self.result = result
        if result is None:
            return
        best = "n/a" if result.best_val_dice is None else f"{result.best_val_dice:.3f}"
        reason = self.last_event.message if self.last_event is not None else ""
        msg = (f"Training done ({reason}): {result.steps_done} steps in {format_seconds(result.seconds)}, "
               f"best validation DSC {best}; checkpoint {result.checkpoint}")
        self.status.setText(msg)
        notify_info(msg)

    def _on_errored(self, exc) -> None:
        # napari's worker already shows the error (with its traceback) as a notification
        log.error("training failed: %s: %s", type(exc).__name__, exc)
        self.status.setText(f"failed: {type(exc).__name__}: {exc}")

    def _on_aborted(self) -> None:
        ev = self.last_event
        where = f" at step {ev.step}/{ev.total_steps}" if ev is not None else ""
        ckpt = ev.checkpoint if ev is not None and ev.checkpoint else None
        msg = f"Training cancelled{where}." + (f" Best checkpoint so far: {ckpt}" if ckpt else " No checkpoint written.")
        self.status.setText(msg)
        notify_info(msg)

    def _on_finished(self) -> None:
        gen = self._holder.pop("gen", None)
        if gen is not None:
            try:
                gen.close()  # stop the engine generator now (frees the model and data)
            except (RuntimeError, ValueError):  # pragma: no cover - still running elsewhere
                log.debug("could not close the training generator", exc_info=True)
        self.worker = None
        self._set_running(False)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.cancel()
        super().closeEvent(event)
