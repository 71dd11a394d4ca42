"""Partial-volume rendering of one synthetic PVS (tube or ellipsoid) on a voxel grid.

Refer to: Bernal J. et al., PVS digital reference object, Magnetic Resonance Imaging
(2022): tubes and ellipsoids rendered at sub-voxel resolution.
"""

from __future__ import annotations

import numpy as np

__all__ = ["render_pvs_fraction", "render_local", "tilted_direction", "wall_radius_factor"]


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float).reshape(3)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n == 0:
        raise ValueError(f"direction {tuple(v)} has no length")
    return v / n


def wall_radius_factor(t: np.ndarray, wall) -> np.ndarray | float:
    """Radius multiplier ``1 + sum_k a_k sin(w_k t + phi_k)`` along the axis (``t`` in mm
    from the centre), clipped to ``[0.3, 2]``; ``wall = None`` gives 1 (a smooth wall).

    ``wall`` is ``(amplitudes, wavenumbers_per_mm, phases)``, three equal-length
    sequences: low wavenumbers make an irregular wall, one larger amplitude at a period
    of 2-5 mm a beaded tube."""
    if wall is None:
        return 1.0
    amps, waves, phases = (np.asarray(v, dtype=float) for v in wall)
    f = 1.0 + sum(a * np.sin(w * t + p) for a, w, p in zip(amps, waves, phases, strict=True))
    return np.clip(f, 0.3, 2.0)


