"""NIfTI I/O keeps geometry: affine, shape, orientation, header; bad files fail in one line."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.io import Volume, check_same_grid, load_mask, load_volume, save_volume


def test_load_real_t2_geometry(study1_t2):
    vol = load_volume(study1_t2)
    img = nib.load(study1_t2)
    assert vol.shape == img.shape[::-1] == (36, 448, 406)
    np.testing.assert_array_equal(vol.affine, img.affine)
    np.testing.assert_allclose(vol.voxel_size, img.header.get_zooms()[::-1], rtol=1e-5)
    assert vol.orientation == ("L", "P", "S")
    assert vol.axial_axis == 0 and vol.lr_axis == 2
    # (z, y, x) array order is NIfTI (k, j, i) reversed, voxel for voxel
    raw = np.asanyarray(img.dataobj)
    assert vol.data[7, 200, 100] == raw[100, 200, 7]
    # world coordinates of a voxel agree with nibabel's
    np.testing.assert_allclose(vol.voxel_to_world([7, 200, 100]), nib.affines.apply_affine(img.affine, [100, 200, 7]))
    np.testing.assert_allclose(vol.world_to_voxel(vol.voxel_to_world([7, 200, 100])), [7, 200, 100], atol=1e-6)


def test_mask_round_trip_keeps_affine_and_header(study1_t2, tmp_path):
    vol = load_volume(study1_t2)
    mask = (vol.data > np.percentile(vol.data, 99)).astype(np.uint8)
    out = save_volume(tmp_path / "mask.nii.gz", mask, vol, dtype=np.uint8)
    back = nib.load(out)
    src = nib.load(study1_t2)
    np.testing.assert_array_equal(back.affine, src.affine)
    assert back.shape == src.shape
    assert nib.aff2axcodes(back.affine) == nib.aff2axcodes(src.affine)
    for key in ("qform_code", "sform_code", "pixdim", "xyzt_units", "quatern_b", "quatern_c", "quatern_d",
                "srow_x", "srow_y", "srow_z", "dim"):
        np.testing.assert_array_equal(back.header[key], src.header[key], err_msg=key)
    np.testing.assert_array_equal(load_mask(out, reference=vol).data, mask)
    assert not list(tmp_path.glob(".*part*")), "temporary file left behind"


def test_reoriented_lps_copy_is_not_silently_flipped(data_dir, tmp_path):
    """A RAS image re-oriented to LPS stores different arrays, but every voxel keeps its
    world position: reading, writing and reading back never flips anything."""
    src = data_dir / "stroke/T2.nii.gz"
    ras = nib.load(src)
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    ornt = nib.orientations.ornt_transform(nib.io_orientation(ras.affine), nib.orientations.axcodes2ornt("LPS"))
    lps = ras.as_reoriented(ornt)
    nib.save(lps, tmp_path / "lps.nii.gz")
    v_ras = load_volume(src)
    v_lps = load_volume(tmp_path / "lps.nii.gz")
    assert v_lps.orientation == ("L", "P", "S")
    assert not np.array_equal(v_lps.data, v_ras.data)  # really re-oriented on disk
    # the same world point reads the same intensity from both
    rng = np.random.default_rng(0)
    for zyx in rng.integers([0, 0, 0], v_ras.shape, size=(20, 3)):
        world = v_ras.voxel_to_world(zyx)
        zyx_lps = np.rint(v_lps.world_to_voxel(world)).astype(int)
        assert v_lps.data[tuple(zyx_lps)] == pytest.approx(v_ras.data[tuple(zyx)], abs=1.0)
    # write a mask on the LPS grid and read it back: same geometry, same voxels
    mask = (v_lps.data > 100).astype(np.uint8)
    save_volume(tmp_path / "m.nii.gz", mask, v_lps)
    back = load_volume(tmp_path / "m.nii.gz")
    np.testing.assert_array_equal(back.affine, v_lps.affine)
    assert back.orientation == ("L", "P", "S")
    np.testing.assert_array_equal(back.data, mask)
    assert v_lps.axial_axis == v_ras.axial_axis == 0


def _write(tmp_path, arr, name="x.nii.gz", affine=None):
    p = tmp_path / name
    nib.save(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine), p)
    return p


@pytest.mark.parametrize("case, needle", [
    ("missing", "file not found"),
    ("not_nifti_name", "not a readable scan"),
    ("garbage", "cannot read as NIfTI"),
    ("truncated", "truncated"),
    ("4d", "4 dimensions"),
    ("2d", "2 dimensions"),
    ("nan", "NaN"),
])
def test_bad_input_one_line_error_naming_file(tmp_path, case, needle):
    if case == "missing":
        p = tmp_path / "nope.nii.gz"
    elif case == "not_nifti_name":
        p = tmp_path / "scan.txt"
        p.write_text("hello")
    elif case == "garbage":
        p = tmp_path / "garbage.nii.gz"
        p.write_bytes(gzip.compress(b"this is not a nifti file at all" * 20))
    elif case == "truncated":
        full = _write(tmp_path, np.random.default_rng(0).random((40, 40, 20)).astype(np.float32), "full.nii.gz")
        data = full.read_bytes()
        p = tmp_path / "truncated.nii.gz"
        p.write_bytes(data[: len(data) // 2])
    elif case == "4d":
        p = _write(tmp_path, np.zeros((4, 4, 4, 3), np.float32))
    elif case == "2d":
        p = _write(tmp_path, np.zeros((4, 4), np.float32))
    else:
        a = np.zeros((4, 4, 4), np.float32)
        a[1, 1, 1] = np.nan
        p = _write(tmp_path, a)
    with pytest.raises(PVSInputError) as err:
        load_volume(p)
    msg = str(err.value)
    assert "\n" not in msg and p.name in msg and needle in msg


def test_mask_on_other_grid_is_rejected(tmp_path, lps_affine):
    img = _write(tmp_path, np.zeros((10, 12, 5), np.float32), "img.nii.gz", lps_affine)
    other = _write(tmp_path, np.zeros((10, 12, 6), np.uint8), "mask.nii.gz", lps_affine)
    shifted = lps_affine.copy()
    shifted[0, 3] += 2
    moved = _write(tmp_path, np.zeros((10, 12, 5), np.uint8), "moved.nii.gz", shifted)
    ref = load_volume(img)
    with pytest.raises(PVSInputError, match="mask.nii.gz: grid"):
        load_mask(other, reference=ref)
    with pytest.raises(PVSInputError, match="moved.nii.gz: affine differs"):
        load_mask(moved, reference=ref)
    check_same_grid(ref, load_volume(img))  # same grid passes


def test_save_shape_mismatch_writes_nothing(tmp_path, lps_affine):
    ref = Volume(np.zeros((5, 12, 10), np.float32), lps_affine)
    with pytest.raises(ValueError):
        save_volume(tmp_path / "out.nii.gz", np.zeros((5, 12, 11), np.uint8), ref)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_half_file(tmp_path, lps_affine, monkeypatch):
    ref = Volume(np.zeros((5, 12, 10), np.float32), lps_affine)
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"old")

    def boom(img, path):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(PVSInputError, match=r"out.nii.gz: cannot write \(disk full\); nothing was written"):
        save_volume(target, np.zeros((5, 12, 10), np.uint8), ref)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]
