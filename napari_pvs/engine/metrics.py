"""Voxel-wise overlap metrics between a predicted and a reference binary mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def overlap_metrics(pred: np.ndarray, truth: np.ndarray) -> OverlapMetrics:
    """Voxel-wise DSC = 2TP/(2TP+FP+FN), sensitivity = TP/(TP+FN), PPV = TP/(TP+FP).

    Both arrays: same shape, any dtype (nonzero = foreground). An empty denominator gives
    1.0 when both masks are empty and 0.0 otherwise.

    Raises
    ------
    ValueError
        Shapes differ.
    """
    p = np.asarray(pred) > 0
    t = np.asarray(truth) > 0
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from reference shape {t.shape}")
    tp = int(np.logical_and(p, t).sum())
    fp = int(np.logical_and(p, ~t).sum())
    fn = int(np.logical_and(~p, t).sum())

    def ratio(num: int, den: int) -> float:
        return float(num / den) if den else (1.0 if (fp + fn + tp) == 0 else 0.0)

    return OverlapMetrics(dsc=ratio(2 * tp, 2 * tp + fp + fn), sensitivity=ratio(tp, tp + fn),
                          ppv=ratio(tp, tp + fp), tp=tp, fp=fp, fn=fn)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Voxel-wise Dice similarity coefficient (DSC) of two binary masks."""
    return overlap_metrics(pred, truth).dsc
