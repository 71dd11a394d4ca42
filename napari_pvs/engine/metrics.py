"""Voxel-wise overlap metrics between a predicted and a reference binary mask.

The confusion matrix comes from MONAI (``monai.metrics.get_confusion_matrix``); the
ratios are computed here so that an empty denominator gives a defined value (1.0 when both
masks are empty, else 0.0) where MONAI would give NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import get_confusion_matrix

__all__ = ["OverlapMetrics", "overlap_metrics", "dice"]


@dataclass(frozen=True)
class OverlapMetrics:
    """DSC, sensitivity (recall) and PPV (precision) plus the voxel counts behind them."""

    dsc: float
    sensitivity: float
    ppv: float
    tp: int
    fp: int
    fn: int


def overlap_metrics(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> OverlapMetrics:
    """Voxel-wise DSC = 2TP/(2TP+FP+FN), sensitivity = TP/(TP+FN), PPV = TP/(TP+FP).

    Parameters
    ----------
    pred, truth : array or tensor
        Same shape (any number of dimensions, e.g. ``(Z, Y, X)``), any dtype; nonzero is
        foreground.

    Raises
    ------
    ValueError
        Shapes differ.
    """
    p = torch.as_tensor(np.asarray(pred) if not isinstance(pred, torch.Tensor) else pred) > 0
    t = torch.as_tensor(np.asarray(truth) if not isinstance(truth, torch.Tensor) else truth) > 0
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {tuple(p.shape)} differs from reference shape {tuple(t.shape)}")
    # MONAI wants (B, C, ...) one-hot: one batch item, one (foreground) channel
    cm = get_confusion_matrix(p.reshape(1, 1, -1).float(), t.reshape(1, 1, -1).float(),
                              include_background=True)
    tp, fp, _tn, fn = (int(v) for v in cm.reshape(4).tolist())

    def ratio(num: int, den: int) -> float:
        return float(num / den) if den else (1.0 if (fp + fn + tp) == 0 else 0.0)

    return OverlapMetrics(dsc=ratio(2 * tp, 2 * tp + fp + fn), sensitivity=ratio(tp, tp + fn),
                          ppv=ratio(tp, tp + fp), tp=tp, fp=fp, fn=fn)


def dice(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> float:
    """Voxel-wise Dice similarity coefficient (DSC) of two binary masks."""
    return overlap_metrics(pred, truth).dsc
