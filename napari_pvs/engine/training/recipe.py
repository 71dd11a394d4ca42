"""How training data are made from real scans, so that a network learns PVS, not the simulator.

Four options, each a field of :class:`RecipeConfig` so that a benchmark can show what
each adds:

1. **ignore the real PVS already in the scan** (``ignore_real_pvs``): the real PVS-like
   objects of the scan (:func:`~napari_pvs.engine.candidates.find_pvs_candidates`,
   generous settings) are left out of the loss (an ignore mask, not negatives); lesions,
   sulci and ventricle walls stay true negatives (hard negatives). Voxels a synthetic PVS
   covers only partly (fraction between ``ignore_partial_volume`` and 0.5) are ignored
   too: they are neither clearly PVS nor clearly background;
2. **a wider simulation** (``simulation``, default
   :func:`~napari_pvs.engine.synth.wide_simulation`) plus **slice-thickness
   randomisation** (``thick_slice_mm``: scans with thin slices also give a copy with
   thick slices, averaged in the slice direction so that partial volume is right); the
   rest of the SynthSeg-style domain randomisation (bias field, contrast, noise, blur,
   in-plane resolution) is ``TrainConfig.domain_randomisation``;
3. **lesion-like hard negatives** (``lesion_mimics``): ovoid, soft-edged, less-than-CSF
   hyperintensities wider than 3 mm (:func:`~napari_pvs.engine.synth.insert_lesion_mimics`)
   inserted into the white matter, labelled background and never ignored, because the
   training scans hold too few real lesions to teach the network that a bright blob is
   not a PVS;
4. **pseudo-labels on the real scans** (``pseudo_labels``, self-training with a teacher
   and a student; Xie Q. et al., "Self-training with Noisy Student improves ImageNet
   classification", CVPR 2020, arXiv:2003.04252): a teacher trained on (1)-(2) predicts
   the real scans without insertions; components with a high peak probability, a PVS's
   size and width (STRIVE) and inside the parenchyma become labels
   (:func:`pseudo_label_example`), the student trains on them and on the synthetic data
   (options 1-3).

Array convention: ``(Z, Y, X)``; masks uint8.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..anatomy import analyze_anatomy
from ..anatomy.morphology import STRUCTURE_26, dilate_mm
from ..candidates import (CandidateConfig, CandidateResult, find_pvs_candidates, ignore_config, reference_config,
                          strive_filter)
from ..errors import PVSInputError
from ..io import Volume
from ..synth import LesionMimicConfig, SimulationConfig, insert_lesion_mimics, simulate_pvs, wide_simulation

__all__ = ["RecipeConfig", "PseudoLabelConfig", "TrainingExample", "synthetic_examples",
           "thick_slice_volume", "pseudo_label_example", "recipe_to_dict"]


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Which teacher detections on a real scan become labels.

    Attributes
    ----------
    mask_threshold : float
        Probability that makes a voxel part of a detection.
    min_peak_probability : float
        A detection is kept only if its most confident voxel reaches this.
    max_width_mm, min_volume_mm3, max_volume_mm3 : float
        STRIVE size and width filter (see :func:`~napari_pvs.engine.candidates.strive_filter`).
    agreement_peak : float or None
        Two views that agree: a strict PVS-like object of the rule-based detector
        (:func:`~napari_pvs.engine.candidates.find_pvs_candidates` with
        :func:`~napari_pvs.engine.candidates.reference_config`) on which the teacher's peak
        probability reaches this also becomes a label, with the detector's voxels (as in
        co-training: Blum A. & Mitchell T., COLT 1998, doi:10.1145/279943.279962). None:
        only the teacher's confident detections are labels.
    """

    mask_threshold: float = 0.5
    min_peak_probability: float = 0.9
    max_width_mm: float = 3.0
    min_volume_mm3: float = 1.0
    max_volume_mm3: float = 300.0
    agreement_peak: float | None = None

    def __post_init__(self):
        if self.agreement_peak is not None and not 0.0 < self.agreement_peak <= 1.0:
            raise ValueError(f"agreement_peak must be within (0, 1] or None, got {self.agreement_peak}")


