"""Shared pre-processing for training and inference: axial slicing, in-plane resampling
and per-volume intensity normalisation.

Training and inference work on 2D axial slices at one in-plane pixel spacing (mm) that
is stored in the checkpoint: each volume is resampled in-plane to that spacing on the
way in and the probability map is resampled back onto the source grid on the way out,
so a model trained at 0.5 mm still works on a 0.9 mm scan. The slice axis is never
resampled (clinical slices are 1-4 mm thick and are segmented one by one).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .io import Volume

__all__ = [
    "slice_context",
    "axial_stack",
    "from_axial_stack",
    "inplane_spacing",
    "resampled_hw",
    "resample_stack",
    "normalize_percentile",
]


def axial_stack(volume: Volume, data: np.ndarray | None = None) -> np.ndarray:
    """View of ``data`` (default ``volume.data``) with the axial axis first: ``(S, H, W)``,
    the in-plane axes keeping their ``(Z, Y, X)`` order. For axially acquired scans
    (axial axis 0) this is the array itself."""
    arr = volume.data if data is None else data
    return np.moveaxis(arr, volume.axial_axis, 0)


def from_axial_stack(volume: Volume, stack: np.ndarray) -> np.ndarray:
    """Inverse of :func:`axial_stack`: ``(S, H, W)`` back to ``(Z, Y, X)``."""
    return np.moveaxis(stack, 0, volume.axial_axis)


def inplane_spacing(volume: Volume) -> tuple[float, float]:
    """Pixel spacing ``(H, W)`` in mm of the axial slices of :func:`axial_stack`."""
    vs = volume.voxel_size
    others = [a for a in range(3) if a != volume.axial_axis]
    return float(vs[others[0]]), float(vs[others[1]])


def resampled_hw(hw: tuple[int, int], spacing: tuple[float, float], target_mm: float) -> tuple[int, int]:
    """In-plane size ``(H', W')`` after resampling pixels of ``spacing`` mm to ``target_mm``."""
    return tuple(max(1, int(round(n * s / target_mm))) for n, s in zip(hw, spacing, strict=True))  # type: ignore[return-value]


def resample_stack(stack: np.ndarray | torch.Tensor, out_hw: tuple[int, int], *,
                   mode: str = "bilinear") -> torch.Tensor:
    """Resample every slice of a ``(S, H, W)`` stack to ``(S, H', W')`` (float32 tensor).

    Bilinear (``align_corners=False``, anti-aliased when shrinking) keeps pixel centres
    consistent between the forward and the backward resampling. Returns the input
    unchanged (as a float tensor) when the size already matches.
    """
    # MONAI's Spacing/Resize resample whole 3D volumes (or need a per-slice loop); here the
    # slice axis must stay untouched and the forward and backward resampling must use the
    # same pixel-centre convention, which one batched F.interpolate over the slices gives.
    t = torch.as_tensor(np.ascontiguousarray(stack) if isinstance(stack, np.ndarray) else stack)
    t = t.float()
    if tuple(t.shape[-2:]) == tuple(out_hw):
        return t
    shrink = out_hw[0] < t.shape[-2] or out_hw[1] < t.shape[-1]
    out = F.interpolate(t[:, None], size=tuple(out_hw), mode=mode, align_corners=False,
                        antialias=bool(shrink and mode in ("bilinear", "bicubic")))
    return out[:, 0]


def normalize_percentile(data: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Per-volume intensity normalisation to roughly ``[0, 1]`` (float32, same shape).

    The low/high percentiles are taken over the foreground (voxels above the volume's
    mean/4, so the empty background of brain-extracted or padded scans does not count);
    values are mapped linearly so that they land at 0 and 1 (not clipped).
    """
    # MONAI's ScaleIntensityRangePercentiles takes the percentiles over every voxel; on
    # scans with large empty backgrounds that maps the tissue differently from scan to scan,
    # so the percentiles here are taken over the foreground only.
    arr = np.asarray(data, dtype=np.float32)
    fg = arr[arr > arr.mean() / 4]
    if fg.size < 10:
        fg = arr.ravel()
    lo, hi = np.percentile(fg, percentiles)
    scale = float(hi - lo) if hi > lo else 1.0
    return (arr - np.float32(lo)) / np.float32(scale)


def slice_context(stack: torch.Tensor, index: torch.Tensor | np.ndarray | list[int],
                  context_slices: int = 0) -> torch.Tensor:
    """2.5D network input: each slice with its ``k`` neighbours on each side as channels.

    Parameters
    ----------
    stack : torch.Tensor
        ``(S, H, W)`` axial slices.
    index : sequence of int
        ``B`` slice indices into ``stack``.
    context_slices : int
        ``k >= 0``; neighbours beyond the first or last slice repeat the edge slice.

    Returns
    -------
    torch.Tensor
        ``(B, 2k + 1, H, W)``, channel ``j`` holding slice ``index + j - k``; for ``k = 0``
        this is ``stack[index][:, None]``.
    """
    idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
    k = int(context_slices)
    offsets = torch.arange(-k, k + 1, dtype=torch.long)
    rows = (idx[:, None] + offsets[None, :]).clamp_(0, int(stack.shape[0]) - 1)  # (B, 2k+1)
    return stack[rows]
