"""Synthetic lesion-like hyperintensities: hard negatives for PVS training.

White-matter hyperintensities and MS lesions are the PVS mimics that matter most: both are
bright on T2. STRIVE tells them apart by size and shape (a PVS is at most 3 mm wide, a
lesion is wider than 3 mm and ovoid, often with an ill-defined edge) and by signal (a PVS
follows CSF, a lesion is less bright than CSF on T2 and bright on FLAIR). The training
scans hold few lesions, so a network trained on inserted PVS sees almost none and may
call any bright blob PVS. :func:`insert_lesion_mimics` puts ovoid, soft-edged, less-than-CSF
hyperintensities into the white matter (half of them periventricular, their long axis
pointing away from the ventricles as Dawson's fingers do); they are labelled background,
never ignored, so the loss penalises calling them PVS.

Refer to: Wardlaw J.M. et al., "Neuroimaging standards for research into small vessel
disease and its contribution to ageing and neurodegeneration" (STRIVE), Lancet Neurology
2013, doi:10.1016/S1474-4422(13)70124-8 (PVS width <= 3 mm; lesions larger);
Filippi M. et al., "MRI criteria for the diagnosis of multiple sclerosis: MAGNIMS
consensus guidelines", Lancet Neurology 2016, doi:10.1016/S1474-4422(15)00393-2
(lesions >= 3 mm, periventricular, ovoid).

Array convention: ``(Z, Y, X)``; geometry in world (RAS+, mm) coordinates from the
affine, as in :mod:`.simulate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..anatomy import analyze_anatomy
from ..anatomy.morphology import dilate_mm, spacing_mm
from ..errors import PVSInputError
from ..io import Volume
from .noise import blend_toward, estimate_noise_sigma
from .render import render_local, tilted_direction

__all__ = ["LesionMimicConfig", "LesionMimicResult", "insert_lesion_mimics"]


@dataclass(frozen=True)
class LesionMimicConfig:
    """Parameters of the synthetic lesion mimics (ranges sampled uniformly).

    Attributes
    ----------
    n_lesions : int
        Lesions to place per volume (fewer if there is no room).
    diameter_mm : (float, float)
        Short-axis diameter (mm); the lower bound above STRIVE's 3 mm PVS width.
    elongation : (float, float)
        Long axis / short axis.
    contrast : (float, float)
        Fraction of the way from the local tissue to CSF intensity at the lesion's core
        (below 1: less bright than CSF).
    periventricular_fraction : float
        Share of lesions centred within ``periventricular_mm`` of the lateral ventricles.
    periventricular_mm : float
    edge_mm : float
        Gaussian sigma (mm) that blurs the lesion's edge (ill-defined margins).
    max_tilt_deg : float
        Tilt of the long axis away from the radial direction (from the brain centre).
    supersample_mm : float
        Sub-voxel rendering step (mm).
    max_tries : int
        Placement tries per lesion.
    """

    n_lesions: int = 8
    diameter_mm: tuple[float, float] = (3.5, 10.0)
    elongation: tuple[float, float] = (1.0, 2.5)
    contrast: tuple[float, float] = (0.4, 0.9)
    periventricular_fraction: float = 0.5
    periventricular_mm: float = 8.0
    edge_mm: float = 0.7
    max_tilt_deg: float = 30.0
    supersample_mm: float = 0.5
    max_tries: int = 200

    def __post_init__(self):
        for name in ("diameter_mm", "elongation", "contrast"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range 0 < min <= max, got {(lo, hi)}")
        if self.diameter_mm[0] <= 3.0:
            raise ValueError(f"diameter_mm must start above 3 mm (STRIVE's PVS width), got {self.diameter_mm}")
        if self.elongation[0] < 1.0:
            raise ValueError(f"elongation must be >= 1, got {self.elongation}")
        if self.contrast[1] > 1.0:
            raise ValueError(f"contrast must be at most 1 (CSF), got {self.contrast}")
        if not 0.0 <= self.periventricular_fraction <= 1.0:
            raise ValueError(f"periventricular_fraction must be within [0, 1], got {self.periventricular_fraction}")
        if self.n_lesions < 0 or self.max_tries < 1:
            raise ValueError(f"n_lesions must be >= 0 and max_tries >= 1, got {self.n_lesions}, {self.max_tries}")


@dataclass
class LesionMimicResult:
    """Output of :func:`insert_lesion_mimics`.

    Attributes
    ----------
    image : Volume
        The image with the lesions, float32 ``(Z, Y, X)``.
    fraction : np.ndarray
        float32 ``(Z, Y, X)`` in ``[0, 1]``: each voxel's lesion weight (soft edge included).
    mask : np.ndarray
        uint8 ``(Z, Y, X)``: ``fraction >= 0.1``, the voxels the lesions changed visibly.
    table : list of dict
        One row per lesion: centre (mm and voxel), diameters (mm), contrast,
        periventricular (bool).
    """

    image: Volume
    fraction: np.ndarray
    mask: np.ndarray
    table: list


def insert_lesion_mimics(image: Volume, *, seed: int = 0, config: LesionMimicConfig = LesionMimicConfig(),
                         avoid: np.ndarray | None = None, anatomy=None) -> LesionMimicResult:
    """Insert ovoid, soft-edged T2 hyperintensities into the white matter of ``image``.

    Each lesion is an ellipsoid (short diameter ``d``, long ``d * elongation``) rendered
    at sub-voxel resolution (:func:`~napari_pvs.engine.synth.render.render_local`), its edge
    blurred by ``edge_mm``; its voxels move a fraction ``contrast * weight`` of the way to
    the ventricles' CSF intensity, with Gaussian noise topped up to the image's own noise
    level (the PVS intensity model of :func:`~napari_pvs.engine.synth.simulate_pvs`, with
    a lower, lesion-like contrast). A lesion is placed only where all its voxels lie in
    the brain, outside CSF, outside ``avoid`` and away from earlier lesions.

    Parameters
    ----------
    image : Volume
        3D T2-weighted ``(Z, Y, X)``.
    seed : int
    config : LesionMimicConfig
    avoid : np.ndarray, optional
        bool ``(Z, Y, X)``: voxels a lesion must not touch (e.g. synthetic PVS and the
        scan's own PVS-like objects, dilated).
    anatomy : Anatomy, optional
        :func:`~napari_pvs.engine.anatomy.analyze_anatomy` of ``image`` (computed if None).

    Returns
    -------
    LesionMimicResult

    Raises
    ------
    PVSInputError
        Not 3D, ``avoid`` on another grid, or no white matter to place lesions in.
    """
    shape = tuple(np.shape(image.data))
    if len(shape) != 3:
        raise PVSInputError(f"expected a 3D image, got shape {shape}", image.path)
    if avoid is not None and np.shape(avoid) != shape:
        raise PVSInputError(f"avoid mask shape {np.shape(avoid)} differs from the image grid {shape}", image.path)
    anat = anatomy if anatomy is not None else analyze_anatomy(image)
    rng = np.random.default_rng(seed)
    vs = spacing_mm(image)
    tissue = anat.brain & ~dilate_mm(anat.csf, 1.0, vs)
    allowed = tissue & ~np.asarray(avoid, dtype=bool) if avoid is not None else tissue
    white = (anat.regions > 0) & allowed
    if not white.any():
        raise PVSInputError("no white matter or basal ganglia found to place lesion mimics in "
                            "(expected a T2-weighted brain image)", image.path)
    near_vent = dilate_mm(anat.ventricles, config.periventricular_mm, vs) & allowed if anat.ventricles.any() else None
    pools = {"periventricular": np.flatnonzero(near_vent) if near_vent is not None else np.empty(0, int),
             "deep": np.flatnonzero(white)}
    aff = np.asarray(image.affine, dtype=float)
    sigma_vox = [config.edge_mm / v for v in vs]
    occupied = ~allowed
    fraction = np.zeros(shape, dtype=np.float32)
    contrast_map = np.zeros(shape, dtype=np.float32)
    table: list[dict] = []
    max_tilt = np.deg2rad(config.max_tilt_deg)
    for _ in range(config.n_lesions):
        kind = ("periventricular" if pools["periventricular"].size and rng.random() < config.periventricular_fraction
                else "deep")
        pool = pools[kind]
        for _try in range(config.max_tries):
            zyx = np.array(np.unravel_index(pool[rng.integers(pool.size)], shape), dtype=float)
            zyx += rng.uniform(-0.5, 0.5, size=3)
            centre = image.voxel_to_world(zyx)
            d = float(rng.uniform(*config.diameter_mm))
            length = d * float(rng.uniform(*config.elongation))
            radial = centre - anat.centre_xyz
            nr = float(np.linalg.norm(radial))
            axis = radial / nr if nr > 1e-6 else np.array([0.0, 0.0, 1.0])
            direction = tilted_direction(axis, max_tilt, rng)
            sl, frac, clipped = render_local(shape, aff, centre, direction, d, length, "ellipsoid",
                                             config.supersample_mm)
            if clipped or sl is None:
                continue
            pad = tuple(int(np.ceil(3 * s)) + 1 for s in sigma_vox)
            big = tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(sl, pad, shape, strict=True))
            local = np.zeros(tuple(b.stop - b.start for b in big), dtype=np.float32)
            inner = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sl, big, strict=True))
            local[inner] = frac
            local = ndi.gaussian_filter(local, sigma_vox)
            touched = local >= 0.05
            if not touched.any() or occupied[big][touched].any():
                continue
            contrast = float(rng.uniform(*config.contrast))
            fraction[big] = np.maximum(fraction[big], local)
            contrast_map[big][touched] = contrast
            occupied[big] |= ndi.binary_dilation(touched, iterations=2)
            table.append({"id": len(table) + 1, "kind": kind,
                          "centre_x_mm": float(centre[0]), "centre_y_mm": float(centre[1]),
                          "centre_z_mm": float(centre[2]), "centre_z": float(zyx[0]),
                          "centre_y": float(zyx[1]), "centre_x": float(zyx[2]),
                          "diameter_mm": d, "length_mm": length, "contrast": contrast})
            break
    np.clip(fraction, 0.0, 1.0, out=fraction)
    data = np.asarray(image.data)
    out = data.astype(np.float32, copy=True)
    hit = np.flatnonzero(fraction >= 0.01)
    if hit.size:
        w = fraction.ravel()[hit].astype(np.float64) * contrast_map.ravel()[hit]
        blend_toward(out, hit, w, float(anat.csf_intensity), estimate_noise_sigma(data, anat.noise_mask), rng)
    return LesionMimicResult(image=image.with_data(out, lesion_mimic_seed=seed), fraction=fraction,
                             mask=(fraction >= 0.1).astype(np.uint8), table=table)