@dataclass(frozen=True)
class RecipeConfig:
    """The training-data recipe (saved in the checkpoint under ``"recipe"``).

    Attributes
    ----------
    simulation : SimulationConfig
        Synthetic PVS; default the widened :func:`~napari_pvs.engine.synth.wide_simulation`.
    copies : int
        Synthetic copies per scan (different seeds).
    ignore_real_pvs : bool
        Leave the scan's own PVS-like objects out of the loss.
    candidates : CandidateConfig
        Settings of the real PVS-like objects (default generous :func:`ignore_config`).
    ignore_partial_volume : float
        Voxels whose synthetic PVS fraction is at least this but below 0.5 are ignored
        (0 turns it off).
    thick_slice_mm : float or None
        Scans with slices thinner than 2 mm also give a copy with slices this thick.
    pseudo_labels : bool
        Add teacher pseudo-labels on the real scans (a second, student round).
    pseudo : PseudoLabelConfig
    lesion_mimics : LesionMimicConfig or None
        Insert lesion-like hard negatives into every synthetic copy (None: off).
    """

    simulation: SimulationConfig = field(default_factory=wide_simulation)
    copies: int = 2
    ignore_real_pvs: bool = True
    candidates: CandidateConfig = field(default_factory=ignore_config)
    ignore_partial_volume: float = 0.15
    thick_slice_mm: float | None = 3.0
    pseudo_labels: bool = True
    pseudo: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    lesion_mimics: LesionMimicConfig | None = None

    def __post_init__(self):
        if self.copies < 1:
            raise ValueError(f"copies must be >= 1, got {self.copies}")
        if not 0.0 <= self.ignore_partial_volume < 0.5:
            raise ValueError(f"ignore_partial_volume must be within [0, 0.5), got {self.ignore_partial_volume}")
        if self.thick_slice_mm is not None and self.thick_slice_mm <= 2.0:
            raise ValueError(f"thick_slice_mm must be > 2 mm or None, got {self.thick_slice_mm}")


def recipe_to_dict(recipe: RecipeConfig) -> dict:
    """JSON-able dict of a :class:`RecipeConfig` (nested configs included)."""
    return dataclasses.asdict(recipe)


@dataclass
class TrainingExample:
    """One training volume.

    Attributes
    ----------
    image : Volume
        T2 image ``(Z, Y, X)`` (with synthetic PVS, or the real scan for pseudo-labels).
    mask : np.ndarray
        uint8 ``(Z, Y, X)`` PVS label.
    ignore : np.ndarray or None
        uint8 ``(Z, Y, X)``: voxels left out of the loss.
    source : str
        Where it came from (file name, seed, kind).
    kind : str
        ``"synthetic"``, ``"synthetic-thick"`` or ``"pseudo"``.
    """

    image: Volume
    mask: np.ndarray
    ignore: np.ndarray | None
    source: str
    kind: str


def thick_slice_volume(volume: Volume, thickness_mm: float, *arrays: np.ndarray
                       ) -> tuple[Volume, list[np.ndarray]]:
    """Thicker slices: average groups of ``g = round(thickness / slice_thickness)`` slices.

    The image and every extra array (e.g. a PVS fraction) are averaged over each group
    along the axial axis (a trailing incomplete group is dropped); the affine's slice
    axis is scaled by ``g`` and its origin moved to the first group's centre, so world
    positions stay right. This is what a thick-slice acquisition sees of the same anatomy
    (partial volume along the slice), up to the slice profile.

    Parameters
    ----------
    volume : Volume
        3D ``(Z, Y, X)``.
    thickness_mm : float
        Target slice thickness (mm).
    *arrays : np.ndarray
        Same shape as the volume.

    Returns
    -------
    (Volume, list of np.ndarray)
        float32 data; the arrays averaged the same way (float32).

    Raises
    ------
    ValueError
        An array of another shape, or fewer slices than one group.
    """
    ax = volume.axial_axis
    dz = volume.voxel_size[ax]
    g = max(1, int(round(thickness_mm / dz)))
    n = volume.shape[ax] // g
    if n < 1:
        raise ValueError(f"{volume.shape[ax]} slices cannot make one {thickness_mm} mm slice")
    for a in arrays:
        if a.shape != volume.shape:
            raise ValueError(f"array shape {a.shape} differs from the volume's {volume.shape}")

    def avg(a):
        a = np.moveaxis(np.asarray(a, dtype=np.float32), ax, 0)[: n * g]
        a = a.reshape(n, g, *a.shape[1:]).mean(axis=1)
        return np.moveaxis(a, 0, ax)

    nifti_axis = 2 - ax                      # (Z, Y, X) axis -> NIfTI (i, j, k) column
    aff = np.array(volume.affine, dtype=float)
    aff[:3, 3] += aff[:3, nifti_axis] * (g - 1) / 2.0
    aff[:3, nifti_axis] *= g
    out = Volume(data=avg(volume.data), affine=aff, header=None, path=volume.path,
                 meta={**volume.meta, "thick_slice_mm": float(g * dz)})
    return out, [avg(a) for a in arrays]


