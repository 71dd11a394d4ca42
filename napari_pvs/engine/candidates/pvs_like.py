"""Real PVS-like objects in a T2-weighted image, found without a network.

Small bright objects in the white matter and basal ganglia whose signal is CSF-like and
whose size and shape fit the STRIVE criteria for perivascular spaces (Wardlaw et al.,
"Neuroimaging standards for research into small vessel disease and its contribution to
ageing and neurodegeneration", Lancet Neurology 2013, doi:10.1016/S1474-4422(13)70124-8):
fluid signal, round or linear following the course of a vessel, generally under 3 mm
wide, no mass effect.

Uses: the **ignore mask** of training on synthetic insertions (the unlabelled real PVS
of the scan must not be taught as background), a **reference** of real PVS-like objects
for the real-scan benchmark, the **STRIVE filter** of pseudo-labels, and candidate
proposals for annotators.

Method (per scan, all in mm so any voxel size works):

1. the anatomy (:func:`~napari_pvs.engine.anatomy.analyze_anatomy`): brain mask, CSF
   class, lesion mask, CSF intensity ``I_csf`` (median of the lateral ventricles) and the
   noise sigma of the image;
2. *parenchyma*: brain voxels deeper than ``surface_margin_mm``, farther than
   ``csf_margin_mm`` from *large* CSF (CSF-class components above ``large_csf_mm3``:
   ventricles, sulci, cisterns; small CSF-class specks are the PVS themselves) and
   outside the (dilated) lesion mask;
3. an in-plane white top-hat (grey opening with a disk of radius
   ``background_radius_mm`` on each axial slice): ``T = I - opening(I)`` is the excess
   over the local tissue level ``B = opening(I)``, for objects narrower than the disk;
4. seeds: ``T >= min_contrast (I_csf - B)`` (a share of the way from tissue to CSF) and
   ``T >= min_snr sigma``; grown by hysteresis to half of both thresholds; repeated at
   higher thresholds (``levels``), so that objects merged at a low level are still found;
5. 3D components (26-connectivity) kept when inside the parenchyma, at most
   ``max_width_mm`` wide in-plane (twice the largest in-plane distance to the border,
   less one pixel), between ``min_volume_mm3`` and ``max_volume_mm3``, and not touching
   the dilated lesion mask (lesions are hard negatives, never ignored), and (by
   default) centred within 5 mm of the BG or CSO region, where raters count.

It is a threshold detector: it misses faint PVS and takes some vessels, noise peaks and
small lesions for PVS. It is meant to be generous for the ignore mask and strict for the
reference (see :func:`ignore_config` and :func:`reference_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import apply_hysteresis_threshold

from ..anatomy import REGION_BG, REGION_NAMES, Anatomy, AnatomyConfig, analyze_anatomy
from ..anatomy.morphology import STRUCTURE_26, check_3d, crop_to, dilate_mm, edt_inside, spacing_mm
from ..errors import PVSInputError
from ..io import Volume
from ..synth.noise import estimate_noise_sigma

__all__ = ["CandidateConfig", "CandidateResult", "find_pvs_candidates", "strive_filter",
           "ignore_config", "reference_config", "component_widths_mm", "nearest_region", "CANDIDATE_COLUMNS"]

#: Columns of :attr:`CandidateResult.table`.
CANDIDATE_COLUMNS = ("id", "region", "n_voxels", "volume_mm3", "width_mm", "contrast", "snr",
                     "centre_z", "centre_y", "centre_x")


@dataclass(frozen=True)
class CandidateConfig:
    """Thresholds of :func:`find_pvs_candidates` (intensities relative, sizes in mm).

    Attributes
    ----------
    background_radius_mm : float
        Radius (mm) of the in-plane disk of the top-hat: objects narrower than about twice
        this stand out from the local tissue level.
    min_contrast : float
        Seed threshold on ``(I - B) / (I_csf - B)``: 0.2 = a fifth of the way from the
        surrounding tissue to CSF.
    min_snr : float
        Seed threshold on ``(I - B) / sigma`` (noise sigma of the image).
    hysteresis : float
        Voxels connected to a seed are added down to this share of both thresholds.
    max_width_mm : float
        STRIVE: PVS are generally under 3 mm wide.
    min_volume_mm3, max_volume_mm3 : float
        Component volume range (mm^3).
    min_voxels : int
        Fewer voxels than this is noise.
    surface_margin_mm : float
        Candidates lie deeper than this inside the brain mask (no cortex, no dura).
    csf_margin_mm : float
        ... and farther than this from large CSF (ventricles, sulci).
    large_csf_mm3 : float
        CSF-class components at least this big (mm^3) are ventricles, sulci or cisterns.
    lesion_margin_mm : float
        The lesion mask is dilated by this before it excludes candidates.
    regions_only : bool
        Keep only candidates within ``region_margin_mm`` of the BG or CSO region (where
        raters count; drops cortical and cerebellar sulci and vessels, which stay hard
        negatives).
    region_margin_mm : float
    min_wm_ring : float
        Share of the 1 mm ring around a candidate that must be white-matter-like tissue
        (darker than the multi-Otsu white/grey boundary) or BG region: PVS sit in white
        matter or the basal ganglia, sulci and vessels on the cortex sit in grey matter.
    levels : tuple of float
        Detection is repeated with the seed thresholds multiplied by each of these and
        the kept objects are merged: an object that merges with its neighbours into a
        blob too wide at a low threshold is still found at a higher one.
    dilate_mm : float
        The output mask is dilated by this much (mm; at least one voxel when > 0) to
        cover the partial-volume rim (use > 0 for an ignore mask, 0 for a reference).
    """

    background_radius_mm: float = 2.5
    min_contrast: float = 0.2
    min_snr: float = 2.5
    hysteresis: float = 0.5
    max_width_mm: float = 3.0
    min_volume_mm3: float = 1.0
    max_volume_mm3: float = 300.0
    min_voxels: int = 2
    surface_margin_mm: float = 4.0
    csf_margin_mm: float = 1.0
    large_csf_mm3: float = 150.0
    lesion_margin_mm: float = 1.5
    regions_only: bool = True
    region_margin_mm: float = 5.0
    min_wm_ring: float = 0.5
    levels: tuple[float, ...] = (1.0, 1.5, 2.25)
    dilate_mm: float = 0.0

    def __post_init__(self):
        if self.background_radius_mm <= 0 or self.max_width_mm <= 0:
            raise ValueError("background_radius_mm and max_width_mm must be > 0, got "
                             f"{self.background_radius_mm} and {self.max_width_mm}")
        if not 0 < self.hysteresis <= 1:
            raise ValueError(f"hysteresis must be within (0, 1], got {self.hysteresis}")
        if self.min_contrast < 0 or self.min_snr < 0:
            raise ValueError(f"min_contrast and min_snr must be >= 0, got {self.min_contrast}, {self.min_snr}")
        if not 0 <= self.min_volume_mm3 <= self.max_volume_mm3:
            raise ValueError(f"expected 0 <= min_volume_mm3 <= max_volume_mm3, got "
                             f"{self.min_volume_mm3}, {self.max_volume_mm3}")


def ignore_config() -> CandidateConfig:
    """Generous settings for the training ignore mask: fainter objects (seed levels from 0.15
    to 0.7 of the tissue-CSF contrast), a 0.5 mm rim."""
    return CandidateConfig(min_contrast=0.15, min_snr=2.0, levels=(1.0, 1.5, 2.0, 3.0, 4.5), dilate_mm=0.5)


def reference_config() -> CandidateConfig:
    """Strict settings for the benchmark's reference of real PVS-like objects."""
    return CandidateConfig(min_contrast=0.3, min_snr=3.0, min_volume_mm3=2.0)


