"""Informativeness of voxels, axial slices and predicted components from stochastic predictions.

The input is a stack of ``T`` stochastic PVS probability maps of the same region (Monte-Carlo
dropout passes or test-time augmentation members; :mod:`.uncertainty`). Per voxel:

* **predictive entropy** ``H[E_t p_t]``: total uncertainty of the mean prediction;
* **BALD** (mutual information between the label and the model weights)
  ``H[E_t p_t] - E_t H[p_t]``: the part of the uncertainty on which the stochastic
  members disagree (epistemic); high where more labels would change the model.

Both are in bits (binary entropy with ``log2``, so in ``[0, 1]``). They are aggregated per
axial slice as the mean over the slice's brain voxels (MONAI Label's epistemic strategy
uses the mean voxel entropy of a whole volume; here every slice gets its own score) and
per predicted component as the mean over its voxels. The **PVS load** of a slice is the
expected PVS area on it (sum of the mean probability times the pixel area, mm^2).

Refer to: Houlsby N. et al., "Bayesian Active Learning for Classification and Preference
Learning", arXiv:1112.5745, 2011 (BALD); Gal Y., Islam R., Ghahramani Z., "Deep Bayesian
Active Learning with Image Data", ICML 2017, arXiv:1703.02910 (MC dropout, BALD on images).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["binary_entropy", "predictive_entropy", "bald", "slice_means", "slice_load_mm2",
           "component_scores", "STRATEGIES"]

#: the selection strategies: uncertainty (``bald``, ``entropy``), ``random`` and ``load``
#: (highest predicted PVS load)
STRATEGIES = ("bald", "entropy", "random", "load")

_EPS = 1e-6


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy (bits) of a Bernoulli variable with probability ``p``; same shape, float32,
    0 at ``p`` in {0, 1}, 1 at 0.5."""
    p = np.clip(np.asarray(p, dtype=np.float32), _EPS, 1 - _EPS)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).astype(np.float32)


def _check_samples(samples: np.ndarray) -> np.ndarray:
    s = np.asarray(samples, dtype=np.float32)
    if s.ndim < 2 or s.shape[0] < 1:
        raise ValueError(f"samples must be (T, ...) with T >= 1 stochastic probability maps, got shape {s.shape}")
    if s.size and (np.nanmin(s) < 0 or np.nanmax(s) > 1):
        raise ValueError(f"samples must be probabilities in [0, 1], got [{np.nanmin(s):.3g}, {np.nanmax(s):.3g}]")
    return s


def predictive_entropy(samples: np.ndarray) -> np.ndarray:
    """Entropy (bits) of the mean of ``T`` stochastic probability maps.

    Parameters
    ----------
    samples : np.ndarray
        ``(T, ...)`` PVS probabilities in ``[0, 1]`` (e.g. ``(T, S, H, W)``).

    Returns
    -------
    np.ndarray
        float32, ``samples.shape[1:]``, in ``[0, 1]``.

    Raises
    ------
    ValueError
        Fewer than 2 dimensions or values outside ``[0, 1]``.
    """
    s = _check_samples(samples)
    return binary_entropy(s.mean(axis=0))


def bald(samples: np.ndarray) -> np.ndarray:
    """BALD mutual information (bits): entropy of the mean minus the mean entropy of the
    ``T`` members; 0 when all members agree, whatever their confidence.

    Parameters
    ----------
    samples : np.ndarray
        ``(T, ...)`` PVS probabilities in ``[0, 1]``.

    Returns
    -------
    np.ndarray
        float32, ``samples.shape[1:]``, in ``[0, 1]``.

    Raises
    ------
    ValueError
        As :func:`predictive_entropy`.

    Refer to: Houlsby N. et al., arXiv:1112.5745, 2011.
    """
    s = _check_samples(samples)
    mi = binary_entropy(s.mean(axis=0)) - binary_entropy(s).mean(axis=0)
    return np.clip(mi, 0.0, 1.0).astype(np.float32)


def slice_means(voxel_map: np.ndarray, brain: np.ndarray | None = None, *, min_pixels: int = 1) -> np.ndarray:
    """Mean of a ``(S, H, W)`` voxel map over each slice's brain pixels.

    Parameters
    ----------
    voxel_map : np.ndarray
        ``(S, H, W)`` (axial slices first), e.g. :func:`bald`.
    brain : np.ndarray, optional
        bool ``(S, H, W)``; default every pixel.
    min_pixels : int
        Slices with fewer brain pixels get NaN (not scored).

    Returns
    -------
    np.ndarray
        float64 ``(S,)``.

    Raises
    ------
    ValueError
        ``brain`` of another shape, or a map that is not 3D.
    """
    m = np.asarray(voxel_map, dtype=np.float64)
    if m.ndim != 3:
        raise ValueError(f"voxel_map must be (S, H, W), got shape {m.shape}")
    b = np.ones(m.shape, bool) if brain is None else np.asarray(brain, bool)
    if b.shape != m.shape:
        raise ValueError(f"brain mask shape {b.shape} differs from the map's {m.shape}")
    n = b.sum(axis=(1, 2))
    total = np.where(b, m, 0.0).sum(axis=(1, 2))
    out = np.full(m.shape[0], np.nan)
    ok = n >= max(int(min_pixels), 1)
    out[ok] = total[ok] / n[ok]
    return out


def slice_load_mm2(mean_prob: np.ndarray, pixel_area_mm2: float, brain: np.ndarray | None = None) -> np.ndarray:
    """Expected PVS area per axial slice (mm^2): the sum of the mean probability over the
    slice's brain pixels times the pixel area. ``mean_prob``: ``(S, H, W)``; returns
    float64 ``(S,)``."""
    p = np.asarray(mean_prob, dtype=np.float64)
    if brain is not None:
        p = np.where(np.asarray(brain, bool), p, 0.0)
    return p.sum(axis=(1, 2)) * float(pixel_area_mm2)


def component_scores(voxel_map: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``voxel_map`` over each predicted component.

    Parameters
    ----------
    voxel_map : np.ndarray
        E.g. :func:`bald` on the volume's grid.
    mask : np.ndarray
        bool: a binary prediction, split into connected components (26-connectivity in
        3D, 8 in 2D); integer: component labels already (1..n, 0 background), e.g.
        :class:`~napari_pvs.engine.candidates.Proposals` ``labels``.

    Returns
    -------
    labels : np.ndarray
        int32, ``mask.shape``: component id (1..n), 0 elsewhere.
    scores : np.ndarray
        float64 ``(n,)``: ``scores[i]`` belongs to component ``i + 1`` (0 for an id
        with no voxel).
    """
    mask = np.asarray(mask)
    if np.shape(voxel_map) != mask.shape:
        raise ValueError(f"voxel_map shape {np.shape(voxel_map)} differs from the mask's {mask.shape}")
    if mask.dtype == bool:
        labels, n = ndi.label(mask, structure=ndi.generate_binary_structure(mask.ndim, mask.ndim))
    else:
        labels, n = mask.astype(np.int32), int(mask.max(initial=0))
    if n == 0:
        return labels.astype(np.int32), np.zeros(0)
    scores = ndi.mean(np.asarray(voxel_map, dtype=np.float64), labels, index=np.arange(1, n + 1))
    return labels.astype(np.int32), np.nan_to_num(np.asarray(scores, dtype=np.float64))
