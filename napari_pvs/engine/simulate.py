"""Synthetic perivascular spaces (PVS) inserted into real T2-weighted anatomy.

No public data set has manual PVS masks, so training data and voxel-level benchmarks
come from realistic PVS inserted into real T2 images with a known mask. The model
follows the PVS digital reference object of Bernal et al., 2022, Magnetic Resonance
Imaging, PVS digital reference object (Bernal J. et al., "A framework for jointly
assessing and reducing imaging artefacts automated cerebral small vessel disease
analysis"):

* each PVS is an elongated tube (a capsule: all points within ``width / 2`` of a
  segment, total end-to-end length ``length``) or an ellipsoid (semi-axes
  ``length / 2, width / 2, width / 2``), widths about 1-2.5 mm, lengths about 3-20 mm;
* basal-ganglia (BG) PVS run mostly superior-inferior; centrum-semiovale (CSO) PVS run
  radially, from the centre of the brain toward the cortex;
* the shape is rendered at sub-voxel resolution and averaged onto the image grid
  (partial volume): with 3-4 mm slices a vertical PVS is a dot in each slice, an
  in-plane one a faint line;
* the PVS take a CSF-like intensity scaled by a per-PVS contrast, plus Gaussian noise
  matched to the image's own noise;
* they are placed only in white matter and the basal ganglia, never in the ventricles,
  the cortex or an expert lesion mask.

Everything is deterministic from a seed. Geometry is computed in world (RAS+, mm)
coordinates from the image affine, so any orientation (LPS, RAS, oblique) works; the
data are never flipped or re-oriented.

Array convention: volumes are ``(Z, Y, X)`` (NIfTI ``(k, j, i)`` reversed), see
:mod:`napari_pvs.engine.io`.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu, threshold_otsu

from .errors import PVSInputError
from .io import Volume

__all__ = [
    "SimulationConfig",
    "SimulationResult",
    "simulate_pvs",
    "write_table_csv",
    "estimate_noise_sigma",
    "brain_mask",
    "tissue_regions",
    "render_pvs_fraction",
    "TABLE_COLUMNS",
    "REGION_NONE",
    "REGION_BG",
    "REGION_CSO",
]

log = logging.getLogger(__name__)

REGION_NONE, REGION_BG, REGION_CSO = 0, 1, 2
_REGION_NAMES = {REGION_BG: "BG", REGION_CSO: "CSO"}

#: Column order of the per-PVS table (and of the CSV written by :func:`write_table_csv`).
TABLE_COLUMNS = (
    "id", "region", "shape",
    "centre_x_mm", "centre_y_mm", "centre_z_mm",
    "centre_z", "centre_y", "centre_x",
    "width_mm", "length_mm", "dir_x", "dir_y", "dir_z",
    "contrast", "n_mask_voxels",
)


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of the synthetic PVS (ranges are sampled uniformly).

    Attributes
    ----------
    n_bg, n_cso : int
        Number of PVS to place in the basal-ganglia region and in the centrum-semiovale
        white matter.
    width_mm : (float, float)
        Range of PVS widths (diameter, mm).
    length_mm : (float, float)
        Range of PVS lengths (end to end, mm). A length below the width is raised to
        the width.
    contrast : (float, float)
        Per-PVS contrast: the fraction of the way from the local tissue intensity to
        the CSF intensity (1 = pure CSF signal in a fully covered voxel).
    ellipsoid_fraction : float
        Probability that a PVS is an ellipsoid rather than a tube (capsule).
    max_tilt_deg : float
        Largest angle between a PVS axis and its preferred direction: world
        superior-inferior for BG, the radial direction from the brain centre for CSO.
    supersample_mm : float
        Sub-voxel sampling step (mm) for the partial-volume rendering; each voxel is
        split into ``round(voxel_size / supersample_mm)`` sub-samples per axis.
    surface_margin_mm : float
        Eligible voxels are at least this far (mm) inside the brain mask (no cortex).
    csf_margin_mm : float
        Eligible voxels are at least this far (mm) from any CSF-class voxel
        (ventricles, sulci).
    lesion_margin_mm : float
        The lesion mask is dilated by this much (mm) before it is excluded.
    wm_margin_mm : float
        CSO centres are at least this far (mm) inside the white-matter class, away
        from grey matter.
    placement_margin_mm : float
        Every voxel a PVS touches (fraction > 0) must lie in the eligible map dilated by
        this much (mm), outside CSF, outside the dilated lesions and outside the
        neighbourhood (one voxel) of every PVS already placed.
    max_tries : int
        Attempts per PVS (each draws a new centre, size, shape and direction) before
        it is skipped with a warning.
    bg_halfwidth_fraction : float
        Half-size of the central box that bounds the BG region, as a fraction of the
        brain's left-right and anterior-posterior extent (0.2 = central 40 %).
    """

    n_bg: int = 20
    n_cso: int = 40
    width_mm: tuple[float, float] = (1.0, 2.5)
    length_mm: tuple[float, float] = (3.0, 20.0)
    contrast: tuple[float, float] = (0.5, 1.0)
    ellipsoid_fraction: float = 0.3
    max_tilt_deg: float = 20.0
    supersample_mm: float = 0.25
    surface_margin_mm: float = 8.0
    csf_margin_mm: float = 2.5
    lesion_margin_mm: float = 2.0
    wm_margin_mm: float = 1.0
    placement_margin_mm: float = 1.0
    max_tries: int = 300
    bg_halfwidth_fraction: float = 0.2


    def __post_init__(self):
        for name in ("width_mm", "length_mm", "contrast"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi) or not np.isfinite(hi):
                raise PVSInputError(f"{name} must be a range (low, high) with 0 < low <= high, "
                                    f"got {(lo, hi)}")
        if self.contrast[1] > 1.0:
            raise PVSInputError(f"contrast must be within (0, 1], got {self.contrast}")
        if self.n_bg < 0 or self.n_cso < 0:
            raise PVSInputError(f"n_bg and n_cso must be >= 0, got {self.n_bg}, {self.n_cso}")
        if not 0.0 <= self.ellipsoid_fraction <= 1.0:
            raise PVSInputError(f"ellipsoid_fraction must be within [0, 1], "
                                f"got {self.ellipsoid_fraction}")
        if not 0.0 <= self.max_tilt_deg <= 90.0:
            raise PVSInputError(f"max_tilt_deg must be within [0, 90], got {self.max_tilt_deg}")
        if self.supersample_mm <= 0 or self.max_tries < 1:
            raise PVSInputError("supersample_mm must be > 0 and max_tries >= 1")