@dataclass
class CandidateResult:
    """Output of :func:`find_pvs_candidates`.

    Attributes
    ----------
    mask : np.ndarray
        uint8 ``(Z, Y, X)``: 1 on kept candidates (dilated by ``config.dilate_mm``).
    labels : np.ndarray
        int32 ``(Z, Y, X)``: candidate ``id`` per voxel (undilated), 0 elsewhere.
    table : list of dict
        One row per candidate, keys :data:`CANDIDATE_COLUMNS`: ``region`` is ``"BG"``,
        ``"CSO"`` or ``"other"`` (the nearest BG/CSO region voxel within 5 mm), volume in
        mm^3, width in mm, ``contrast`` and ``snr`` at the brightest voxel, centre in
        voxel indices ``(Z, Y, X)``.
    parenchyma : np.ndarray
        bool ``(Z, Y, X)``: where candidates may lie.
    info : dict
        ``noise_sigma``, ``csf_intensity``, ``n_components`` (before filtering), ``n_kept``.
    """

    mask: np.ndarray
    labels: np.ndarray
    table: list[dict]
    parenchyma: np.ndarray
    info: dict = field(default_factory=dict)


def _inplane_disk(image: Volume, radius_mm: float) -> np.ndarray:
    """Boolean footprint ``(Z, Y, X)``-shaped: a disk of ``radius_mm`` in the axial plane.

    Distances are compared with a relative tolerance of 1e-6, so that a header's rounding
    (a voxel of 1.0000000252 mm) does not drop the neighbours at exactly one radius."""
    vs = spacing_mm(image)
    ax = image.axial_axis
    tol = 1.0 + 1e-6
    half = [0 if a == ax else int(np.floor(radius_mm * tol / vs[a])) for a in range(3)]
    grids = np.meshgrid(*(np.arange(-h, h + 1) * vs[a] for a, h in enumerate(half)), indexing="ij")
    return sum(g ** 2 for g in grids) <= (radius_mm * tol) ** 2


