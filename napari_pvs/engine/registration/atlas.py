"""Atlas to subject: the BG and CSO rating slices and the BG / white-matter regions.

The MNI ICBM152 2009 T1 template (Fonov et al., NeuroImage 2011,
doi:10.1016/j.neuroimage.2010.07.033) is registered to the subject's scan (any contrast:
mutual information); the Allen Human Reference Atlas labels (Ding et al., J Comp Neurol
2016, doi:10.1002/cne.24080), drawn on the same MNI space, come back on the subject's
grid through the same transform. Nothing assumes the scan is in MNI space.

Rating slices (Potter et al., "Enlarged perivascular spaces: a visual rating scale",
Cerebrovasc Dis 2015, doi:10.1159/000375153; Wardlaw et al., STRIVE, Lancet Neurol 2013,
doi:10.1016/S1474-4422(13)70124-8):

* BG: the axial slice through the anterior commissure. The landmark is the centroid of
  the atlas ``ac`` label within 2 mm of the midline (where the commissure crosses it),
  mapped into the subject; the slice is the one whose centre is nearest along the
  scan's axial axis.
* CSO: the axial slice 10 mm above the top of the lateral ventricles. The landmark is
  the top of the atlas lateral ventricles (the mean of their voxels within 1 mm of the
  highest one), mapped into the subject; 10 mm is measured in the subject along the
  axial axis (the slice normal).
* Midline: the symmetric template's mid-sagittal plane (x = 0) mapped into the subject
  (:class:`~napari_pvs.engine.rating.MidsagittalPlane` through the mapped commissure and
  two more points of the plane), which splits the counts into left and right even when
  the head is turned or off-centre in the field of view.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..io import Volume, load_volume
from ..rating import MidsagittalPlane
from .classical import ClassicalConfig, RegistrationEvent, register_classical
from .transform import SpatialTransform, warp_volume

__all__ = ["Atlas", "load_atlas", "RatingSlices", "locate_rating_slices", "atlas_regions", "rating_areas",
           "slice_of_point", "TEMPLATE", "LABELS", "BG_LABELS", "LV_LABELS", "AC_LABEL", "WM_LABEL"]

TEMPLATE = "atlas/mni152/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
LABELS = "atlas/allen/AllenAtlas.nii.gz"
#: Allen atlas label numbers (``itksnap_label_description_Br.txt``)
AC_LABEL = 52
LV_LABELS = (57, 58, 59, 60, 141)                  # aLV, bLV, pLV, iLV, xLV
BG_LABELS = (6, 7, 8, 9, 134, 10, 11, 12)          # caudate head/body/tail, putamen, NAC, GPe, GPi
WM_LABEL = 51                                      # forebrain white matter (FWM)
#: region codes of :func:`atlas_regions`
REGION_CODES = {"BG": 1, "WM": 2, "LV": 3, "AC": 4}


@dataclass(frozen=True)
class Atlas:
    """The registration target pair: ``template`` (MNI T1, brain only) and ``labels``
    (Allen atlas, 0.5 mm), both ``(Z, Y, X)`` Volumes in MNI world mm."""

    template: Volume
    labels: Volume

    @property
    def ac_mm(self) -> np.ndarray:
        """Anterior commissure midline point, world RAS mm ``(3,)``."""
        lab = np.asarray(self.labels.data)
        zyx = np.argwhere(lab == AC_LABEL)
        xyz = self.labels.voxel_to_world(zyx)
        mid = np.abs(xyz[:, 0]) <= 2.0
        return xyz[mid].mean(0) if mid.any() else xyz.mean(0)

    @property
    def lv_top_mm(self) -> np.ndarray:
        """Top of the lateral ventricles, world RAS mm ``(3,)``."""
        lab = np.asarray(self.labels.data)
        xyz = self.labels.voxel_to_world(np.argwhere(np.isin(lab, LV_LABELS)))
        return xyz[xyz[:, 2] >= xyz[:, 2].max() - 1.0].mean(0)


def load_atlas(root: str | Path | None = None) -> Atlas:
    """Read the MNI template and the Allen labels from the data directory (or ``root``).

    Raises
    ------
    PVSInputError
        A file is missing (and cannot be fetched) or unreadable.
    """
    if root is None:
        from ..data import fetch

        tpl, lab = fetch(TEMPLATE), fetch(LABELS)
    else:
        tpl, lab = Path(root) / TEMPLATE, Path(root) / LABELS
    return Atlas(template=load_volume(tpl), labels=load_volume(lab))


def slice_of_point(image: Volume, xyz: np.ndarray) -> tuple[int, float]:
    """The axial slice (0-based, along ``image.axial_axis``) whose centre is nearest to a
    world point, and the point's fractional index along that axis."""
    k = float(image.world_to_voxel(np.asarray(xyz, float))[image.axial_axis])
    return int(np.clip(round(k), 0, image.shape[image.axial_axis] - 1)), k


