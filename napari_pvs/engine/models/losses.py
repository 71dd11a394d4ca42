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
from monai.losses import DeepSupervisionLoss, DiceLoss, MaskedDiceLoss

__all__ = ["downsample_label_max", "deep_supervision_loss", "default_dice_loss",
           "masked_dice_loss", "DiceBCELoss", "MaxPoolDeepSupervisionLoss"]


def default_dice_loss() -> DiceLoss:
    """The default soft Dice loss: sigmoid on the logits, Dice over the whole batch."""
    return DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5, batch=True)


def masked_dice_loss() -> MaskedDiceLoss:
    """:func:`default_dice_loss` restricted to a mask (MONAI ``MaskedDiceLoss``): voxels with
    mask 0 (ignored) contribute neither to the prediction nor to the target."""
    return MaskedDiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5, batch=True)


class DiceBCELoss(torch.nn.Module):
    """Soft Dice (:func:`default_dice_loss`) plus ``bce_weight`` x binary cross-entropy on the
    logits, optionally restricted to a mask (1 = counted, 0 = ignored).

    Dice alone on a rare class gives a network that starts by predicting nothing almost no
    gradient; the cross-entropy term does (nnU-Net's Dice + CE, Isensee et al., Nature Methods
    18, 2021, doi:10.1038/s41592-020-01008-z).

    ``forward(logits, target, mask=None)``: ``(B, 1, H, W)`` float tensors; returns a scalar.

    Example
    -------
    >>> loss = DiceBCELoss(1.0)
    >>> x = torch.zeros(2, 1, 8, 8); y = torch.zeros(2, 1, 8, 8); y[:, :, 3, 3] = 1
    >>> round(float(loss(x, y)), 3) > 0
    True
    """

    def __init__(self, bce_weight: float = 1.0):
        super().__init__()
        self.bce_weight = float(bce_weight)
        self.dice = default_dice_loss()
        self.masked_dice = masked_dice_loss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            dice = self.dice(logits, target)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        else:
            dice = self.masked_dice(logits, target, mask)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, weight=mask,
                                                                       reduction="sum") / mask.sum().clamp(min=1.0)
        return dice + self.bce_weight * bce


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


class MaxPoolDeepSupervisionLoss(DeepSupervisionLoss):
    """MONAI's ``DeepSupervisionLoss`` with max-pooled labels and normalised weights.

    MONAI's class down-samples the label by nearest-neighbour interpolation, which drops
    one-voxel-wide PVS; the seed paper max-pools instead ("highlighting foreground"), so
    :meth:`get_loss` uses :func:`downsample_label_max`. Weights are normalised to sum to 1
    (default: the plain mean over the outputs, as in the paper's implementation).

    ``forward(outputs, target, ignore=None)``: with an ``ignore`` map ``(B, 1, H, W)`` (1 =
    unknown, e.g. unlabelled real PVS-like objects), those voxels are left out of the loss
    with MONAI's ``MaskedDiceLoss``; the map is max-pooled like the label, so a
    down-sampled voxel that covers any ignored voxel is ignored.

    Parameters
    ----------
    loss : callable
        ``loss(logits, label) -> scalar``; default :func:`default_dice_loss`.
    weights : sequence of float, optional
        One weight per output; default equal weights.
    masked_loss : callable, optional
        ``masked_loss(logits, label, mask) -> scalar`` used when an ignore map is given;
        default :func:`masked_dice_loss`.

    Refer to: "Deep-learning-based segmentation of perivascular spaces on T2-weighted 3T
    MR images", Frontiers in Aging Neuroscience (2024); ``monai.losses.DeepSupervisionLoss``.
    """

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 weights: Sequence[float] | None = None, masked_loss: Callable | None = None):
        super().__init__(loss if loss is not None else default_dice_loss(), weight_mode="same",
                         weights=None if weights is None else [float(w) for w in weights])
        self.masked_loss = masked_loss if masked_loss is not None else masked_dice_loss()

    def get_weights(self, levels: int = 1) -> list[float]:
        if self.weights is not None:
            if len(self.weights) != levels:
                raise ValueError(f"got {len(self.weights)} weights for {levels} outputs")
            total = float(sum(self.weights))
            if total <= 0:
                raise ValueError(f"weights must have a positive sum, got {list(self.weights)}")
            return [w / total for w in self.weights]
        return [1.0 / levels] * levels

    def get_loss(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002 (MONAI's name)
        if input.ndim != 4 or input.shape[0] != target.shape[0]:
            raise ValueError(f"output shape {tuple(input.shape)} does not match target {tuple(target.shape)}")
        return self.loss(input, downsample_label_max(target, input.shape[-2:]).to(dtype=input.dtype))

    def get_masked_loss(self, input: torch.Tensor, target: torch.Tensor,  # noqa: A002
                        ignore: torch.Tensor) -> torch.Tensor:
        if input.ndim != 4 or input.shape[0] != target.shape[0]:
            raise ValueError(f"output shape {tuple(input.shape)} does not match target {tuple(target.shape)}")
        size = input.shape[-2:]
        keep = 1.0 - downsample_label_max(ignore, size)
        return self.masked_loss(input, downsample_label_max(target, size).to(dtype=input.dtype),
                                keep.to(dtype=input.dtype))

    def forward(self, input, target: torch.Tensor, ignore: torch.Tensor | None = None) -> torch.Tensor:  # noqa: A002
        outs = [input] if isinstance(input, torch.Tensor) else list(input)
        if not outs:
            raise ValueError("deep supervision loss: no outputs given")
        if target.ndim != 4:
            raise ValueError(f"target must have shape (B, 1, H, W), got {tuple(target.shape)}")
        target = target.float()
        weights = self.get_weights(len(outs))
        if ignore is not None:
            if tuple(ignore.shape) != tuple(target.shape):
                raise ValueError(f"ignore map shape {tuple(ignore.shape)} differs from the target's "
                                 f"{tuple(target.shape)}")
            ignore = ignore.float()
            return sum(w * self.get_masked_loss(o.float(), target, ignore)
                       for w, o in zip(weights, outs, strict=True))
        return sum(w * self.get_loss(o.float(), target) for w, o in zip(weights, outs, strict=True))


def deep_supervision_loss(
    outputs: torch.Tensor | Sequence[torch.Tensor],
    target: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Loss of one or several (deeply supervised) logit outputs against one label.

    Functional form of :class:`MaxPoolDeepSupervisionLoss`.

    Parameters
    ----------
    outputs : Tensor or sequence of Tensor
        ``(B, C, h, w)`` logits, or a list of them at full and lower resolutions (as
        ``mfnsde`` returns in train mode).
    target : torch.Tensor
        ``(B, 1, H, W)`` label in {0, 1} at full resolution; max-pooled to each output's
        ``(h, w)``.
    loss_fn : callable, optional
        Default MONAI ``DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5, batch=True)``.
    weights : sequence of float, optional
        One weight per output, normalised to sum to 1; default the plain mean.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Raises
    ------
    ValueError
        Empty ``outputs``, a batch size that differs from the target's, an output larger
        than the target, or ``weights`` of the wrong length or a non-positive sum.
    """
    return MaxPoolDeepSupervisionLoss(loss_fn, weights)(outputs, target)