def component_widths_mm(labels: np.ndarray, image: Volume, n: int) -> np.ndarray:
    """In-plane width (mm) of components ``1..n`` of ``labels`` ``(Z, Y, X)``.

    Twice the largest in-plane distance (mm) from a component voxel to the nearest voxel
    outside it, less the in-plane pixel size (a one-pixel line is one pixel wide).
    Returns float ``(n,)``.
    """
    if n == 0:
        return np.zeros(0)
    vs = spacing_mm(image)
    ax = image.axial_axis
    inplane = [vs[a] for a in range(3) if a != ax]
    fg = np.moveaxis(labels > 0, ax, 0)
    dist = np.zeros(fg.shape, dtype=np.float32)
    for s in np.flatnonzero(fg.any(axis=(1, 2))):
        dist[s] = edt_inside(fg[s], inplane)
    dist = np.moveaxis(dist, 0, ax)
    best = np.asarray(ndi.maximum(dist, labels, index=np.arange(1, n + 1)), dtype=float)
    return np.maximum(2.0 * best - min(inplane), min(inplane))


def strive_filter(labels: np.ndarray, n: int, image: Volume, *, max_width_mm: float = 3.0,
                  min_volume_mm3: float = 1.0, max_volume_mm3: float = 300.0,
                  min_voxels: int = 2) -> np.ndarray:
    """Which components of ``labels`` have a PVS's size and width (STRIVE, Wardlaw 2013).

    Parameters
    ----------
    labels : np.ndarray
        int ``(Z, Y, X)`` component labels ``1..n`` on ``image``'s grid.
    n : int
        Number of components.
    image : Volume
        Gives the voxel size (mm) and the axial axis.

    Returns
    -------
    np.ndarray
        bool ``(n,)``: component ``i + 1`` passes.
    """
    if n == 0:
        return np.zeros(0, dtype=bool)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    vol = counts * float(np.prod(spacing_mm(image)))
    width = component_widths_mm(labels, image, n)
    return ((counts >= min_voxels) & (vol >= min_volume_mm3) & (vol <= max_volume_mm3)
            & (width <= max_width_mm))


def _large_csf(csf: np.ndarray, spacing: np.ndarray, min_mm3: float) -> np.ndarray:
    lab, n = ndi.label(csf, structure=STRUCTURE_26)
    if n == 0:
        return csf
    sizes = np.bincount(lab.ravel()) * float(np.prod(spacing))
    sizes[0] = 0
    return sizes[lab] >= min_mm3


