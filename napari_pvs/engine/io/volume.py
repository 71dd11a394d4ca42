"""The in-memory volume: a ``(Z, Y, X)`` array with its NIfTI geometry.

Arrays are held in ``(Z, Y, X)`` order: the NIfTI voxel axes ``(k, j, i)`` reversed, so
``volume.data[z]`` is slice ``z`` as numbered in the file. The affine is the file's own
(voxel ``(i, j, k)`` -> world RAS+ mm); geometry queries use ``nibabel.affines`` and
``nibabel.orientations``. Nothing is ever re-oriented or flipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.affines import apply_affine, voxel_sizes
from nibabel.orientations import aff2axcodes, io_orientation

from ..errors import PVSInputError

__all__ = ["Volume", "check_same_grid"]


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D scalar volume with its geometry.

    Attributes
    ----------
    data : np.ndarray
        Shape ``(Z, Y, X)`` (NIfTI ``(k, j, i)``). Any numeric dtype.
    affine : np.ndarray
        Shape ``(4, 4)``, float64: NIfTI voxel ``(i, j, k)`` -> world RAS+ mm.
    header : nibabel.Nifti1Header, optional
        The source file's header, reused when saving derived images.
    path : Path, optional
        File the volume was read from.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    path: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(Z, Y, X)`` in voxels."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size in mm along ``(Z, Y, X)`` (``nibabel.affines.voxel_sizes``, reversed)."""
        return tuple(float(v) for v in voxel_sizes(self.affine)[::-1])  # type: ignore[return-value]

    @property
    def orientation(self) -> tuple[str, str, str]:
        """Axis codes of NIfTI ``(i, j, k)``, e.g. ``('L', 'P', 'S')``: the direction each
        voxel axis increases towards (``nibabel.orientations.aff2axcodes``)."""
        return tuple(aff2axcodes(self.affine))  # type: ignore[return-value]

    def _array_axis_of(self, world_axis: int) -> int:
        # nibabel's io_orientation: for each voxel axis (i, j, k), the world axis it is
        # closest to (0 = x/R-L, 1 = y/A-P, 2 = z/S-I); oblique scans included
        ornt = io_orientation(np.asarray(self.affine))
        ijk = int(np.flatnonzero(ornt[:, 0] == world_axis)[0])
        return 2 - ijk

    @property
    def axial_axis(self) -> int:
        """Index (in ``(Z, Y, X)`` order) of the array axis closest to superior-inferior."""
        return self._array_axis_of(2)

    @property
    def lr_axis(self) -> int:
        """Index (in ``(Z, Y, X)`` order) of the array axis closest to left-right."""
        return self._array_axis_of(0)

    def with_data(self, data: np.ndarray, **meta) -> "Volume":
        """A new volume on the same grid (affine, header) holding ``data`` (same shape)."""
        if tuple(data.shape) != self.shape:
            raise ValueError(f"data shape {tuple(data.shape)} does not match grid {self.shape}")
        return Volume(data=data, affine=self.affine, header=self.header, path=self.path,
                      meta={**self.meta, **meta})

    def voxel_to_world(self, zyx: np.ndarray) -> np.ndarray:
        """Map array indices ``(..., 3)`` in ``(z, y, x)`` order to world RAS+ mm ``(..., 3)``."""
        return apply_affine(self.affine, np.asarray(zyx, dtype=float)[..., ::-1])

    def world_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """Map world RAS+ mm ``(..., 3)`` to (fractional) array indices ``(..., 3)`` ``(z, y, x)``."""
        return apply_affine(np.linalg.inv(self.affine), np.asarray(xyz, dtype=float))[..., ::-1]



def _label(v: Volume, default: str) -> str:
    return v.path.name if v.path else str(v.meta.get("napari_layer", default))


def check_same_grid(a: Volume, b: Volume, *, atol: float = 1e-3) -> None:
    """Raise :class:`PVSInputError` unless ``b`` is on ``a``'s grid.

    Same grid means the same shape ``(Z, Y, X)`` and affines equal within ``atol`` mm. The
    message names ``b``'s file (or napari layer) and ``a``'s.

    Raises
    ------
    PVSInputError
        Shapes or affines differ.
    """
    where = b.path if b.path else (f"layer '{b.meta['napari_layer']}'" if "napari_layer" in b.meta else None)
    if a.shape != b.shape:
        raise PVSInputError(
            f"grid {b.shape[::-1]} differs from the image's {a.shape[::-1]} "
            f"({_label(a, 'image')}); expected the same voxel grid", where)
    if not np.allclose(a.affine, b.affine, atol=atol):
        raise PVSInputError(
            f"affine differs from the image's ({_label(a, 'image')}); expected the same voxel grid", where)
