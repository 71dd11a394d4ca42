"""PVS counting on the basal-ganglia (BG) and centrum-semiovale (CSO) rating slices.

The visual rating of Potter et al. (2015, Cerebrovasc Dis 39:224-231; after Wardlaw's
STRIVE recommendations) counts PVS on one axial BG slice (through the anterior
commissure) and one axial CSO slice (about 1 cm above the top of the lateral
ventricles), per hemisphere, and grades the hemisphere with more PVS:
0 none, 1: 1-10, 2: 11-20, 3: 21-40, 4: >40.

Here a PVS on a slice is a 2D connected component of the mask on that slice. The
slices are numbered along the array's axial axis (normally axis 0 of ``(Z, Y, X)``, i.e.
the NIfTI ``k`` index). The slice numbers come from the user or from atlas registration
(:func:`napari_pvs.engine.registration.atlas.locate_rating_slices`); an optional counting
area per slice (e.g. the atlas basal ganglia on the BG slice, the white matter on the CSO
slice, :func:`napari_pvs.engine.registration.atlas.rating_areas`) keeps only the PVS whose
centroid lies inside it, so bright dots in the cortex, the insula or the midbrain on the
same slice are not counted.

On thin-slice scans (e.g. 1 mm isotropic 3D T2) an optional rating slab (``slab_mm``)
counts on the union of the mask over the slices whose centres lie within half the slab of
the rating slice (:func:`slab_range`). The visual scales were set up on clinical scans with
slices of several mm (e.g. T2 slices of 3 and 6 mm in the two cohorts of Ballerini et al.,
"Perivascular spaces segmentation in brain MRI using optimal 3D filtering", Sci Rep 2018,
arXiv:1704.07699), where one slice shows what a 1 mm scan spreads over three or more. A
scan whose slice spacing exceeds half the slab counts on the one slice.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from skimage.measure import label, regionprops_table

from ..errors import PVSInputError
from ..io import Volume, atomic_path

__all__ = [
    "MidsagittalPlane",
    "SliceCount",
    "RatingCounts",
    "VolumeCount",
    "potter_grade",
    "count_slice",
    "slab_range",
    "count_rating_slices",
    "count_volume",
    "write_counts_csv",
    "component_table",
]

# skimage connectivity: 2 in 2D = 8-connectivity in-plane; 3 in 3D = 26-connectivity
_CONN_2D = 2
_CONN_3D = 3


def potter_grade(count: int) -> int:
    """Potter/Wardlaw grade of a PVS count: 0 none, 1: 1-10, 2: 11-20, 3: 21-40, 4: >40.

    Refer to: Potter G. M. et al., "Enlarged perivascular spaces: a visual rating scale",
    Cerebrovasc Dis 39, 2015, doi:10.1159/000375153.

    >>> [potter_grade(n) for n in (0, 7, 11, 40, 41)]
    [0, 1, 2, 3, 4]
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return 0
    if count <= 10:
        return 1
    if count <= 20:
        return 2
    if count <= 40:
        return 3
    return 4


@dataclass(frozen=True)
class SliceCount:
    """PVS counted on one axial rating slice.

    Attributes
    ----------
    region : str
        ``"BG"`` or ``"CSO"``.
    slice_index : int
        Index along the axial axis (voxels, 0-based, as in the NIfTI file).
    left, right, total : int
        2D connected components whose centroid lies in the subject's left / right
        hemisphere, and all of them.
    grade : int
        Potter grade (0-4) of the hemisphere with more PVS.
    area_mm2 : float
        Total area of the counted PVS in mm^2.
    on_slice : int
        All 2D components on the slice (on the slab's union with a rating slab), inside
        the counting area or not (= ``total`` when no area was given).
    within : str
        Where they were counted: ``"slice"`` (the whole slice) or the area's name.
    slab_slices : int
        Number of axial slices whose union was counted (1: the rating slice alone; more
        with a rating slab on a thin-slice scan).
    split_at : str
        Where left and right were split: ``"atlas"`` (the registered midline), ``"given"``
        or ``"field of view"`` (:class:`MidsagittalPlane` ``source``).
    """

    region: str
    slice_index: int
    left: int
    right: int
    total: int
    grade: int
    area_mm2: float
    on_slice: int = -1
    within: str = "slice"
    slab_slices: int = 1
    split_at: str = "field of view"

    def __post_init__(self):
        if self.on_slice < 0:
            object.__setattr__(self, "on_slice", self.total)