def _superior_step_mm(image: Volume) -> tuple[float, float]:
    """(sign, mm): the direction (+1/-1) of increasing index that points superior, and the
    slice spacing along the axial axis."""
    ijk_axis = 2 - image.axial_axis
    col = image.affine[:3, ijk_axis]
    return (1.0 if col[2] >= 0 else -1.0), float(np.linalg.norm(col))


@dataclass(frozen=True)
class RatingSlices:
    """Atlas-placed BG and CSO rating slices of one scan.

    Attributes
    ----------
    bg, cso : int
        Axial slice indices (0-based) along ``axial_axis``.
    ac_mm, lv_top_mm, cso_mm : tuple of float
        World RAS mm of the anterior commissure, the top of the lateral ventricles, and the
        point 10 mm above it.
    bg_index, cso_index : float
        Fractional positions along the axial axis (how far the landmark is from the slice
        centre: ``abs(bg - bg_index)`` slices).
    axial_axis : int
        Array axis (``(Z, Y, X)`` order) the indices run along.
    slice_mm : float
        Slice spacing along that axis (mm).
    method : str
        The registration method.
    seconds : float
    midline : MidsagittalPlane or None
        The atlas mid-sagittal plane in the subject's world mm (left/right split).
    """

    bg: int
    cso: int
    ac_mm: tuple[float, float, float]
    lv_top_mm: tuple[float, float, float]
    cso_mm: tuple[float, float, float]
    bg_index: float
    cso_index: float
    axial_axis: int
    slice_mm: float
    method: str
    seconds: float
    transform: SpatialTransform | None = field(default=None, repr=False, compare=False)
    midline: MidsagittalPlane | None = None

    def as_dict(self) -> dict:
        """JSON-ready dict (without the transform)."""
        d = asdict(self)
        d.pop("transform")
        return d

    def write_json(self, path: str | Path, **extra) -> Path:
        """Write :meth:`as_dict` (plus ``extra``) atomically to ``path``."""
        from ..io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({**self.as_dict(), **extra}, indent=1))
        return Path(path)


def locate_rating_slices(image: Volume, *, atlas: Atlas | None = None, brain: np.ndarray | None = None,
                         config: ClassicalConfig | None = None, transform: SpatialTransform | None = None,
                         network=None) -> Generator[RegistrationEvent, None, RatingSlices]:
    """Place the BG and CSO rating slices on ``image`` by registering the atlas to it.

    A generator of :class:`RegistrationEvent` that returns :class:`RatingSlices`.

    Parameters
    ----------
    image : Volume
        The subject scan ``(Z, Y, X)`` (T2, T1 or FLAIR; with or without skull).
    atlas : Atlas, optional
        Default :func:`load_atlas`.
    brain : np.ndarray, optional
        bool brain mask on the image grid (default :func:`~napari_pvs.engine.anatomy.brain_mask`).
    config : ClassicalConfig, optional
        Registration settings (default: affine on a 2 mm grid, enough for landmarks a slice
        thick; ``deformable=True`` adds a B-spline).
    transform : SpatialTransform, optional
        An existing image-to-atlas transform: skip registration.
    network : ACSGRegNet, optional
        Register with this trained network instead of SimpleITK (``config`` unused).

    Raises
    ------
    PVSInputError
        Not a 3D image, no brain found, or registration failure.
    """
    t0 = time.perf_counter()
    atlas = atlas or load_atlas()
    if transform is None:
        if brain is None:
            from ..anatomy import brain_mask

            brain = brain_mask(image)
        tpl = atlas.template
        masks = {"fixed_mask": brain, "moving_mask": np.asarray(tpl.data) > 0}
        if network is not None:
            from .network import register_network

            transform = yield from register_network(image, tpl, network, **masks)
        else:
            transform = yield from register_classical(image, tpl, config=config, **masks)
    ac = transform.inverse_points(atlas.ac_mm)
    top = transform.inverse_points(atlas.lv_top_mm)
    bg, bg_k = slice_of_point(image, ac)
    _, top_k = slice_of_point(image, top)
    sign, step = _superior_step_mm(image)
    cso_k = top_k + sign * 10.0 / step
    n = image.shape[image.axial_axis]
    cso = int(np.clip(round(cso_k), 0, n - 1))
    centre = image.world_to_voxel(top)
    centre[image.axial_axis] = cso_k
    cso_mm = image.voxel_to_world(centre)
    a = np.asarray(atlas.ac_mm, float)
    on_plane = [transform.inverse_points(np.array([0.0, a[1] + dy, a[2] + dz])) for dy, dz in ((-40, 0), (0, 40))]
    midline = MidsagittalPlane.through(transform.inverse_points(np.array([0.0, a[1], a[2]])),
                                       transform.inverse_points(np.array([20.0, a[1], a[2]])),
                                       extra_points=on_plane, source="atlas")
    return RatingSlices(bg=bg, cso=cso, ac_mm=tuple(float(v) for v in ac), lv_top_mm=tuple(float(v) for v in top),
                        cso_mm=tuple(float(v) for v in cso_mm), bg_index=bg_k, cso_index=cso_k,
                        axial_axis=image.axial_axis, slice_mm=step, method=transform.method,
                        seconds=time.perf_counter() - t0, transform=transform, midline=midline)


