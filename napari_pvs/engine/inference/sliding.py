"""Slice-wise inference of a whole volume on the source grid.

Steps: axial slices ``(S, H, W)`` -> per-volume percentile normalisation -> in-plane
resampling to the checkpoint's spacing -> the head's bounding box (slices and in-plane
box where the normalised image is above background, aligned to the window grid) ->
batched 2D sliding-window prediction with windows of the training patch size (MONAI
``sliding_window_inference``, Gaussian-weighted overlap, ``torch.inference_mode``, autocast
on CUDA), where windows holding no brain voxel are not run -> sigmoid -> resampling of the
probability back to ``(H, W)`` -> ``(Z, Y, X)``.

The box and the skipped windows change nothing inside the brain: every window that
covers a brain voxel is run exactly as on the whole slice, so the probability there is
the same as without them (outside the brain it is 0). The brain is
:func:`~napari_pvs.engine.anatomy.brain_mask` dilated by :data:`BRAIN_MARGIN_MM`; when no
brain is found, the head (normalised intensity above :data:`BACKGROUND_LEVEL`) is used.

Windows of the training patch size matter: the networks use instance normalisation, whose
statistics on a whole slice (mostly air and skull) differ from those on the training
patches; on the vertical-slice benchmark whole-slice prediction gave DSC 0.16 where
sliding windows gave 0.75 with the same weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..anatomy.morphology import dilate_mm, spacing_mm
from ..anatomy.regions import find_brain_mask, find_wide_csf
from ..models.checkpoint import LoadedModel
from ..io import Volume
from ..preprocess import (axial_stack, from_axial_stack, inplane_spacing, normalize_percentile,
                          resample_stack, resampled_hw, slice_context)
from ..progress import map_events, run_to_end
from ..device import autocast, free_cached_memory, is_out_of_memory, pick_device
from ..errors import PVSInputError

__all__ = ["Prediction", "InferenceProgress", "segment_iter", "predict_volume", "predict_stack",
           "head_box", "whole_slice_box", "BACKGROUND_LEVEL", "BRAIN_MARGIN_MM", "WINDOWS_PER_PASS"]

log = logging.getLogger(__name__)

#: normalised intensity (0 = the 0.5th percentile of the head, 1 = the 99.5th) below
#: which a pixel counts as background (air) for :func:`head_box`
BACKGROUND_LEVEL = 0.1
#: margin (mm) by which the brain mask is grown before windows outside it are skipped
BRAIN_MARGIN_MM = 3.0
#: logit given to windows that are not run (sigmoid ~ 2e-9)
_SKIPPED_LOGIT = -20.0
#: windows per forward pass: on 2 CPU cores mfnsde ran 53 ms/window with 8 or 16 windows a
#: pass, 72 ms with 32 and 108 ms with 64 (benchmarks/inference_speed.py); GPUs like more
WINDOWS_PER_PASS = {"cpu": 8, "cuda": 64}


@dataclass(frozen=True)
class InferenceProgress:
    """Progress of :func:`segment_iter`: ``done`` of ``total`` slices, seconds elapsed."""

    done: int
    total: int
    elapsed_s: float

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None

    def summary(self) -> str:
        return f"slices {self.done}/{self.total} | {self.elapsed_s:.1f} s"


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
    member_probs : np.ndarray or None
        float32 ``(M, Z, Y, X)``: each ensemble member's own probability (with
        ``segment_iter(..., members=True)``), else None.
    """

    prob: np.ndarray
    mask: np.ndarray
    threshold: float
    seconds: float
    member_probs: np.ndarray | None = None

    def agreement(self, threshold: float | None = None) -> np.ndarray:
        """How many ensemble members call each voxel PVS: uint8 ``(Z, Y, X)`` in ``[0, M]``,
        ``sum_k (member_probs[k] >= threshold)`` (default the prediction's threshold).
        Voxels that some members call PVS and the ensemble does not are the uncertain
        ones: the objects a rater should look at first.

        Raises
        ------
        ValueError
            The prediction holds no member probabilities.
        """
        if self.member_probs is None:
            raise ValueError("no member probabilities: segment with an ensemble and members=True")
        t = self.threshold if threshold is None else float(threshold)
        return (self.member_probs >= t).sum(axis=0, dtype=np.uint8)

    def uncertain(self, threshold: float | None = None) -> np.ndarray:
        """:meth:`agreement` outside the mask at ``threshold`` (0 inside it): uint8
        ``(Z, Y, X)``, the voxels that some members call PVS and the ensemble does not,
        each with how many members do.

        Raises
        ------
        ValueError
            The prediction holds no member probabilities.
        """
        t = self.threshold if threshold is None else float(threshold)
        agree = self.agreement(t)
        agree[self.prob >= t] = 0
        return agree