@dataclass(frozen=True)
class VolumeCount:
    """Whole-volume PVS burden: 3D connected components (26-connectivity) and volume."""

    n_components: int
    volume_mm3: float


@dataclass(frozen=True)
class RatingCounts:
    """BG and CSO slice counts plus the whole-volume burden."""

    bg: SliceCount
    cso: SliceCount
    volume: VolumeCount

    def rows(self) -> list[dict]:
        """Table rows (one per slice, plus one for the whole volume) for display or CSV."""
        rows = [asdict(self.bg), asdict(self.cso)]
        rows.append({"region": "volume", "slice_index": "", "left": "", "right": "",
                     "total": self.volume.n_components, "grade": "",
                     "area_mm2": "", "on_slice": "", "within": "volume", "slab_slices": "", "split_at": "",
                     "volume_mm3": round(self.volume.volume_mm3, 2)})
        for r in rows[:2]:
            r["volume_mm3"] = ""
            r["area_mm2"] = round(r["area_mm2"], 2)
        return rows


@dataclass(frozen=True)
class MidsagittalPlane:
    """The plane between the hemispheres, in world RAS mm.

    Attributes
    ----------
    point_mm : tuple of 3 float
        A point of the plane (RAS mm).
    normal : tuple of 3 float
        Unit normal pointing to the subject's right (RAS +x side).
    source : str
        Where it comes from: ``"atlas"`` (the registered template's x = 0 plane),
        ``"given"`` (a world x) or ``"field of view"`` (the centre of the image).

    Example
    -------
    >>> plane = MidsagittalPlane.at_x(2.5)
    >>> plane.signed_distance([[10.0, 0.0, 0.0], [-3.0, 5.0, 1.0]]).tolist()
    [7.5, -5.5]
    """

    point_mm: tuple[float, float, float]
    normal: tuple[float, float, float]
    source: str = "given"

    @classmethod
    def at_x(cls, x_mm: float, source: str = "given") -> MidsagittalPlane:
        """The plane ``x = x_mm`` (RAS mm)."""
        return cls((float(x_mm), 0.0, 0.0), (1.0, 0.0, 0.0), source)

    @classmethod
    def through(cls, origin, right, *, source: str = "atlas", extra_points=()) -> MidsagittalPlane:
        """The plane through ``origin`` and ``extra_points`` (RAS mm, ``(3,)`` each; at
        least two extra points not in line with ``origin``), its normal oriented towards
        the point ``right`` (RAS mm) on the subject's right."""
        o = np.asarray(origin, float)
        pts = np.asarray(extra_points, float).reshape(-1, 3) - o
        n = np.cross(pts[0], pts[1])
        n /= np.linalg.norm(n)
        if np.dot(np.asarray(right, float) - o, n) < 0:
            n = -n
        return cls(tuple(float(v) for v in o), tuple(float(v) for v in n), source)

    def signed_distance(self, xyz) -> np.ndarray:
        """mm from the plane of world points ``(N, 3)`` RAS: > 0 on the subject's right."""
        return (np.asarray(xyz, float).reshape(-1, 3) - np.asarray(self.point_mm)) @ np.asarray(self.normal)


def _axial_first(mask: Volume) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask with the axial axis first ``(S, A, B)`` and the in-plane axes' original indices."""
    ax = mask.axial_axis
    others = tuple(a for a in range(3) if a != ax)
    return np.moveaxis(np.asarray(mask.data) > 0, ax, 0), others  # type: ignore[return-value]


def _midline(mask: Volume, slice_index: int, midline: MidsagittalPlane | float | None) -> MidsagittalPlane:
    """The mid-sagittal plane: the given one, the plane ``x = midline`` for a number, or
    the plane ``x = `` the world x of the field of view's centre on that slice."""
    if isinstance(midline, MidsagittalPlane):
        return midline
    if midline is not None:
        return MidsagittalPlane.at_x(float(midline))
    ax = mask.axial_axis
    centre = (np.asarray(mask.shape, dtype=float) - 1) / 2
    centre[ax] = slice_index
    return MidsagittalPlane.at_x(float(mask.voxel_to_world(centre)[0]), source="field of view")


