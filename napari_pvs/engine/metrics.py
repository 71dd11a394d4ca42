"""Agreement of a predicted and a reference PVS mask: voxel overlap and detection matching.

* :func:`overlap_metrics`: voxel DSC, sensitivity and PPV. The confusion matrix comes from
  MONAI (``monai.metrics.get_confusion_matrix``); the ratios are computed here so that an
  empty denominator gives a defined value (1.0 when both masks are empty, else 0.0) where
  MONAI would give NaN.
* :func:`match_components`: one-to-one matching of connected components by IoU above
  :data:`IOU_THRESHOLD`, as in the VALDO challenge (Sudre C. H. et al., "Where is VALDO?
  VAscular Lesions Detection and segmentatiOn challenge at MICCAI 2021", Medical Image
  Analysis 91, 2024, doi:10.1016/j.media.2023.103029); the detection F1 of rater agreement
  and model comparison is built on it.

Example
-------
>>> import numpy as np
>>> from napari_pvs.engine.metrics import overlap_metrics
>>> a = np.zeros((2, 4, 4), np.uint8); a[0, :2, :2] = 1
>>> round(overlap_metrics(a, a).dsc, 3)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["OverlapMetrics", "overlap_metrics", "dice", "match_components", "IOU_THRESHOLD"]

#: VALDO's matching threshold on the IoU of two components
IOU_THRESHOLD = 0.1


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
    import torch     # here, not at module level: the project and rater code import this
    from monai.metrics import get_confusion_matrix    # module, and MONAI's import takes seconds

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


def match_components(labels_a: np.ndarray, n_a: int, labels_b: np.ndarray, n_b: int, *,
                     iou_threshold: float = IOU_THRESHOLD) -> tuple[list[tuple[int, int, float]], np.ndarray, np.ndarray]:
    """One-to-one matching of two labelled component maps by IoU.

    Parameters
    ----------
    labels_a, labels_b : np.ndarray
        int ``(Z, Y, X)`` component labels (0 background, 1..n).
    n_a, n_b : int
        Number of components in each.
    iou_threshold : float
        Pairs match when their IoU is above it.

    Returns
    -------
    matched : list of (label_a, label_b, iou), greedy by decreasing IoU
    best_a, best_b : float arrays ``(n + 1,)``: each component's largest IoU with any
        component of the other map.
    """
    if labels_a.shape != labels_b.shape:
        raise ValueError(f"component maps differ in shape: {labels_a.shape} vs {labels_b.shape}")
    size_a = np.bincount(labels_a.ravel(), minlength=n_a + 1)
    size_b = np.bincount(labels_b.ravel(), minlength=n_b + 1)
    both = (labels_a > 0) & (labels_b > 0)
    pairs, inter = np.unique(np.stack([labels_a[both], labels_b[both]]), axis=1, return_counts=True)
    best_a = np.zeros(n_a + 1)
    best_b = np.zeros(n_b + 1)
    cands = []
    for (la, lb), i in zip(pairs.T, inter, strict=True):
        iou = i / (size_a[la] + size_b[lb] - i)
        best_a[la] = max(best_a[la], iou)
        best_b[lb] = max(best_b[lb], iou)
        if iou > iou_threshold:
            cands.append((float(iou), int(la), int(lb)))
    used_a, used_b, matched = set(), set(), []
    for iou, la, lb in sorted(cands, reverse=True):
        if la not in used_a and lb not in used_b:
            used_a.add(la)
            used_b.add(lb)
            matched.append((la, lb, iou))
    return matched, best_a, best_b