def find_pvs_candidates(image: Volume, lesion_mask: Volume | np.ndarray | None = None, *,
                        config: CandidateConfig = CandidateConfig(),
                        anatomy: Anatomy | None = None) -> CandidateResult:
    """Real PVS-like objects of a T2-weighted image (see the module docstring).

    Parameters
    ----------
    image : Volume
        3D T2-weighted image ``(Z, Y, X)``, with or without skull, any voxel size.
    lesion_mask : Volume or np.ndarray, optional
        Expert lesion mask on the same grid (``> 0`` = lesion): candidates touching it
        (dilated by ``config.lesion_margin_mm``) are dropped.
    config : CandidateConfig
    anatomy : Anatomy, optional
        Reuse a computed :func:`~napari_pvs.engine.anatomy.analyze_anatomy` result (it must
        be of this image; its lesion mask is then used).

    Returns
    -------
    CandidateResult

    Raises
    ------
    PVSInputError
        (naming the file) Image not 3D, no brain found, or a lesion mask on another grid.

    Refer to: Wardlaw J.M. et al., Lancet Neurology 12 (2013) 822-838 (STRIVE); the
    top-hat detection follows the classical filters reviewed in Barisano G. et al.,
    "Imaging perivascular space structure and function using brain MRI", NeuroImage 2022.
    """
    check_3d(image)
    if anatomy is None:
        anatomy = analyze_anatomy(image, lesion_mask,
                                  config=AnatomyConfig(lesion_margin_mm=config.lesion_margin_mm))
    if anatomy.brain.shape != image.shape:
        raise PVSInputError(f"anatomy grid {anatomy.brain.shape} differs from the image grid {image.shape}",
                            image.path)
    spacing = spacing_mm(image)
    shape = image.shape
    pad = np.ceil((config.background_radius_mm + 2.0) / spacing) + 1
    box = crop_to(anatomy.brain, pad)
    data = np.asarray(image.data, dtype=np.float32)[box]
    brain = anatomy.brain[box]
    csf = anatomy.csf[box]
    lesion = anatomy.lesion[box]

    sigma = estimate_noise_sigma(np.asarray(image.data), anatomy.noise_mask)
    if not np.isfinite(sigma) or sigma <= 0:
        sigma = 1e-6 * float(np.abs(data[brain]).max() or 1.0)
    csf_i = float(anatomy.csf_intensity)

    depth = edt_inside(brain, spacing)
    big_csf = _large_csf(csf, spacing, config.large_csf_mm3)
    near_csf = dilate_mm(big_csf, config.csf_margin_mm, spacing)
    parenchyma = brain & (depth > config.surface_margin_mm) & ~near_csf & ~lesion

    # local tissue level: grey opening with an in-plane disk (slight in-plane smoothing first)
    sm_sigma = [0.0 if a == image.axial_axis else 0.35 for a in range(3)]
    sm = ndi.gaussian_filter(data, sigma=sm_sigma, mode="nearest")
    background = ndi.grey_opening(sm, footprint=_inplane_disk(image, config.background_radius_mm))
    tophat = sm - background
    span = np.maximum(csf_i - background, 0.05 * max(csf_i, 1e-6))
    # the score in units of the seed threshold: >= 1 seeds, >= hysteresis grows
    score = np.minimum(tophat / (config.min_contrast * span + 1e-12) if config.min_contrast > 0 else np.inf,
                       tophat / (config.min_snr * sigma + 1e-12) if config.min_snr > 0 else np.inf)
    score = np.where(brain & ~big_csf, score, 0.0).astype(np.float32)
    sub = Volume(data=data, affine=np.asarray(image.affine), path=image.path)  # spacing/axis only
    conn = STRUCTURE_26
    kept = np.zeros(data.shape, dtype=bool)
    n_total = 0
    for level in sorted(set(float(v) for v in config.levels)):
        objects = apply_hysteresis_threshold(score, config.hysteresis * level, level)
        lab, n = ndi.label(objects & ~kept, structure=conn)
        n_total += n
        if not n:
            continue
        idx = np.arange(1, n + 1)
        inside = np.asarray(ndi.minimum(parenchyma, lab, idx), dtype=bool)        # wholly inside
        touches_lesion = (np.asarray(ndi.maximum(lesion, lab, idx), dtype=bool) if lesion.any()
                          else np.zeros(n, bool))
        shape_ok = strive_filter(lab, n, sub, max_width_mm=config.max_width_mm,
                                 min_volume_mm3=config.min_volume_mm3, max_volume_mm3=config.max_volume_mm3,
                                 min_voxels=config.min_voxels)
        good = np.concatenate([[False], inside & ~touches_lesion & shape_ok])
        kept |= good[lab]
    lab, n = ndi.label(kept, structure=conn)
    region_of = nearest_region(anatomy.regions[box], spacing, config.region_margin_mm)
    centres = np.asarray(ndi.center_of_mass(np.ones_like(lab), lab, np.arange(1, n + 1))).reshape(n, 3)
    centre_region = np.array([region_of[tuple(np.round(c).astype(int))] for c in centres], dtype=int)
    keep = centre_region > 0 if config.regions_only else np.ones(n, dtype=bool)
    if n and config.min_wm_ring > 0:
        keep &= _wm_ring_share(lab, n, sm, brain, anatomy.regions[box] == REGION_BG, image) >= config.min_wm_ring
    kept_ids = np.flatnonzero(keep) + 1
    relabel = np.zeros(n + 1, dtype=np.int32)
    relabel[kept_ids] = np.arange(1, len(kept_ids) + 1)
    lab_kept = relabel[lab]

    table: list[dict] = []
    if len(kept_ids):
        ids = np.arange(1, len(kept_ids) + 1)
        counts = np.bincount(lab_kept.ravel(), minlength=len(kept_ids) + 1)[1:]
        widths = component_widths_mm(lab_kept, sub, len(kept_ids))
        peak = np.asarray(ndi.maximum(tophat, lab_kept, ids))
        peak_span = np.asarray(ndi.maximum(tophat / span, lab_kept, ids))
        offset = np.array([s.start for s in box], dtype=float)
        for k, i in enumerate(ids):
            c = centres[kept_ids[k] - 1]
            table.append({
                "id": int(i), "region": REGION_NAMES.get(int(centre_region[kept_ids[k] - 1]), "other"),
                "n_voxels": int(counts[k]), "volume_mm3": float(counts[k] * np.prod(spacing)),
                "width_mm": float(widths[k]), "contrast": float(peak_span[k]),
                "snr": float(peak[k] / sigma),
                "centre_z": float(c[0] + offset[0]), "centre_y": float(c[1] + offset[1]),
                "centre_x": float(c[2] + offset[2]),
            })
    out_mask = lab_kept > 0
    if config.dilate_mm > 0 and out_mask.any():
        rim = max(config.dilate_mm, float(min(spacing)))        # at least one voxel
        out_mask = dilate_mm(out_mask, rim, spacing) & brain & ~lesion

    def full(a, dtype):
        o = np.zeros(shape, dtype=dtype)
        o[box] = a
        return o

    return CandidateResult(mask=full(out_mask, np.uint8), labels=full(lab_kept, np.int32), table=table,
                           parenchyma=full(parenchyma, bool),
                           info={"noise_sigma": float(sigma), "csf_intensity": csf_i,
                                 "n_components": int(n_total), "n_kept": len(kept_ids)})