def slab_range(mask: Volume, slice_index: int, slab_mm: float | None) -> range:
    """Axial slice numbers of a rating slab: those whose centres lie within ``slab_mm / 2``
    (mm, along the axial axis's voxel size) of ``slice_index``'s centre, clipped to the
    volume; ``range(slice_index, slice_index + 1)`` when ``slab_mm`` is None or 0.

    Raises
    ------
    ValueError
        ``slab_mm`` negative.
    """
    if slab_mm is None or slab_mm == 0:
        return range(slice_index, slice_index + 1)
    if slab_mm < 0:
        raise ValueError(f"slab_mm must be >= 0 (mm), got {slab_mm}")
    dz = float(mask.voxel_size[mask.axial_axis])
    half = int(np.floor(0.5 * float(slab_mm) / dz + 1e-6))
    n = mask.shape[mask.axial_axis]
    return range(max(0, slice_index - half), min(n, slice_index + half + 1))


def count_slice(mask: Volume, slice_index: int, region: str = "BG", *,
                midline: MidsagittalPlane | float | None = None, area: np.ndarray | None = None,
                area_name: str = "area", slab_mm: float | None = None) -> SliceCount:
    """Count PVS (2D connected components, 8-connectivity) on one axial slice.

    Parameters
    ----------
    mask : Volume
        Binary PVS mask, data ``(Z, Y, X)``; nonzero = PVS.
    slice_index : int
        Axial slice number (0-based) along ``mask.axial_axis``.
    region : str
        Label stored in the result (``"BG"`` or ``"CSO"``).
    midline : MidsagittalPlane or float, optional
        The mid-sagittal plane (e.g. the atlas midline placed by registration,
        ``RatingSlices.midline``), or the world x (RAS mm) of a plane ``x = const``; default
        the plane through the centre of the field of view. Components whose centroid lies
        on the plane's negative side are in the subject's left hemisphere (RAS: +x is the
        subject's right).
    area : np.ndarray, optional
        bool ``(Z, Y, X)`` on the mask's grid: count only the components whose centroid
        (rounded to a voxel) lies inside it; default the whole slice.
    area_name : str
        Name of the area for the result's ``within`` (e.g. ``"atlas BG"``).
    slab_mm : float, optional
        Rating slab thickness (mm): count on the union of the mask over the slices of
        :func:`slab_range` (components merged across them count once; the centroid is
        tested against the area on ``slice_index``). None or 0: the slice alone.

    Raises
    ------
    PVSInputError
        Slice number outside the volume.
    ValueError
        ``area`` not of the mask's shape; ``slab_mm`` negative.
    """
    arr, others = _axial_first(mask)
    n = arr.shape[0]
    if not 0 <= slice_index < n:
        raise PVSInputError(f"{region} slice {slice_index} is outside the volume (0-{n - 1})", mask.path)
    slab = slab_range(mask, slice_index, slab_mm)
    labels = label(arr[slab.start:slab.stop].any(axis=0), connectivity=_CONN_2D)
    props = regionprops_table(labels, properties=("label", "centroid"))
    cents = np.stack([props["centroid-0"], props["centroid-1"]], axis=1).reshape(-1, 2)
    on_slice = int(props["label"].size)
    if area is not None:
        if area.shape != mask.shape:
            raise ValueError(f"counting area must have the mask's shape {mask.shape}, got {area.shape}")
        area2d = np.moveaxis(np.asarray(area, bool), mask.axial_axis, 0)[slice_index]
        c = np.rint(cents).astype(int)
        inside = area2d[c[:, 0], c[:, 1]]
        labels[np.isin(labels, props["label"][~inside])] = 0
        cents = cents[inside]
    total = int(len(cents))
    plane = _midline(mask, slice_index, midline)
    left = right = 0
    if total:
        zyx = np.zeros((total, 3))
        zyx[:, mask.axial_axis] = slice_index
        zyx[:, others[0]] = cents[:, 0]
        zyx[:, others[1]] = cents[:, 1]
        right = int((plane.signed_distance(mask.voxel_to_world(zyx)) >= 0).sum())
        left = int(total - right)
    vs = mask.voxel_size
    area_mm2 = float((labels > 0).sum() * vs[others[0]] * vs[others[1]])
    return SliceCount(region=region, slice_index=int(slice_index), left=left, right=right,
                      total=int(total), grade=potter_grade(max(left, right)), area_mm2=area_mm2,
                      on_slice=on_slice, within="slice" if area is None else area_name,
                      slab_slices=len(slab), split_at=plane.source)


