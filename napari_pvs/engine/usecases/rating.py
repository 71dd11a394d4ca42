"""Use case *rate a scan*: place the BG/CSO rating slices by atlas, then count PVS on them.

The visual rating of Potter et al. ("Enlarged perivascular spaces: a visual rating scale",
Cerebrovasc Dis 39, 2015, doi:10.1159/000375153) counts PVS per hemisphere on one axial
slice through the basal ganglia (BG, the anterior commissure) and one in the centrum
semiovale (CSO, 1 cm above the lateral ventricles). Here:

1. :func:`place_rating_slices_job` registers the MNI template with the Allen atlas labels
   to the scan (:func:`~napari_pvs.engine.registration.atlas.locate_rating_slices`) and
   brings the atlas regions onto the scan's grid, all in the generator (a worker thread in
   napari): the slices, the midline and the regions;
2. :func:`count_rating` counts the PVS of a mask on the two slices, per hemisphere split at
   the registered midline (:class:`~napari_pvs.engine.rating.MidsagittalPlane`), the BG
   slice within the atlas basal ganglia and the CSO slice within the white matter
   (:func:`~napari_pvs.engine.registration.atlas.rating_areas`), with Potter grades.

:func:`rate_scan_job` chains both for what a slice number or a region map given by the
user does not already fix (``napari-pvs count``); :func:`rate_scan` is the one-call form.
The Count widget runs 1 in its job runner and 2 on *Count*.

Arrays are ``(Z, Y, X)``; slice numbers are 0-based along the scan's axial axis.

Example
-------
Counting a mask on given slices (a synthetic one here: three PVS on slice 2, 1 mm voxels,
RAS axes):

>>> import numpy as np
>>> from napari_pvs.engine.io import Volume
>>> from napari_pvs.engine.usecases import rate_scan
>>> mask = np.zeros((5, 40, 40), np.uint8)
>>> mask[2, 10, 5] = mask[2, 20, 8] = mask[2, 30, 35] = 1          # two on the left, one on the right
>>> rating = rate_scan(Volume(mask, np.eye(4)), bg_slice=2, cso_slice=3)
>>> c = rating.counts.bg
>>> (c.left, c.right, c.total, c.grade, c.split_at)
(2, 1, 3, 1, 'field of view')

With the scan, the slices are placed by atlas registration and left and right split at
the registered midline: ``rate_scan(load_mask("pvs.nii.gz"), load_volume("t2.nii.gz"))``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PVSInputError
from ..io import Volume, check_same_grid
from ..progress import StageEvent, run_to_end, stage
from ..rating import MidsagittalPlane, RatingCounts, count_rating_slices

__all__ = ["AtlasPlacement", "ScanRating", "place_rating_slices_job", "count_rating", "rate_scan_job", "rate_scan",
           "COUNT_COLUMNS"]

#: the columns of a counts table (BIDS ``_desc-pvs_counts.tsv``) and what each holds
COUNT_COLUMNS = {
    "region": "rating slice: BG (basal ganglia, through the anterior commissure) or CSO (centrum semiovale, "
              "10 mm above the lateral ventricles), or 'volume' for the whole-volume burden",
    "slice_index": "axial slice number (0-based, along the scan's axial axis)",
    "left": "PVS (2D connected components, 8-connectivity) in the subject's left hemisphere",
    "right": "PVS in the subject's right hemisphere",
    "total": "PVS on the slice within the counting area (volume row: 3D components, 26-connectivity)",
    "on_slice": "all PVS on the slice, inside the counting area or not",
    "grade": "Potter/Wardlaw grade (0-4) of the hemisphere with more PVS (Potter et al., Cerebrovasc Dis 2015)",
    "within": "where the PVS were counted: the whole slice or the atlas area",
    "slab_slices": "number of axial slices in the rating slab (1: the slice alone)",
    "split_at": "where left and right were split: atlas (registered midline), given, or field of view",
    "area_mm2": "total area of the counted PVS on the slice, in mm^2",
    "volume_mm3": "total PVS volume of the mask, in mm^3 (volume row)",
}


@dataclass(frozen=True)
class AtlasPlacement:
    """The rating slices placed by atlas registration, with the atlas regions.

    Attributes
    ----------
    slices : RatingSlices
        BG and CSO slice numbers, landmarks (RAS mm), the midline plane and the transform.
    regions : np.ndarray or None
        uint8 ``(Z, Y, X)`` atlas regions on the scan's grid
        (:data:`~napari_pvs.engine.registration.atlas.REGION_CODES`: 1 BG, 2 white matter,
        3 lateral ventricles, 4 anterior commissure).
    """

    slices: object
    regions: np.ndarray | None = field(default=None, repr=False)

    @property
    def midline(self) -> MidsagittalPlane | None:
        return self.slices.midline

    def summary(self) -> str:
        rs = self.slices
        return (f"BG slice {rs.bg}, CSO slice {rs.cso} ({rs.method} atlas registration, {rs.seconds:.0f} s)")


@dataclass(frozen=True)
class ScanRating:
    """What :func:`rate_scan_job` returns.

    Attributes
    ----------
    counts : RatingCounts
        BG and CSO slice counts (per hemisphere, Potter grade) and the whole-volume burden.
    placement : AtlasPlacement or None
        When the atlas was registered (a slice or the regions were not given).
    regions : np.ndarray or None
        uint8 ``(Z, Y, X)`` atlas regions used for the counting areas (None: whole slices).
    """

    counts: RatingCounts
    placement: AtlasPlacement | None = None
    regions: np.ndarray | None = field(default=None, repr=False)

    def write_derivative(self, root, scan_path=None, *, entities=None) -> Path:
        """Write the counts as ``..._desc-pvs_counts.tsv`` with its ``.json`` column
        sidecar into the BIDS derivative ``root``, named after the BIDS scan ``scan_path``
        (or the given ``entities``).

        Raises
        ------
        PVSInputError
            ``scan_path`` is not BIDS-named.
        """
        from ..io.bids import bids_entities, derivative_path, write_tsv_with_sidecar

        e = entities if entities is not None else bids_entities(scan_path)
        return write_tsv_with_sidecar(derivative_path(root, e, "counts"), self.counts.rows(), COUNT_COLUMNS)


def place_rating_slices_job(image: Volume, *, method: str = "affine", grid_mm: float = 2.0, network=None,
                            atlas=None, with_regions: bool = True) -> Generator[object, None, AtlasPlacement]:
    """Register the atlas to ``image`` and place its rating slices (a generator of
    :class:`~napari_pvs.engine.registration.RegistrationEvent`).

    Parameters
    ----------
    image : Volume
        The scan ``(Z, Y, X)``: T2 (or T1, FLAIR), with or without skull.
    method : str
        ``"affine"`` (default: enough for landmarks a slice thick), ``"classical"`` (affine
        then a B-spline) or ``"acsgreg"`` (``network``).
    grid_mm : float
        Working grid spacing of the registration (mm).
    network : ACSGRegNet, optional
        A trained registration network for ``method="acsgreg"``.
    atlas : Atlas, optional
        Default :func:`~napari_pvs.engine.registration.atlas.load_atlas`.
    with_regions : bool
        Also bring the atlas regions onto the scan's grid (default True).

    Returns
    -------
    AtlasPlacement

    Raises
    ------
    PVSInputError
        Not a 3D image, no brain found, the atlas files missing, a failed registration, or
        ``method="acsgreg"`` without a network.
    """
    from ..registration import ClassicalConfig
    from ..registration.atlas import atlas_regions, load_atlas, locate_rating_slices

    if method not in ("affine", "classical", "acsgreg"):
        raise PVSInputError(f"unknown registration method {method!r}; expected affine, classical or acsgreg")
    if method == "acsgreg" and network is None:
        raise PVSInputError("registration method acsgreg needs a trained ACSGRegNet checkpoint")
    atlas = atlas or load_atlas()
    cfg = ClassicalConfig(deformable=method == "classical", grid_mm=grid_mm)
    slices = yield from locate_rating_slices(image, atlas=atlas, config=cfg,
                                             network=network if method == "acsgreg" else None)
    return AtlasPlacement(slices, atlas_regions(image, slices.transform, atlas) if with_regions else None)


def count_rating(mask: Volume, bg_slice: int, cso_slice: int, *, regions: np.ndarray | None = None,
                 midline: MidsagittalPlane | float | None = None, slab_mm: float = 0.0,
                 areas: tuple[np.ndarray, np.ndarray] | None = None) -> RatingCounts:
    """Count PVS on the BG and CSO rating slices of ``mask``.

    Parameters
    ----------
    mask : Volume
        Binary PVS mask ``(Z, Y, X)`` (nonzero = PVS).
    bg_slice, cso_slice : int
        Axial slice numbers (0-based along ``mask.axial_axis``).
    regions : np.ndarray, optional
        uint8 ``(Z, Y, X)`` atlas regions on the mask's grid: the BG slice counts within the
        basal ganglia (grown 3 mm), the CSO slice within the white matter; None: whole slices.
    midline : MidsagittalPlane or float, optional
        Where left and right split (the registered midline, ``AtlasPlacement.midline``),
        or a world x in RAS mm; default the centre of the field of view.
    slab_mm : float
        Rating slab thickness (mm) for thin-slice scans; 0 counts each slice alone.
    areas : (bg_area, cso_area), optional
        :func:`~napari_pvs.engine.registration.atlas.rating_areas` of ``regions`` computed
        before (it grows the regions in 3D: the costly part); default: computed here.

    Returns
    -------
    RatingCounts

    Raises
    ------
    PVSInputError
        A slice outside the volume; ``regions`` not on the mask's grid; ``slab_mm`` < 0.
    """
    from ..registration.atlas import rating_areas

    if slab_mm < 0:
        raise PVSInputError(f"the rating slab must be >= 0 mm, got {slab_mm}", mask.path)
    if regions is not None:
        regions = np.asarray(regions)
        if regions.shape != tuple(mask.shape):
            raise PVSInputError(f"atlas regions {regions.shape} are not on the PVS mask's grid {tuple(mask.shape)}",
                                mask.path)
        grown = areas if areas is not None else rating_areas(regions, mask.voxel_size)
        areas = dict(zip(("bg_area", "cso_area"), grown, strict=True))
    else:
        areas = {}
    return count_rating_slices(mask, int(bg_slice), int(cso_slice), midline=midline, slab_mm=slab_mm, **areas)


def rate_scan_job(mask: Volume, image: Volume | None = None, *, bg_slice: int | None = None,
                  cso_slice: int | None = None, regions: Volume | np.ndarray | None = None,
                  whole_slice: bool = False, midline_x_mm: float | None = None, slab_mm: float = 0.0,
                  method: str = "affine", grid_mm: float = 2.0, network=None,
                  atlas=None) -> Generator[StageEvent, None, ScanRating]:
    """Rate one scan: place what is not given by atlas registration, then count.

    The atlas is registered to ``image`` when a slice number is missing, or when neither
    ``regions`` nor ``whole_slice`` is given (the counting areas then come from it). The
    counts split left and right at the registered midline unless ``midline_x_mm`` is given
    (then at the plane ``x = midline_x_mm``; without either, at the field of view's centre).

    Parameters
    ----------
    mask : Volume
        Binary PVS mask ``(Z, Y, X)``.
    image : Volume, optional
        The scan the mask was drawn on (same grid), needed for the registration.
    bg_slice, cso_slice : int, optional
        Rating slices (0-based axial indices); default placed by atlas.
    regions : Volume or np.ndarray, optional
        Atlas regions on the mask's grid (e.g. from ``napari-pvs locate-slices
        --regions-out``).
    whole_slice : bool
        Count every PVS on the slices, not only those in the atlas areas.
    midline_x_mm, slab_mm, method, grid_mm, network, atlas
        See :func:`count_rating` and :func:`place_rating_slices_job`.

    Yields
    ------
    StageEvent
        ``"register atlas"`` (with the registration's events), then ``"count"``.

    Returns
    -------
    ScanRating

    Raises
    ------
    PVSInputError
        A slice missing and no image; the image or regions on another grid; a bad slice
        number or slab; registration failures.
    """
    if slab_mm < 0:   # before the atlas is registered
        raise PVSInputError(f"the rating slab must be >= 0 mm, got {slab_mm}", mask.path)
    if isinstance(regions, Volume):
        check_same_grid(mask, regions)
        regions = np.asarray(regions.data).astype(np.uint8)
    need_atlas = bg_slice is None or cso_slice is None or (regions is None and image is not None and not whole_slice)
    n_stages = 2 if need_atlas else 1
    placement = None
    if need_atlas:
        if image is None:
            raise PVSInputError("give both rating slices, or the image to place them by atlas registration",
                                mask.path)
        check_same_grid(mask, image)
        job = place_rating_slices_job(image, method=method, grid_mm=grid_mm, network=network, atlas=atlas,
                                      with_regions=regions is None and not whole_slice)
        placement = yield from stage(job,
                                     "register atlas", 0, n_stages)
        bg_slice = placement.slices.bg if bg_slice is None else bg_slice
        cso_slice = placement.slices.cso if cso_slice is None else cso_slice
        if regions is None and not whole_slice:
            regions = placement.regions
    yield StageEvent("count", n_stages - 1, n_stages, message=f"BG slice {bg_slice}, CSO slice {cso_slice}")
    midline = midline_x_mm if midline_x_mm is not None else (placement.midline if placement is not None else None)
    counts = count_rating(mask, bg_slice, cso_slice, regions=None if whole_slice else regions, midline=midline,
                          slab_mm=slab_mm)
    return ScanRating(counts, placement, None if whole_slice else regions)


def rate_scan(mask: Volume, image: Volume | None = None, *, on_event: Callable[[StageEvent], None] | None = None,
              **kwargs) -> ScanRating:
    """:func:`rate_scan_job` run to its end (same parameters), calling ``on_event`` with
    each event."""
    return run_to_end(rate_scan_job(mask, image, **kwargs), on_event)
