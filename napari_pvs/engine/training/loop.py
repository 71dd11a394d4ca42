"""The task-neutral training loop: a generator of :class:`TrainEvent` that any task drives.

:func:`run_training` owns what every training shares: device choice, seeding, optional
start from a checkpoint's weights (fine-tuning), the optimiser, mixed precision on CUDA
(``torch.autocast`` with bfloat16, or float16 with a gradient scaler; ``channels_last``
memory format), the epoch/step schedule, the wall-clock budget, validation after every
epoch, the best-checkpoint policy (highest validation metric, written atomically) and
cancellation: closing the generator (``gen.close()``, a napari worker's ``quit()``, a
``break``) stops training at the next yield, and the best checkpoint written so far stays
valid. CPU training stays float32.

A task (:class:`TrainingTask`: segmentation now, registration and active-learning
fine-tuning later) provides the model, the batches, the loss, the validation metric and
the checkpoint contents.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..models.checkpoint import checkpoint_config, read_checkpoint, trainable_checkpoint
from ..errors import PVSInputError, TrainingDiverged
from ..device import amp_dtype, autocast, pick_device
from ..progress import format_seconds

__all__ = ["LoopConfig", "TrainEvent", "TrainResult", "TrainingTask", "run_training"]


@dataclass(frozen=True)
class LoopConfig:
    """Settings of the task-neutral loop.

    Attributes
    ----------
    epochs, steps_per_epoch : int
        Validation (and checkpointing) happens after every epoch of ``steps_per_epoch``.
    optimizer : str
        ``"adagrad"``, ``"adam"`` or ``"sgd"`` (nnU-Net's: Nesterov momentum 0.99,
        weight decay 3e-5; Isensee F. et al., "nnU-Net: a self-configuring method for deep
        learning-based biomedical image segmentation", Nature Methods 18, 2021,
        doi:10.1038/s41592-020-01008-z).
    learning_rate : float
        Initial learning rate.
    lr_schedule : str
        ``"constant"`` or ``"poly"`` (nnU-Net: ``lr0 * (1 - t) ** 0.9``, ``t`` the share of
        the run done: steps of the planned total, or time of ``max_minutes`` when that is
        further along).
    max_minutes : float or None
        Wall-clock budget for the whole run: optimisation stops early enough for the last
        validation (timed from the previous one) to end within it.
    seed : int
        Seeds torch (weights, dropout); tasks seed their own samplers from it.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    amp : bool
        Mixed precision on CUDA (ignored on the CPU, which stays float32).
    validate_start : bool
        Validate the starting weights before the first step (epoch 0) and count them in
        the best-checkpoint policy: a fine-tuning that never beats its starting point
        ends with the starting weights as its checkpoint, never with worse ones.

    Raises
    ------
    ValueError
        Non-positive counts or learning rate, an unknown optimiser.
    """

    epochs: int = 100
    steps_per_epoch: int = 50
    optimizer: str = "adagrad"
    learning_rate: float = 0.05
    lr_schedule: str = "constant"
    max_minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    validate_start: bool = False

    def __post_init__(self):
        if self.optimizer not in ("adagrad", "adam", "sgd"):
            raise ValueError(f"optimizer must be 'adagrad', 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr_schedule not in ("constant", "poly"):
            raise ValueError(f"lr_schedule must be 'constant' or 'poly', got {self.lr_schedule!r}")
        if self.epochs < 1 or self.steps_per_epoch < 1:
            raise ValueError(f"epochs and steps_per_epoch must be >= 1, got {self.epochs} and "
                             f"{self.steps_per_epoch}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0 or None, got {self.max_minutes}")


@dataclass(frozen=True)
class TrainEvent:
    """Progress of a training run.

    Attributes
    ----------
    kind : str
        ``"start"``, ``"step"`` (after each optimisation step), ``"epoch"`` (after each
        validation) or ``"done"``.
    epoch : int
        1-based epoch.
    step, total_steps : int
        Global optimisation step (1-based) and the planned total.
    loss : float or None
        Training loss of the step (``"step"``) or mean over the epoch (``"epoch"``).
    val_metric, best_val_metric : float or None
        Validation metric (``metric_name``; higher is better) of this epoch and the best so far.
    metric_name : str
        E.g. ``"DSC"``.
    elapsed_s : float
        Seconds since training started.
    val_seconds : float
        Seconds spent validating so far.
    budget_s : float or None
        The wall-clock budget.
    checkpoint : str or None
        Path of the best checkpoint written so far.
    message : str
        Human-readable note (e.g. why training stopped).
    """

    kind: str
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    val_metric: float | None = None
    best_val_metric: float | None = None
    metric_name: str = "DSC"
    elapsed_s: float = 0.0
    val_seconds: float = 0.0
    budget_s: float | None = None
    checkpoint: str | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        """Share done: steps over the planned total, or time over the budget, whichever is
        further; 1.0 once done."""
        if self.kind == "done":
            return 1.0
        f = self.step / self.total_steps if self.total_steps else 0.0
        if self.budget_s:
            f = max(f, self.elapsed_s / self.budget_s)
        return min(1.0, f)

    def summary(self) -> str:
        """One line: epoch, step, loss, validation metric, elapsed time."""
        if self.kind == "start":
            return f"started: {self.message}"
        parts = [f"epoch {self.epoch}", f"step {self.step}/{self.total_steps}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.val_metric is not None:
            parts.append(f"val {self.metric_name} {self.val_metric:.3f}")
        if self.best_val_metric is not None:
            parts.append(f"best {self.best_val_metric:.3f}")
        parts.append(format_seconds(self.elapsed_s))
        if self.kind == "done" and self.message:
            parts.append(self.message)
        return " | ".join(parts)


@dataclass(frozen=True)
class TrainResult:
    """Returned by a training generator (its ``StopIteration.value``).

    Attributes
    ----------
    checkpoint : Path or None
        The best checkpoint.
    best_val_metric : float or None
    metric_name : str
    epochs_done, steps_done : int
    seconds : float
        Wall-clock time of the whole run.
    val_seconds : float
        Of which validating.
    stop_reason : str
        ``"finished"`` or why training stopped early.
    history : list of dict
        Per epoch: ``epoch, step, loss, val_metric, elapsed_s``.
    diverged : bool
        Training stopped because the loss became NaN or infinite; ``checkpoint`` is the
        last one written before (the weights after the bad step are not saved).
    """

    checkpoint: Path | None
    best_val_metric: float | None
    metric_name: str
    epochs_done: int
    steps_done: int
    seconds: float
    val_seconds: float
    stop_reason: str
    history: list[dict] = field(default_factory=list)
    diverged: bool = False

    @property
    def val_share(self) -> float:
        """Share of the wall-clock time spent validating."""
        return self.val_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def steps_per_second(self) -> float:
        """Optimisation steps per second of training (validation time excluded)."""
        train_s = self.seconds - self.val_seconds
        return self.steps_done / train_s if train_s > 0 else 0.0


class TrainingTask(Protocol):
    """What a task gives :func:`run_training`.

    Attributes
    ----------
    model_name : str
        Registry name of the network.
    model_config : frozen dataclass
        Its config; a checkpoint given as ``init_from`` must hold the same.
    metric_name : str
        Name of the validation metric (higher is better), e.g. ``"DSC"``.

    A task may also have a ``teardown()`` method (e.g. to stop data-loader workers):
    :func:`run_training` calls it once the run ends, stops early or is closed.
    """

    model_name: str
    model_config: object
    metric_name: str

    def build_model(self) -> nn.Module:
        """A freshly initialised network."""

    def setup(self, device: torch.device) -> str:
        """Prepare the data on ``device``; returns a one-line description for the start event."""

    def sample_batch(self, device: torch.device) -> Mapping[str, torch.Tensor]:
        """The next training batch dict (on ``device``)."""

    def loss(self, outputs, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Scalar loss of the network's outputs on ``batch``."""

    def validate(self, model: nn.Module, device: torch.device) -> float:
        """The validation metric of ``model`` (in eval mode)."""

    def save_checkpoint(self, path: Path, model: nn.Module, metrics: dict) -> Path:
        """Write the checkpoint (atomically)."""