@dataclass(frozen=True)
class SimulationResult:
    """Output of :func:`simulate_pvs`.

    Attributes
    ----------
    image : Volume
        float32 ``(Z, Y, X)`` T2 image with the PVS, on the input's grid (same affine,
        header and path). Voxels with ``fraction == 0`` equal the input exactly.
    mask : np.ndarray
        uint8 ``(Z, Y, X)``: 1 where ``fraction >= 0.5``.
    fraction : np.ndarray
        float32 ``(Z, Y, X)`` in ``[0, 1]``: partial-volume fraction of each voxel
        covered by PVS (PVS never overlap, so this is each PVS's own fraction).
    table : list of dict
        One row per placed PVS, keys :data:`TABLE_COLUMNS`: ``id`` (1, 2, ... in
        placement order: all BG first, then CSO), ``region`` (``'BG'`` or ``'CSO'``),
        ``shape`` (``'tube'`` or ``'ellipsoid'``), centre in world RAS mm
        (``centre_x_mm, centre_y_mm, centre_z_mm``) and in fractional voxel indices in
        array order (``centre_z, centre_y, centre_x``), ``width_mm``, ``length_mm``,
        unit axis direction in world RAS (``dir_x, dir_y, dir_z``), ``contrast`` and
        ``n_mask_voxels`` (voxels of this PVS with fraction >= 0.5; may be 0 for a thin
        PVS lying in a thick slice). Re-rendering a row with :func:`render_pvs_fraction`
        (same ``supersample_mm``) reproduces that PVS's fraction exactly. Fewer rows
        than requested only if a PVS could not be placed (logged warning).
    regions : np.ndarray
        uint8 ``(Z, Y, X)`` eligibility map used for the centres: 0 none, 1 BG, 2 CSO
        white matter (see :func:`tissue_regions`).
    noise_sigma : float
        Estimated noise standard deviation of the input image (its intensity units).
    info : dict
        Diagnostics: ``csf_intensity``, ``brain_centre_xyz`` (world mm, the origin of
        the CSO radial directions), ``n_requested``, ``n_placed``, ``seed``.
    """

    image: Volume
    mask: np.ndarray
    fraction: np.ndarray
    table: list[dict]
    regions: np.ndarray
    noise_sigma: float
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers


def _name(image: Volume) -> str:
    return image.path.name if image.path is not None else "image"