def _wm_ring_share(lab: np.ndarray, n: int, sm: np.ndarray, brain: np.ndarray, bg: np.ndarray,
                   image: Volume) -> np.ndarray:
    """Per component, the share of its in-plane 1 mm ring that is white-matter-like or BG."""
    from skimage.filters import threshold_multiotsu

    vals = sm[brain]
    try:
        t_wm = float(threshold_multiotsu(vals[:: max(1, vals.size // 200_000)], classes=3)[0])
    except ValueError:
        return np.ones(n)
    ok = ((sm < t_wm) & brain) | bg
    grown = ndi.grey_dilation(lab, footprint=_inplane_disk(image, 1.0))
    ring = (lab == 0) & (grown > 0)
    total = np.bincount(grown[ring], minlength=n + 1)[1:]
    good = np.bincount(grown[ring & ok], minlength=n + 1)[1:]
    return np.where(total > 0, good / np.maximum(total, 1), 0.0)


def nearest_region(regions: np.ndarray, spacing, max_mm: float = 5.0) -> np.ndarray:
    """Per voxel, the label of the nearest BG/CSO region voxel within ``max_mm`` (0 beyond).

    Parameters
    ----------
    regions : np.ndarray
        uint8 ``(Z, Y, X)`` region map (:attr:`~napari_pvs.engine.anatomy.Anatomy.regions`).
    spacing : sequence of float
        Voxel size (mm) along ``(Z, Y, X)``.
    max_mm : float

    Returns
    -------
    np.ndarray
        uint8 ``(Z, Y, X)``.
    """
    if not (regions > 0).any():
        return np.zeros_like(regions)
    dist, (iz, iy, ix) = ndi.distance_transform_edt(regions == 0, sampling=spacing, return_indices=True)
    out = regions[iz, iy, ix]
    out[dist > max_mm] = 0
    return out