def _optimizer(cfg: LoopConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(model.parameters(), lr=cfg.learning_rate)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.learning_rate, momentum=0.99, nesterov=True,
                               weight_decay=3e-5)
    return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)


def poly_lr(lr0: float, done: float, exponent: float = 0.9) -> float:
    """nnU-Net's poly learning rate ``lr0 * (1 - done) ** exponent`` for ``done`` in [0, 1]."""
    return float(lr0) * (1.0 - min(max(float(done), 0.0), 1.0)) ** exponent


def _load_init(task: TrainingTask, model: nn.Module, init_from: str | Path) -> None:
    ckpt = trainable_checkpoint(read_checkpoint(init_from))  # an ensemble: its first member
    name, config = checkpoint_config(ckpt, init_from)
    if name != task.model_name or config != task.model_config:
        raise PVSInputError(f"cannot fine-tune from it: it holds model {name!r} with {config}, "
                            f"training asks for {task.model_name!r} with {task.model_config}", init_from)
    model.load_state_dict(ckpt["state_dict"])


def run_training(task: TrainingTask, config: LoopConfig, checkpoint_path: str | Path, *,
                 init_from: str | Path | None = None) -> Generator[TrainEvent, None, TrainResult]:
    """Train ``task``'s network, yielding :class:`TrainEvent`; returns a :class:`TrainResult`.

    Parameters
    ----------
    task : TrainingTask
    config : LoopConfig
    checkpoint_path : str or Path
        Where the best checkpoint (highest validation metric) is written, atomically.
    init_from : str or Path, optional
        Start from this checkpoint's weights (fine-tuning); it must hold the same model
        and config as the task.

    Raises
    ------
    PVSInputError
        ``init_from`` missing, unreadable or holding another model or config; a device
        that is not available; whatever the task's ``setup`` raises for bad data.
    """
    t0 = time.perf_counter()
    cfg = config
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    model = task.build_model()
    if init_from is not None:
        _load_init(task, model, init_from)
    if hasattr(model, "prepare_training"):  # e.g. cmgraph embeds its text descriptions
        model.prepare_training()
    model = model.to(device)
    use_amp = cfg.amp and amp_dtype(device) is not None
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype(device) == torch.float16)
    opt = _optimizer(cfg, model)
    note = task.setup(device)
    try:
        note += f"; device {device.type}" + (f" ({amp_dtype(device)} autocast)" if use_amp else "")
        if init_from is not None:
            note += f"; fine-tuning from {Path(init_from).name}"

        total_steps = cfg.epochs * cfg.steps_per_epoch
        budget_s = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
        ckpt_path = Path(checkpoint_path)
        name = task.metric_name
        best = -np.inf
        saved: Path | None = None
        history: list[dict] = []
        step = epoch = 0
        val_total = 0.0
        val_cost = 0.0  # seconds the last validation took: reserved at the end of the budget

        def event(kind: str, **kw) -> TrainEvent:
            return TrainEvent(kind, epoch=epoch, step=step, total_steps=total_steps, metric_name=name,
                              elapsed_s=time.perf_counter() - t0, val_seconds=val_total, budget_s=budget_s,
                              best_val_metric=None if saved is None else float(best),
                              checkpoint=str(saved) if saved else None, **kw)

        yield event("start", message=note)

        def validate_and_keep(mean_loss: float | None) -> float:
            nonlocal best, saved, val_total, val_cost
            t_val = time.perf_counter()
            model.eval()
            with torch.inference_mode(), autocast(device, use_amp):
                val = float(task.validate(model, device))
            model.train()
            val_cost = time.perf_counter() - t_val
            val_total += val_cost
            history.append({"epoch": epoch, "step": step, "loss": mean_loss, "val_metric": val,
                            "elapsed_s": time.perf_counter() - t0})
            if val > best or saved is None:
                best = max(best, val)
                saved = task.save_checkpoint(ckpt_path, model, {
                    "metric": name, "best_val_metric": val, "epoch": epoch, "step": step,
                    "history": history, "init_from": str(init_from) if init_from else None})
            return val

        if cfg.validate_start:
            val = validate_and_keep(None)
            yield event("epoch", val_metric=val, message="starting weights")
        model.train()
        stop_reason = "finished"
        diverged = False
        for epoch in range(1, cfg.epochs + 1):
            losses = []
            for _ in range(cfg.steps_per_epoch):
                if budget_s is not None and step > 0 and time.perf_counter() - t0 + val_cost >= budget_s:
                    stop_reason = f"time budget of {cfg.max_minutes:g} min spent"
                    break
                if cfg.lr_schedule == "poly":
                    done = step / total_steps
                    if budget_s is not None:
                        done = max(done, (time.perf_counter() - t0) / budget_s)
                    for group in opt.param_groups:
                        group["lr"] = poly_lr(cfg.learning_rate, done)
                batch = task.sample_batch(device)
                opt.zero_grad(set_to_none=True)
                with autocast(device, use_amp):
                    loss = task.loss(model(batch), batch)
                value = float(loss.detach())
                if not math.isfinite(value):     # diverged: keep the last good checkpoint, save nothing new
                    diverged = True
                    stop_reason = (f"stopped: the loss became {value} at step {step + 1} (epoch {epoch}); "
                                   + (f"the last good checkpoint (epoch {history[-1]['epoch']}) is kept"
                                      if saved is not None else "no checkpoint had been written")
                                   + "; try a lower learning rate or check the masks")
                    break
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                step += 1
                losses.append(value)
                yield event("step", loss=losses[-1])
            if diverged:
                break
            if not losses:  # budget spent right after the previous validation: nothing new to validate
                epoch -= 1
                break
            mean_loss = float(np.mean(losses))
            val = validate_and_keep(mean_loss)
            yield event("epoch", loss=mean_loss, val_metric=val)
            if stop_reason != "finished":
                break
        seconds = time.perf_counter() - t0
        last = history[-1]["val_metric"] if history else None
        yield event("done", val_metric=last, message=stop_reason)
        if diverged and saved is None:
            raise TrainingDiverged(stop_reason, ckpt_path)
        return TrainResult(checkpoint=saved, best_val_metric=None if saved is None else float(best),
                           metric_name=name, epochs_done=epoch, steps_done=step, seconds=seconds,
                           val_seconds=val_total, stop_reason=stop_reason, history=history, diverged=diverged)
    finally:
        teardown = getattr(task, "teardown", None)   # e.g. a task's data-loader workers
        if teardown is not None:
            teardown()