def _spacing(image: Volume) -> np.ndarray:
    return np.asarray(image.voxel_size, dtype=float)


def _edt_inside(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) from each voxel of ``mask`` to the nearest voxel outside it; the
    array border counts as outside."""
    padded = np.pad(mask, 1)
    dist = ndi.distance_transform_edt(padded, sampling=spacing)
    return dist[1:-1, 1:-1, 1:-1].astype(np.float32)


def _edt_to(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) from each voxel to the nearest voxel of ``mask`` (inf if empty)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    return ndi.distance_transform_edt(~mask, sampling=spacing).astype(np.float32)


def _dilate_mm(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    return _edt_to(mask, spacing) <= radius_mm


def _world_axis(image: Volume, axis: int, shape=None) -> np.ndarray:
    """World coordinate ``axis`` (0 = x/R, 1 = y/A, 2 = z/S), in mm, of every voxel
    centre, as a float32 ``(Z, Y, X)`` array (broadcast view)."""
    a = np.asarray(image.affine, dtype=float)
    z, y, x = shape if shape is not None else image.shape
    k = np.arange(z, dtype=np.float32)[:, None, None] * np.float32(a[axis, 2])
    j = np.arange(y, dtype=np.float32)[None, :, None] * np.float32(a[axis, 1])
    i = np.arange(x, dtype=np.float32)[None, None, :] * np.float32(a[axis, 0])
    return k + j + i + np.float32(a[axis, 3])


def _smoothed(image: Volume, sigma_mm: float = 0.7) -> np.ndarray:
    data = np.asarray(image.data, dtype=np.float32)
    sigma = sigma_mm / _spacing(image)
    return ndi.gaussian_filter(data, sigma=sigma, mode="nearest")


def _check_3d(image: Volume) -> None:
    if np.ndim(image.data) != 3:
        raise PVSInputError(
            f"image has {np.ndim(image.data)} dimensions {tuple(np.shape(image.data))}, "
            "expected a 3D volume", image.path)


# ----------------------------------------------------------------------------- brain


def brain_mask(image: Volume, *, erosion_mm: float = 8.0) -> np.ndarray:
    """Brain mask by intensity thresholding and morphology, for T2 images with or
    without skull.

    The lightly smoothed image is thresholded between background and tissue (Otsu,
    capped at 40 % of the median tissue intensity so that dark white matter stays in);
    the foreground is eroded by ``erosion_mm`` (Euclidean, in mm, so anisotropic voxels
    are handled), which cuts the thin bridges between brain and scalp; the largest
    connected component is kept, grown back by ``erosion_mm`` inside the foreground,
    and its holes are filled (in 3D and in every axial slice).

    Parameters
    ----------
    image : Volume
        3D scalar image, ``(Z, Y, X)``.
    erosion_mm : float
        Erosion radius in mm.

    Returns
    -------
    np.ndarray
        bool ``(Z, Y, X)``.

    Raises
    ------
    PVSInputError
        The image is not 3D, or no brain is found (empty or too thin foreground).
    """
    _check_3d(image)
    spacing = _spacing(image)
    sm = _smoothed(image, 0.7)
    if not np.isfinite(sm).all() or float(sm.max()) <= float(sm.min()):
        raise PVSInputError("no brain found: the image is constant or not finite", image.path)
    t = float(threshold_otsu(sm))
    tissue = sm[sm > t]
    if tissue.size:
        t = min(t, 0.4 * float(np.median(tissue)))
    fg = sm > t
    # the morphology runs on a grid of about 1 mm (every 2nd voxel of a 0.5 mm image)
    step = np.maximum(1, np.round(1.0 / spacing)).astype(int)
    coarse = tuple(slice(None, None, int(k)) for k in step)
    fg_c = fg[coarse]
    core = _edt_inside(fg_c, spacing * step) > erosion_mm
    if not core.any():
        raise PVSInputError(
            f"no brain found: no foreground region thicker than {2 * erosion_mm:g} mm", image.path)
    lab, n = ndi.label(core)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        core = lab == int(sizes.argmax())
    grown = _edt_to(core, spacing * step) <= erosion_mm + 0.5 * float((spacing * step).max())
    for ax, k in enumerate(step):
        if k > 1:
            grown = np.repeat(grown, k, axis=ax)
    brain = grown[:fg.shape[0], :fg.shape[1], :fg.shape[2]] & fg
    brain = ndi.binary_fill_holes(brain)
    ax = image.axial_axis
    moved = np.moveaxis(brain, ax, 0)
    for s in range(moved.shape[0]):
        if moved[s].any():
            moved[s] = ndi.binary_fill_holes(moved[s])
    return brain


# ----------------------------------------------------------------------------- tissue


@dataclass
class _Anatomy:
    """Full-grid ``(Z, Y, X)`` maps derived from the image (bool unless noted)."""

    brain: np.ndarray          # brain mask
    csf: np.ndarray            # CSF intensity class within the brain
    lesion: np.ndarray         # dilated lesion mask (may be all False)
    regions: np.ndarray        # uint8 0 / 1 BG / 2 CSO
    allowed: np.ndarray        # where a PVS may touch: regions dilated, minus CSF, lesions
    noise_mask: np.ndarray     # brain eroded by 2 mm, for the noise estimate
    ventricles: np.ndarray     # lateral ventricles (deep CSF near their top)
    centre_xyz: np.ndarray     # world mm, origin of the CSO radial directions
    csf_intensity: float


def _as_lesion_array(image: Volume, lesion_mask) -> np.ndarray | None:
    if lesion_mask is None:
        return None
    if isinstance(lesion_mask, Volume):
        arr = np.asarray(lesion_mask.data)
        other = lesion_mask.path.name if lesion_mask.path is not None else "lesion mask"
        if tuple(arr.shape) == image.shape and not np.allclose(
                np.asarray(lesion_mask.affine), np.asarray(image.affine), atol=1e-3):
            raise PVSInputError(
                f"lesion mask ({other}) grid differs from the image's: the affines differ; "
                "expected the same voxel grid", image.path)
    else:
        arr = np.asarray(lesion_mask)
        other = "lesion mask"
    if tuple(arr.shape) != image.shape:
        raise PVSInputError(
            f"lesion mask ({other}) grid {tuple(arr.shape)} differs from the image grid "
            f"{image.shape} (Z, Y, X); expected the same voxel grid", image.path)
    return arr > 0


def _crop_to(mask: np.ndarray, pad_vox: np.ndarray) -> tuple[slice, slice, slice]:
    idx = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))
           for ax in range(3)]
    return tuple(slice(max(int(i[0]) - int(p), 0), min(int(i[-1]) + int(p) + 1, n))
                 for i, p, n in zip(idx, pad_vox, mask.shape))


def _anatomy(image: Volume, lesion_mask, config: SimulationConfig) -> _Anatomy:
    _check_3d(image)
    lesion_full = _as_lesion_array(image, lesion_mask)
    spacing = _spacing(image)
    full_shape = image.shape
    brain_full = brain_mask(image)
    if brain_full.sum() < 1000:
        raise PVSInputError("no brain found: brain mask has fewer than 1000 voxels", image.path)

    # work on the brain's bounding box (plus margins): several times faster
    pad_mm = max(config.lesion_margin_mm, config.placement_margin_mm, 3.0)
    crop = _crop_to(brain_full, np.ceil(pad_mm / spacing) + 2)
    offset = np.eye(4)
    offset[:3, 3] = [crop[2].start, crop[1].start, crop[0].start]       # (i, j, k)
    sub = Volume(data=np.asarray(image.data)[crop], affine=np.asarray(image.affine) @ offset,
                 path=image.path)
    brain = brain_full[crop]
    shape = sub.shape
    lesion = lesion_full[crop] if lesion_full is not None else None

    sm = _smoothed(sub, 0.5)
    vals = sm[brain]
    try:
        t_wm, t_csf = (float(v) for v in threshold_multiotsu(vals, classes=3))
    except ValueError:
        raise PVSInputError("no eligible region: brain intensities are not separable "
                            "into white matter, grey matter and CSF", image.path) from None
    wm = brain & (sm < t_wm)
    csf = brain & (sm >= t_csf)
    del sm

    depth = _edt_inside(brain, spacing)        # mm inside the brain
    csf_dist = _edt_to(csf, spacing)          # mm to the nearest CSF voxel
    if lesion is not None and lesion.any():
        lesion_d = _dilate_mm(lesion, config.lesion_margin_mm, spacing)
    else:
        lesion_d = np.zeros(shape, dtype=bool)

    wx = _world_axis(sub, 0)
    wy = _world_axis(sub, 1)
    wz = _world_axis(sub, 2)
    bx = np.broadcast_to(wx, shape)[brain]
    by = np.broadcast_to(wy, shape)[brain]
    bz = np.broadcast_to(wz, shape)[brain]
    x_lo, x_hi = np.percentile(bx, [2, 98])
    x_mid = 0.5 * (x_lo + x_hi)

    # Deep CSF: thick CSF deeper than 15 mm near the mid-sagittal plane. Its largest
    # blobs are the ventricular system (lateral, 3rd and often, through the aqueduct,
    # the 4th ventricle and basal cisterns), so only its TOP is a reliable landmark:
    # the roof of the lateral ventricles' bodies.
    deep_csf = csf & (depth > 15.0) & (np.abs(wx - x_mid) < 0.18 * (x_hi - x_lo))
    open_r = 0.9 * float(spacing.min())
    deep_csf = _edt_inside(deep_csf, spacing) > open_r                       # opening ...
    deep_csf = _dilate_mm(deep_csf, open_r, spacing) & csf                    # ... by ~1 voxel
    if deep_csf.any():
        lab, n = ndi.label(deep_csf)
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        # keep the largest blob, and other big blobs only if thick somewhere (local
        # radius >= 3 mm): a widened interhemispheric fissure is a thin sheet
        inside = lab > 0
        radius = np.zeros(n + 1)
        np.maximum.at(radius, lab[inside], _edt_inside(deep_csf, spacing)[inside])
        keep = [int(sizes.argmax())] + [
            lb for lb in range(1, n + 1)
            if sizes[lb] >= 0.25 * sizes.max() and radius[lb] >= 3.0]
        deep_csf = np.isin(lab, keep)
    deep_ml = float(deep_csf.sum() * np.prod(spacing) / 1000.0)

    # size scale: brain left-right extent relative to a typical 115 mm (1st-99th pct)
    scale = float(np.clip((np.percentile(bx, 99) - np.percentile(bx, 1)) / 115.0, 0.8, 1.25))
    s_top = float(np.percentile(bz, 99.5))
    data_raw = np.asarray(sub.data)
    if deep_ml >= 2.0:
        dz = np.broadcast_to(wz, shape)[deep_csf]
        v_top = float(np.percentile(dz, 98))
        ventricles = deep_csf & (wz >= v_top - 25.0 * scale)
        cx = float(np.broadcast_to(wx, shape)[ventricles].mean())
        cy = float(np.broadcast_to(wy, shape)[ventricles].mean())
        csf_intensity = float(np.median(data_raw[ventricles]))
    else:
        log.warning("%s: ventricles not found (%.1f ml of deep CSF); placing the basal "
                    "ganglia and centrum semiovale levels from the top of the brain",
                    _name(image), deep_ml)
        v_top = s_top - 45.0 * scale
        ventricles = np.zeros(shape, dtype=bool)
        cx, cy = x_mid, float(np.median(by))
        csf_intensity = float(np.median(data_raw[csf])) if csf.any() else float(
            np.percentile(data_raw[brain], 99))
    cz = v_top - 20.0 * scale
    bg_lo, bg_hi = v_top - 38.0 * scale, v_top - 14.0 * scale
    cso_lo = v_top - 4.0 * scale

    # Brain extent (LR, AP) at the level of the basal ganglia, for the central BG box.
    level = (bz >= bg_lo) & (bz <= bg_hi)
    if level.sum() > 100:
        x_lo, x_hi = np.percentile(bx[level], [2, 98])
        y_lo, y_hi = np.percentile(by[level], [2, 98])
    else:
        y_lo, y_hi = np.percentile(by, [2, 98])
    hx = config.bg_halfwidth_fraction * (x_hi - x_lo)
    hy = config.bg_halfwidth_fraction * (y_hi - y_lo)

    clean = (depth > config.surface_margin_mm) & (csf_dist > config.csf_margin_mm) & ~lesion_d
    bg = (brain & clean & (np.abs(wx - cx) <= hx) & (np.abs(wy - cy) <= hy)
          & (wz >= bg_lo) & (wz <= bg_hi))
    wm_core = _edt_inside(wm, spacing) > config.wm_margin_mm   # away from grey matter
    cso = wm_core & clean & (wz >= cso_lo) & ~bg
    regions = np.zeros(shape, dtype=np.uint8)
    regions[bg] = REGION_BG
    regions[cso] = REGION_CSO
    allowed = _dilate_mm(regions > 0, config.placement_margin_mm, spacing)
    allowed &= brain & ~csf & ~lesion_d
    noise_mask = depth > 2.0
    if noise_mask.sum() < 1000:
        noise_mask = brain
    log.debug("%s: WM<%.1f CSF>=%.1f, deep CSF %.1f ml, ventricle top %.1f mm, brain top "
              "%.1f mm, scale %.2f, BG %d voxels, CSO %d voxels", _name(image), t_wm, t_csf,
              deep_ml, v_top, s_top, scale, int(bg.sum()), int(cso.sum()))

    def full(a: np.ndarray) -> np.ndarray:
        out = np.zeros(full_shape, dtype=a.dtype)
        out[crop] = a
        return out

    return _Anatomy(brain=brain_full, csf=full(csf), lesion=full(lesion_d),
                    regions=full(regions), allowed=full(allowed),
                    noise_mask=full(noise_mask), ventricles=full(ventricles),
                    centre_xyz=np.array([cx, cy, cz]), csf_intensity=csf_intensity)


def tissue_regions(image: Volume, lesion_mask: Volume | np.ndarray | None = None, *,
                   config: SimulationConfig = SimulationConfig()) -> np.ndarray:
    """Map of where PVS centres may go.

    Within :func:`brain_mask`, a 3-class multi-Otsu split of the lightly smoothed image
    gives white matter (darkest on T2), grey matter and CSF (brightest). The landmark is
    the roof of the lateral ventricles, ``v_top`` (world superior coordinate, mm): the
    98th percentile height of thick CSF deeper than 15 mm near the mid-sagittal plane
    (the largest such blob, plus other big blobs that are thick, so a widened
    interhemispheric fissure is ignored). With ``s`` the brain's left-right extent over
    115 mm (clipped to 0.8-1.25):

    * **BG (1)**: any non-CSF tissue (deep grey nuclei, internal capsule, thalamus)
      between ``v_top - 38 s`` and ``v_top - 14 s`` mm, inside a central box of
      ``+- bg_halfwidth_fraction`` of the brain's left-right and anterior-posterior
      extent around the ventricles' centre;
    * **CSO (2)**: white matter above ``v_top - 4 s`` mm, at least ``wm_margin_mm``
      from grey matter (the centrum semiovale).

    Both exclude voxels within ``surface_margin_mm`` of the brain surface (cortex),
    within ``csf_margin_mm`` of CSF (ventricles, sulci) and within
    ``lesion_margin_mm`` of the lesion mask. Without ventricles, ``v_top`` falls back
    to ``45 s`` mm below the top of the brain (with a logged warning). Levels use the
    world superior axis, so they follow the head's position in the scanner: a strongly
    pitched head tilts them. Approximate by design: no atlas registration.

    Parameters
    ----------
    image : Volume
        3D T2-weighted image ``(Z, Y, X)``.
    lesion_mask : Volume or np.ndarray, optional
        Expert lesion mask on the same grid (``> 0`` = lesion).
    config : SimulationConfig
        Margins (mm) and the BG box size.

    Returns
    -------
    np.ndarray
        uint8 ``(Z, Y, X)``: 0 none, 1 BG, 2 CSO white matter.

    Raises
    ------
    PVSInputError
        Image not 3D, no brain found, or lesion mask on a different grid.
    """
    return _anatomy(image, lesion_mask, config).regions


# ----------------------------------------------------------------------------- noise


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


# ----------------------------------------------------------------------------- render


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float).reshape(3)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n == 0:
        raise ValueError(f"direction {tuple(v)} has no length")
    return v / n


def _render_local(shape_zyx, affine, centre_xyz, direction_xyz, width_mm, length_mm,
                  shape="tube", supersample_mm=0.25):
    """Partial-volume fraction of one PVS in its bounding box.

    Returns ``(slices, frac, clipped)``: ``slices`` a (Z, Y, X) tuple of slices into
    the grid, ``frac`` float32 of the box's shape, ``clipped`` True when the PVS may
    reach outside the grid (``None, None, True`` if it is entirely outside).
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
    slices = tuple(slice(int(a), int(b) + 1) for a, b in zip(zyx_lo, zyx_hi))
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
            sd = np.sqrt(((p - ts[..., None] * u) ** 2).sum(-1)) - r   # exact signed distance
        else:
            perp2 = np.maximum((p * p).sum(-1) - t * t, 0.0)
            k0 = np.sqrt((t / half) ** 2 + perp2 / r ** 2)
            k1 = np.sqrt((t / half ** 2) ** 2 + perp2 / r ** 4)
            with np.errstate(invalid="ignore", divide="ignore"):
                sd = np.where(k1 > 1e-12, k0 * (k0 - 1.0) / k1, -r)   # close to the surface
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
    slices, frac, _ = _render_local(shape_zyx, affine, centre_xyz, direction_xyz, width_mm,
                                    length_mm, shape, supersample_mm)
    if slices is not None:
        out[slices] = frac
    return out


