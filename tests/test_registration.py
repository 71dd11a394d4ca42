"""Registration engine: transforms, warping, metrics, SimpleITK baseline, atlas-placed
rating slices, CLI."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest
from nibabel.affines import from_matvec

from napari_pvs.engine.io import Volume
from napari_pvs.engine.progress import run_to_end
from napari_pvs.engine.registration import (ClassicalConfig, SpatialTransform, dice_per_label, folding_fraction,
                                            hd95_mm, jacobian_determinant, register_classical, resample_grid,
                                            sdlogj, warp_volume)
from napari_pvs.engine.registration.atlas import (AC_LABEL, Atlas, atlas_regions, locate_rating_slices,
                                                  slice_of_point)


def _rot_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def _ellipsoid(pts, centre, radii):
    return (((pts - np.asarray(centre)) / np.asarray(radii)) ** 2).sum(-1) <= 1


def phantom_atlas(spacing: float = 2.0) -> Atlas:
    """A head-like phantom in 'MNI' mm: brain ellipsoid, brighter white matter, dark
    lateral ventricles (top at z = 22 mm), a bright frontal blob (breaks symmetries) and
    an anterior-commissure rod at (0, 3, -5) mm."""
    shape = (int(130 / spacing), int(170 / spacing), int(140 / spacing))      # (Z, Y, X)
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = [-70, -95, -60]
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    pts = np.stack([xx, yy, zz], -1) * spacing + aff[:3, 3]
    brain = _ellipsoid(pts, (0, -10, 5), (62, 80, 58))
    wm = _ellipsoid(pts, (0, -10, 10), (45, 60, 38))
    lv = _ellipsoid(pts, (-9, -12, 10), (5, 28, 12)) | _ellipsoid(pts, (9, -12, 10), (5, 28, 12))
    frontal = _ellipsoid(pts, (20, 45, 15), (12, 12, 12))
    t1 = np.where(brain, 0.6, 0.0) + 0.3 * wm - 0.7 * lv + 0.4 * frontal
    t1 = np.clip(t1, 0, None).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[wm] = 51
    labels[lv] = 58
    labels[_ellipsoid(pts, (0, 3, -5), (14, 2.5, 2.5))] = AC_LABEL
    return Atlas(template=Volume(t1, aff), labels=Volume(labels, aff))


def subject_from(atlas: Atlas, a_true: np.ndarray, vox=(1.5, 1.5, 4.0), shape=(40, 130, 110)) -> Volume:
    """The phantom resampled through ``a_true`` (subject world -> atlas world) onto a
    thick-slice subject grid, with T2-like contrast (ventricles bright)."""
    aff = np.diag([*vox, 1.0])
    aff[:3, 3] = -np.asarray(shape[::-1]) * np.asarray(vox) / 2
    grid = Volume(np.zeros(shape, np.float32), aff)
    t1 = warp_volume(atlas.template, grid, SpatialTransform(a_true)).data
    lv = warp_volume(atlas.labels, grid, SpatialTransform(a_true), order=0).data == 58
    t2 = np.where(t1 > 0.05, 1.1 - t1, 0).astype(np.float32)
    t2[lv] = 1.3
    return Volume(t2, aff)


A_TRUE = from_matvec(_rot_z(6) @ np.diag([0.85, 0.82, 0.8]), [3.0, -4.0, 5.0])   # subject -> atlas


# ----------------------------------------------------------------------------- transform
def test_affine_warp_moves_a_cube_by_the_given_mm():
    data = np.zeros((20, 20, 20), np.float32)
    data[8:12, 8:12, 8:12] = 1
    vol = Volume(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    # fixed point p takes the moving value at p + (4, 0, 0) mm: the cube moves 2 voxels to -x
    shifted = warp_volume(vol, vol, SpatialTransform(from_matvec(np.eye(3), [4.0, 0, 0])), order=0).data
    assert shifted[8:12, 8:12, 6:10].all() and shifted.sum() == data.sum()


def test_points_round_trip_through_affine_and_ddf():
    grid = np.diag([4.0, 4.0, 4.0, 1.0])
    grid[:3, 3] = -40
    z, y, x = np.meshgrid(*(np.arange(21),) * 3, indexing="ij")
    ddf = np.stack([1.5 * np.sin(y / 5.0), 1.0 * np.cos(x / 6.0), 0.5 * np.sin(z / 4.0)]).astype(np.float32)
    tr = SpatialTransform(A_TRUE, ddf=ddf, ddf_affine=grid)
    p = np.array([[0.0, 0, 0], [10, -20, 15], [-25, 5, 30]])
    q = tr.map_points(p)
    assert not np.allclose(q, A_TRUE[:3, :3] @ p.T + A_TRUE[:3, 3:], atol=0.1)   # the DDF acts
    np.testing.assert_allclose(tr.inverse_points(q), p, atol=1e-3)


def test_resample_grid_covers_an_oblique_volume():
    aff = from_matvec(_rot_z(20) @ np.diag([0.5, 0.5, 4.0]), [-50, -60, -40])
    vol = Volume(np.zeros((30, 200, 180), np.float32), aff)
    new_aff, shape = resample_grid(vol, 2.0)
    extent = np.asarray(shape[::-1]) * 2.0
    np.testing.assert_allclose(extent, [90, 100, 120], atol=2.0)
    centre_old = vol.voxel_to_world((np.asarray(vol.shape) - 1) / 2)
    centre_new = Volume(np.zeros(shape), new_aff).voxel_to_world((np.asarray(shape) - 1) / 2)
    np.testing.assert_allclose(centre_new, centre_old, atol=1e-6)


def test_transform_rejects_bad_shapes():
    with pytest.raises(ValueError, match="ddf and ddf_affine"):
        SpatialTransform(np.eye(4), ddf=np.zeros((3, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"\(3, Z, Y, X\)"):
        SpatialTransform(np.eye(4), ddf=np.zeros((2, 2, 2, 2)), ddf_affine=np.eye(4))


# ----------------------------------------------------------------------------- metrics
def test_dice_and_hd95_values():
    a = np.zeros((10, 30, 30), np.uint8)
    b = np.zeros_like(a)
    a[2:8, 5:15, 5:15] = 1
    b[2:8, 5:15, 7:17] = 1               # shifted 2 voxels in x
    d = dice_per_label(a, b, [1, 2])
    assert d[1] == pytest.approx(2 * 6 * 10 * 8 / (2 * 600))
    assert np.isnan(d[2])
    assert hd95_mm(a > 0, b > 0, (4.0, 0.5, 0.5)) == pytest.approx(1.0)    # 2 voxels of 0.5 mm
    assert np.isnan(hd95_mm(a > 0, np.zeros_like(a, bool), (1, 1, 1)))


@pytest.mark.parametrize("flip", [False, True])
def test_jacobian_of_linear_fields(flip):
    grid = np.diag([-2.0 if flip else 2.0, 2.0, 3.0, 1.0])
    vol = Volume(np.zeros((12, 14, 16)), grid)
    zyx = np.argwhere(np.ones(vol.shape, bool)).reshape(*vol.shape, 3)
    xyz = vol.voxel_to_world(zyx)
    stretch = np.stack([0.1 * xyz[..., 0], 0 * xyz[..., 1], -0.2 * xyz[..., 2]]).astype(np.float32)
    j = jacobian_determinant(stretch, grid)
    np.testing.assert_allclose(j, 1.1 * 0.8, rtol=1e-4)
    assert sdlogj(j) == pytest.approx(0, abs=1e-5) and folding_fraction(j) == 0
    fold = np.stack([-2.0 * xyz[..., 0], 0 * xyz[..., 1], 0 * xyz[..., 2]]).astype(np.float32)
    assert folding_fraction(jacobian_determinant(fold, grid)) == 1.0


# ----------------------------------------------------------------------------- classical
@pytest.fixture(scope="module")
def atlas() -> Atlas:
    return phantom_atlas()


@pytest.fixture(scope="module")
def subject(atlas) -> Volume:
    return subject_from(atlas, A_TRUE)


def test_affine_recovers_a_known_transform_across_contrasts(atlas, subject):
    events = []
    tr = run_to_end(register_classical(subject, atlas.template, fixed_mask=subject.data > 0,
                                       moving_mask=atlas.template.data > 0), events.append)
    pts = np.array([[0.0, 0, 0], [20, 30, 10], [-25, -30, -10], [0, 10, 25]])
    err = np.linalg.norm(tr.map_points(pts) - (pts @ A_TRUE[:3, :3].T + A_TRUE[:3, 3]), axis=1)
    assert err.max() < 2.0, err
    fr = [e.fraction for e in events]
    assert fr[0] == 0 and fr[-1] == 1 and all(b >= a for a, b in pairwise(fr))
    assert {e.stage for e in events} >= {"init", "scale_versor", "affine", "done"}
    assert tr.ddf is None and tr.method == "affine" and tr.info["config"]["grid_mm"] == 2.0


def test_bspline_on_identical_images_is_near_identity_without_folding(atlas):
    tpl = atlas.template
    tr = run_to_end(register_classical(tpl, tpl, config=ClassicalConfig(deformable=True, grid_mm=3.0,
                                                                         bspline_iterations=10)))
    assert tr.ddf is not None and tr.ddf.shape[0] == 3
    assert np.abs(tr.ddf).max() < 1.0                                   # mm
    np.testing.assert_allclose(tr.affine, np.eye(4), atol=0.03)
    j = jacobian_determinant(tr.ddf, tr.ddf_affine)
    assert folding_fraction(j) == 0 and sdlogj(j) < 0.05


def test_registration_stops_when_the_generator_is_closed(atlas, subject):
    import threading
    import time

    gen = register_classical(subject, atlas.template)
    next(gen)
    ev = next(gen)
    t0 = time.perf_counter()
    gen.close()
    assert ev.stage in ("scale_versor", "affine")
    assert time.perf_counter() - t0 < 5.0                       # stopped at the next iteration
    assert not [t for t in threading.enumerate() if t.name.startswith("napari-pvs-")]


# ----------------------------------------------------------------------------- atlas
@pytest.fixture(scope="module")
def placed(atlas, subject):
    return run_to_end(locate_rating_slices(subject, atlas=atlas, brain=subject.data > 0))


def test_rating_slices_land_on_the_known_landmarks(atlas, subject, placed):
    rs = placed
    inv = np.linalg.inv(A_TRUE)
    ac_true = inv[:3, :3] @ atlas.ac_mm + inv[:3, 3]
    top_true = inv[:3, :3] @ atlas.lv_top_mm + inv[:3, 3]
    np.testing.assert_allclose(rs.ac_mm, ac_true, atol=2.0)
    np.testing.assert_allclose(rs.lv_top_mm, top_true, atol=2.5)
    assert rs.bg == slice_of_point(subject, ac_true)[0]
    k_top = slice_of_point(subject, top_true)[1]
    assert rs.cso == round(k_top + 10.0 / 4.0)           # axis 0 runs superior, 4 mm slices
    assert rs.axial_axis == 0 and rs.slice_mm == pytest.approx(4.0)
    regions = atlas_regions(subject, rs.transform, atlas)
    lv_subject = regions == 3
    assert lv_subject.any() and (subject.data[lv_subject] > 1.2).mean() > 0.7


def test_rating_slices_follow_a_flipped_axial_axis(atlas, subject, placed):
    vol, ref = subject, placed
    flipped = Volume(vol.data[::-1].copy(), vol.affine @ from_matvec(np.diag([1, 1, -1.0]), [0, 0, vol.shape[0] - 1]))
    rs = run_to_end(locate_rating_slices(flipped, atlas=atlas, brain=flipped.data > 0))
    assert rs.bg == vol.shape[0] - 1 - ref.bg and rs.cso == vol.shape[0] - 1 - ref.cso


def test_rating_slices_json(tmp_path, placed):
    rs = placed
    out = rs.write_json(tmp_path / "slices.json", image="x.nii.gz")
    d = json.loads(out.read_text())
    assert d["bg"] == rs.bg and d["cso"] == rs.cso and len(d["ac_mm"]) == 3 and d["image"] == "x.nii.gz"


# ----------------------------------------------------------------------------- CLI
def _save(vol: Volume, path) -> str:
    import nibabel as nib

    data = np.asarray(vol.data)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), vol.affine), path)
    return str(path)


def test_register_cli_writes_the_warped_image_and_labels(tmp_path, capsys, atlas, subject):
    from napari_pvs.cli import main
    from napari_pvs.engine.io import load_volume

    fixed = _save(subject, tmp_path / "t2.nii.gz")
    moving = _save(atlas.template, tmp_path / "tpl.nii.gz")
    labels = _save(atlas.labels, tmp_path / "lab.nii.gz")
    code = main(["register", fixed, moving, "-o", str(tmp_path / "w.nii.gz"), "--method", "affine",
                 "--labels", labels, "--labels-out", str(tmp_path / "wl.nii.gz")])
    assert code == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    warped = load_volume(tmp_path / "w.nii.gz")
    wl = load_volume(tmp_path / "wl.nii.gz")
    assert warped.shape == wl.shape == subject.shape
    np.testing.assert_allclose(warped.affine, subject.affine, atol=1e-4)
    truth = warp_volume(atlas.labels, subject, SpatialTransform(A_TRUE), order=0).data
    d = dice_per_label(np.asarray(wl.data).astype(int), truth.astype(int), [58, 51])
    assert d[58] > 0.75 and d[51] > 0.85, d


def test_cli_errors_are_one_line(tmp_path, capsys):
    from napari_pvs.cli import main

    mask = Volume(np.zeros((6, 10, 12), np.uint8), np.diag([1.0, 1.0, 3.0, 1.0]))
    m = _save(mask, tmp_path / "m.nii.gz")
    assert main(["count", m]) == 2
    err = capsys.readouterr().err
    assert "give --bg-slice and --cso-slice, or --image" in err and err.count("\n") == 1
    assert main(["register", m, m, "-o", str(tmp_path / "x.txt")]) == 2
    assert "must be a .nii or .nii.gz file" in capsys.readouterr().err
    assert main(["register", m, m, "-o", str(tmp_path / "x.nii.gz"), "--method", "acsgreg"]) == 2
    assert "needs a trained checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()


@pytest.mark.slow
def test_locate_slices_cli_on_a_real_t2(tmp_path, capsys):
    """patient07 (1 mm): the BG and CSO slices within 2 slices of those placed by hand
    (anterior commissure crossing the midline on axial 72; ventricles' top in 99 -> 110)."""
    from conftest import real_file
    from napari_pvs.cli import main

    t2 = real_file("open_ms/mni/patient07/T2.nii.gz")
    assert main(["locate-slices", str(t2), "--json", str(tmp_path / "s.json")]) == 0
    d = json.loads((tmp_path / "s.json").read_text())
    assert abs(d["bg"] - 72) <= 2 and abs(d["cso"] - 110) <= 2, d
    assert "BG slice" in capsys.readouterr().out
