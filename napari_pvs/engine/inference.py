"""Slice-wise inference of a whole volume on the source grid.

Steps: axial slices ``(S, H, W)`` -> per-volume percentile normalisation -> in-plane
resampling to the checkpoint's spacing -> batched 2D sliding-window prediction with
windows of the training patch size (MONAI ``sliding_window_inference``, Gaussian-weighted
overlap) -> sigmoid -> resampling of the probability back to ``(H, W)`` -> ``(Z, Y, X)``.

Windows of the training patch size matter: the networks use instance normalisation, whose
statistics on a whole slice (mostly air and skull) differ from those on the training
patches; on the vertical-slice benchmark whole-slice prediction gave DSC 0.16 where
sliding windows gave 0.75 with the same weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from .checkpoint import LoadedModel
from .io import Volume
from .preprocess import (axial_stack, from_axial_stack, inplane_spacing, normalize_percentile,
                         resample_stack, resampled_hw)

__all__ = ["Prediction", "InferenceProgress", "segment_iter", "predict_volume", "predict_stack",
           "pick_device"]


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class InferenceProgress:
    """Progress of :func:`segment_iter`: ``done`` of ``total`` slices, seconds elapsed."""

    done: int
    total: int
    elapsed_s: float


@dataclass(frozen=True)
class Prediction:
    """Result of segmenting one volume, on the source grid.

    Attributes
    ----------
    prob : np.ndarray
        float32 ``(Z, Y, X)``, PVS probability in ``[0, 1]``.
    mask : np.ndarray
        uint8 ``(Z, Y, X)``, ``prob >= threshold``.
    threshold : float
    seconds : float
        Wall-clock inference time.
    """

    prob: np.ndarray
    mask: np.ndarray
    threshold: float
    seconds: float


def predict_stack(loaded: LoadedModel, stack: torch.Tensor, *, batch_size: int = 8,
                  device: torch.device | None = None) -> Generator[int, None, torch.Tensor]:
    """Generator over batches of normalised slices ``(S, H, W)`` at the model's spacing.

    Each batch is predicted with MONAI's ``sliding_window_inference`` using windows of
    ``loaded.roi_size`` (the training patch size), overlap ``loaded.overlap``, Gaussian
    blending; slices smaller than a window are padded. Yields the number of slices done
    after each batch; returns the probability stack ``(S, H, W)`` float32 (CPU).
    """
    if device is None:
        param = next(iter(loaded.model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    model = loaded.model.to(device).eval()
    out = torch.empty(stack.shape, dtype=torch.float32)
    n = stack.shape[0]
    for start in range(0, n, batch_size):
        with torch.no_grad():
            batch = stack[start:start + batch_size, None].to(device)
            logits = sliding_window_inference(batch, tuple(loaded.roi_size), 4 * batch.shape[0], model,
                                              overlap=loaded.overlap, mode="gaussian")
            if isinstance(logits, (list, tuple)):
                logits = logits[0]
            out[start:start + batch.shape[0]] = torch.sigmoid(logits[:, 0].float()).cpu()
        yield min(start + batch_size, n)
    return out


def segment_iter(loaded: LoadedModel, image: Volume, *, batch_size: int = 8, threshold: float = 0.5,
                 device: str | torch.device | None = None
                 ) -> Generator[InferenceProgress, None, Prediction]:
    """Segment PVS in a volume, yielding :class:`InferenceProgress` after each batch.

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`~napari_pvs.engine.checkpoint.load_model`.
    image : Volume
        T2-weighted volume, any voxel size and orientation; data ``(Z, Y, X)``.
    batch_size : int
        Slices per forward pass.
    threshold : float
        Probability threshold of the binary mask.
    device : str or torch.device, optional
        Default: where the model is.

    Returns (as the generator's return value)
    ------------------------------------------
    Prediction
        Probability and mask on the source grid ``(Z, Y, X)``.
    """
    t0 = time.perf_counter()
    dev = pick_device(device) if device is not None else None
    stack = axial_stack(image, normalize_percentile(image.data, loaded.percentiles))
    hw = stack.shape[1:]
    work_hw = resampled_hw(hw, inplane_spacing(image), loaded.spacing_mm)
    x = resample_stack(stack, work_hw)
    total = int(x.shape[0])
    yield InferenceProgress(0, total, time.perf_counter() - t0)
    gen = predict_stack(loaded, x, batch_size=batch_size, device=dev)
    while True:
        try:
            done = next(gen)
        except StopIteration as stop:
            prob_work = stop.value
            break
        yield InferenceProgress(done, total, time.perf_counter() - t0)
    prob = resample_stack(prob_work, hw).clamp_(0, 1).numpy()
    prob = np.ascontiguousarray(from_axial_stack(image, prob)).astype(np.float32)
    mask = (prob >= threshold).astype(np.uint8)
    return Prediction(prob=prob, mask=mask, threshold=threshold, seconds=time.perf_counter() - t0)


def predict_volume(loaded: LoadedModel, image: Volume, *, batch_size: int = 8, threshold: float = 0.5,
                   device: str | torch.device | None = None,
                   progress: Callable[[InferenceProgress], None] | None = None) -> Prediction:
    """Run :func:`segment_iter` to the end, calling ``progress`` with each event."""
    gen = segment_iter(loaded, image, batch_size=batch_size, threshold=threshold, device=device)
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(ev)