# ----------------------------------------------------------------------------- simulate


def _tilted(axis: np.ndarray, max_tilt_rad: float, rng: np.random.Generator) -> np.ndarray:
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


def simulate_pvs(image: Volume, *, seed: int = 0,
                 lesion_mask: Volume | np.ndarray | None = None,
                 config: SimulationConfig = SimulationConfig()) -> SimulationResult:
    """Insert synthetic PVS with a known mask into a real T2-weighted image.

    Follows the PVS digital reference object of Bernal et al., 2022, Magnetic Resonance
    Imaging (see the module docstring). Steps:

    1. eligibility map from :func:`tissue_regions` (BG and CSO white matter);
    2. for each of ``n_bg`` BG and ``n_cso`` CSO PVS: a centre uniform among the
       region's voxels (plus a uniform sub-voxel offset), width, length, contrast
       uniform in their ranges, ellipsoid with probability ``ellipsoid_fraction``;
       axis within ``max_tilt_deg`` of world superior (BG) or of the radial direction
       from the ventricles' centre (CSO). The attempt is rejected (and everything
       redrawn) when a voxel the PVS touches leaves the eligible map dilated by
       ``placement_margin_mm``, touches CSF or the dilated lesion mask, touches or
       borders an earlier PVS, or reaches the edge of the grid; long PVS are therefore
       rejected more often in small regions;
    3. partial-volume rendering (:func:`render_pvs_fraction`), combined by maximum (PVS
       never overlap);
    4. intensity ``I + w (I_csf - I) + sigma sqrt(w (2 - w)) n`` with ``w = f c``,
       ``f`` the fraction, ``c`` the PVS contrast, ``I_csf`` the median intensity of the
       lateral ventricles, ``sigma`` the noise of the image (:func:`estimate_noise_sigma`
       in the brain) and ``n`` standard normal noise. The mixing scales the input's own
       noise by ``1 - w``; the added noise tops it up so that the noise inside a PVS
       has the image's standard deviation ``sigma`` (``(1 - w)^2 + w (2 - w) = 1``).
       Voxels with ``f == 0`` keep the input value exactly.

    All randomness comes from ``np.random.default_rng(seed)``: the same seed, image and
    config give identical outputs.

    Parameters
    ----------
    image : Volume
        3D T2-weighted image ``(Z, Y, X)``, with or without skull.
    seed : int
        Random seed.
    lesion_mask : Volume or np.ndarray, optional
        Expert lesion mask on the image's grid (``> 0`` = lesion); PVS stay out of it
        (dilated by ``config.lesion_margin_mm``).
    config : SimulationConfig
        Sizes, counts and margins.

    Returns
    -------
    SimulationResult

    Raises
    ------
    PVSInputError
        (naming ``image.path``) Image not 3D, no brain found, no eligible region, or a
        lesion mask whose grid differs from the image's.
    """
    _check_3d(image)
    rng = np.random.default_rng(seed)
    shape = image.shape
    anat = _anatomy(image, lesion_mask, config)
    regions = anat.regions
    needed = [(REGION_BG, config.n_bg), (REGION_CSO, config.n_cso)]
    for reg, n in needed:
        if n > 0 and not (regions == reg).any():
            raise PVSInputError(
                f"no eligible {_REGION_NAMES[reg]} region found for synthetic PVS "
                "(expected a T2-weighted brain image with white matter and ventricles)",
                image.path)

    data_in = np.asarray(image.data)
    sigma = estimate_noise_sigma(data_in, anat.noise_mask)
    allowed = anat.allowed
    occupied = np.zeros(shape, dtype=bool)
    fraction = np.zeros(shape, dtype=np.float32)
    contrast_map = np.zeros(shape, dtype=np.float32)
    max_tilt = np.deg2rad(config.max_tilt_deg)
    aff = np.asarray(image.affine, dtype=float)
    ball = ndi.generate_binary_structure(3, 3)

    table: list[dict] = []
    for reg, n in needed:
        cand_idx = np.flatnonzero(regions == reg)
        for _ in range(n):
            placed = False
            for _try in range(config.max_tries):
                flat = cand_idx[rng.integers(len(cand_idx))]
                zyx = np.array(np.unravel_index(flat, shape), dtype=float)
                zyx += rng.uniform(-0.5, 0.5, size=3)
                centre = image.voxel_to_world(zyx)
                width = float(rng.uniform(*config.width_mm))
                length = max(float(rng.uniform(*config.length_mm)), width)
                kind = "ellipsoid" if rng.random() < config.ellipsoid_fraction else "tube"
                contrast = float(rng.uniform(*config.contrast))
                if reg == REGION_BG:
                    axis = np.array([0.0, 0.0, 1.0])
                else:
                    radial = centre - anat.centre_xyz
                    nr = np.linalg.norm(radial)
                    axis = radial / nr if nr > 1e-6 else np.array([0.0, 0.0, 1.0])
                direction = _tilted(axis, max_tilt, rng)
                if reg == REGION_BG and direction[2] < 0:
                    direction = -direction
                sl, frac, clipped = _render_local(shape, aff, centre, direction, width, length,
                                                  kind, config.supersample_mm)
                if clipped or sl is None:
                    continue
                touched = frac > 0
                if not touched.any():
                    continue
                if not allowed[sl][touched].all() or occupied[sl][touched].any():
                    continue
                placed = True
                break
            if not placed:
                log.warning("%s: could not place %s PVS %d after %d tries; skipped",
                            _name(image), _REGION_NAMES[reg], len(table) + 1, config.max_tries)
                continue
            fraction[sl] = np.maximum(fraction[sl], frac)
            contrast_map[sl][touched] = contrast
            # mark the PVS and its 26-neighbourhood as occupied
            big = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, d)) for s, d in zip(sl, shape))
            local = np.zeros(tuple(b.stop - b.start for b in big), dtype=bool)
            inner = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sl, big))
            local[inner] = touched
            occupied[big] |= ndi.binary_dilation(local, structure=ball)
            table.append({
                "id": len(table) + 1,
                "region": _REGION_NAMES[reg],
                "shape": kind,
                "centre_x_mm": float(centre[0]),
                "centre_y_mm": float(centre[1]),
                "centre_z_mm": float(centre[2]),
                "centre_z": float(zyx[0]),
                "centre_y": float(zyx[1]),
                "centre_x": float(zyx[2]),
                "width_mm": width,
                "length_mm": length,
                "dir_x": float(direction[0]),
                "dir_y": float(direction[1]),
                "dir_z": float(direction[2]),
                "contrast": contrast,
                "n_mask_voxels": int((frac >= 0.5).sum()),
            })

    np.clip(fraction, 0.0, 1.0, out=fraction)
    out = data_in.astype(np.float32, copy=True)
    hit = np.flatnonzero(fraction)
    if hit.size:
        f = fraction.ravel()[hit].astype(np.float64)
        c = contrast_map.ravel()[hit].astype(np.float64)
        base = out.ravel()[hit].astype(np.float64)
        w = f * c                                    # weight of the CSF-like signal
        noise = rng.standard_normal(hit.size)
        # the input's own noise is scaled by (1 - w); top it up to sigma in total
        new = base + w * (anat.csf_intensity - base) + sigma * np.sqrt(w * (2.0 - w)) * noise
        out.ravel()[hit] = new.astype(np.float32)
    mask = (fraction >= 0.5).astype(np.uint8)
    n_req = config.n_bg + config.n_cso
    if len(table) < n_req:
        log.warning("%s: placed %d of %d synthetic PVS", _name(image), len(table), n_req)
    info = {
        "csf_intensity": float(anat.csf_intensity),
        "brain_centre_xyz": tuple(float(v) for v in anat.centre_xyz),
        "n_requested": int(n_req),
        "n_placed": len(table),
        "seed": seed,
    }
    return SimulationResult(image=image.with_data(out, synthetic_pvs_seed=seed), mask=mask,
                            fraction=fraction, table=table, regions=regions,
                            noise_sigma=float(sigma), info=info)


# ----------------------------------------------------------------------------- table


def write_table_csv(table: list[dict], path) -> Path:
    """Write the per-PVS table as CSV, atomically (temporary file, then ``os.replace``).

    Columns: :data:`TABLE_COLUMNS` first, then any other keys in order of appearance.
    Parent folders are created.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(TABLE_COLUMNS)
    for row in table:
        for key in row:
            if key not in columns:
                columns.append(key)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, restval="")
            writer.writeheader()
            for row in table:
                writer.writerow(row)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
