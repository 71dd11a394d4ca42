"""Fitting the non-learned ``frangi`` baseline: its threshold, chosen on training data.

:func:`fit_frangi` has the signature and the events of
:func:`~napari_pvs.engine.training.train` (``train`` hands ``model="frangi"`` to it), so the
CLI, the Train widget and the model comparison fit it like any network: the same data
preparation (:class:`~napari_pvs.engine.training.segmentation.SegmentationTask`: axial
slices, per-volume normalisation, one in-plane working spacing), the same checkpoint.

The fit: the 2D Frangi vesselness of every slice of the training volumes; inside the
brain less the CSF spaces wider than 4 mm (where inference keeps predictions,
:func:`~napari_pvs.engine.anatomy.brain_mask`, :func:`~napari_pvs.engine.anatomy.wide_csf`)
and outside the ignore masks, the threshold with the best voxel DSC over all training voxels (1000
thresholds, from cumulative histograms); the validation DSC is that threshold's DSC on the
validation volumes.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..anatomy.regions import parenchyma_mask
from ..io import Volume
from ..models.frangi import FrangiBaseline, frangi_vesselness
from ..preprocess import axial_stack, inplane_spacing, resample_stack, resampled_hw
from .loop import TrainEvent, TrainResult

__all__ = ["fit_frangi"]

_BINS = 1000


def _brain_stack(image: Volume, hw: tuple[int, int], padded: tuple[int, int]) -> torch.Tensor:
    """Where inference keeps predictions (:func:`~napari_pvs.engine.anatomy.parenchyma_mask`),
    as an axial stack at the working spacing, padded like the task's stacks."""
    region = parenchyma_mask(image)
    if region is None:
        return torch.ones((image.shape[image.axial_axis], *padded), dtype=torch.bool)
    b = resample_stack(axial_stack(image, region.astype(np.float32)), hw) > 0.5
    out = torch.zeros((b.shape[0], *padded), dtype=torch.bool)
    out[:, : hw[0], : hw[1]] = b
    return out


def fit_frangi(images: Sequence[Volume], masks: Sequence, config, checkpoint_path: str | Path, *,
               ignore_masks: Sequence[np.ndarray | None] | None = None, val_indices: Sequence[int] | None = None,
               metadata: dict | None = None) -> Generator[TrainEvent, None, TrainResult]:
    """Fit the ``frangi`` baseline's threshold, yielding :class:`~.loop.TrainEvent`.

    Parameters
    ----------
    images, masks, ignore_masks, val_indices, metadata
        As for :func:`~napari_pvs.engine.training.train`: T2 (or T1) volumes ``(Z, Y, X)``
        and binary PVS masks on the same grids.
    config : TrainConfig
        ``model="frangi"``; ``model_config`` is a :class:`~napari_pvs.engine.models.FrangiConfig`.
    checkpoint_path : str or Path
        Where the checkpoint is written (atomically).

    Yields
    ------
    TrainEvent
        ``"start"``, a ``"step"`` per volume, one ``"epoch"`` with the validation DSC, ``"done"``.

    Returns
    -------
    TrainResult

    Raises
    ------
    PVSInputError
        As :class:`~napari_pvs.engine.training.segmentation.SegmentationTask`: no volumes,
        mismatched masks, no PVS voxel.
    """
    from .segmentation import SegmentationTask

    t0 = time.perf_counter()
    task = SegmentationTask(images, masks, config, ignore_masks=ignore_masks, val_indices=val_indices,
                            metadata=metadata)
    model = FrangiBaseline(task.model_config)
    todo = sorted(set(task.train_idx) | set(task.val_idx))
    total = len(todo)
    yield TrainEvent("start", total_steps=total, metric_name="DSC",
                     message=f"fitting the Frangi threshold on {len(task.train_idx)} volume(s), validating on "
                             f"{len(task.val_idx)}, spacing {task.spacing:.3f} mm")
    edges = np.linspace(0.0, 1.0, _BINS + 1)
    hists: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for step, i in enumerate(todo, start=1):
        d = task.prepare_volume(i)
        k, n = task.context, images[i].shape[images[i].axial_axis]  # 2.5D pads k slices at each end
        stack, label, ignore = d["image"][0, k:k + n], d["label"][0, k:k + n] > 0, d["ignore"][0, k:k + n] > 0
        hw = resampled_hw(axial_stack(images[i]).shape[1:], inplane_spacing(images[i]), task.spacing)
        keep = _brain_stack(images[i], hw, tuple(stack.shape[1:])) & ~ignore
        slices = np.flatnonzero(keep.flatten(1).any(1).numpy())
        v = frangi_vesselness(stack[slices].numpy(), task.model_config)
        inside, lab = keep[slices].numpy(), label[slices].numpy()
        pos = np.histogram(np.clip(v[inside & lab], 0, 1), edges)[0]
        allv = np.histogram(np.clip(v[inside], 0, 1), edges)[0]
        hists[i] = (pos, allv)
        yield TrainEvent("step", step=step, total_steps=total, elapsed_s=time.perf_counter() - t0,
                         message=f"vesselness of volume {i + 1}/{len(images)}")

    def dsc_per_threshold(indices) -> np.ndarray:
        pos = sum(hists[i][0] for i in indices)
        allv = sum(hists[i][1] for i in indices)
        tp = np.cumsum(pos[::-1])[::-1]          # voxels >= edges[b] that are PVS
        called = np.cumsum(allv[::-1])[::-1]     # voxels >= edges[b]
        n_pos = pos.sum()
        return 2 * tp / np.maximum(called + n_pos, 1)

    train_dsc = dsc_per_threshold(task.train_idx)
    best = int(np.argmax(train_dsc[1:]) + 1)   # a threshold of 0 calls the whole brain
    threshold = float(edges[best])
    val = float(dsc_per_threshold(task.val_idx)[best])
    model.threshold.fill_(threshold)
    task.sources = task.source_records()
    metrics = {"metric": "DSC", "best_val_metric": val, "train_dsc": float(train_dsc[best]),
               "threshold": threshold, "epoch": 1, "step": total, "history": []}
    ckpt = task.save_checkpoint(Path(checkpoint_path), model, metrics)
    seconds = time.perf_counter() - t0
    yield TrainEvent("epoch", epoch=1, step=total, total_steps=total, val_metric=val, best_val_metric=val,
                     elapsed_s=seconds, checkpoint=str(ckpt),
                     message=f"threshold {threshold:.3f} (training DSC {train_dsc[best]:.3f})")
    yield TrainEvent("done", epoch=1, step=total, total_steps=total, val_metric=val, best_val_metric=val,
                     elapsed_s=seconds, checkpoint=str(ckpt), message="fitted")
    return TrainResult(checkpoint=ckpt, best_val_metric=val, metric_name="DSC", epochs_done=1, steps_done=total,
                       seconds=seconds, val_seconds=0.0, stop_reason="fitted",
                       history=[{"epoch": 1, "step": total, "loss": None, "val_metric": val, "elapsed_s": seconds}])
