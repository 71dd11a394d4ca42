"""The spatial transform every registration method returns, and warping with it.

Convention (the "pull" direction, as in ITK, voxelmorph and MONAI ``Warp``): a
:class:`SpatialTransform` maps a point of the *fixed* image's world space to the point
of the *moving* image's world space whose intensity it takes::

    phi(p) = A @ (p + u(p))

with ``p`` in world RAS+ mm, ``A`` a 4x4 affine (fixed world -> moving world, mm) and
``u`` an optional dense displacement field (DDF) in mm, stored on a coarse grid (about
2 mm) that covers the fixed image. Warping the moving image onto the fixed grid samples
it at ``phi(p)`` for every fixed voxel centre ``p``; the DDF is interpolated (linearly)
to the fixed grid on the way, so it may be coarser than the images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from nibabel.affines import apply_affine, voxel_sizes
from scipy import ndimage as ndi

from ..errors import PVSInputError
from ..io import Volume

__all__ = ["SpatialTransform", "warp_volume", "warp_array", "resample_grid", "fixed_points"]


@dataclass(frozen=True)
class SpatialTransform:
    """A fixed-to-moving world mapping ``phi(p) = affine @ (p + ddf(p))``.

    Attributes
    ----------
    affine : np.ndarray
        ``(4, 4)`` float64, fixed world RAS+ mm -> moving world RAS+ mm.
    ddf : np.ndarray, optional
        ``(3, Z, Y, X)`` float32 displacement in mm, components in world ``(x, y, z)``
        RAS order, sampled at the voxel centres of the grid ``ddf_affine``; None for an
        affine-only transform.
    ddf_affine : np.ndarray, optional
        ``(4, 4)``: voxel ``(i, j, k)`` -> world RAS+ mm of the DDF grid (its array is
        ``(Z, Y, X)`` = ``(k, j, i)`` as everywhere in napari-pvs).
    method : str
        What produced it (``"affine"``, ``"classical"``, ``"acsgreg"``, ...).
    info : dict
        Method details (metric values, seconds, settings).
    """

    affine: np.ndarray
    ddf: np.ndarray | None = None
    ddf_affine: np.ndarray | None = None
    method: str = "affine"
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        a = np.asarray(self.affine, dtype=float)
        if a.shape != (4, 4):
            raise ValueError(f"affine must be (4, 4), got {a.shape}")
        if (self.ddf is None) != (self.ddf_affine is None):
            raise ValueError("ddf and ddf_affine go together")
        if self.ddf is not None and (self.ddf.ndim != 4 or self.ddf.shape[0] != 3):
            raise ValueError(f"ddf must be (3, Z, Y, X), got {self.ddf.shape}")

    @classmethod
    def identity(cls) -> SpatialTransform:
        """The identity (affine only)."""
        return cls(affine=np.eye(4), method="identity")

    # ------------------------------------------------------------------ points
    def displacement(self, points: np.ndarray) -> np.ndarray:
        """The DDF ``u`` at fixed world points ``(..., 3)`` RAS mm (linear interpolation,
        nearest value outside the DDF grid); zeros when there is no DDF."""
        pts = np.asarray(points, dtype=float)
        if self.ddf is None:
            return np.zeros_like(pts)
        ijk = apply_affine(np.linalg.inv(self.ddf_affine), pts.reshape(-1, 3))
        zyx = ijk[:, ::-1].T
        out = np.stack([ndi.map_coordinates(self.ddf[c], zyx, order=1, mode="nearest") for c in range(3)], -1)
        return out.reshape(pts.shape)

    def map_points(self, points: np.ndarray) -> np.ndarray:
        """``phi(p)``: fixed world points ``(..., 3)`` RAS mm -> moving world points (mm)."""
        pts = np.asarray(points, dtype=float)
        return apply_affine(self.affine, pts + self.displacement(pts))

    def inverse_points(self, points: np.ndarray, *, iterations: int = 30) -> np.ndarray:
        """``phi^-1(q)``: moving world points ``(..., 3)`` RAS mm -> fixed world points.

        Exact for an affine; with a DDF, the fixed-point iteration ``p <- A^-1 q - u(p)``
        (converges when the displacement's gradient is below 1, i.e. without folding)."""
        q = apply_affine(np.linalg.inv(self.affine), np.asarray(points, dtype=float))
        if self.ddf is None:
            return q
        p = q.copy()
        for _ in range(iterations):
            p = q - self.displacement(p)
        return p


def fixed_points(fixed_affine: np.ndarray, shape: tuple[int, int, int], zslice: slice | None = None) -> np.ndarray:
    """World RAS mm of a grid's voxel centres, ``(Z, Y, X, 3)`` (or the ``zslice`` rows of
    axis 0)."""
    z = np.arange(shape[0])[zslice if zslice is not None else slice(None)]
    zz, yy, xx = np.meshgrid(z, np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    return apply_affine(fixed_affine, np.stack([xx, yy, zz], -1).astype(float))


def warp_array(moving: np.ndarray, moving_affine: np.ndarray, fixed_affine: np.ndarray,
               fixed_shape: tuple[int, int, int], transform: SpatialTransform, *, order: int = 1,
               cval: float = 0.0, rows_per_chunk: int = 8) -> np.ndarray:
    """Sample a moving ``(Z, Y, X)`` array at ``phi(p)`` for every fixed voxel centre.

    Parameters
    ----------
    moving : np.ndarray
        ``(Z', Y', X')`` moving array (any numeric dtype).
    moving_affine, fixed_affine : np.ndarray
        ``(4, 4)`` voxel ``(i, j, k)`` -> world RAS+ mm of the two grids.
    fixed_shape : tuple
        ``(Z, Y, X)`` of the output.
    order : int
        Spline order: 0 (nearest; labels keep their values and dtype) or 1 (linear).
    cval : float
        Value outside the moving image.

    Returns
    -------
    np.ndarray
        ``(Z, Y, X)``; the moving dtype for ``order=0``, float32 otherwise.
    """
    inv_m = np.linalg.inv(moving_affine)
    out = np.empty(fixed_shape, dtype=moving.dtype if order == 0 else np.float32)
    src = moving if order == 0 else moving.astype(np.float32, copy=False)
    for z0 in range(0, fixed_shape[0], rows_per_chunk):
        zs = slice(z0, min(z0 + rows_per_chunk, fixed_shape[0]))
        pts = transform.map_points(fixed_points(fixed_affine, fixed_shape, zs))
        zyx = apply_affine(inv_m, pts)[..., ::-1]
        coords = np.moveaxis(zyx, -1, 0).reshape(3, -1)
        out[zs] = ndi.map_coordinates(src, coords, order=order, mode="constant", cval=cval,
                                      prefilter=False).reshape(out[zs].shape)
    return out


def warp_volume(moving: Volume, fixed: Volume, transform: SpatialTransform, *, order: int = 1,
                cval: float = 0.0) -> Volume:
    """The moving volume resampled onto the fixed volume's grid through ``transform``.

    Parameters
    ----------
    moving, fixed : Volume
        ``(Z, Y, X)`` volumes with their affines; any grids and orientations.
    order : int
        0 for label maps and masks (nearest neighbour, dtype kept), 1 for images (linear).

    Returns
    -------
    Volume
        On ``fixed``'s grid (affine and header), ``meta["warped_from"]`` the moving path.

    Raises
    ------
    PVSInputError
        Either volume is not 3D.
    """
    for v in (moving, fixed):
        if v.data.ndim != 3:
            raise PVSInputError(f"expected a 3D volume, got shape {v.data.shape}", v.path)
    data = warp_array(np.asarray(moving.data), moving.affine, fixed.affine, fixed.shape, transform,
                      order=order, cval=cval)
    return fixed.with_data(data, warped_from=str(moving.path) if moving.path else None)


def resample_grid(volume: Volume, spacing_mm: float, *, pad_mm: float = 0.0) -> tuple[np.ndarray, tuple[int, int, int]]:
    """An isotropic grid with the same axis directions and field of view as ``volume``.

    Returns
    -------
    (affine, shape)
        ``(4, 4)`` voxel -> world RAS mm and ``(Z, Y, X)``: ``spacing_mm`` voxels covering
        the volume's extent plus ``pad_mm`` on every side.
    """
    vs = voxel_sizes(volume.affine)                       # (i, j, k) mm
    dirs = volume.affine[:3, :3] / vs                     # unit columns
    extent = np.asarray(volume.shape[::-1], dtype=float) * vs + 2 * pad_mm
    n_ijk = np.maximum(1, np.ceil(extent / spacing_mm)).astype(int)
    # centre the new grid on the old one's centre
    centre = apply_affine(volume.affine, (np.asarray(volume.shape[::-1], dtype=float) - 1) / 2)
    aff = np.eye(4)
    aff[:3, :3] = dirs * spacing_mm
    aff[:3, 3] = centre - aff[:3, :3] @ ((n_ijk - 1) / 2)
    return aff, (int(n_ijk[2]), int(n_ijk[1]), int(n_ijk[0]))
