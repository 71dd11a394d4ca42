"""Training of the 2D PVS segmentation networks as a generator of progress events.

:func:`train` yields a :class:`TrainEvent` after every optimisation step and every
validation; closing the generator (``gen.close()``, a napari worker's ``quit()``, or
breaking out of a ``for`` loop) stops training cleanly at the next yield, and the best
checkpoint written so far stays valid (checkpoints are written atomically).

Defaults follow the seed paper ("Deep-learning-based segmentation of perivascular spaces
on T2-weighted 3T MR images", Frontiers in Aging Neuroscience, 2024): Adagrad, learning
rate 0.05, mini-batch 4, soft Dice loss (with multi-scale deep supervision for
``mfnsde``). Training samples 2D axial patches at one in-plane spacing; the split into
training and validation is by volume (subject/visit), never by slice.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import DEFAULT_PATCH_SIZE, save_checkpoint
from .errors import PVSInputError
from .inference import pick_device, predict_stack
from .io import Volume, check_same_grid
from .metrics import dice
from .models import ModelConfig, available_models, build_model, deep_supervision_loss
from .preprocess import (axial_stack, inplane_spacing, normalize_percentile, resample_stack,
                         resampled_hw)

__all__ = ["TrainConfig", "TrainEvent", "TrainResult", "train", "train_config_to_dict",
           "split_by_volume"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; saved inside every checkpoint.

    Attributes
    ----------
    model : str
        Registry name: ``"mfnsde"`` (default) or ``"unet"``.
    model_config : ModelConfig
        Constructor settings of the network.
    optimizer : str
        ``"adagrad"`` (paper default) or ``"adam"``.
    learning_rate : float
        0.05 (paper default, for Adagrad).
    batch_size : int
        Patches per step (paper: mini-batch 4).
    epochs, steps_per_epoch : int
        Validation (and checkpointing) happens after every epoch of ``steps_per_epoch``.
    patch_size : tuple of int
        2D patch ``(H, W)`` in pixels at ``spacing_mm``; a multiple of the model divisor.
    spacing_mm : float or None
        In-plane pixel spacing (mm) to train and infer at; None: the median in-plane
        spacing of the training images.
    percentiles : tuple of float
        Per-volume intensity normalisation percentiles.
    foreground_ratio : float
        Share of patches centred on a PVS voxel (the rest on random head voxels).
    augment : bool
        MONAI random flips, small affine (rotation, +-10 % scale), blur, gamma,
        intensity scale/shift and noise (for other scanners and voxel sizes).
    val_fraction : float
        Share of volumes held out for validation (at least one when there are two or
        more volumes; with a single volume, validation uses the training volume).
    max_minutes : float or None
        Wall-clock budget for the whole run: optimisation stops early enough for the
        last validation (timed from the previous one) to end within it.
    seed : int
    device : str
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"`` or ``"cuda"``.
    """

    model: str = "mfnsde"
    model_config: ModelConfig = ModelConfig()
    optimizer: str = "adagrad"
    learning_rate: float = 0.05
    batch_size: int = 4
    epochs: int = 100
    steps_per_epoch: int = 50
    patch_size: tuple[int, int] = DEFAULT_PATCH_SIZE
    spacing_mm: float | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    foreground_ratio: float = 0.67
    augment: bool = True
    val_fraction: float = 0.25
    max_minutes: float | None = None
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.model not in available_models():
            raise ValueError(f"unknown model {self.model!r}; available: {', '.join(available_models())}")
        if self.optimizer not in ("adagrad", "adam"):
            raise ValueError(f"optimizer must be 'adagrad' or 'adam', got {self.optimizer!r}")
        if self.batch_size < 1 or self.epochs < 1 or self.steps_per_epoch < 1:
            raise ValueError("batch_size, epochs and steps_per_epoch must be >= 1")


def train_config_to_dict(cfg: TrainConfig) -> dict:
    """JSON-able dict of a :class:`TrainConfig` (nested model config included)."""
    return dataclasses.asdict(cfg)


