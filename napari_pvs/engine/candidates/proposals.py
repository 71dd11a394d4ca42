"""Candidate PVS proposals for annotators: from a vesselness filter or from a model.

* ``vesselness``: the Sato tubeness filter (scikit-image ``sato``, bright ridges) on each
  axial slice at in-plane scales of 0.5-1.5 mm, so thin slices and thick (3-4 mm) slices
  are treated alike. Voxels whose tubeness is at least ``min_tubeness`` times the 99th
  percentile of the tubeness inside the brain *and* whose signal stands out from the local
  tissue (in-plane white top-hat at least ``min_snr`` noise sigma) are grouped into 3D
  components (26-connectivity) and kept when they fit STRIVE (CSF-like signal, dot or
  line, at most 3 mm wide: :func:`~napari_pvs.engine.candidates.strive_filter`), lie in
  the brain away from its surface, not in or next to a large CSF space (a CSF-class
  component above ``large_csf_mm3``: ventricles, sulci, cisterns;
  :func:`~napari_pvs.engine.anatomy.csf_class`) and not in the (dilated) lesion mask.
* ``model``: the 3D components of a trained model's probability map above a threshold,
  with the same brain, CSF and size rules.

Each proposal has an id, a centre (voxel ``(z, y, x)`` and world RAS mm), a size and a
score, ordered for review slice by slice (then by score).

Refer to: Sato Y. et al., "Three-dimensional multi-scale line filter for segmentation and
visualization of curvilinear structures in medical images", Med Image Anal 1998,
doi:10.1016/S1361-8415(98)80009-1; Frangi A.F. et al., MICCAI 1998; STRIVE: Wardlaw J.M.
et al., Lancet Neurol 2013, doi:10.1016/S1474-4422(13)70124-8.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import logging

import numpy as np
from scipy import ndimage as ndi

from ..anatomy.morphology import STRUCTURE_26
from ..anatomy import brain_mask, csf_class
from ..anatomy.morphology import check_3d, crop_to, dilate_mm, edt_inside, spacing_mm
from ..errors import PVSInputError
from ..io import Volume
from ..synth.noise import estimate_noise_sigma
from .pvs_like import _inplane_disk, _large_csf, component_widths_mm, nearest_region, strive_filter

__all__ = ["ProposalConfig", "Proposals", "propose_candidates", "PROPOSAL_METHODS"]

log = logging.getLogger(__name__)

PROPOSAL_METHODS = ("vesselness", "model")


@dataclass(frozen=True)
class ProposalConfig:
    """Settings of :func:`propose_candidates` (mm unless stated).

    Attributes
    ----------
    sigmas_mm : in-plane scales of the Sato filter.
    min_tubeness : share of the brain's 99th-percentile tubeness a voxel needs.
    min_snr : in-plane top-hat (disk of ``background_radius_mm``) in noise sigmas.
    min_contrast : the top-hat as a share of the way from the local tissue level to the
        CSF level (median of the large CSF spaces): CSF-like signal.
    background_radius_mm : radius of the top-hat's disk.
    max_width_mm, min_volume_mm3, max_volume_mm3, min_voxels : STRIVE size filter.
    surface_margin_mm : proposals at least this deep in the brain (no cortex).
    large_csf_mm3, csf_margin_mm : CSF-class components above this volume (ventricles,
        sulci, cisterns) and ``csf_margin_mm`` (at least a voxel) around them hold no
        proposal; smaller CSF-bright specks are the PVS.
    lesion_margin_mm : dilation of the lesion mask before it is excluded.
    threshold : probability threshold of the ``model`` method.
    regions_only, region_margin_mm : only proposals centred within this distance of the BG
        and CSO regions
        (:func:`~napari_pvs.engine.anatomy.analyze_anatomy`), where raters count PVS; the
        whole brain when the anatomy cannot be found.
    """

    sigmas_mm: tuple[float, ...] = (0.5, 0.9, 1.4)
    min_tubeness: float = 0.25
    min_snr: float = 3.0
    min_contrast: float = 0.3
    background_radius_mm: float = 2.5
    max_width_mm: float = 3.0
    min_volume_mm3: float = 3.0
    max_volume_mm3: float = 300.0
    min_voxels: int = 2
    surface_margin_mm: float = 4.0
    large_csf_mm3: float = 150.0
    csf_margin_mm: float = 2.0
    lesion_margin_mm: float = 1.5
    threshold: float = 0.5
    regions_only: bool = True
    region_margin_mm: float = 5.0

    def __post_init__(self):
        if not self.sigmas_mm or min(self.sigmas_mm) <= 0:
            raise ValueError(f"sigmas_mm must be positive scales, got {self.sigmas_mm}")
        if not 0 < self.min_tubeness <= 1:
            raise ValueError(f"min_tubeness must be in (0, 1], got {self.min_tubeness}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")


@dataclass
class Proposals:
    """Candidate PVS of an image.

    Attributes
    ----------
    labels : np.ndarray
        int32 ``(Z, Y, X)``: proposal id (1..n) per voxel, 0 elsewhere.
    table : list of dict
        Per proposal, in review order: ``id``, ``slice`` (axial index of its centre),
        ``centre`` (voxel ``(z, y, x)``), ``centre_mm`` (world RAS), ``n_voxels``,
        ``width_mm``, ``score`` (mean tubeness share or probability).
    method : str
    info : dict
        ``noise_sigma``, ``n_components`` before filtering, ``seconds``.
    """

    labels: np.ndarray
    table: list[dict]
    method: str
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.table)

    def mask(self, ids=None) -> np.ndarray:
        """uint8 ``(Z, Y, X)`` of the proposals ``ids`` (default all)."""
        if ids is None:
            return (self.labels > 0).astype(np.uint8)
        return np.isin(self.labels, np.asarray(list(ids), dtype=np.int32)).astype(np.uint8)


def _tubeness(data: np.ndarray, image: Volume, sigmas_mm) -> np.ndarray:
    from skimage.filters import sato

    ax = image.axial_axis
    vs = spacing_mm(image)
    pix = float(np.mean([vs[a] for a in range(3) if a != ax]))
    sig = [max(s / pix, 0.5) for s in sigmas_mm]
    stack = np.moveaxis(data, ax, 0)
    out = np.zeros(stack.shape, dtype=np.float32)
    for k in range(stack.shape[0]):
        sl = stack[k]
        if np.ptp(sl) > 0:
            out[k] = sato(sl, sigmas=sig, black_ridges=False, mode="reflect")
    return np.moveaxis(out, 0, ax)


def propose_candidates(image: Volume, *, method: str = "vesselness", probability: np.ndarray | None = None,
                       lesion_mask: np.ndarray | None = None, brain: np.ndarray | None = None,
                       slices=None, config: ProposalConfig = ProposalConfig()) -> Proposals:
    """Candidate PVS for a rater to accept or reject (see the module docstring).

    Parameters
    ----------
    image : Volume
        T2-weighted image ``(Z, Y, X)``, any voxel size.
    method : str
        ``"vesselness"`` or ``"model"``.
    probability : np.ndarray, optional
        float ``(Z, Y, X)`` model probability on the image grid (``method="model"``).
    lesion_mask : np.ndarray, optional
        bool/uint8 ``(Z, Y, X)``: no proposal touches it (dilated by ``lesion_margin_mm``).
    brain : np.ndarray, optional
        bool ``(Z, Y, X)`` brain mask; default :func:`~napari_pvs.engine.anatomy.brain_mask`.
    slices : iterable of int, optional
        Only these axial slices (e.g. the one on screen); default the whole volume.
    config : ProposalConfig

    Returns
    -------
    Proposals

    Raises
    ------
    PVSInputError
        Image not 3D, no brain found; ``method="model"`` without a probability map.
    ValueError
        Unknown method, or a probability / lesion / brain array on another grid.
    """
    import time

    t0 = time.perf_counter()
    check_3d(image)
    if method not in PROPOSAL_METHODS:
        raise ValueError(f"method must be one of {PROPOSAL_METHODS}, got {method!r}")
    shape = image.shape
    for name, arr in (("probability", probability), ("lesion mask", lesion_mask), ("brain mask", brain)):
        if arr is not None and tuple(np.shape(arr)) != shape:
            raise ValueError(f"{name} shape {tuple(np.shape(arr))} differs from the image grid {shape} (Z, Y, X)")
    if method == "model" and probability is None:
        raise PVSInputError("the model method needs a probability map (segment the image first)", image.path)
    region_of = anat = None
    if config.regions_only:
        from ..anatomy import analyze_anatomy

        try:
            anat = analyze_anatomy(image, lesion_mask)
            brain = anat.brain if brain is None else brain
            region_of = nearest_region(anat.regions, spacing_mm(image), config.region_margin_mm)
        except PVSInputError as exc:  # no ventricles or classes: the whole brain is searched
            log.info("proposals without the BG/CSO regions (%s)", exc)
    if brain is None:
        brain = brain_mask(image)
    spacing = spacing_mm(image)
    ax = image.axial_axis
    region = brain.copy()
    if slices is not None:
        keep = np.zeros(shape[ax], dtype=bool)
        keep[[int(s) for s in np.atleast_1d(slices)]] = True
        region &= np.expand_dims(keep, tuple(a for a in range(3) if a != ax))
    box = crop_to(brain, np.ceil((config.background_radius_mm + 2.0) / spacing) + 1)
    data = np.asarray(image.data, dtype=np.float32)[box]
    b = brain[box]
    allowed = region[box] & (edt_inside(b, spacing) > config.surface_margin_mm)
    csf_level = None
    try:
        # the anatomy's CSF class when it was computed (the same rule), else on the box
        csf = anat.csf[box] if anat is not None else csf_class(image, brain, crop=box)
        big = _large_csf(csf, spacing, config.large_csf_mm3)
        allowed &= ~dilate_mm(big, max(config.csf_margin_mm, float(spacing.min())), spacing)
        if big.any():
            csf_level = float(np.median(data[big]))
    except PVSInputError:
        pass
    if lesion_mask is not None and np.any(lesion_mask):
        allowed &= ~dilate_mm(np.asarray(lesion_mask)[box] > 0, config.lesion_margin_mm, spacing)
    sub = Volume(data=data, affine=image.affine, path=image.path)
    sigma = float(estimate_noise_sigma(np.asarray(image.data), brain))
    if method == "vesselness":
        # only the slices asked for are filtered (one slice on screen: a fraction of a second)
        tube = np.zeros(data.shape, dtype=np.float32)
        rows = np.flatnonzero(np.moveaxis(allowed, ax, 0).any(axis=(1, 2)))
        if rows.size:
            sel = [slice(None)] * 3
            sel[ax] = slice(int(rows[0]), int(rows[-1]) + 1)
            tube[tuple(sel)] = _tubeness(data[tuple(sel)], sub, config.sigmas_mm)
        ref = float(np.percentile(tube[b], 99)) if b.any() else 0.0
        share = tube / ref if ref > 0 else np.zeros_like(tube)
        sm = ndi.gaussian_filter(data, sigma=[0.0 if a == ax else 0.35 for a in range(3)], mode="nearest")
        tophat = sm - ndi.grey_opening(sm, footprint=_inplane_disk(image, config.background_radius_mm))
        cand = (share >= config.min_tubeness) & (tophat >= config.min_snr * max(sigma, 1e-6)) & allowed
        if csf_level is not None and config.min_contrast > 0:
            # CSF-like signal: the excess over the local tissue level is a share of the way to CSF
            level = sm - tophat
            cand &= tophat >= config.min_contrast * np.maximum(csf_level - level, 1e-6)
        score_map = share
    else:
        p = np.asarray(probability, dtype=np.float32)[box]
        cand = (p >= config.threshold) & allowed
        score_map = p
    lab, n = ndi.label(cand, structure=STRUCTURE_26)
    ok = strive_filter(lab, n, sub, max_width_mm=config.max_width_mm, min_volume_mm3=config.min_volume_mm3,
                       max_volume_mm3=config.max_volume_mm3, min_voxels=config.min_voxels)
    if region_of is not None and n:
        # whole components, kept when centred near the BG/CSO regions (never cut in two)
        cents = np.asarray(ndi.center_of_mass(np.ones_like(lab), lab, np.arange(1, n + 1))).reshape(n, 3)
        near = region_of[box]
        ok &= np.array([near[tuple(np.round(c).astype(int))] > 0 for c in cents], dtype=bool)
    ids = np.flatnonzero(ok) + 1
    if ids.size:
        centres = np.asarray(ndi.center_of_mass(np.ones_like(lab), lab, ids)).reshape(-1, 3)
        scores = np.asarray(ndi.mean(score_map, lab, ids))
        sizes = np.bincount(lab.ravel(), minlength=n + 1)[ids]
        relabel = np.zeros(n + 1, dtype=np.int32)
        relabel[ids] = np.arange(1, ids.size + 1)
        lab = relabel[lab]
        widths = component_widths_mm(lab, sub, ids.size)
    else:
        centres, scores, sizes, widths = np.zeros((0, 3)), np.zeros(0), np.zeros(0, int), np.zeros(0)
        lab = np.zeros_like(lab, dtype=np.int32)
    offset = np.array([s.start for s in box], dtype=float)
    rows = []
    for k in range(ids.size):
        c = centres[k] + offset
        rows.append({"id": k + 1, "slice": int(round(c[ax])), "centre": tuple(float(v) for v in c),
                     "centre_mm": tuple(float(v) for v in image.voxel_to_world(c[None])[0]),
                     "n_voxels": int(sizes[k]), "width_mm": float(widths[k]), "score": float(scores[k])})
    order = sorted(range(len(rows)), key=lambda k: (rows[k]["slice"], -rows[k]["score"]))
    new_id = np.zeros(len(rows) + 1, dtype=np.int32)
    table = []
    for rank, k in enumerate(order, start=1):
        new_id[rows[k]["id"]] = rank
        table.append({**rows[k], "id": rank})
    labels = np.zeros(shape, dtype=np.int32)
    labels[box] = new_id[lab]
    return Proposals(labels=labels, table=table, method=method,
                     info={"noise_sigma": sigma, "n_components": int(n), "seconds": time.perf_counter() - t0})
