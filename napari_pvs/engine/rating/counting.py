"""PVS counting on the basal-ganglia (BG) and centrum-semiovale (CSO) rating slices.

The visual rating of Potter et al. (2015, Cerebrovasc Dis 39:224-231; after Wardlaw's
STRIVE recommendations) counts PVS on one axial BG slice (through the anterior
commissure) and one axial CSO slice (about 1 cm above the top of the lateral
ventricles), per hemisphere, and grades the hemisphere with more PVS:
0 none, 1: 1-10, 2: 11-20, 3: 21-40, 4: >40.

Here a PVS on a slice is a 2D connected component of the mask on that slice. The
slices are numbered along the array's axial axis (normally axis 0 of ``(Z, Y, X)``, i.e.
the NIfTI ``k`` index). In this first version the user gives the slice numbers.
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
    "SliceCount",
    "RatingCounts",
    "VolumeCount",
    "potter_grade",
    "count_slice",
    "count_rating_slices",
    "count_volume",
    "write_counts_csv",
    "component_table",
]

# skimage connectivity: 2 in 2D = 8-connectivity in-plane; 3 in 3D = 26-connectivity
_CONN_2D = 2
_CONN_3D = 3


def potter_grade(count: int) -> int:
    """Potter/Wardlaw grade of a PVS count: 0 none, 1: 1-10, 2: 11-20, 3: 21-40, 4: >40."""
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
        Total PVS area on the slice in mm^2.
    """

    region: str
    slice_index: int
    left: int
    right: int
    total: int
    grade: int
    area_mm2: float


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
                     "area_mm2": "", "volume_mm3": round(self.volume.volume_mm3, 2)})
        for r in rows[:2]:
            r["volume_mm3"] = ""
            r["area_mm2"] = round(r["area_mm2"], 2)
        return rows


def _axial_first(mask: Volume) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask with the axial axis first ``(S, A, B)`` and the in-plane axes' original indices."""
    ax = mask.axial_axis
    others = tuple(a for a in range(3) if a != ax)
    return np.moveaxis(np.asarray(mask.data) > 0, ax, 0), others  # type: ignore[return-value]


def _midline_world_x(mask: Volume, slice_index: int, midline: float | None) -> float:
    """World x (mm, RAS) of the mid-sagittal plane: the given value, or the centre of the
    field of view on that slice."""
    if midline is not None:
        return float(midline)
    ax = mask.axial_axis
    centre = (np.asarray(mask.shape, dtype=float) - 1) / 2
    centre[ax] = slice_index
    return float(mask.voxel_to_world(centre)[0])


def count_slice(mask: Volume, slice_index: int, region: str = "BG", *,
                midline_x_mm: float | None = None) -> SliceCount:
    """Count PVS (2D connected components, 8-connectivity) on one axial slice.

    Parameters
    ----------
    mask : Volume
        Binary PVS mask, data ``(Z, Y, X)``; nonzero = PVS.
    slice_index : int
        Axial slice number (0-based) along ``mask.axial_axis``.
    region : str
        Label stored in the result (``"BG"`` or ``"CSO"``).
    midline_x_mm : float, optional
        World x coordinate (RAS mm) of the mid-sagittal plane; default the centre of the
        field of view. Components with centroid x < midline are in the subject's left
        hemisphere (RAS: +x is the subject's right).

    Raises
    ------
    PVSInputError
        Slice number outside the volume.
    """
    arr, others = _axial_first(mask)
    n = arr.shape[0]
    if not 0 <= slice_index < n:
        raise PVSInputError(f"{region} slice {slice_index} is outside the volume (0-{n - 1})", mask.path)
    labels = label(arr[slice_index], connectivity=_CONN_2D)
    props = regionprops_table(labels, properties=("label", "centroid"))
    total = int(props["label"].size)
    mid = _midline_world_x(mask, slice_index, midline_x_mm)
    left = right = 0
    if total:
        cents = np.stack([props["centroid-0"], props["centroid-1"]], axis=1)
        zyx = np.zeros((total, 3))
        zyx[:, mask.axial_axis] = slice_index
        zyx[:, others[0]] = cents[:, 0]
        zyx[:, others[1]] = cents[:, 1]
        x = mask.voxel_to_world(zyx)[:, 0]
        right = int((x >= mid).sum())
        left = int(total - right)
    vs = mask.voxel_size
    area = float(arr[slice_index].sum() * vs[others[0]] * vs[others[1]])
    return SliceCount(region=region, slice_index=int(slice_index), left=left, right=right,
                      total=int(total), grade=potter_grade(max(left, right)), area_mm2=area)


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
                        midline_x_mm: float | None = None) -> RatingCounts:
    """BG and CSO rating-slice counts (see :func:`count_slice`) and the whole-volume burden.

    Raises
    ------
    PVSInputError
        A slice number outside the volume.
    """
    return RatingCounts(
        bg=count_slice(mask, bg_slice, "BG", midline_x_mm=midline_x_mm),
        cso=count_slice(mask, cso_slice, "CSO", midline_x_mm=midline_x_mm),
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
