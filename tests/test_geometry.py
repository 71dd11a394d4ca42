"""Scans opened side by side line up in napari's world space (synthetic NIfTIs, no shared
data): the reader passes the full affine, so a world point maps to the same anatomical
voxel in an LPS scan, the same data stored RAS, and an oblique copy. A coronal copy
(axes swapped, which napari cannot display through an affine) is shown in its own axis
order, and still keeps its true affine for the engine."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("napari")

from conftest import write_nifti  # noqa: E402
from napari_pvs.plugin.layers import layer_geometry, layer_to_volume, napari_affine, nifti_affine_from_napari  # noqa: E402
from napari_pvs.engine.io import load_volume  # noqa: E402

LPS = np.array([[-0.5, 0, 0, 60.0], [0, -0.5, 0, 70.0], [0, 0, 3.0, -20.0], [0, 0, 0, 1]])


def _rotation(deg_x: float, deg_z: float) -> np.ndarray:
    a, b = np.deg2rad(deg_x), np.deg2rad(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


def _copies(tmp_path):
    """One (i, j, k) array stored four ways that describe the same anatomy:
    LPS (as written), RAS (i and j flipped), oblique (rotated affine, same voxels) and
    coronal storage (axes permuted)."""
    rng = np.random.default_rng(0)
    ijk = rng.random((24, 20, 6)).astype(np.float32)
    out = {"lps": write_nifti(tmp_path / "lps.nii.gz", ijk, LPS)}
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:3, 3] = [ijk.shape[0] - 1, ijk.shape[1] - 1, 0]
    out["ras"] = write_nifti(tmp_path / "ras.nii.gz", ijk[::-1, ::-1, :].copy(), LPS @ flip)
    rot = np.eye(4)
    rot[:3, :3] = _rotation(12.0, -7.0)
    out["oblique"] = write_nifti(tmp_path / "oblique.nii.gz", ijk, rot @ LPS)
    perm = np.zeros((4, 4))
    perm[0, 0], perm[1, 2], perm[2, 1], perm[3, 3] = 1, 1, 1, 1  # new (i, j, k) = old (i, k, j)
    out["coronal"] = write_nifti(tmp_path / "coronal.nii.gz", ijk.transpose(0, 2, 1).copy(), LPS @ perm)
    return ijk, out, rot


def test_napari_affine_round_trip():
    aff = np.array([[0.1, -0.9, 0.05, 3.0], [0.8, 0.1, 0.2, -4.0], [0.0, 0.3, 2.9, 7.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(nifti_affine_from_napari(napari_affine(aff)), aff, atol=1e-12)
    oblique = np.array([[-0.9, 0.1, 0.05, 3.0], [0.1, -0.8, 0.2, -4.0], [0.0, 0.3, 2.9, 7.0], [0, 0, 0, 1]])
    geom = layer_geometry(load_volume_from(oblique))
    np.testing.assert_allclose(geom["affine"] @ np.diag([*geom["scale"], 1.0]), napari_affine(oblique),
                               atol=1e-12)


def load_volume_from(aff):
    from napari_pvs.engine.io import Volume

    return Volume(np.zeros((3, 4, 5), np.float32), aff)


def test_world_point_maps_to_the_same_voxel_in_every_copy(make_napari_viewer, tmp_path):
    ijk, paths, rot = _copies(tmp_path)
    viewer = make_napari_viewer()
    layers = {k: viewer.open(str(p), plugin="napari-pvs")[0] for k, p in paths.items()}
    lps = layers["lps"]
    for kji in [(0, 0, 0), (2, 7, 11), (5, 19, 23), (3, 10, 4)]:
        world = np.asarray(lps.data_to_world(kji))
        value = lps.data[kji]
        assert value == ijk[kji[2], kji[1], kji[0]]
        idx = np.round(layers["ras"].world_to_data(world)).astype(int)
        assert layers["ras"].data[tuple(idx)] == value
        # the oblique copy holds the same voxels under a rotated affine: the rotated point
        # (RAS) -> napari world maps to the same voxel
        ras = nib.affines.apply_affine(LPS, kji[::-1])
        ras_rot = nib.affines.apply_affine(rot, ras)
        world_rot = (ras_rot[2], -ras_rot[1], -ras_rot[0])
        idx = np.round(layers["oblique"].world_to_data(world_rot)).astype(int)
        assert layers["oblique"].data[tuple(idx)] == value
    # the world frame is LPS in (S, P, L) order: the LPS scan's voxel (0, 0, 0) sits at
    # S = -20, P = -70, L = -60 (RAS x = 60 -> L = -60)
    np.testing.assert_allclose(lps.data_to_world((0, 0, 0)), (-20.0, -70.0, -60.0))
    # the coronal copy is displayed in data order: its world axes follow its data axes
    cor = layers["coronal"].affine.affine_matrix[:3, :3]
    np.testing.assert_allclose(np.abs(cor), np.eye(3), atol=1e-12)
    # and layer_to_volume gives back each file's own affine
    for name, p in paths.items():
        np.testing.assert_allclose(layer_to_volume(layers[name]).affine, nib.load(str(p)).affine, atol=1e-6)


def test_engine_axes_of_the_copies(tmp_path):
    _, paths, _ = _copies(tmp_path)
    assert load_volume(paths["lps"]).axial_axis == 0
    assert load_volume(paths["coronal"]).axial_axis == 1
    assert load_volume(paths["ras"]).orientation == ("R", "A", "S")
    assert load_volume(paths["oblique"]).axial_axis == 0 and load_volume(paths["oblique"]).lr_axis == 2