def _name(image: Volume) -> str:
    return image.path.name if image.path is not None else "image"


def synthetic_examples(image: Volume, seeds, recipe: RecipeConfig = RecipeConfig(), *,
                       lesion_mask: Volume | np.ndarray | None = None,
                       candidates: CandidateResult | None = None, anatomy=None) -> list[TrainingExample]:
    """Synthetic-PVS training volumes of one real scan, with their ignore masks.

    For each seed: :func:`~napari_pvs.engine.synth.simulate_pvs` with
    ``recipe.simulation``; label = fraction >= 0.5; ignore = the real PVS-like objects
    (when ``recipe.ignore_real_pvs``) plus partly covered voxels, never a labelled voxel.
    With ``recipe.lesion_mimics``, lesion-like hard negatives are then inserted at least
    2 mm from every synthetic and real PVS-like object and from the expert lesions
    (seed ``1000 + seed``); their voxels are background and never ignored.
    A scan with slices thinner than 2 mm also gives a thick-slice copy per seed
    (:func:`thick_slice_volume`, label = averaged fraction >= 0.5).

    Parameters
    ----------
    image : Volume
        Real T2 scan ``(Z, Y, X)``.
    seeds : iterable of int
        One synthetic copy per seed.
    recipe : RecipeConfig
    lesion_mask : Volume or np.ndarray, optional
        Expert lesion mask on the same grid: no PVS are inserted there and lesions are
        never ignored.
    candidates : CandidateResult, optional
        Precomputed real PVS-like objects of ``image`` (else computed when needed).
    anatomy : Anatomy, optional
        Known anatomy of ``image`` (e.g. from the label map it was generated from), used
        for PVS and lesion-mimic placement instead of the image-derived one.

    Returns
    -------
    list of TrainingExample

    Raises
    ------
    PVSInputError
        From the simulation (no brain, no eligible region, lesion mask on another grid).
    """
    if recipe.ignore_real_pvs and candidates is None:
        candidates = find_pvs_candidates(image, lesion_mask, config=recipe.candidates)
    real = candidates.mask > 0 if (recipe.ignore_real_pvs and candidates is not None) else None
    out = []
    thin = image.voxel_size[image.axial_axis] < 2.0
    anat = anatomy
    if anat is None and recipe.lesion_mimics is not None:
        anat = analyze_anatomy(image, lesion_mask)
    for seed in seeds:
        sim = simulate_pvs(image, seed=int(seed), lesion_mask=lesion_mask, config=recipe.simulation, anatomy=anatomy)
        mask = sim.mask > 0
        ignore = np.zeros(image.shape, dtype=bool) if real is None else real.copy()
        if recipe.ignore_partial_volume > 0:
            ignore |= sim.fraction >= recipe.ignore_partial_volume
        ignore &= ~mask
        src = f"{_name(image)} seed {seed}"
        img = sim.image
        if anat is not None and recipe.lesion_mimics is not None:
            taken = (sim.fraction > 0) | anat.lesion | (real if real is not None else False)
            les = insert_lesion_mimics(img, seed=1000 + int(seed), config=recipe.lesion_mimics,
                                       avoid=dilate_mm(taken, 2.0, np.asarray(image.voxel_size)), anatomy=anat)
            img = les.image
            ignore &= les.fraction < 0.05
            src += f", {len(les.table)} lesion mimics"
        out.append(TrainingExample(img, mask.astype(np.uint8), ignore.astype(np.uint8), src, "synthetic"))
        if thin and recipe.thick_slice_mm:
            thick, (frac, ign) = thick_slice_volume(img, recipe.thick_slice_mm, sim.fraction,
                                                    ignore.astype(np.float32))
            tmask = frac >= 0.5
            tign = ((ign > 0) | (frac >= max(recipe.ignore_partial_volume, 1e-6))) & ~tmask
            out.append(TrainingExample(thick, tmask.astype(np.uint8), tign.astype(np.uint8),
                                       f"{src}, {thick.meta['thick_slice_mm']:.1f} mm slices", "synthetic-thick"))
    return out