def atlas_regions(image: Volume, transform: SpatialTransform, atlas: Atlas | None = None) -> np.ndarray:
    """The atlas regions on the image grid: uint8 ``(Z, Y, X)`` with codes
    :data:`REGION_CODES` (1 BG = caudate, putamen, pallidum, accumbens; 2 WM = forebrain
    white matter; 3 lateral ventricles; 4 anterior commissure; 0 elsewhere)."""
    atlas = atlas or load_atlas()
    lab = warp_volume(atlas.labels, image, transform, order=0).data
    out = np.zeros(lab.shape, np.uint8)
    out[lab == WM_LABEL] = REGION_CODES["WM"]
    out[np.isin(lab, BG_LABELS)] = REGION_CODES["BG"]
    out[np.isin(lab, LV_LABELS)] = REGION_CODES["LV"]
    out[lab == AC_LABEL] = REGION_CODES["AC"]
    return out


def rating_areas(regions: np.ndarray, voxel_size_mm, *, bg_margin_mm: float = 3.0,
                 wm_margin_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The counting areas of the two rating slices, from :func:`atlas_regions`.

    * BG: the atlas basal ganglia (caudate, putamen, pallidum, accumbens) and anterior
      commissure, grown by ``bg_margin_mm``: the internal capsule between caudate and
      lentiform nucleus (a few mm wide) and an affine fit's error of about a slice.
    * CSO: the atlas forebrain white matter grown by ``wm_margin_mm``.
    The lateral ventricles are left out of both.

    Parameters
    ----------
    regions : np.ndarray
        uint8 ``(Z, Y, X)`` region codes (:data:`REGION_CODES`) on the image grid.
    voxel_size_mm : sequence of 3 float
        Voxel size of that grid in ``(Z, Y, X)`` order (mm), so the margins are in mm on
        anisotropic scans.

    Returns
    -------
    (bg_area, cso_area)
        bool ``(Z, Y, X)`` arrays.

    Raises
    ------
    ValueError
        ``regions`` not 3D or ``voxel_size_mm`` not 3 positive numbers.
    """
    from ..anatomy.morphology import dilate_mm

    regions = np.asarray(regions)
    vs = np.asarray(voxel_size_mm, float)
    if regions.ndim != 3 or vs.shape != (3,) or (vs <= 0).any():
        raise ValueError(f"expected a 3D region map and 3 positive voxel sizes, got shape {regions.shape} "
                         f"and voxel size {tuple(vs)}")
    lv = regions == REGION_CODES["LV"]
    bg = dilate_mm(np.isin(regions, (REGION_CODES["BG"], REGION_CODES["AC"])), bg_margin_mm, vs) & ~lv
    wm = dilate_mm(regions == REGION_CODES["WM"], wm_margin_mm, vs) & ~lv
    return bg, wm
