"""One entry point for every registration method, and the views of a result that the
widget and the CLI show: the warped image and labels, the deformation as a grid, the
Jacobian determinant map."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.affines import apply_affine
from scipy import ndimage as ndi

from ..errors import PVSInputError
from ..io import Volume
from .classical import ClassicalConfig, RegistrationEvent, register_classical
from .metrics import jacobian_determinant
from .transform import SpatialTransform, fixed_points, warp_volume

__all__ = ["METHODS", "RegistrationResult", "register", "deformation_grid", "jacobian_map"]

#: registration methods of :func:`register`
METHODS = ("affine", "classical", "acsgreg")


@dataclass
class RegistrationResult:
    """What :func:`register` returns.

    Attributes
    ----------
    transform : SpatialTransform
        Fixed world -> moving world (mm).
    warped : Volume
        The moving image on the fixed grid (float32, linear interpolation).
    labels : Volume or None
        The moving label map on the fixed grid (nearest neighbour), when one was given.
    seconds : float
        Wall time, masks and warping included.
    """

    transform: SpatialTransform
    warped: Volume
    labels: Volume | None
    seconds: float


def register(fixed: Volume, moving: Volume, *, method: str = "affine", labels: Volume | None = None,
             brain_masks: bool = False, grid_mm: float = 2.0, model: str | Path | None = None,
             ) -> Generator[RegistrationEvent, None, RegistrationResult]:
    """Register ``moving`` to ``fixed`` and resample it (and ``labels``) onto the fixed grid.

    A generator of :class:`RegistrationEvent` returning :class:`RegistrationResult`.

    Parameters
    ----------
    fixed, moving : Volume
        ``(Z, Y, X)`` scans (any contrast, orientation, voxel size).
    method : str
        ``"affine"`` (9 then 12 dof; the default) or ``"classical"`` (affine +
        B-spline), SimpleITK (:func:`register_classical`). For two scans of one head
        (T1 -> T2 of a visit, visit to visit) use ``"affine"``: against the site's own
        transforms the B-spline was 0.65-6.0 mm off where the affine was 0.31-0.60 mm
        (``benchmarks/registration.py``, 2026-11-22); the B-spline is for different
        brains (an atlas or another subject). ``"acsgreg"``: a trained ACSGRegNet checkpoint
        ``model`` (:func:`~napari_pvs.engine.registration.network.register_network`).
    labels : Volume, optional
        A label map on ``moving``'s grid to carry across.
    brain_masks : bool
        Register the brains only (:func:`~napari_pvs.engine.anatomy.brain_mask` of each):
        for a skull-stripped image (a template) against one with skull. Off by default:
        for two scans of one head (T1 -> T2 of a visit) masks whose extents differ pulled
        the affine off by 3.7 mm on average (z scale 0.87) where the unmasked run stayed
        within 0.6 mm of the site's own transform (``benchmarks/registration.py``).
    grid_mm : float
        Working grid spacing in mm (SimpleITK methods; the network has its own grid).
    model : str or Path, optional
        ACSGRegNet checkpoint for ``method="acsgreg"``.

    Raises
    ------
    PVSInputError
        Unknown method, no checkpoint for ``acsgreg`` or a checkpoint of another model,
        labels not on the moving grid, no brain found, registration failure.
    """
    if method not in METHODS:
        raise PVSInputError(f"unknown registration method {method!r}; expected one of {', '.join(METHODS)}")
    net = None
    if method == "acsgreg":
        from ..models.checkpoint import load_model

        if model is None:
            raise PVSInputError("method 'acsgreg' needs a trained checkpoint (napari-pvs train-registration)")
        net = load_model(model, expected_model="acsgreg").model
    if labels is not None:
        from ..io import check_same_grid

        check_same_grid(moving, labels)
    t0 = time.perf_counter()
    masks = {}
    if brain_masks:
        from ..anatomy import brain_mask

        yield RegistrationEvent("brain masks", 0.0)
        masks = {"fixed_mask": brain_mask(fixed), "moving_mask": brain_mask(moving)}
    if net is not None:
        from .network import register_network

        tr = yield from register_network(fixed, moving, net, **masks)
    else:
        cfg = ClassicalConfig(grid_mm=grid_mm, deformable=method == "classical")
        tr = yield from register_classical(fixed, moving, config=cfg, **masks)
    warped = warp_volume(moving, fixed, tr, order=1)
    warped_labels = warp_volume(labels, fixed, tr, order=0) if labels is not None else None
    return RegistrationResult(tr, warped, warped_labels, time.perf_counter() - t0)


def deformation_grid(fixed: Volume, transform: SpatialTransform, *, spacing_mm: float = 8.0,
                     width_mm: float = 0.8) -> np.ndarray:
    """Grid lines every ``spacing_mm`` along world x and y, deformed by the transform's DDF
    (the affine part left out, so a straight grid means no local deformation).

    Returns
    -------
    np.ndarray
        uint8 ``(Z, Y, X)`` on the fixed grid, 1 on the lines.
    """
    out = np.zeros(fixed.shape, np.uint8)
    local = SpatialTransform(np.eye(4), transform.ddf, transform.ddf_affine)
    for z in range(fixed.shape[0]):
        q = local.map_points(fixed_points(fixed.affine, fixed.shape, slice(z, z + 1)))[0]
        d = np.abs((q[..., :2] + spacing_mm / 2) % spacing_mm - spacing_mm / 2)
        out[z] = (d < width_mm / 2).any(-1)
    return out


def jacobian_map(fixed: Volume, transform: SpatialTransform, det: np.ndarray | None = None) -> np.ndarray:
    """Jacobian determinant of the DDF part (``x -> x + u(x)``) on the fixed grid.

    Returns
    -------
    np.ndarray
        float32 ``(Z, Y, X)``: 1 = volume kept, > 1 expansion, < 1 contraction, <= 0
        folding; all ones for an affine-only transform. ``det``: the determinant already
        computed on the DDF grid (:func:`jacobian_determinant`), to save recomputing it.
    """
    if transform.ddf is None:
        return np.ones(fixed.shape, np.float32)
    j = det if det is not None else jacobian_determinant(transform.ddf, transform.ddf_affine)
    inv = np.linalg.inv(transform.ddf_affine)
    out = np.empty(fixed.shape, np.float32)
    for z in range(fixed.shape[0]):
        ijk = apply_affine(inv, fixed_points(fixed.affine, fixed.shape, slice(z, z + 1))[0])
        out[z] = ndi.map_coordinates(j, np.moveaxis(ijk[..., ::-1], -1, 0), order=1, mode="nearest")
    return out
