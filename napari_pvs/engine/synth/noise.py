"""Noise level of an MR image, for matching the noise of inserted synthetic PVS."""

from __future__ import annotations

import numpy as np

__all__ = ["estimate_noise_sigma", "blend_toward"]


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


def blend_toward(out: np.ndarray, hit: np.ndarray, weight: np.ndarray, level: float, sigma: float,
                 rng: np.random.Generator) -> None:
    """Move voxels ``hit`` of ``out`` a fraction ``weight`` of the way to ``level``, in place,
    keeping the image's noise level.

    ``new = base + w (level - base) + sigma sqrt(w (2 - w)) n`` with ``n`` standard normal:
    blending scales the voxel's own noise by ``1 - w``, and the added term tops it up to
    ``sigma`` in total. Used for synthetic PVS (level: CSF) and lesion mimics.

    Parameters
    ----------
    out : np.ndarray
        C-contiguous image of any shape (changed in place; its dtype is kept).
    hit : np.ndarray
        int flat indices into ``out``.
    weight : np.ndarray
        ``(len(hit),)`` weights in ``[0, 1]``.
    level : float
        Target intensity (image units).
    sigma : float
        Noise standard deviation (image units).
    rng : np.random.Generator
        Draws ``len(hit)`` standard normals.
    """
    flat = out.reshape(-1)
    w = np.asarray(weight, dtype=np.float64)
    base = flat[hit].astype(np.float64)
    noise = rng.standard_normal(hit.size)
    flat[hit] = (base + w * (level - base) + sigma * np.sqrt(w * (2.0 - w)) * noise).astype(out.dtype)
