"""T2-like images generated from label maps, SynthSeg-style: random contrast, resolution,
bias field and noise, so that a PVS network sees anatomy and acquisitions beyond the few
real training scans.

Every image is painted from a FreeSurfer-numbered label map (the shared SynthSeg training
maps): each label gets a mean intensity drawn per image (a Gaussian mixture, as in
SynthSeg), within T2 ranges that keep the order that makes PVS visible (CSF brightest,
then cortex, then white matter; pallidum and thalamus darker than cortex), plus voxel
texture. The 1 mm painting is blurred to a slice profile and resampled to a random
acquisition grid (in-plane 0.5-1.0 mm; half the images with slices of 2-5 mm, the others
near-isotropic), multiplied by a smooth random bias field and given Rician noise. The
result is a :class:`~napari_pvs.engine.io.Volume` into which
:func:`~napari_pvs.engine.synth.simulate_pvs` inserts PVS as into a real scan.

Refer to: Billot B. et al., "SynthSeg: Segmentation of brain MRI scans of any contrast and
resolution without retraining", Medical Image Analysis 2023,
doi:10.1016/j.media.2023.102789 (generation from label maps with random Gaussian mixtures,
resolution, bias field and noise; here restricted to T2-like contrasts).

Array convention: ``(Z, Y, X)`` with Z the axial (inferior-superior) axis; the output grid
is aligned with RAS+.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to, smooth_image
from scipy import ndimage as ndi

from ..anatomy import REGION_BG, REGION_CSO, Anatomy
from ..anatomy.morphology import crop_to, dilate_mm
from ..errors import PVSInputError
from ..io import Volume

__all__ = ["GenerativeConfig", "GeneratedT2", "generate_t2"]

#: FreeSurfer labels by T2 tissue class (everything else, e.g. SynthSeg's extra-cerebral
#: labels 500-530 and vessels, gets a free random intensity)
CSF_LABELS = (4, 5, 14, 15, 24, 43, 44, 72)
WHITE_MATTER_LABELS = (2, 41, 7, 46, 16, 28, 60, 85)
CORTEX_LABELS = (3, 42, 8, 47, 17, 53, 18, 54, 26, 58)
STRIATUM_LABELS = (11, 50, 12, 51)         # caudate, putamen: a little darker than cortex
DARK_GREY_LABELS = (10, 49, 13, 52)        # thalamus, pallidum (iron): between WM and cortex


@dataclass(frozen=True)
class GenerativeConfig:
    """Ranges (sampled uniformly per image) of the label-map generator.

    Attributes
    ----------
    in_plane_mm : (float, float)
        In-plane voxel size (mm), the same along R-L and A-P.
    thin_slice_mm, thick_slice_mm : (float, float)
        Slice spacing (mm) of near-isotropic and of thick-slice images.
    thick_fraction : float
        Share of images with thick slices.
    csf, cortex, white_matter : (float, float)
        Mean intensity of each class (CSF = about 1); white matter is kept at least
        ``min_gm_wm`` below cortex.
    min_gm_wm : float
    label_jitter : float
        SD of each label's mean around its class mean.
    texture_sd : (float, float)
        SD of the voxel texture inside a label (before blurring).
    bias_sd : float
        SD of the log bias field on a 4x4x4 control grid.
    noise_sd : (float, float)
        Rician noise SD, as a fraction of the CSF intensity.
    max_voxels : int
        In-plane voxels are made larger when the grid would exceed this (memory).
    """

    in_plane_mm: tuple[float, float] = (0.5, 1.0)
    thin_slice_mm: tuple[float, float] = (0.9, 1.5)
    thick_slice_mm: tuple[float, float] = (2.0, 5.0)
    thick_fraction: float = 0.5
    csf: tuple[float, float] = (0.85, 1.0)
    cortex: tuple[float, float] = (0.40, 0.62)
    white_matter: tuple[float, float] = (0.22, 0.45)
    min_gm_wm: float = 0.06
    label_jitter: float = 0.02
    texture_sd: tuple[float, float] = (0.01, 0.05)
    bias_sd: float = 0.15
    noise_sd: tuple[float, float] = (0.005, 0.03)
    max_voxels: int = 12_000_000

    def __post_init__(self):
        for name in ("in_plane_mm", "thin_slice_mm", "thick_slice_mm", "csf", "cortex", "white_matter",
                     "texture_sd", "noise_sd"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a range 0 <= low <= high, got {(lo, hi)}")
        if not 0.0 <= self.thick_fraction <= 1.0:
            raise ValueError(f"thick_fraction must be within [0, 1], got {self.thick_fraction}")


@dataclass(frozen=True, eq=False)
class GeneratedT2:
    """An image generated from a label map.

    Attributes
    ----------
    image : Volume
        float32 ``(Z, Y, X)``, Z axial, RAS+-aligned grid; intensities about 0-1000 (CSF
        about 850-1000). ``image.meta["generated"]``: seed, voxel size (mm), class means.
    labels : np.ndarray
        int32 ``(Z, Y, X)``: the label map on the image's grid (nearest neighbour).
    """

    image: Volume
    labels: np.ndarray

    def anatomy(self) -> Anatomy:
        """The anatomy from the labels, for :func:`~napari_pvs.engine.synth.simulate_pvs`
        and :func:`~napari_pvs.engine.training.recipe.synthetic_examples` (``anatomy=``):
        brain = FreeSurfer labels 1-255, CSF = :data:`CSF_LABELS`, BG region = caudate,
        putamen and pallidum, CSO region = cerebral white matter above the putamen's top,
        landmarks from the lateral ventricles, as
        :func:`~napari_pvs.engine.anatomy.analyze_anatomy` defines them.

        Raises
        ------
        PVSInputError
            The labels hold no lateral ventricle or putamen.
        """
        lab = self.labels
        img = self.image
        spacing = np.asarray(img.voxel_size)
        brain = (lab > 0) & (lab < 256)
        csf = np.isin(lab, CSF_LABELS)
        vent = np.isin(lab, (4, 43))
        putamen = np.isin(lab, (12, 51))
        if not vent.any() or not putamen.any():
            raise PVSInputError("generated image: its labels hold no lateral ventricle or putamen", img.path)

        def world(mask):
            return img.voxel_to_world(np.argwhere(mask).astype(float))

        v_xyz, p_xyz = world(vent), world(putamen)
        v_top = float(v_xyz[:, 2].max())
        bg = (float(p_xyz[:, 2].min()), float(p_xyz[:, 2].max()))
        centre = np.array([*v_xyz[:, :2].mean(0), v_top - 20.0])
        # the grid is RAS-aligned: array Z is world superior, array X world left-right
        z_world = img.voxel_to_world(np.stack([np.arange(img.shape[0]), np.zeros(img.shape[0]),
                                               np.zeros(img.shape[0])], 1).astype(float))[:, 2]
        regions = np.zeros(img.shape, np.uint8)
        regions[np.isin(lab, (11, 50, 12, 51, 13, 52))] = REGION_BG
        regions[np.isin(lab, (2, 41)) & (z_world > bg[1])[:, None, None]] = REGION_CSO
        x_box = crop_to(brain, (0, 0, 0))[2]
        scale = float(np.clip((x_box.stop - 1 - x_box.start) * spacing[2] / 115.0, 0.8, 1.25))
        return Anatomy(brain=brain, csf=csf, lesion=np.zeros(img.shape, bool), regions=regions,
                       noise_mask=brain & ~dilate_mm(~brain, 2.0, spacing), ventricles=vent, centre_xyz=centre,
                       csf_intensity=float(np.median(np.asarray(img.data)[vent])), ventricle_top_mm=v_top,
                       size_scale=scale, bg_level_mm=bg, cso_from_mm=bg[1])


def _label_means(labels: np.ndarray, config: GenerativeConfig, rng: np.random.Generator) -> np.ndarray:
    """Lookup table label -> mean intensity for one image."""
    c = config
    csf = rng.uniform(*c.csf)
    cortex = rng.uniform(*c.cortex)
    wm = min(rng.uniform(*c.white_matter), cortex - c.min_gm_wm)
    striatum = cortex * rng.uniform(0.85, 1.0)
    dark = wm + (cortex - wm) * rng.uniform(0.0, 0.6)
    lut = rng.uniform(0.02, 0.9, int(labels.max()) + 1)        # unlisted labels: free intensity
    lut[0] = rng.uniform(0.0, 0.02)
    for labs, mean in ((CSF_LABELS, csf), (WHITE_MATTER_LABELS, wm), (CORTEX_LABELS, cortex),
                       (STRIATUM_LABELS, striatum), (DARK_GREY_LABELS, dark)):
        for lab in labs:
            if lab < lut.size:
                lut[lab] = mean + rng.normal(0.0, c.label_jitter)
    return np.clip(lut, 0.0, 1.2)


def generate_t2(label_map: Volume, *, seed: int = 0, config: GenerativeConfig = GenerativeConfig()) -> GeneratedT2:
    """A T2-like image with random contrast and acquisition, painted from a label map.

    Parameters
    ----------
    label_map : Volume
        FreeSurfer-numbered labels ``(Z, Y, X)`` (any orientation, e.g. 1 mm SynthSeg
        training maps); 0 = background.
    seed : int
        Random seed: the same map, seed and config give the same image.
    config : GenerativeConfig

    Returns
    -------
    GeneratedT2
        The image (a grid covering the labelled head plus 4 mm) and the labels on its grid.

    Raises
    ------
    PVSInputError
        (naming ``label_map.path``) The map has no labelled voxel, is not integer-valued, or
        holds no white matter, cortex or CSF label.

    Example
    -------
    >>> labels = load_volume("synthseg/training_seg_01.nii.gz")          # doctest: +SKIP
    >>> gen = generate_t2(labels, seed=3)                                 # doctest: +SKIP
    >>> sim = simulate_pvs(gen.image, seed=1, anatomy=gen.anatomy())      # doctest: +SKIP
    >>> sim.mask.shape == gen.image.shape                                 # doctest: +SKIP
    True
    """
    rng = np.random.default_rng(seed)
    data = np.asarray(label_map.data)
    if not np.any(data):
        raise PVSInputError("label map has no labelled voxel", label_map.path)
    if not np.all(np.mod(data, 1) == 0):
        raise PVSInputError("label map is not integer-valued (expected FreeSurfer labels)", label_map.path)
    labels = data.astype(np.int32)
    for name, labs in (("white matter", WHITE_MATTER_LABELS[:2]), ("cortex", CORTEX_LABELS[:2]), ("CSF", CSF_LABELS)):
        if not np.isin(labels, labs).any():
            raise PVSInputError(f"label map holds no {name} label (FreeSurfer {', '.join(map(str, labs))})",
                                label_map.path)
    img = nib.as_closest_canonical(nib.Nifti1Image(labels.transpose(2, 1, 0), label_map.affine))  # voxel axes RAS
    labels = np.asarray(img.dataobj)
    src_mm = nib.affines.voxel_sizes(img.affine)
    box = crop_to(labels != 0, np.ceil(4.0 / src_mm).astype(int))      # the labelled head plus 4 mm
    labels = labels[box]
    start = np.array([b.start for b in box])
    affine = img.affine.copy()
    affine[:3, 3] = nib.affines.apply_affine(img.affine, start)

    lut = _label_means(labels, config, rng)
    paint = lut[labels] + rng.uniform(*config.texture_sd) * rng.standard_normal(labels.shape)
    paint = ndi.gaussian_filter(paint, 0.5).astype(np.float32)

    in_plane = rng.uniform(*config.in_plane_mm)
    thick = rng.random() < config.thick_fraction
    slice_mm = rng.uniform(*(config.thick_slice_mm if thick else config.thin_slice_mm))
    extent_mm = np.array(labels.shape) * src_mm
    n_slices = max(int(np.ceil(extent_mm[2] / slice_mm)), 1)
    in_plane = max(in_plane, float(np.sqrt(extent_mm[0] * extent_mm[1] * n_slices / config.max_voxels)))
    out_mm = np.array([in_plane, in_plane, slice_mm])
    out_shape = tuple(int(v) for v in np.maximum(np.ceil(extent_mm / out_mm), 1))
    out_affine = np.diag([*out_mm, 1.0])
    corner = nib.affines.apply_affine(affine, -0.5 * np.ones(3))        # world position of the box's outer corner
    out_affine[:3, 3] = corner + 0.5 * out_mm
    # slice profile: blur to each output spacing (FWHM = spacing) before sampling
    fwhm = np.sqrt(np.maximum(out_mm ** 2 - src_mm ** 2, 0.0))
    smooth = smooth_image(nib.Nifti1Image(paint, affine), fwhm) if np.any(fwhm > 0) else nib.Nifti1Image(paint, affine)
    out = np.asarray(resample_from_to(smooth, (out_shape, out_affine), order=1, mode="nearest").dataobj,
                     dtype=np.float32)

    coarse = rng.normal(0.0, config.bias_sd, (4, 4, 4))
    bias = np.exp(ndi.zoom(coarse, np.array(out_shape) / 4.0, order=3, mode="nearest", grid_mode=True))
    out = out * bias.astype(np.float32)
    sd = rng.uniform(*config.noise_sd)
    out = np.hypot(out + sd * rng.standard_normal(out.shape), sd * rng.standard_normal(out.shape))
    out = (1000.0 * out).astype(np.float32)
    meta = {"generated": {"seed": int(seed), "voxel_size_mm": [round(float(v), 3) for v in out_mm],
                          "label_map": str(label_map.path) if label_map.path else None,
                          "means": {"csf": round(float(lut[24]), 3) if lut.size > 24 else None,
                                    "cortex": round(float(lut[3]), 3), "white_matter": round(float(lut[2]), 3)}}}
    out_labels = np.asarray(resample_from_to(nib.Nifti1Image(labels, affine), (out_shape, out_affine), order=0,
                                             mode="constant", cval=0).dataobj).astype(np.int32)
    return GeneratedT2(Volume(np.ascontiguousarray(out.transpose(2, 1, 0)), out_affine, meta=meta),
                       np.ascontiguousarray(out_labels.transpose(2, 1, 0)))
