"""Tissue classes, the BG and CSO regions and the ventricle landmark of a T2 image.

Intensity-based and approximate by design (no atlas): multi-Otsu classes within the brain
mask, the roof of the lateral ventricles as the landmark for the BG and CSO levels. The
synthetic PVS (:mod:`napari_pvs.engine.synth`) are placed in these regions; the rating
slices can be suggested from the same landmark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu

from ..errors import PVSInputError
from ..io import Volume
from .morphology import (check_3d, crop_to, dilate_mm, edt_inside, edt_to, image_name, smoothed,
                     spacing_mm, world_axis)
from .brain import brain_mask

__all__ = ["AnatomyConfig", "Anatomy", "analyze_anatomy", "tissue_regions", "rating_slice_levels", "wide_csf", "csf_class",
           "REGION_NONE", "REGION_BG", "REGION_CSO", "REGION_NAMES"]

log = logging.getLogger(__name__)

REGION_NONE, REGION_BG, REGION_CSO = 0, 1, 2
#: region label -> name
REGION_NAMES = {REGION_BG: "BG", REGION_CSO: "CSO"}


@dataclass(frozen=True)
class AnatomyConfig:
    """Margins of the BG and CSO regions (see :func:`tissue_regions`).

    Attributes
    ----------
    surface_margin_mm : float
        Region voxels are at least this far (mm) inside the brain mask (no cortex).
    csf_margin_mm : float
        ... and at least this far (mm) from any CSF-class voxel (ventricles, sulci).
    lesion_margin_mm : float
        The lesion mask is dilated by this much (mm) before it is excluded.
    wm_margin_mm : float
        CSO voxels are at least this far (mm) inside the white-matter class.
    bg_halfwidth_fraction : float
        Half-size of the central box bounding the BG region, as a fraction of the brain's
        left-right and anterior-posterior extent (0.2 = central 40 %).
    pad_mm : float
        Margin (mm) kept around the brain's bounding box, inside which the maps are
        computed (callers that dilate the regions later need it at least that wide).
    """

    surface_margin_mm: float = 8.0
    csf_margin_mm: float = 2.5
    lesion_margin_mm: float = 2.0
    wm_margin_mm: float = 1.0
    bg_halfwidth_fraction: float = 0.2
    pad_mm: float = 3.0


@dataclass
class Anatomy:
    """Maps and landmarks derived from a T2-weighted image by :func:`analyze_anatomy`.

    Arrays are full-grid ``(Z, Y, X)``, bool unless noted; positions are world RAS mm.

    Attributes
    ----------
    brain : brain mask (:func:`~napari_pvs.engine.anatomy.brain_mask`).
    csf : CSF intensity class within the brain (ventricles, sulci, cisterns).
    lesion : lesion mask dilated by ``lesion_margin_mm`` (all False without one).
    regions : uint8, 0 none, 1 BG (:data:`REGION_BG`), 2 CSO white matter (:data:`REGION_CSO`).
    noise_mask : brain eroded by 2 mm, for noise estimates.
    ventricles : the lateral ventricles' upper 25 mm (deep CSF near the midline).
    centre_xyz : (3,) centre of the lateral ventricles, 20 mm below their top (the origin
        of the CSO radial directions).
    csf_intensity : median intensity of the lateral ventricles (image units).
    ventricle_top_mm : world superior coordinate (mm) of the roof of the lateral ventricles.
    size_scale : brain left-right extent / 115 mm, clipped to 0.8-1.25.
    bg_level_mm : (low, high) world superior range (mm) of the BG region.
    cso_from_mm : world superior coordinate (mm) above which the CSO region lies.
    """

    brain: np.ndarray
    csf: np.ndarray
    lesion: np.ndarray
    regions: np.ndarray
    noise_mask: np.ndarray
    ventricles: np.ndarray
    centre_xyz: np.ndarray
    csf_intensity: float
    ventricle_top_mm: float
    size_scale: float
    bg_level_mm: tuple[float, float]
    cso_from_mm: float


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


def _class_thresholds(sm: np.ndarray, brain: np.ndarray, image: Volume) -> tuple[float, float]:
    """(white matter / grey matter, grey matter / CSF) thresholds: 3-class multi-Otsu of
    the smoothed brain intensities."""
    try:
        t_wm, t_csf = (float(v) for v in threshold_multiotsu(sm[brain], classes=3))
    except ValueError:
        raise PVSInputError("no eligible region: brain intensities are not separable "
                            "into white matter, grey matter and CSF", image.path) from None
    return t_wm, t_csf


def csf_class(image: Volume, brain: np.ndarray, *, crop: tuple[slice, ...] | None = None) -> np.ndarray:
    """The CSF intensity class within the brain: the brightest of three multi-Otsu classes
    of the image smoothed by 0.5 mm (as in :func:`analyze_anatomy`).

    Parameters
    ----------
    image : Volume
        3D T2-weighted image ``(Z, Y, X)``.
    brain : np.ndarray
        bool ``(Z, Y, X)`` brain mask.
    crop : tuple of slices, optional
        Compute on this box only; the result then has the box's shape.

    Returns
    -------
    np.ndarray
        bool, ``(Z, Y, X)`` (or the box's shape).

    Raises
    ------
    PVSInputError
        Brain intensities not separable into three classes.
    """
    crop = crop if crop is not None else tuple(slice(None) for _ in range(3))
    sub = Volume(data=np.asarray(image.data)[crop], affine=image.affine, path=image.path)
    b = brain[crop]
    sm = smoothed(sub, 0.5)
    _, t_csf = _class_thresholds(sm, b, image)
    return b & (sm >= t_csf)


def _geodesic_reach(seed: np.ndarray, within: np.ndarray, spacing: np.ndarray, reach_mm: float, *,
                    on_box: bool = True) -> np.ndarray:
    """``seed`` grown inside ``within`` by about ``reach_mm`` (mm): one step per smallest
    voxel size; an axis with larger voxels joins a step when the distance travelled
    crosses a multiple of its voxel size. ``on_box=False`` dilates the whole array (the
    same result, slower; kept for ``benchmarks/mask_helpers.py`` and the tests)."""
    if reach_mm <= 0 or not seed.any():
        return seed
    step = float(spacing.min())
    steps = int(np.ceil(reach_mm / step))
    # each step grows by at most one voxel per axis: the seed's box grown by the steps holds
    # the result (exact), and the dilations run on it only
    box = crop_to(seed, (steps + 1,) * 3) if on_box else tuple(slice(None) for _ in range(3))
    full, seed, within = seed, seed[box], within[box]
    out = seed.copy()
    for i in range(1, steps + 1):
        axes = [a for a in range(3) if np.floor(i * step / spacing[a] + 1e-6) > np.floor((i - 1) * step / spacing[a] + 1e-6)]
        struct = np.zeros((3, 3, 3), dtype=bool)
        for offset in np.ndindex(3, 3, 3):
            if all(o == 1 or a in axes for a, o in enumerate(offset)):
                struct[offset] = True
        grown = ndi.binary_dilation(out, structure=struct, mask=within)
        if np.array_equal(grown, out):
            break
        out = grown
    result = np.zeros(full.shape, dtype=bool)
    result[box] = out
    return result


def wide_csf(image: Volume, brain: np.ndarray | None = None, *,
             min_width_mm: float = 4.0, reach_mm: float = 4.0) -> np.ndarray:
    """CSF spaces wider than ``min_width_mm``: the ventricles, cisterns and wide sulci,
    where no PVS can lie (STRIVE: PVS are at most about 3 mm wide).

    The CSF class of :func:`analyze_anatomy` (the brightest of three multi-Otsu classes
    of the image smoothed by 0.5 mm within the brain) is opened by a ball of radius
    ``r = min_width_mm / 2`` (Euclidean, in mm, so anisotropic voxels are handled): a CSF
    voxel is kept when it lies within ``r`` plus half the largest voxel size of a CSF voxel
    that is deeper than ``r`` inside the CSF. Thin CSF-bright structures (PVS, narrow
    sulci) vanish; the walls of the wide ones are kept whole. Then the thin CSF that
    opens onto a wide space within ``reach_mm`` (a geodesic dilation inside the CSF class,
    one smallest voxel size per step, the coarser axes stepped when the distance travelled
    crosses their voxel size) is added: the ventricles' thin roof, horns and ends. On the
    shared 1 mm patient07 T2 this covers 97 % of the lateral ventricles of
    :func:`analyze_anatomy` (79 % without the reach) and none of the reference PVS-like
    objects of :func:`~napari_pvs.engine.candidates.find_pvs_candidates`.

    Refer to: Wardlaw et al., "Neuroimaging standards for research into small vessel
    disease and its contribution to ageing and neurodegeneration" (STRIVE), Lancet Neurol
    2013, doi:10.1016/S1474-4422(13)70124-8.

    Parameters
    ----------
    image : Volume
        3D T2-weighted image ``(Z, Y, X)``.
    brain : np.ndarray, optional
        bool ``(Z, Y, X)`` brain mask; default :func:`~napari_pvs.engine.anatomy.brain_mask`.
    min_width_mm : float
        Width (mm) above which a CSF space is returned.
    reach_mm : float
        How far (mm, along the CSF) thin CSF connected to a wide space is added; 0: none.

    Returns
    -------
    np.ndarray
        bool ``(Z, Y, X)``.

    Raises
    ------
    PVSInputError
        Image not 3D, no brain found, or brain intensities not separable into three
        classes.
    """
    check_3d(image)
    if brain is None:
        brain = brain_mask(image)
    if brain.shape != image.shape:
        raise ValueError(f"brain mask shape {brain.shape} differs from the image's {image.shape}")
    out = np.zeros(image.shape, dtype=bool)
    if not brain.any():
        return out
    spacing = spacing_mm(image)
    radius = 0.5 * float(min_width_mm)
    crop = crop_to(brain, np.ceil(radius / spacing) + 2)
    csf = csf_class(image, brain, crop=crop)
    core = edt_inside(csf, spacing) > radius
    # grown back by half a voxel more than it was eroded, so that the dilation reaches
    # the next slice of thick-slice scans (3-4 mm) and the ventricles' top slice is kept
    wide = dilate_mm(core, radius + 0.5 * float(spacing.max()), spacing) & csf
    out[crop] = _geodesic_reach(wide, csf, spacing, reach_mm)
    return out


def analyze_anatomy(image: Volume, lesion_mask: Volume | np.ndarray | None = None, *,
                    config: AnatomyConfig = AnatomyConfig()) -> Anatomy:
    """Brain, tissue classes and landmarks of a T2-weighted image (see :func:`tissue_regions`
    for the rules).

    Parameters
    ----------
    image : Volume
        3D T2-weighted image ``(Z, Y, X)``, with or without skull.
    lesion_mask : Volume or np.ndarray, optional
        Expert lesion mask on the same grid (``> 0`` = lesion).
    config : AnatomyConfig
        Margins (mm) and the BG box size.

    Returns
    -------
    Anatomy

    Raises
    ------
    PVSInputError
        Image not 3D, no brain found, brain intensities not separable into three classes,
        or a lesion mask on another grid.
    """
    check_3d(image)
    lesion_full = _as_lesion_array(image, lesion_mask)
    spacing = spacing_mm(image)
    full_shape = image.shape
    brain_full = brain_mask(image)
    if brain_full.sum() < 1000:
        raise PVSInputError("no brain found: brain mask has fewer than 1000 voxels", image.path)

    # work on the brain's bounding box (plus margins): several times faster
    pad_mm = max(config.lesion_margin_mm, config.pad_mm, 3.0)
    crop = crop_to(brain_full, np.ceil(pad_mm / spacing) + 2)
    offset = np.eye(4)
    offset[:3, 3] = [crop[2].start, crop[1].start, crop[0].start]       # (i, j, k)
    sub = Volume(data=np.asarray(image.data)[crop], affine=np.asarray(image.affine) @ offset,
                 path=image.path)
    brain = brain_full[crop]
    shape = sub.shape
    lesion = lesion_full[crop] if lesion_full is not None else None

    sm = smoothed(sub, 0.5)
    t_wm, t_csf = _class_thresholds(sm, brain, image)
    wm = brain & (sm < t_wm)
    csf = brain & (sm >= t_csf)
    del sm

    depth = edt_inside(brain, spacing)        # mm inside the brain
    csf_dist = edt_to(csf, spacing)          # mm to the nearest CSF voxel
    if lesion is not None and lesion.any():
        lesion_d = dilate_mm(lesion, config.lesion_margin_mm, spacing)
    else:
        lesion_d = np.zeros(shape, dtype=bool)

    wx = world_axis(sub, 0)
    wy = world_axis(sub, 1)
    wz = world_axis(sub, 2)
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
    deep_csf = edt_inside(deep_csf, spacing) > open_r                       # opening ...
    deep_csf = dilate_mm(deep_csf, open_r, spacing) & csf                    # ... by ~1 voxel
    if deep_csf.any():
        lab, n = ndi.label(deep_csf)
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        # keep the largest blob, and other big blobs only if thick somewhere (local
        # radius >= 3 mm): a widened interhemispheric fissure is a thin sheet
        inside = lab > 0
        radius = np.zeros(n + 1)
        np.maximum.at(radius, lab[inside], edt_inside(deep_csf, spacing)[inside])
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
                    image_name(image), deep_ml)
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
    wm_core = edt_inside(wm, spacing) > config.wm_margin_mm   # away from grey matter
    cso = wm_core & clean & (wz >= cso_lo) & ~bg
    regions = np.zeros(shape, dtype=np.uint8)
    regions[bg] = REGION_BG
    regions[cso] = REGION_CSO
    noise_mask = depth > 2.0
    if noise_mask.sum() < 1000:
        noise_mask = brain
    log.debug("%s: WM<%.1f CSF>=%.1f, deep CSF %.1f ml, ventricle top %.1f mm, brain top "
              "%.1f mm, scale %.2f, BG %d voxels, CSO %d voxels", image_name(image), t_wm, t_csf,
              deep_ml, v_top, s_top, scale, int(bg.sum()), int(cso.sum()))

    def full(a: np.ndarray) -> np.ndarray:
        out = np.zeros(full_shape, dtype=a.dtype)
        out[crop] = a
        return out

    return Anatomy(brain=brain_full, csf=full(csf), lesion=full(lesion_d), regions=full(regions),
                   noise_mask=full(noise_mask), ventricles=full(ventricles),
                   centre_xyz=np.array([cx, cy, cz]), csf_intensity=csf_intensity,
                   ventricle_top_mm=float(v_top), size_scale=scale,
                   bg_level_mm=(float(bg_lo), float(bg_hi)), cso_from_mm=float(cso_lo))


def tissue_regions(image: Volume, lesion_mask: Volume | np.ndarray | None = None, *,
                   config: AnatomyConfig = AnatomyConfig()) -> np.ndarray:
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
    config : AnatomyConfig
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
    return analyze_anatomy(image, lesion_mask, config=config).regions


def rating_slice_levels(image: Volume, anatomy: Anatomy) -> dict[str, int]:
    """Approximate BG and CSO rating slices from the ventricle landmark (no atlas).

    * CSO: the axial slice nearest to 10 mm above the roof of the lateral ventricles
      (Potter et al., Cerebrovasc Dis 2015: "1 cm above the top of the lateral ventricles");
    * BG: the slice nearest to the middle of the BG region, ``26 s`` mm below the roof
      (about the level of the anterior commissure in adults; ``s`` the size scale).

    The slice index runs along ``image.axial_axis``; an atlas registration places them
    better (the registration engine).

    Returns
    -------
    dict
        ``{"bg": int, "cso": int}`` axial slice indices (0-based), clipped to the volume.
    """
    ax = image.axial_axis
    n = image.shape[ax]
    centre = (np.asarray(image.shape, dtype=float) - 1) / 2

    def nearest(z_mm: float) -> int:
        idx = np.tile(centre, (n, 1))
        idx[:, ax] = np.arange(n)
        return int(np.argmin(np.abs(image.voxel_to_world(idx)[:, 2] - z_mm)))

    return {"bg": nearest(anatomy.ventricle_top_mm - 26.0 * anatomy.size_scale),
            "cso": nearest(anatomy.ventricle_top_mm + 10.0)}
