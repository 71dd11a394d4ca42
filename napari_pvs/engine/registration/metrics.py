"""Registration quality: label overlap, surface distance and deformation regularity.

* Dice per label and the 95th-percentile Hausdorff distance (HD95, mm; MONAI
  ``compute_hausdorff_distance`` with the voxel spacing), as in the Learn2Reg challenge
  (Hering et al., IEEE TMI 2023, doi:10.1109/TMI.2022.3213983);
* the Jacobian determinant of ``x -> x + u(x)``: the standard deviation of its log
  (SDlogJ) and the share of voxels where it is not positive (folding).
"""

from __future__ import annotations

import numpy as np

__all__ = ["dice_per_label", "hd95_mm", "jacobian_determinant", "sdlogj", "folding_fraction"]


def dice_per_label(a: np.ndarray, b: np.ndarray, labels) -> dict[int, float]:
    """Dice ``2|A∩B| / (|A|+|B|)`` of each label between two label maps on one grid.

    Parameters
    ----------
    a, b : np.ndarray
        Integer label maps, same shape.
    labels : iterable of int
        Labels to score; a label absent from both gives NaN.

    Raises
    ------
    ValueError
        The shapes differ.
    """
    if a.shape != b.shape:
        raise ValueError(f"label maps must have the same shape, got {a.shape} and {b.shape}")
    out = {}
    for lab in labels:
        x, y = a == lab, b == lab
        s = int(x.sum()) + int(y.sum())
        out[int(lab)] = float(2 * np.logical_and(x, y).sum() / s) if s else float("nan")
    return out


def hd95_mm(a: np.ndarray, b: np.ndarray, spacing_mm) -> float:
    """95th-percentile symmetric Hausdorff distance (mm) between two binary masks.

    Parameters
    ----------
    a, b : np.ndarray
        bool ``(Z, Y, X)`` masks on one grid.
    spacing_mm : sequence of float
        Voxel size along ``(Z, Y, X)`` in mm.

    Returns
    -------
    float
        HD95 in mm; NaN when either mask is empty.
    """
    import torch
    from monai.metrics import compute_hausdorff_distance

    if not a.any() or not b.any():
        return float("nan")
    ta = torch.from_numpy(np.asarray(a, bool))[None, None]
    tb = torch.from_numpy(np.asarray(b, bool))[None, None]
    d = compute_hausdorff_distance(ta, tb, percentile=95, spacing=[float(s) for s in spacing_mm])
    return float(d.item())


def jacobian_determinant(ddf: np.ndarray, grid_affine: np.ndarray) -> np.ndarray:
    """Jacobian determinant of ``x -> x + u(x)`` (world mm) by central differences.

    Parameters
    ----------
    ddf : np.ndarray
        ``(3, Z, Y, X)`` displacement in mm, components in world ``(x, y, z)`` RAS order.
    grid_affine : np.ndarray
        ``(4, 4)`` voxel ``(i, j, k)`` -> world RAS mm of the DDF grid (any orientation).

    Returns
    -------
    np.ndarray
        float32 ``(Z, Y, X)``; 1 where the field is a translation, <= 0 where it folds.
    """
    # d u_c / d (i, j, k): array axes 2, 1, 0, unit voxel steps
    d_ijk = np.stack([np.stack([np.gradient(ddf[c].astype(np.float32), axis=ax) for ax in (2, 1, 0)], 0)
                      for c in range(3)], 0)                    # (3 comp, 3 ijk, Z, Y, X)
    to_ijk = np.linalg.inv(np.asarray(grid_affine, float)[:3, :3])  # d ijk / d xyz
    j = np.einsum("cn...,nd->cd...", d_ijk, to_ijk.astype(np.float32))
    j += np.eye(3, dtype=np.float32)[:, :, None, None, None]
    det = (j[0, 0] * (j[1, 1] * j[2, 2] - j[1, 2] * j[2, 1])
           - j[0, 1] * (j[1, 0] * j[2, 2] - j[1, 2] * j[2, 0])
           + j[0, 2] * (j[1, 0] * j[2, 1] - j[1, 1] * j[2, 0]))
    return det.astype(np.float32)


def sdlogj(jac_det: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Standard deviation of ``log(clip(J, 1e-9))`` (over ``mask`` if given)."""
    j = jac_det if mask is None else jac_det[mask]
    return float(np.log(np.clip(j, 1e-9, None)).std())


def folding_fraction(jac_det: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of voxels (in ``mask`` if given) with a non-positive Jacobian determinant."""
    j = jac_det if mask is None else jac_det[mask]
    return float((j <= 0).mean()) if j.size else float("nan")
