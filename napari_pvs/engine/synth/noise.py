"""Noise level of an MR image, for matching the noise of inserted synthetic PVS."""

from __future__ import annotations

import numpy as np

__all__ = ["estimate_noise_sigma"]


def estimate_noise_sigma(data: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust noise standard deviation from neighbour differences.

    For each axis, the differences between neighbouring voxels (both inside ``mask``)
    have variance ``2 sigma^2`` where the signal is smooth; their median absolute
    deviation (times 1.4826 / sqrt 2) is robust to edges. The smallest estimate over the
    axes is returned (structure only inflates it; thick-slice axes are the worst).
    Spatially correlated noise (interpolated reconstructions) is underestimated.

    Parameters
    ----------
    data : np.ndarray
        2D or 3D image, any numeric dtype.
    mask : np.ndarray, optional
        bool, same shape: voxels to use (default all).

    Returns
    -------
    float
        Noise sigma in the image's intensity units (0.0 if nothing to measure).
    """
    data = np.asarray(data, dtype=np.float32)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape:
            raise ValueError(f"mask shape {mask.shape} differs from data shape {data.shape}")
    best = np.inf
    for ax in range(data.ndim):
        if data.shape[ax] < 2:
            continue
        lo = [slice(None)] * data.ndim
        hi = [slice(None)] * data.ndim
        lo[ax] = slice(None, -1)
        hi[ax] = slice(1, None)
        d = data[tuple(hi)] - data[tuple(lo)]
        if mask is not None:
            d = d[mask[tuple(hi)] & mask[tuple(lo)]]
        else:
            d = d.ravel()
        if d.size < 10:
            continue
        mad = float(np.median(np.abs(d - np.median(d))))
        best = min(best, 1.4826 * mad / np.sqrt(2.0))
    return 0.0 if not np.isfinite(best) else float(best)
