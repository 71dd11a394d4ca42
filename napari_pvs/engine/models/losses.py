"""Soft Dice loss with multi-scale deep supervision and max-pooled labels.

Following the seed paper ("Deep-learning-based segmentation of perivascular spaces on
T2-weighted 3T MR images", Frontiers in Aging Neuroscience, 2024), every lower-resolution
output is compared with the label down-sampled by *max-pooling* ("highlighting
foreground"): a PVS one voxel wide survives any down-sampling, where nearest-neighbour
or average down-sampling would drop or dilute it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

__all__ = ["downsample_label_max", "deep_supervision_loss", "default_dice_loss"]


def default_dice_loss() -> DiceLoss:
    """The default soft Dice loss: sigmoid on the logits, Dice over the whole batch."""
    return DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5, batch=True)


def downsample_label_max(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Max-pool a ``(B, C, H, W)`` label to spatial ``size = (h, w)``.

    A label voxel that is foreground anywhere in a pooling window makes the pooled voxel
    foreground, so thin structures survive. When ``H`` and ``W`` are multiples of ``h``
    and ``w`` this is ``max_pool2d`` with kernel = stride = the factor; otherwise
    ``adaptive_max_pool2d``. The same tensor is returned when the size already matches.

    Parameters
    ----------
    target : torch.Tensor
        ``(B, C, H, W)`` label; bool/int labels are converted to float32.
    size : (int, int)
        Output ``(h, w)``, each no larger than the input's.

    Returns
    -------
    torch.Tensor
        ``(B, C, h, w)`` float tensor.

    Raises
    ------
    ValueError
        If ``target`` is not 4D or ``size`` is larger than its spatial shape.
    """
    if target.ndim != 4:
        raise ValueError(f"target must have shape (B, C, H, W), got {tuple(target.shape)}")
    if not target.is_floating_point():
        target = target.float()
    h, w = (int(s) for s in size)
    H, W = int(target.shape[-2]), int(target.shape[-1])
    if (h, w) == (H, W):
        return target
    if h < 1 or w < 1 or h > H or w > W:
        raise ValueError(f"cannot max-pool a {H}x{W} label to {h}x{w}")
    if H % h == 0 and W % w == 0:
        k = (H // h, W // w)
        return F.max_pool2d(target, kernel_size=k, stride=k)
    return F.adaptive_max_pool2d(target, (h, w))


def deep_supervision_loss(
    outputs: torch.Tensor | Sequence[torch.Tensor],
    target: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Loss of one or several (deeply supervised) logit outputs against one label.

    Parameters
    ----------
    outputs : Tensor or sequence of Tensor
        ``(B, C, h, w)`` logits, or a list/tuple of them at full and lower resolutions
        (as returned by ``mfnsde`` in train mode).
    target : torch.Tensor
        ``(B, 1, H, W)`` (or ``(B, C, H, W)``) label in {0, 1}, at full resolution.
        For each output it is max-pooled to that output's ``(h, w)`` with
        :func:`downsample_label_max`.
    loss_fn : callable, optional
        ``loss_fn(logits, label) -> scalar``; defaults to MONAI's soft Dice loss
        ``DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5, batch=True)``.
    weights : sequence of float, optional
        One weight per output, normalised to sum to 1; default the plain mean.

    Returns
    -------
    torch.Tensor
        Scalar loss (differentiable w.r.t. the outputs).

    Raises
    ------
    ValueError
        If ``outputs`` is empty, a batch size differs from the target's, an output is
        larger than the target, or ``weights`` has the wrong length or a non-positive sum.
    """
    outs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    if not outs:
        raise ValueError("deep_supervision_loss: no outputs given")
    if target.ndim != 4:
        raise ValueError(f"target must have shape (B, 1, H, W), got {tuple(target.shape)}")
    if not target.is_floating_point():
        target = target.float()
    if weights is None:
        w = [1.0 / len(outs)] * len(outs)
    else:
        if len(weights) != len(outs):
            raise ValueError(f"got {len(weights)} weights for {len(outs)} outputs")
        total = float(sum(weights))
        if total <= 0:
            raise ValueError(f"weights must have a positive sum, got {list(weights)}")
        w = [float(x) / total for x in weights]
    if loss_fn is None:
        loss_fn = default_dice_loss()

    loss = outs[0].new_zeros(())
    for out, wk in zip(outs, w):
        if out.ndim != 4 or out.shape[0] != target.shape[0]:
            raise ValueError(
                f"output shape {tuple(out.shape)} does not match target {tuple(target.shape)}"
            )
        label = downsample_label_max(target, out.shape[-2:]).to(dtype=out.dtype)
        loss = loss + wk * loss_fn(out, label)
    return loss