def pseudo_label_example(prob: np.ndarray, image: Volume, recipe: RecipeConfig = RecipeConfig(), *,
                         lesion_mask: Volume | np.ndarray | None = None,
                         candidates: CandidateResult | None = None,
                         reference: CandidateResult | None = None) -> tuple[TrainingExample, dict]:
    """A real scan labelled with the teacher's confident, PVS-shaped detections.

    Detections are 3D components (26-connectivity) of ``prob >= mask_threshold``; a
    detection becomes a label when its peak probability reaches
    ``min_peak_probability``, it passes the STRIVE size/width filter, and it lies wholly in
    the parenchyma of :func:`~napari_pvs.engine.candidates.find_pvs_candidates` (not in
    or next to ventricles and sulci, not at the brain surface, not in a lesion). The other
    detections and the remaining real PVS-like objects are ignored (unknown); the rest of
    the scan is background. With ``recipe.pseudo.agreement_peak``, the strict PVS-like
    objects on which the teacher's peak reaches it are labels too.

    Parameters
    ----------
    prob : np.ndarray
        float ``(Z, Y, X)`` teacher PVS probability on ``image``'s grid.
    image : Volume
        The real scan (no insertion).
    recipe : RecipeConfig
    lesion_mask : Volume or np.ndarray, optional
    candidates : CandidateResult, optional
        Precomputed for ``image`` with ``recipe.candidates``.
    reference : CandidateResult, optional
        The strict PVS-like objects (``reference_config()``), precomputed; used only with
        ``recipe.pseudo.agreement_peak``.

    Returns
    -------
    (TrainingExample, dict)
        The example (kind ``"pseudo"``) and counts: ``n_detections``, ``n_pseudo_labels``,
        ``pseudo_label_voxels``, ``n_agreement_labels`` (strict objects labelled because
        the teacher agrees; 0 without ``agreement_peak``).

    Raises
    ------
    PVSInputError
        ``prob`` not on the image grid.
    """
    prob = np.asarray(prob)
    if prob.shape != image.shape:
        raise PVSInputError(f"probability map shape {prob.shape} differs from the image grid {image.shape}",
                            image.path)
    cfg = recipe.pseudo
    if candidates is None:
        candidates = find_pvs_candidates(image, lesion_mask, config=recipe.candidates)
    det = prob >= cfg.mask_threshold
    lab, n = ndi.label(det, structure=STRUCTURE_26)
    keep = np.zeros(n + 1, dtype=bool)
    if n:
        idx = np.arange(1, n + 1)
        peak = np.asarray(ndi.maximum(prob, lab, idx))
        inside = np.asarray(ndi.minimum(candidates.parenchyma, lab, idx), dtype=bool)
        shape_ok = strive_filter(lab, n, image, max_width_mm=cfg.max_width_mm,
                                 min_volume_mm3=cfg.min_volume_mm3, max_volume_mm3=cfg.max_volume_mm3)
        keep[1:] = (peak >= cfg.min_peak_probability) & inside & shape_ok
    mask = keep[lab]
    n_agree = 0
    if cfg.agreement_peak is not None:
        if reference is None:
            reference = find_pvs_candidates(image, lesion_mask, config=reference_config())
        ref_lab = np.asarray(reference.labels)
        n_ref = int(ref_lab.max(initial=0))
        if n_ref:        # an id without voxels gets a peak of 0, below any agreement_peak
            agree = np.zeros(n_ref + 1, dtype=bool)
            agree[1:] = np.asarray(ndi.maximum(prob, ref_lab, np.arange(1, n_ref + 1))) >= cfg.agreement_peak
            n_agree = int(agree.sum())
            mask |= agree[ref_lab]
    ignore = ((candidates.mask > 0) | (det & ~mask)) & ~mask
    ex = TrainingExample(image, mask.astype(np.uint8), ignore.astype(np.uint8),
                         f"{_name(image)} pseudo-labels", "pseudo")
    return ex, {"n_detections": int(n), "n_pseudo_labels": int(keep.sum()),
                "pseudo_label_voxels": int(mask.sum()), "n_agreement_labels": n_agree}