def count_volume(mask: Volume) -> VolumeCount:
    """3D connected components (26-connectivity) and total PVS volume in mm^3."""
    arr = np.asarray(mask.data) > 0
    n = int(label(arr, connectivity=_CONN_3D).max())
    return VolumeCount(n_components=n, volume_mm3=float(arr.sum() * np.prod(mask.voxel_size)))


def component_table(mask: Volume) -> list[dict]:
    """One row per PVS (3D connected component, 26-connectivity) of a mask.

    Built with ``skimage.measure.regionprops_table``. Columns: ``id`` (component label,
    1-based), ``n_voxels``, ``volume_mm3``, centroid in array indices ``centroid_z,
    centroid_y, centroid_x`` (voxels, ``(Z, Y, X)``) and in world RAS mm ``x_mm, y_mm,
    z_mm``, and ``extent_z, extent_y, extent_x``: the bounding-box size in voxels.

    Parameters
    ----------
    mask : Volume
        Binary PVS mask ``(Z, Y, X)``; nonzero = PVS.
    """
    labels = label(np.asarray(mask.data) > 0, connectivity=_CONN_3D)
    props = regionprops_table(labels, properties=("label", "area", "centroid", "bbox"))
    if props["label"].size == 0:
        return []
    vox_mm3 = float(np.prod(mask.voxel_size))
    cents = np.stack([props[f"centroid-{a}"] for a in range(3)], axis=1)
    world = mask.voxel_to_world(cents)
    rows = []
    for n in range(props["label"].size):
        rows.append({
            "id": int(props["label"][n]), "n_voxels": int(props["area"][n]),
            "volume_mm3": float(props["area"][n] * vox_mm3),
            "centroid_z": float(cents[n, 0]), "centroid_y": float(cents[n, 1]),
            "centroid_x": float(cents[n, 2]),
            "x_mm": float(world[n, 0]), "y_mm": float(world[n, 1]), "z_mm": float(world[n, 2]),
            **{f"extent_{a}": int(props[f"bbox-{i + 3}"][n] - props[f"bbox-{i}"][n])
               for i, a in enumerate("zyx")},
        })
    return rows


def count_rating_slices(mask: Volume, bg_slice: int, cso_slice: int, *,
                        midline: MidsagittalPlane | float | None = None, bg_area: np.ndarray | None = None,
                        cso_area: np.ndarray | None = None, area_source: str = "atlas",
                        slab_mm: float | None = None) -> RatingCounts:
    """BG and CSO rating-slice counts (see :func:`count_slice`) and the whole-volume burden.

    Parameters
    ----------
    midline : MidsagittalPlane or float, optional
        The mid-sagittal plane for left/right (see :func:`count_slice`).
    bg_area, cso_area : np.ndarray, optional
        bool ``(Z, Y, X)`` counting areas of the BG and CSO slices (the basal ganglia and
        the white matter, e.g. from
        :func:`~napari_pvs.engine.registration.atlas.rating_areas`); default the whole
        slice. Their names in the result are ``f"{area_source} BG"`` and ``f"{area_source} WM"``.
    slab_mm : float, optional
        Rating slab thickness (mm) for thin-slice scans (see :func:`count_slice`); None or
        0: each rating slice alone.

    Raises
    ------
    PVSInputError
        A slice number outside the volume.
    ValueError
        ``slab_mm`` negative.
    """
    return RatingCounts(
        bg=count_slice(mask, bg_slice, "BG", midline=midline, area=bg_area,
                       area_name=f"{area_source} BG", slab_mm=slab_mm),
        cso=count_slice(mask, cso_slice, "CSO", midline=midline, area=cso_area,
                        area_name=f"{area_source} WM", slab_mm=slab_mm),
        volume=count_volume(mask),
    )


def write_counts_csv(counts: RatingCounts, path: str | Path) -> Path:
    """Write the count table as CSV (atomically)."""
    path = Path(path)
    rows = counts.rows()
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
    return path
