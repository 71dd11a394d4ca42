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
:mod:`napari_pvs.engine.io`. The regions come from :mod:`napari_pvs.engine.anatomy`, the
rendering from :mod:`.render`.
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

from ..anatomy import REGION_BG, REGION_CSO, REGION_NAMES, AnatomyConfig, analyze_anatomy
from ..anatomy.morphology import check_3d, crop_to, dilate_mm, image_name, spacing_mm
from ..errors import PVSInputError
from ..io import Volume
from .noise import blend_toward, estimate_noise_sigma
from .render import render_local, tilted_direction

__all__ = [
    "insert_same_pvs",
    "SimulationConfig",
    "SimulationResult",
    "wide_simulation",
    "simulate_pvs",
    "write_table_csv",
    "TABLE_COLUMNS",
]

log = logging.getLogger(__name__)

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
    wall_irregularity : float
        Amplitude (share of the radius) of a slow random modulation of the radius along
        the axis: slightly irregular walls (0 = smooth, the 0.1.0 model).
    beading_fraction : float
        Probability that a tube is beaded: its radius swells and narrows by
        ``beading_amplitude`` with a period of 2-5 mm.
    beading_amplitude : float
        Relative radius modulation of beaded tubes.
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
    wall_irregularity: float = 0.0
    beading_fraction: float = 0.0
    beading_amplitude: float = 0.35

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
        if not (0.0 <= self.wall_irregularity <= 0.5 and 0.0 <= self.beading_fraction <= 1.0
                and 0.0 <= self.beading_amplitude <= 0.6):
            raise PVSInputError("expected wall_irregularity in [0, 0.5], beading_fraction in [0, 1] and "
                                f"beading_amplitude in [0, 0.6], got {self.wall_irregularity}, "
                                f"{self.beading_fraction}, {self.beading_amplitude}")
        if self.supersample_mm <= 0 or self.max_tries < 1:
            raise PVSInputError("supersample_mm must be > 0 and max_tries >= 1")

    @property
    def anatomy(self) -> AnatomyConfig:
        """The margins as an :class:`~napari_pvs.engine.anatomy.AnatomyConfig`."""
        return AnatomyConfig(surface_margin_mm=self.surface_margin_mm, csf_margin_mm=self.csf_margin_mm,
                             lesion_margin_mm=self.lesion_margin_mm, wm_margin_mm=self.wm_margin_mm,
                             bg_halfwidth_fraction=self.bg_halfwidth_fraction,
                             pad_mm=max(self.placement_margin_mm, 3.0))


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
        (same ``supersample_mm``) reproduces that PVS's fraction exactly when its walls are
        smooth (``wall_irregularity`` and ``beading_fraction`` 0; ``beaded`` tells which
        tubes were beaded otherwise). Fewer rows
        than requested only if a PVS could not be placed (logged warning).
    regions : np.ndarray
        uint8 ``(Z, Y, X)`` eligibility map used for the centres: 0 none, 1 BG, 2 CSO
        white matter (see :func:`~napari_pvs.engine.anatomy.tissue_regions`).
    noise_sigma : float
        Estimated noise standard deviation of the input image (its intensity units).
    info : dict
        Diagnostics: ``csf_intensity``, ``brain_centre_xyz`` (world mm, the origin of
        the CSO radial directions), ``n_requested``, ``n_placed``, ``seed``.
    weight : np.ndarray or None
        float32 ``(Z, Y, X)``: the weight ``w = f c`` of the CSF-like signal in each voxel
        (fraction times the PVS's contrast); :func:`insert_same_pvs` renders the same PVS
        into another contrast with it.
    """

    image: Volume
    mask: np.ndarray
    fraction: np.ndarray
    table: list[dict]
    regions: np.ndarray
    noise_sigma: float
    info: dict = field(default_factory=dict)
    weight: np.ndarray | None = field(default=None, repr=False)


def wide_simulation() -> SimulationConfig:
    """The widened simulation of the default model's recipe (closer to real PVS).

    Fainter PVS (contrast down to 0.2 of the tissue-CSF difference), widths from
    sub-voxel 0.6 mm to 3 mm, slightly irregular walls and beaded tubes, more PVS per
    scan. Everything else as :class:`SimulationConfig`.
    """
    return SimulationConfig(n_bg=25, n_cso=50, width_mm=(0.6, 3.0), length_mm=(2.0, 25.0),
                            contrast=(0.2, 1.0), wall_irregularity=0.15, beading_fraction=0.3,
                            max_tilt_deg=25.0)


def _draw_wall(config: SimulationConfig, kind: str, rng: np.random.Generator):
    """Radius modulation of one PVS (see :func:`~.render.wall_radius_factor`); None (and no
    random draw, so 0.1.0 outputs stay identical) when the config asks for smooth walls."""
    if config.wall_irregularity <= 0 and config.beading_fraction <= 0:
        return None
    amps = list(rng.uniform(0.0, config.wall_irregularity, size=2))
    waves = list(rng.uniform(0.2, 0.8, size=2))           # slow: periods of 8-30 mm
    phases = list(rng.uniform(0, 2 * np.pi, size=2))
    if kind == "tube" and rng.random() < config.beading_fraction:
        amps.append(config.beading_amplitude)
        waves.append(2 * np.pi / rng.uniform(2.0, 5.0))
        phases.append(rng.uniform(0, 2 * np.pi))
    return amps, waves, phases


def _allowed_map(image: Volume, anat, margin_mm: float) -> np.ndarray:
    """Where a PVS may touch: the BG/CSO regions dilated by ``margin_mm``, inside the brain,
    outside CSF and the dilated lesions (computed on the regions' bounding box)."""
    spacing = spacing_mm(image)
    out = np.zeros(image.shape, dtype=bool)
    if not (anat.regions > 0).any():
        return out
    box = crop_to(anat.regions > 0, np.ceil(max(margin_mm, 3.0) / spacing) + 2)
    near = dilate_mm(anat.regions[box] > 0, margin_mm, spacing)
    out[box] = near & anat.brain[box] & ~anat.csf[box] & ~anat.lesion[box]
    return out


def simulate_pvs(image: Volume, *, seed: int = 0,
                 lesion_mask: Volume | np.ndarray | None = None,
                 config: SimulationConfig = SimulationConfig(), anatomy=None) -> SimulationResult:
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
    anatomy : Anatomy, optional
        The image's anatomy when it is known better than the image tells (e.g. an image
        generated from a label map, :meth:`~napari_pvs.engine.synth.generative.GeneratedT2.anatomy`);
        default :func:`~napari_pvs.engine.anatomy.analyze_anatomy` of ``image`` and
        ``lesion_mask``.

    Returns
    -------
    SimulationResult

    Raises
    ------
    PVSInputError
        (naming ``image.path``) Image not 3D, no brain found, no eligible region, or a
        lesion mask whose grid differs from the image's.
    """
    check_3d(image)
    rng = np.random.default_rng(seed)
    shape = image.shape
    anat = anatomy if anatomy is not None else analyze_anatomy(image, lesion_mask, config=config.anatomy)
    regions = anat.regions
    needed = [(REGION_BG, config.n_bg), (REGION_CSO, config.n_cso)]
    for reg, n in needed:
        if n > 0 and not (regions == reg).any():
            raise PVSInputError(
                f"no eligible {REGION_NAMES[reg]} region found for synthetic PVS "
                "(expected a T2-weighted brain image with white matter and ventricles)",
                image.path)

    data_in = np.asarray(image.data)
    sigma = estimate_noise_sigma(data_in, anat.noise_mask)
    allowed = _allowed_map(image, anat, config.placement_margin_mm)
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
                direction = tilted_direction(axis, max_tilt, rng)
                if reg == REGION_BG and direction[2] < 0:
                    direction = -direction
                wall = _draw_wall(config, kind, rng)
                sl, frac, clipped = render_local(shape, aff, centre, direction, width, length,
                                                  kind, config.supersample_mm, wall=wall)
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
                            image_name(image), REGION_NAMES[reg], len(table) + 1, config.max_tries)
                continue
            fraction[sl] = np.maximum(fraction[sl], frac)
            contrast_map[sl][touched] = contrast
            # mark the PVS and its 26-neighbourhood as occupied
            big = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, d)) for s, d in zip(sl, shape, strict=True))
            local = np.zeros(tuple(b.stop - b.start for b in big), dtype=bool)
            inner = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sl, big, strict=True))
            local[inner] = touched
            occupied[big] |= ndi.binary_dilation(local, structure=ball)
            table.append({
                "id": len(table) + 1,
                "region": REGION_NAMES[reg],
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
                **({"beaded": len(wall[0]) > 2} if wall is not None else {}),
            })

    np.clip(fraction, 0.0, 1.0, out=fraction)
    out = data_in.astype(np.float32, copy=True)
    hit = np.flatnonzero(fraction)
    if hit.size:   # weight of the CSF-like signal: fraction x contrast
        w = fraction.ravel()[hit].astype(np.float64) * contrast_map.ravel()[hit].astype(np.float64)
        blend_toward(out, hit, w, float(anat.csf_intensity), sigma, rng)
    mask = (fraction >= 0.5).astype(np.uint8)
    n_req = config.n_bg + config.n_cso
    if len(table) < n_req:
        log.warning("%s: placed %d of %d synthetic PVS", image_name(image), len(table), n_req)
    info = {
        "csf_intensity": float(anat.csf_intensity),
        "brain_centre_xyz": tuple(float(v) for v in anat.centre_xyz),
        "n_requested": int(n_req),
        "n_placed": len(table),
        "seed": seed,
    }
    weight = (fraction * contrast_map).astype(np.float32)
    return SimulationResult(image=image.with_data(out, synthetic_pvs_seed=seed), mask=mask,
                            fraction=fraction, table=table, regions=regions,
                            noise_sigma=float(sigma), info=info, weight=weight)


def insert_same_pvs(sim: SimulationResult, other: Volume, csf_mask: np.ndarray, *, seed: int = 0) -> Volume:
    """The PVS of a simulation rendered into another contrast of the same grid.

    For a T1 (or FLAIR) co-registered with the T2 the PVS were simulated in: the same
    voxels get ``I + w (I_csf - I) + sigma sqrt(w (2 - w)) n`` as in :func:`simulate_pvs`,
    with ``w`` the simulation's :attr:`SimulationResult.weight`, ``I_csf`` the median of
    ``other`` inside ``csf_mask`` (e.g. the T2's wide CSF spaces; dark on T1, so the PVS
    come out dark) and ``sigma`` the noise of ``other``. The mask is the simulation's.

    Parameters
    ----------
    sim : SimulationResult
        From :func:`simulate_pvs` on the T2.
    other : Volume
        ``(Z, Y, X)`` on the same grid (shape and affine) as ``sim.image``.
    csf_mask : np.ndarray
        bool ``(Z, Y, X)``: where ``other`` shows CSF.
    seed : int
        Seed of the added noise.

    Returns
    -------
    Volume
        float32 copy of ``other`` with the PVS.

    Raises
    ------
    PVSInputError
        ``other`` on another grid, an empty ``csf_mask``, or a simulation without weights.
    """
    from ..io import check_same_grid

    check_same_grid(sim.image, other)
    csf = np.asarray(csf_mask, bool)
    if sim.weight is None or not csf.any():
        raise PVSInputError("cannot insert the same PVS: no simulation weights or an empty CSF mask", other.path)
    data = np.asarray(other.data, dtype=np.float32)
    i_csf = float(np.median(data[csf]))
    sigma = estimate_noise_sigma(data, csf | (sim.regions > 0))
    out = data.copy()
    hit = np.flatnonzero(sim.weight)
    blend_toward(out, hit, sim.weight.ravel()[hit], i_csf, sigma, np.random.default_rng(seed))
    return other.with_data(out, synthetic_pvs_seed=int(sim.info.get("seed", seed)))


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