@dataclass(frozen=True)
class TrainEvent:
    """Progress of :func:`train`.

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
    val_dice : float or None
        Validation DSC (``"epoch"``, ``"done"``).
    best_val_dice : float or None
    elapsed_s : float
        Seconds since training started.
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
    val_dice: float | None = None
    best_val_dice: float | None = None
    elapsed_s: float = 0.0
    checkpoint: str | None = None
    message: str = ""


@dataclass(frozen=True)
class TrainResult:
    """Returned by :func:`train` (the generator's return value)."""

    checkpoint: Path | None
    best_val_dice: float | None
    epochs_done: int
    steps_done: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def split_by_volume(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split volume indices ``0..n-1`` into training and validation sets.

    Whole volumes go to one side or the other. With one volume, it is used for both
    (and validation then measures fit, not generalisation).
    """
    if n < 1:
        raise ValueError("need at least one volume")
    if n == 1:
        return [0], [0]
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    return sorted(order[n_val:]), sorted(order[:n_val])


@dataclass
class _Prepared:
    image: torch.Tensor   # (S, H', W') normalised, at working spacing
    label: torch.Tensor   # (S, H', W') float {0,1}
    fg: np.ndarray        # flat indices of label voxels
    bg: np.ndarray        # flat indices of head voxels


def _prepare(image: Volume, mask: np.ndarray, spacing: float, percentiles, patch) -> _Prepared:
    stack = axial_stack(image, normalize_percentile(image.data, percentiles))
    lab = axial_stack(image, (np.asarray(mask) > 0).astype(np.float32))
    hw = resampled_hw(stack.shape[1:], inplane_spacing(image), spacing)
    x = resample_stack(stack, hw)
    y = (resample_stack(lab, hw) >= 0.5).float()
    # pad in-plane to at least the patch size
    ph = max(0, patch[0] - x.shape[1])
    pw = max(0, patch[1] - x.shape[2])
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph))
        y = torch.nn.functional.pad(y, (0, pw, 0, ph))
    fg = np.flatnonzero(y.numpy().ravel() > 0)
    bg = np.flatnonzero((x.numpy().ravel() > 0.1) & (y.numpy().ravel() == 0))
    if bg.size == 0:
        bg = np.flatnonzero(y.numpy().ravel() == 0)
    return _Prepared(image=x, label=y, fg=fg, bg=bg)


def _sample_patch(vol: _Prepared, rng: np.random.Generator, patch, fg_ratio: float):
    s, h, w = vol.image.shape
    pool = vol.fg if (vol.fg.size and rng.random() < fg_ratio) else vol.bg
    idx = int(pool[rng.integers(pool.size)])
    z, r, c = np.unravel_index(idx, (s, h, w))
    r0 = int(np.clip(r - patch[0] // 2 + rng.integers(-patch[0] // 4, patch[0] // 4 + 1), 0, h - patch[0]))
    c0 = int(np.clip(c - patch[1] // 2 + rng.integers(-patch[1] // 4, patch[1] // 4 + 1), 0, w - patch[1]))
    sl = (slice(z, z + 1), slice(r0, r0 + patch[0]), slice(c0, c0 + patch[1]))
    return vol.image[sl], vol.label[sl]  # (1, ph, pw) each


def _augmenter(seed: int):
    from monai.transforms import (Compose, RandAdjustContrastd, RandAffined, RandFlipd,
                                  RandGaussianNoised, RandGaussianSmoothd, RandScaleIntensityd,
                                  RandShiftIntensityd)

    keys = ("image", "label")
    aug = Compose([
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandAffined(keys, prob=0.3, rotate_range=(math.pi / 12,), scale_range=(0.1, 0.1),
                    mode=("bilinear", "nearest"), padding_mode="zeros"),
        RandGaussianSmoothd("image", sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), prob=0.2),
        RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.3),
        RandScaleIntensityd("image", factors=0.15, prob=0.5),
        RandShiftIntensityd("image", offsets=0.1, prob=0.5),
        RandGaussianNoised("image", prob=0.2, std=0.03),
    ])
    aug.set_random_state(seed=seed)
    return aug


def _as_mask_array(mask, image: Volume) -> np.ndarray:
    if isinstance(mask, Volume):
        check_same_grid(image, mask)
        return np.asarray(mask.data)
    arr = np.asarray(mask)
    if arr.shape != image.shape:
        raise PVSInputError(f"mask shape {arr.shape} differs from the image grid {image.shape}", image.path)
    return arr


def _source_info(image: Volume, mask, role: str) -> dict:
    from .datasets import sha256_file

    return {
        "image": str(image.path) if image.path else None,
        "image_sha256": sha256_file(image.path) if image.path and image.path.is_file() else None,
        "mask": str(mask.path) if isinstance(mask, Volume) and mask.path else None,
        "shape_zyx": list(image.shape),
        "voxel_size_mm_zyx": [round(v, 4) for v in image.voxel_size],
        "role": role,
        **{k: v for k, v in image.meta.items() if isinstance(v, (str, int, float))},
    }


def _validate(model, loaded_like, vols: list[_Prepared], device) -> float:
    model.eval()
    scores = []
    for v in vols:
        gen = predict_stack(loaded_like, v.image, batch_size=8, device=device)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                prob = stop.value
                break
        scores.append(dice(prob.numpy() >= 0.5, v.label.numpy() > 0))
    model.train()
    return float(np.mean(scores))


class _ModelView:
    """Minimal stand-in for LoadedModel used by predict_stack during validation."""

    def __init__(self, model, roi_size):
        self.model = model
        self.roi_size = tuple(roi_size)
        self.overlap = 0.25


def train(images: Sequence[Volume], masks: Sequence[Volume | np.ndarray], config: TrainConfig,
          checkpoint_path: str | Path) -> Generator[TrainEvent, None, TrainResult]:
    """Train a 2D PVS segmentation network, yielding progress events.

    Parameters
    ----------
    images : sequence of Volume
        T2-weighted volumes, data ``(Z, Y, X)``, any voxel size/orientation.
    masks : sequence of Volume or np.ndarray
        Binary PVS masks on the same grids (nonzero = PVS).
    config : TrainConfig
    checkpoint_path : str or Path
        Where the best checkpoint (highest validation DSC) is written, atomically.

    Yields
    ------
    TrainEvent

    Returns
    -------
    TrainResult
        As the generator's return value (``StopIteration.value``).

    Raises
    ------
    PVSInputError
        No volumes, different numbers of images and masks, a mask on another grid, or
        masks without any PVS voxel.
    """
    t0 = time.perf_counter()
    if len(images) == 0:
        raise PVSInputError("no training images given")
    if len(images) != len(masks):
        raise PVSInputError(f"{len(images)} images but {len(masks)} masks; expected one mask per image")
    mask_arrays = [_as_mask_array(m, im) for im, m in zip(images, masks)]
    if not any(np.any(m > 0) for m in mask_arrays):
        raise PVSInputError("the training masks contain no PVS voxel", images[0].path)

    cfg = config
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = pick_device(cfg.device)
    train_idx, val_idx = split_by_volume(len(images), cfg.val_fraction, cfg.seed)
    spacing = cfg.spacing_mm or float(np.median([min(inplane_spacing(images[i])) for i in train_idx]))

    model = build_model(cfg.model, cfg.model_config).to(device)
    divisor = int(getattr(model, "divisor", 1))
    patch = tuple(int(math.ceil(p / divisor) * divisor) for p in cfg.patch_size)
    prepared = {i: _prepare(images[i], mask_arrays[i], spacing, cfg.percentiles, patch)
                for i in sorted(set(train_idx) | set(val_idx))}
    train_vols = [prepared[i] for i in train_idx if prepared[i].fg.size or prepared[i].bg.size]
    val_vols = [prepared[i] for i in val_idx]
    if cfg.optimizer == "adagrad":
        opt = torch.optim.Adagrad(model.parameters(), lr=cfg.learning_rate)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    aug = _augmenter(cfg.seed) if cfg.augment else None
    sources = [_source_info(images[i], masks[i], "train" if i in train_idx else "validation")
               for i in range(len(images))]
    if val_idx == train_idx:
        for s in sources:
            s["role"] = "train+validation"

    total_steps = cfg.epochs * cfg.steps_per_epoch
    budget_s = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
    ckpt_path = Path(checkpoint_path)
    best = -1.0
    saved: Path | None = None
    history: list[dict] = []
    step = 0
    epoch = 0
    note = (f"{len(train_idx)} training / {len(val_idx)} validation volume(s), spacing {spacing:.3f} mm, "
            f"device {device.type}")
    if val_idx == train_idx:
        note += "; only one volume: validation DSC is measured on the training volume"
    yield TrainEvent("start", total_steps=total_steps, elapsed_s=time.perf_counter() - t0, message=note)
    model.train()
    stop_reason = "finished"
    val_cost = 0.0  # seconds the last validation took: reserved at the end of the budget
    for epoch in range(1, cfg.epochs + 1):
        losses = []
        for _ in range(cfg.steps_per_epoch):
            if budget_s is not None and step > 0 and time.perf_counter() - t0 + val_cost >= budget_s:
                stop_reason = f"time budget of {cfg.max_minutes:g} min spent"
                break
            xs, ys = [], []
            for _b in range(cfg.batch_size):
                vol = train_vols[int(rng.integers(len(train_vols)))]
                x, y = _sample_patch(vol, rng, patch, cfg.foreground_ratio)
                if aug is not None:
                    d = aug({"image": x, "label": y})
                    x, y = torch.as_tensor(d["image"]), (torch.as_tensor(d["label"]) > 0.5).float()
                xs.append(x)
                ys.append(y)
            xb = torch.stack(xs).float().to(device)
            yb = torch.stack(ys).float().to(device)
            opt.zero_grad(set_to_none=True)
            loss = deep_supervision_loss(model(xb), yb)
            loss.backward()
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
            elapsed = time.perf_counter() - t0
            yield TrainEvent("step", epoch=epoch, step=step, total_steps=total_steps, loss=losses[-1],
                             best_val_dice=best if best >= 0 else None, elapsed_s=elapsed,
                             checkpoint=str(saved) if saved else None)
        if not losses:  # budget spent right after the previous validation: nothing new to validate
            epoch -= 1
            break
        t_val = time.perf_counter()
        val = _validate(model, _ModelView(model, patch), val_vols, device)
        val_cost = time.perf_counter() - t_val
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        history.append({"epoch": epoch, "step": step, "loss": mean_loss, "val_dice": val,
                        "elapsed_s": time.perf_counter() - t0})
        if val > best or saved is None:
            best = max(best, val)
            saved = save_checkpoint(
                ckpt_path, model=model, model_name=cfg.model, model_config=cfg.model_config,
                spacing_mm=spacing, percentiles=cfg.percentiles, patch_size=patch,
                train_config=train_config_to_dict(cfg),
                training_data=sources,
                metrics={"best_val_dice": val, "epoch": epoch, "step": step, "history": history})
        yield TrainEvent("epoch", epoch=epoch, step=step, total_steps=total_steps, loss=mean_loss,
                         val_dice=val, best_val_dice=best, elapsed_s=time.perf_counter() - t0,
                         checkpoint=str(saved))
        if stop_reason != "finished":
            break
    seconds = time.perf_counter() - t0
    yield TrainEvent("done", epoch=epoch, step=step, total_steps=total_steps, val_dice=history[-1]["val_dice"],
                     best_val_dice=best, elapsed_s=seconds, checkpoint=str(saved), message=stop_reason)
    return TrainResult(checkpoint=saved, best_val_dice=best, epochs_done=epoch, steps_done=step,
                       seconds=seconds, history=history)