def render_local(shape_zyx, affine, centre_xyz, direction_xyz, width_mm, length_mm,
                  shape="tube", supersample_mm=0.25, wall=None):
    """Partial-volume fraction of one PVS in its bounding box.

    Returns ``(slices, frac, clipped)``: ``slices`` a (Z, Y, X) tuple of slices into
    the grid, ``frac`` float32 of the box's shape, ``clipped`` True when the PVS may
    reach outside the grid (``None, None, True`` if it is entirely outside). ``wall``
    modulates the radius along the axis (:func:`wall_radius_factor`; None: smooth).
    """
    if shape not in ("tube", "ellipsoid"):
        raise ValueError(f"shape must be 'tube' or 'ellipsoid', not {shape!r}")
    if width_mm <= 0 or length_mm <= 0 or supersample_mm <= 0:
        raise ValueError("width_mm, length_mm and supersample_mm must be positive")
    aff = np.asarray(affine, dtype=float)
    rot, trans = aff[:3, :3], aff[:3, 3]
    c = np.asarray(centre_xyz, dtype=float).reshape(3)
    u = _unit(direction_xyz)
    r = 0.5 * float(width_mm)
    r_nominal = r
    if wall is not None:     # bounding radius: the largest the modulation can make it
        r = r * min(2.0, 1.0 + float(np.abs(np.asarray(wall[0], dtype=float)).sum()))
    length = max(float(length_mm), float(width_mm))
    if shape == "tube":
        half = max(0.5 * length - r, 0.0)
    else:
        half = 0.5 * length
    vs = np.sqrt((rot ** 2).sum(axis=0))      # (i, j, k) spacing, mm
    n = [max(1, int(round(v / supersample_mm))) for v in vs]   # sub-samples per axis
    h = float(np.mean(vs / np.asarray(n)))    # sub-cell size (mm): width of the soft edge
    # world bounding box of the (bounding) capsule -> voxel index range
    ends = np.stack([c - half * u, c + half * u])
    lo, hi = ends.min(0) - r - h, ends.max(0) + r + h
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    ijk = (corners - trans) @ np.linalg.inv(rot).T
    zyx_lo = np.floor(ijk.min(0)[::-1] + 0.5).astype(int) - 1
    zyx_hi = np.floor(ijk.max(0)[::-1] + 0.5).astype(int) + 1
    dims = np.asarray(shape_zyx, dtype=int)
    clipped = bool((zyx_lo < 0).any() or (zyx_hi > dims - 1).any())
    zyx_lo = np.maximum(zyx_lo, 0)
    zyx_hi = np.minimum(zyx_hi, dims - 1)
    if (zyx_hi < zyx_lo).any():
        return None, None, True
    slices = tuple(slice(int(a), int(b) + 1) for a, b in zip(zyx_lo, zyx_hi, strict=True))
    kk, jj, ii = np.meshgrid(*(np.arange(s.start, s.stop, dtype=float) for s in slices),
                             indexing="ij")
    centres = (np.stack([ii, jj, kk], axis=-1) @ rot.T + trans) - c   # relative, world
    # candidate voxels: centre within (bounding radius + half voxel diagonal + soft edge);
    # the bounding capsule contains the ellipsoid
    half_diag = 0.5 * max(np.linalg.norm(rot @ np.array(sg, float))
                          for sg in ((1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1)))
    along = np.clip(centres @ u, -half, half)
    dist = np.linalg.norm(centres - along[..., None] * u, axis=-1)
    cand = dist <= r + half_diag + h
    frac = np.zeros(cand.shape, dtype=np.float32)
    if not cand.any():
        return slices, frac, clipped
    # sub-sample offsets (index units, centred sub-cells), to world
    grids = np.meshgrid(*(((np.arange(m) + 0.5) / m - 0.5) for m in n), indexing="ij")
    offs = np.stack([g.ravel() for g in grids], axis=-1) @ rot.T       # (n_sub, 3) world
    pts_c = centres[cand]
    out = np.empty(len(pts_c), dtype=np.float32)
    chunk = max(1, 1_000_000 // len(offs))
    for a in range(0, len(pts_c), chunk):
        p = pts_c[a:a + chunk, None, :] + offs[None, :, :]            # (m, n_sub, 3)
        t = p @ u
        if shape == "tube":
            ts = np.clip(t, -half, half)
            rr = r if wall is None else r_nominal * wall_radius_factor(ts, wall)
            sd = np.sqrt(((p - ts[..., None] * u) ** 2).sum(-1)) - rr   # exact signed distance (smooth wall)
        else:
            rr = r if wall is None else r_nominal * wall_radius_factor(t, wall)
            perp2 = np.maximum((p * p).sum(-1) - t * t, 0.0)
            k0 = np.sqrt((t / half) ** 2 + perp2 / rr ** 2)
            k1 = np.sqrt((t / half ** 2) ** 2 + perp2 / rr ** 4)
            with np.errstate(invalid="ignore", divide="ignore"):
                sd = np.where(k1 > 1e-12, k0 * (k0 - 1.0) / k1, -rr)   # close to the surface
        # area of each sub-cell inside the shape (box filter across a locally flat edge)
        out[a:a + chunk] = np.clip(0.5 - sd / h, 0.0, 1.0).mean(axis=1)
    frac[cand] = out
    return slices, frac, clipped


def render_pvs_fraction(shape_zyx, affine, centre_xyz, direction_xyz, width_mm, length_mm,
                        shape: str = "tube", supersample_mm: float = 0.25) -> np.ndarray:
    """Partial-volume fraction of a single PVS on a voxel grid.

    Each voxel is split into ``round(voxel_size / supersample_mm)`` sub-cells per axis
    (at least one; a 0.5 x 0.5 x 4 mm voxel gets 2 x 2 x 16); the fraction is the mean
    over the sub-cells of the area of each sub-cell inside the shape, computed from the
    signed distance of its centre to the surface (a box filter across a locally flat
    edge: exact for the capsule's distance, a close approximation for the ellipsoid).
    This anti-aliasing keeps volumes within about 3 % even for a 1 mm PVS on a 0.5 mm
    grid, where a plain inside/outside count errs by 10-15 %. Voxels touched only by
    the soft edge (within half a sub-cell of the surface) get a small fraction.

    Parameters
    ----------
    shape_zyx : tuple of int
        Grid shape ``(Z, Y, X)``.
    affine : array (4, 4)
        NIfTI voxel ``(i, j, k)`` -> world RAS mm.
    centre_xyz : array (3,)
        PVS centre, world mm.
    direction_xyz : array (3,)
        PVS axis, world (normalised here; sign irrelevant).
    width_mm, length_mm : float
        Diameter and end-to-end length in mm (length below width is raised to width).
    shape : {'tube', 'ellipsoid'}
        Capsule (points within ``width / 2`` of a segment) or ellipsoid with semi-axes
        ``length / 2, width / 2, width / 2``.
    supersample_mm : float
        Sub-sampling step in mm.

    Returns
    -------
    np.ndarray
        float32 ``(Z, Y, X)`` in ``[0, 1]``.
    """
    out = np.zeros(tuple(int(s) for s in shape_zyx), dtype=np.float32)
    slices, frac, _ = render_local(shape_zyx, affine, centre_xyz, direction_xyz, width_mm,
                                    length_mm, shape, supersample_mm)
    if slices is not None:
        out[slices] = frac
    return out


# ----------------------------------------------------------------------------- simulate


def tilted_direction(axis: np.ndarray, max_tilt_rad: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector within ``max_tilt_rad`` of ``axis``, uniform on the spherical cap."""
    cos_t = rng.uniform(np.cos(max_tilt_rad), 1.0)
    phi = rng.uniform(0.0, 2.0 * np.pi)
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    sin_t = np.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    d = cos_t * axis + sin_t * (np.cos(phi) * e1 + np.sin(phi) * e2)
    return d / np.linalg.norm(d)