def _aligned_range(lo: int, hi: int, size: int, roi: int, stride: int) -> slice:
    """``[lo, hi)`` grown to window boundaries of the full-size grid: starts at a multiple of
    ``stride`` and spans ``k * stride + roi`` pixels (or reaches the end of the axis), so
    that MONAI places the crop's windows exactly where it places them on the whole axis."""
    if size <= roi:
        return slice(0, size)
    start = (max(lo, 0) // stride) * stride
    k = max(0, -(-(hi - start - roi) // stride))  # ceil
    stop = start + k * stride + roi
    if size - stop < stride:  # the whole axis' last window (clipped to size - roi) may reach back
        stop = size
    return slice(start, stop)


def head_box(stack: torch.Tensor, roi_size: tuple[int, int], overlap: float, *,
             level: float = BACKGROUND_LEVEL) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Slices and in-plane box of a normalised ``(S, H, W)`` stack that hold the head.

    A pixel is head when its normalised intensity exceeds ``level``. Rows, columns and
    slices count when they hold at least 0.5 % of the largest such count (isolated noise
    pixels in the air do not widen the box). The box is widened by the windows' overlap
    (``roi - stride`` pixels, so every head pixel is covered by the same windows as on the
    whole slice) and aligned to the sliding-window grid of the whole slice: the
    prediction inside the head is the same as without the box.

    Parameters
    ----------
    stack : torch.Tensor
        ``(S, H, W)`` normalised slices.
    roi_size : (int, int)
        Sliding-window size in pixels.
    overlap : float
        Sliding-window overlap (fraction of the window), as given to MONAI.

    Returns
    -------
    slices : np.ndarray
        int indices of the slices to predict (sorted); empty when no head is found.
    box : (slice, slice)
        In-plane ``(H, W)`` box; the whole plane when no head is found.
    """
    fg = stack > level
    s, h, w = fg.shape
    per_slice = fg.sum(dim=(1, 2)).numpy()
    if per_slice.max() == 0:
        return np.arange(0), (slice(0, h), slice(0, w))
    slices = np.flatnonzero(per_slice >= 0.005 * per_slice.max())
    box = []
    for size, roi, counts in ((h, roi_size[0], fg.sum(dim=(0, 2))), (w, roi_size[1], fg.sum(dim=(0, 1)))):
        counts = counts.numpy()
        keep = np.flatnonzero(counts >= 0.005 * counts.max())
        stride = max(int(roi * (1 - overlap)), 1)  # MONAI's scan interval
        margin = roi - stride
        box.append(_aligned_range(int(keep[0]) - margin, int(keep[-1]) + 1 + margin, size, roi, stride))
    return slices, (box[0], box[1])


def predict_stack(loaded: LoadedModel, stack: torch.Tensor, *, batch_size: int = 8,
                  device: torch.device | None = None, overlap: float | None = None,
                  crop_to_head: bool = True, roi_mask: torch.Tensor | None = None,
                  windows_per_pass: int | None = None, extra_inputs: Mapping[str, torch.Tensor] | None = None,
                  mc_dropout: bool = False, members: bool = False) -> Generator[int, None, torch.Tensor]:
    """Generator over batches of normalised slices ``(S, H, W)`` at the model's spacing.

    Each batch of slices is predicted with MONAI's ``sliding_window_inference``: windows
    of ``loaded.roi_size`` (the training patch size), overlap ``overlap`` (default
    ``loaded.overlap``), Gaussian blending; ``windows_per_pass`` windows go through the
    network at a time (default :data:`WINDOWS_PER_PASS` of the device). A 2.5D model
    (``config.context_slices = k > 0``) gets each slice with its ``k`` neighbours on each
    side as channels (:func:`~napari_pvs.engine.preprocess.slice_context`). With ``crop_to_head`` only the slices and in-plane box of :func:`head_box`
    are predicted (probability 0 elsewhere; inside the box the same as without it). With
    ``roi_mask`` (bool ``(S, H, W)``), windows holding no True pixel are not run (MONAI
    hands the predictor the mask's windows as ``condition``). The network receives the
    batch dict ``{"image": windows, **extra_inputs}``. With ``mc_dropout`` the network's
    dropout layers stay active (Monte-Carlo dropout: each call is one stochastic sample;
    seed torch before it for a reproducible one); the rest of it is in eval mode.
    With ``members`` (an ``ensemble`` model only) the members' own probabilities come too,
    from the same windows in the same pass
    (:meth:`~napari_pvs.engine.models.ensemble.EnsembleNet.forward_members`).

    Yields the number of slices done after each batch; returns the probability stack
    ``(S, H, W)`` float32 (CPU), or with ``members`` ``(1 + n_members, S, H, W)``: the
    ensemble's probability, then each member's.

    Out of accelerator memory, the same slices are predicted again with half the windows a
    pass (the result is the same), down to one window.

    Raises
    ------
    ValueError
        ``members`` with a model that is not an ensemble.
    PVSInputError
        Out of memory even with one window a pass.
    """
    if members and not hasattr(loaded.model, "forward_members"):
        raise ValueError(f"members=True needs an ensemble checkpoint, got a {loaded.name!r} model")
    if device is None:
        param = next(iter(loaded.model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    model = loaded.model.to(device).eval()
    if mc_dropout:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.dropout._DropoutNd):
                m.train()
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    extra = dict(extra_inputs or {})
    per_pass = int(windows_per_pass or WINDOWS_PER_PASS.get(device.type, 8))
    overlap = loaded.overlap if overlap is None else float(overlap)
    context = int(getattr(loaded.config, "context_slices", 0))

    def run(windows: torch.Tensor) -> torch.Tensor:
        if channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last)
        batch = {"image": windows, **extra}
        out = model.forward_members(batch) if members else model(batch)
        return out[0] if isinstance(out, (list, tuple)) else out

    def predictor(windows: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is None:
            return run(windows)
        keep = condition.flatten(1).any(dim=1)
        out = windows.new_full((windows.shape[0], n_out, *windows.shape[2:]), _SKIPPED_LOGIT)
        if keep.any():
            out[keep] = run(windows[keep]).to(out.dtype)
        return out

    n_maps = 1 + (loaded.config.n_members if members else 0)  # ensemble, then each member
    n_out = loaded.config.out_channels * n_maps
    out = torch.zeros((n_maps, *stack.shape), dtype=torch.float32)
    n = int(stack.shape[0])
    if bool(getattr(loaded.config, "whole_slice", False)):
        return (yield from _predict_whole_slices(loaded, stack, run, out, batch_size=batch_size, device=device,
                                                 crop_to_head=crop_to_head, roi_mask=roi_mask, context=context,
                                                 members=members))
    from monai.inferers import sliding_window_inference  # here: importing MONAI takes seconds

    if crop_to_head:
        todo, (rows, cols) = head_box(stack, tuple(loaded.roi_size), overlap)
    else:
        todo, (rows, cols) = np.arange(n), (slice(0, stack.shape[1]), slice(0, stack.shape[2]))
    if todo.size == 0:
        yield n
        return out if members else out[0]
    for start in range(0, todo.size, batch_size):
        idx = torch.as_tensor(todo[start:start + batch_size])
        batch = slice_context(stack, idx, context)[:, :, rows, cols].to(device)
        kwargs = {} if roi_mask is None else {"condition": roi_mask[idx][:, None, rows, cols].to(device)}
        while True:
            try:
                with torch.inference_mode(), autocast(device):
                    logits = sliding_window_inference(batch, tuple(loaded.roi_size), per_pass, predictor,
                                                      overlap=overlap, mode="gaussian", **kwargs)
                break
            except RuntimeError as exc:      # out of GPU memory: fewer windows at a time, same result
                if not is_out_of_memory(exc):
                    raise
                free_cached_memory(device)
                if per_pass == 1:
                    raise PVSInputError(f"out of {device.type} memory even with one window at a time "
                                        f"({tuple(loaded.roi_size)}); run on the CPU (--device cpu)") from None
                per_pass = max(1, per_pass // 2)
                log.warning("out of %s memory: now %d windows a pass", device.type, per_pass)
        channels = logits[:, ::loaded.config.out_channels].float()  # channel 0 of each map
        out[:, idx, rows, cols] = torch.sigmoid(channels).transpose(0, 1).cpu()
        yield n if start + batch_size >= todo.size else int(idx[-1]) + 1
    return out if members else out[0]


def whole_slice_box(stack: torch.Tensor, roi_mask: torch.Tensor | None, divisor: int,
                    margin: int = 8) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Slices and in-plane box that a whole-slice model is run on.

    The box is the bounding box of ``roi_mask`` (bool ``(S, H, W)``; else of the pixels
    above :data:`BACKGROUND_LEVEL`) grown by ``margin`` pixels and then to a multiple of
    ``divisor`` where the slice allows it; the slices are those holding a True (or
    foreground) pixel.

    Returns
    -------
    (np.ndarray, (slice, slice))
        Slice indices (int64, ascending) and the ``(rows, cols)`` box.
    """
    fg = roi_mask if roi_mask is not None else stack > BACKGROUND_LEVEL
    todo = torch.nonzero(fg.flatten(1).any(dim=1)).flatten().numpy()
    if todo.size == 0:
        return todo, (slice(0, 0), slice(0, 0))
    box = []
    for size, counts in ((stack.shape[1], fg.sum(dim=(0, 2))), (stack.shape[2], fg.sum(dim=(0, 1)))):
        keep = torch.nonzero(counts).flatten()
        lo, hi = max(0, int(keep[0]) - margin), min(size, int(keep[-1]) + 1 + margin)
        need = -(hi - lo) % divisor          # grow to a multiple of the divisor, within the slice
        grow = min(need, size - hi)
        hi, lo = hi + grow, max(0, lo - (need - grow))
        box.append(slice(lo, hi))
    return todo, (box[0], box[1])


def _predict_whole_slices(loaded: LoadedModel, stack: torch.Tensor, run: Callable, out: torch.Tensor, *,
                          batch_size: int, device: torch.device, crop_to_head: bool,
                          roi_mask: torch.Tensor | None, context: int,
                          members: bool) -> Generator[int, None, torch.Tensor]:
    """:func:`predict_stack` for a model without normalisation layers
    (``config.whole_slice``): each slice's brain box in one pass, zero-padded to the
    model's divisor, instead of overlapping windows. Slices outside the ROI (or the head)
    keep probability 0."""
    n = int(stack.shape[0])
    divisor = int(loaded.config.divisor)
    if crop_to_head:
        todo, (rows, cols) = whole_slice_box(stack, roi_mask, divisor)
    else:
        todo, (rows, cols) = np.arange(n), (slice(0, stack.shape[1]), slice(0, stack.shape[2]))
    if todo.size == 0:
        yield n
        return out if members else out[0]
    per_pass = max(1, int(batch_size))
    for start in range(0, todo.size, batch_size):
        idx = torch.as_tensor(todo[start:start + batch_size])
        batch = slice_context(stack, idx, context)[:, :, rows, cols]
        h, w = batch.shape[-2:]
        batch = torch.nn.functional.pad(batch, (0, -w % divisor, 0, -h % divisor))
        parts, i = [], 0
        while i < batch.shape[0]:
            try:
                with torch.inference_mode(), autocast(device):
                    parts.append(run(batch[i:i + per_pass].to(device)).float().cpu())
                i += per_pass
            except RuntimeError as exc:      # out of GPU memory: fewer slices a pass, same result
                if not is_out_of_memory(exc) or per_pass == 1:
                    raise
                free_cached_memory(device)
                per_pass = max(1, per_pass // 2)
                log.warning("out of %s memory: now %d slices a pass", device.type, per_pass)
        logits = torch.cat(parts)[..., :h, :w]
        out[:, idx, rows, cols] = torch.sigmoid(logits[:, ::loaded.config.out_channels]).transpose(0, 1)
        yield n if start + batch_size >= todo.size else int(idx[-1]) + 1
    return out if members else out[0]


def segment_iter(loaded: LoadedModel, image: Volume, *, batch_size: int = 8, threshold: float = 0.5,
                 device: str | torch.device | None = None, overlap: float | None = None,
                 crop_to_head: bool = True, brain_only: bool = True, windows_per_pass: int | None = None,
                 outside_brain_zero: bool = True, wide_csf_zero: bool = True,
                 members: bool = False) -> Generator[InferenceProgress, None, Prediction]:
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
    overlap : float, optional
        Sliding-window overlap; default the checkpoint's (0.25).
    crop_to_head : bool
        Predict only inside the head's bounding box (:func:`head_box`); default True.
    brain_only : bool
        Skip the windows that hold no voxel of the (dilated) brain mask; default True.
    windows_per_pass : int, optional
        Windows per forward pass; default :data:`WINDOWS_PER_PASS` of the device.
    outside_brain_zero : bool
        Set the probability to 0 outside the brain mask (PVS lie in the brain; without
        it, windows that touch the brain also report detections outside it: 16-55 per
        scan on the shared real T2s). Ignored when no brain mask is found. Default True.
    wide_csf_zero : bool
        Set the probability to 0 in CSF spaces wider than 4 mm (ventricles, cisterns,
        wide sulci; :func:`~napari_pvs.engine.anatomy.wide_csf`), where no PVS can lie.
        Ignored when no brain mask is found or the brain's intensities do not separate
        into three classes. Default True.
    members : bool
        Also return each ensemble member's probability (``Prediction.member_probs``,
        ``Prediction.agreement``), from the same pass at no extra network cost. Needs an
        ``ensemble`` checkpoint. Default False.

    Returns (as the generator's return value)
    ------------------------------------------
    Prediction
        Probability and mask on the source grid ``(Z, Y, X)``.

    Raises
    ------
    ValueError
        ``members`` with a checkpoint that is not an ensemble.
    """
    t0 = time.perf_counter()
    dev = pick_device(device) if device is not None else None
    stack = axial_stack(image, normalize_percentile(image.data, loaded.percentiles))
    hw = stack.shape[1:]
    work_hw = resampled_hw(hw, inplane_spacing(image), loaded.spacing_mm)
    x = resample_stack(stack, work_hw)
    total = int(x.shape[0])
    yield InferenceProgress(0, total, time.perf_counter() - t0)
    roi = None
    brain = find_brain_mask(image) if (brain_only or outside_brain_zero or wide_csf_zero) else None
    if brain_only and brain is not None:
        # a whole-slice model runs on the ROI's box grown by 8 pixels: with everything outside the
        # brain set to 0 afterwards, the brain itself is ROI enough (no 3D dilation, 1.3 s saved)
        whole_slice = bool(getattr(loaded.config, "whole_slice", False)) and outside_brain_zero
        region = brain if whole_slice else dilate_mm(brain, BRAIN_MARGIN_MM, spacing_mm(image))
        roi = resample_stack(axial_stack(image, region.astype(np.float32)), work_hw) > 0
    # the wide-CSF mask (0.2-0.6 s of CPU) is found in a thread while the network runs (ONNX
    # Runtime and torch release the GIL): the same mask, ready sooner; a closed generator
    # waits for it, so no thread outlives the call
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-pvs-wide-csf") as pool:
        csf_job = pool.submit(find_wide_csf, image, brain) if brain is not None and wide_csf_zero else None
        gen = predict_stack(loaded, x, batch_size=batch_size, device=dev, overlap=overlap,
                            crop_to_head=crop_to_head, roi_mask=roi, windows_per_pass=windows_per_pass,
                            members=members)
        maps_work = yield from map_events(gen, lambda done: InferenceProgress(done, total, time.perf_counter() - t0))
        csf = csf_job.result() if csf_job is not None else None
    if not members:
        maps_work = maps_work[None]
    drop = None  # where every map is set to 0
    if brain is not None:
        drop = ~brain if outside_brain_zero else np.zeros_like(brain)
        if csf is not None:
            drop |= csf
    maps = []
    for m in maps_work:  # the ensemble's probability, then each member's
        p = resample_stack(m, hw).clamp_(0, 1).numpy()
        p = np.ascontiguousarray(from_axial_stack(image, p)).astype(np.float32)
        if drop is not None:
            p[drop] = 0.0
        maps.append(p)
    prob = maps[0]
    mask = (prob >= threshold).astype(np.uint8)
    return Prediction(prob=prob, mask=mask, threshold=threshold, seconds=time.perf_counter() - t0,
                      member_probs=np.stack(maps[1:]) if members else None)


def predict_volume(loaded: LoadedModel, image: Volume, *, batch_size: int = 8, threshold: float = 0.5,
                   device: str | torch.device | None = None, overlap: float | None = None,
                   crop_to_head: bool = True, brain_only: bool = True, windows_per_pass: int | None = None,
                   outside_brain_zero: bool = True, wide_csf_zero: bool = True, members: bool = False,
                   progress: Callable[[InferenceProgress], None] | None = None) -> Prediction:
    """Run :func:`segment_iter` to the end, calling ``progress`` with each event."""
    return run_to_end(segment_iter(loaded, image, batch_size=batch_size, threshold=threshold,
                                   device=device, overlap=overlap, crop_to_head=crop_to_head,
                                   brain_only=brain_only, windows_per_pass=windows_per_pass,
                                   outside_brain_zero=outside_brain_zero,
                                   wide_csf_zero=wide_csf_zero, members=members), progress)
