"""Per-PVS shape in mm: length, maximum width and orientation of each 3D component, and
the possible lacunes among them.

Each component's voxel centres are mapped to world mm (the scan's affine, so anisotropic
and oblique voxels count right); the principal axes of those points (their covariance's
eigenvectors) give the length (extent along the first axis plus one voxel) and the
maximum width (extent along the second axis plus one voxel), and the orientation (the
angle of the first axis to the superior-inferior axis: 0 deg runs up and down, as
perforating arteries of the basal ganglia and the centrum semiovale do). An object at least
``lacune_width_mm`` (3 mm) wide is flagged as a possible lacune: STRIVE separates lacunes
(round or ovoid, 3-15 mm) from PVS (mostly under 3 mm wide).

Refer to: Wardlaw J. M. et al., "Neuroimaging standards for research into small vessel
disease and its contribution to ageing and neurodegeneration" (STRIVE), Lancet Neurol 12,
2013, doi:10.1016/S1474-4422(13)70124-8.

Example
-------
>>> import numpy as np
>>> from napari_pvs.engine.io import Volume
>>> m = np.zeros((10, 20, 20), np.uint8); m[2:8, 10, 10] = 1           # 6 slices of 2 mm: 12 mm long
>>> (row,) = pvs_shapes(Volume(m, np.diag([0.5, 0.5, 2.0, 1.0])))
>>> row["length_mm"], row["width_mm"], round(row["angle_to_si_deg"]), row["possible_lacune"]
(12.0, 0.5, 0, False)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..anatomy.morphology import STRUCTURE_26
from ..io import Volume

__all__ = ["pvs_shapes", "SHAPE_COLUMNS"]

SHAPE_COLUMNS = {
    "id": "component label (3D, 26-connectivity)",
    "n_voxels": "voxels of the component",
    "volume_mm3": "volume in mm^3",
    "x_mm": "centroid, world RAS x in mm", "y_mm": "centroid, world RAS y in mm", "z_mm": "centroid, world RAS z in mm",
    "length_mm": "extent along the first principal axis plus one voxel, in mm",
    "width_mm": "maximum width: extent along the second principal axis plus one voxel, in mm",
    "angle_to_si_deg": "angle of the first principal axis to the superior-inferior axis, in degrees",
    "possible_lacune": "1 when the object is at least the lacune width (3 mm) wide (STRIVE)",
    "region": "atlas region of the centroid: BG, CSO_WM, other_WM or other",
}


def pvs_shapes(mask: Volume, *, lacune_width_mm: float = 3.0, regions: np.ndarray | None = None,
               region_of=None) -> list[dict]:
    """One row per PVS (3D component) with its shape (see the module docstring).

    Parameters
    ----------
    mask : Volume
        Binary PVS mask ``(Z, Y, X)``.
    lacune_width_mm : float
        Width from which an object is a possible lacune.
    regions : np.ndarray, optional
        int ``(Z, Y, X)`` region codes on the mask's grid, read at each centroid through
        ``region_of(code) -> name``.

    Returns
    -------
    list of dict
        Keys :data:`SHAPE_COLUMNS`.
    """
    labels, n = ndi.label(np.asarray(mask.data) > 0, structure=STRUCTURE_26)
    if n == 0:
        return []
    vox = np.asarray(mask.voxel_size, float)
    rows = []
    for k, sl in enumerate(ndi.find_objects(labels), 1):
        zyx = np.argwhere(labels[sl] == k) + np.array([s.start for s in sl])
        xyz = mask.voxel_to_world(zyx)
        centre = xyz.mean(0)
        if len(xyz) > 1:
            w, v = np.linalg.eigh(np.cov((xyz - centre).T))
            axes = v[:, ::-1]                                  # largest variance first
        else:
            axes = np.eye(3)
        proj = (xyz - centre) @ axes
        extent = proj.max(0) - proj.min(0)
        # one voxel's length along each principal axis: the voxel box projected on it
        edges = np.asarray(mask.affine, float)[:3, :3]           # columns: the voxel's edge vectors (mm)
        size = extent + np.abs(axes.T @ edges).sum(1)
        angle = float(np.degrees(np.arccos(min(1.0, abs(float(axes[2, 0]))))))
        c_vox = np.clip(np.rint(zyx.mean(0)).astype(int), 0, np.asarray(labels.shape) - 1)
        region = "other"
        if regions is not None and region_of is not None:
            region = region_of(int(regions[tuple(c_vox)]), centre)
        rows.append({"id": k, "n_voxels": int(len(zyx)), "volume_mm3": float(len(zyx) * np.prod(vox)),
                     "x_mm": float(centre[0]), "y_mm": float(centre[1]), "z_mm": float(centre[2]),
                     "length_mm": round(float(size[0]), 2), "width_mm": round(float(size[1]), 2),
                     "angle_to_si_deg": round(angle, 1), "possible_lacune": bool(size[1] >= lacune_width_mm),
                     "region": region})
    return rows
