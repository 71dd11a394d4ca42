"""The napari-pvs command line: real runs on shared data, and one-line errors (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from conftest import SMALL_FEATURES, tiny_ensemble, write_nifti

from napari_pvs.cli import main
from napari_pvs.engine.models.checkpoint import save_checkpoint
from napari_pvs.engine.models import UNetConfig, build_model

TINY = UNetConfig(features=SMALL_FEATURES)


@pytest.fixture
def tiny_ckpt(tmp_path):
    p = tmp_path / "tiny_unet.pt"
    torch_model = build_model("unet", TINY)
    save_checkpoint(p, model=torch_model, model_name="unet", model_config=TINY, spacing_mm=0.7,
                    percentiles=(0.5, 99.5))
    return p


def test_console_script_help():
    for sub in ([], ["simulate"], ["train"], ["segment"], ["count"]):
        out = subprocess.run([sys.executable, "-m", "napari_pvs.cli", *sub, "--help"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "usage: napari-pvs" in out.stdout


def test_segment_real_t2_keeps_affine_and_header(study1_t2, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "mask.nii.gz"
    prob = tmp_path / "prob.nii.gz"
    assert main(["segment", str(study1_t2), "-m", str(tiny_ckpt), "-o", str(out), "--prob", str(prob)]) == 0
    src = nib.load(study1_t2)
    for p, dtype in ((out, np.uint8), (prob, np.float32)):
        img = nib.load(p)
        assert img.shape == src.shape
        np.testing.assert_array_equal(img.affine, src.affine)
        assert img.get_data_dtype() == dtype
        for key in src.header.keys():
            if key in ("datatype", "bitpix", "scl_slope", "scl_inter", "cal_min", "cal_max", "vox_offset"):
                continue
            np.testing.assert_array_equal(img.header[key], src.header[key], err_msg=key)
    assert "wrote" in capsys.readouterr().out


def test_segment_writes_the_ensemble_member_agreement(tmp_path, capsys):
    from napari_pvs.engine.models.checkpoint import load_model
    from napari_pvs.engine.inference import predict_volume
    from napari_pvs.engine.io import load_volume

    ens, _ = tiny_ensemble(tmp_path)
    img = _nifti(tmp_path, "t2.nii.gz", np.random.default_rng(0).normal(100, 5, (40, 36, 3)).astype(np.float32))
    out, agree = tmp_path / "mask.nii.gz", tmp_path / "agree.nii.gz"
    probe = predict_volume(load_model(ens), load_volume(img), members=True)
    t = float(np.median(probe.member_probs))  # random members hover near 0.5: split them at their median
    assert main(["segment", str(img), "-m", str(ens), "-o", str(out), "--agreement", str(agree),
                 "--threshold", repr(t)]) == 0
    text = capsys.readouterr().out
    got = nib.load(agree)
    assert got.get_data_dtype() == np.uint8 and got.shape == (40, 36, 3)
    np.testing.assert_array_equal(got.affine, nib.load(img).affine)
    want = probe.agreement(t)
    np.testing.assert_array_equal(load_volume(agree).data, want)
    assert len(np.unique(want)) > 1  # the random members disagree: a map, not a constant
    counts = ", ".join(f"{k}: {int((want == k).sum())}" for k in (1, 2, 3))
    assert f"voxels called PVS by k of 3 members: {counts};" in text


def test_count_cli(tmp_path, capsys):
    mask = np.zeros((40, 30, 6), np.uint8)  # NIfTI (i, j, k)
    mask[5, 5, 2] = mask[5, 10, 2] = mask[30, 10, 2] = 1
    mask[30, 20, 4] = 1
    aff = np.diag([-0.5, -0.5, 3.0, 1.0])   # LPS: i increases to the subject's left
    aff[:3, 3] = [10, 7, 0]
    nib.save(nib.Nifti1Image(mask, aff), tmp_path / "m.nii.gz")
    assert main(["count", str(tmp_path / "m.nii.gz"), "--bg-slice", "2", "--cso-slice", "4",
                 "--csv", str(tmp_path / "c.csv")]) == 0
    text = capsys.readouterr().out
    # world x of FOV centre = 10 - 0.5*19.5 = 0.25; i=5 -> x=7.5 (right), i=30 -> x=-5 (left)
    assert "BG         2     1     2     3     1" in text
    assert "CSO        4     1     0     1     1" in text
    assert (tmp_path / "c.csv").read_text().splitlines()[1].startswith("BG,2,1,2,3,1")
    # atlas regions (as 'locate-slices -o' writes them): BG code around i=5 only,
    # white matter (2) over slice 4: the BG slice counts the 2 PVS at i=5, the CSO slice its 1
    regions = np.zeros(mask.shape, np.uint8)
    regions[3:8, :, 2] = 1
    regions[:, :, 4] = 2
    nib.save(nib.Nifti1Image(regions, aff), tmp_path / "r.nii.gz")
    assert main(["count", str(tmp_path / "m.nii.gz"), "--bg-slice", "2", "--cso-slice", "4",
                 "--regions", str(tmp_path / "r.nii.gz")]) == 0
    text = capsys.readouterr().out
    assert "BG         2     0     2     2     1" in text and "atlas BG" in text
    assert "CSO        4     1     0     1     1" in text and "atlas WM" in text
    assert main(["count", str(tmp_path / "m.nii.gz"), "--bg-slice", "2", "--cso-slice", "4",
                 "--regions", str(tmp_path / "r.nii.gz"), "--whole-slice"]) == 0
    assert "BG         2     1     2     3     1" in capsys.readouterr().out
    # a 6 mm slab on 3 mm slices: slices 1-3 around the BG slice, 4-5 around the CSO slice 5
    # (clipped at the top): the CSO count takes the PVS on slice 4, not those on slice 2
    assert main(["count", str(tmp_path / "m.nii.gz"), "--bg-slice", "2", "--cso-slice", "5",
                 "--slab-mm", "6"]) == 0
    text = capsys.readouterr().out
    assert "BG         2     1     2     3     1       0.8        3    3" in text
    assert "CSO        5     1     0     1     1       0.2        1    2" in text
    assert main(["count", str(tmp_path / "m.nii.gz"), "--bg-slice", "2", "--cso-slice", "5",
                 "--slab-mm", "-1"]) == 2
    assert "--slab-mm must be >= 0" in capsys.readouterr().err


def _nifti(tmp_path, name, arr, affine=None):
    return write_nifti(tmp_path / name, arr, np.eye(4) if affine is None else affine)


def test_bad_inputs_exit_2_one_line_no_output(tmp_path, tiny_ckpt, capsys):
    good = _nifti(tmp_path, "t2.nii.gz", np.random.default_rng(0).random((32, 32, 4)).astype(np.float32))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    trunc = tmp_path / "trunc.nii.gz"
    trunc.write_bytes(good.read_bytes()[:200])
    four_d = _nifti(tmp_path, "fmri.nii.gz", np.zeros((8, 8, 4, 3), np.float32))
    two_d = _nifti(tmp_path, "flat.nii.gz", np.zeros((8, 8), np.float32))
    nan_img = np.ones((8, 8, 4), np.float32)
    nan_img[0, 0, 0] = np.nan
    nan = _nifti(tmp_path, "nan.nii.gz", nan_img)
    small_mask = _nifti(tmp_path, "mask_small.nii.gz", np.ones((16, 32, 4), np.uint8))
    good_mask = _nifti(tmp_path, "mask.nii.gz", np.ones((32, 32, 4), np.uint8))
    other = tmp_path / "other.pt"
    import torch

    torch.save({"weights": 1}, other)
    out = tmp_path / "out.nii.gz"
    cases = [
        (["segment", str(text), "-m", str(tiny_ckpt), "-o", str(out)], "notes.txt: not a readable scan"),
        (["segment", str(trunc), "-m", str(tiny_ckpt), "-o", str(out)], "trunc.nii.gz:"),
        (["segment", str(four_d), "-m", str(tiny_ckpt), "-o", str(out)], "fmri.nii.gz: image has 4 dimensions"),
        (["segment", str(two_d), "-m", str(tiny_ckpt), "-o", str(out)], "flat.nii.gz: image has 2 dimensions"),
        (["segment", str(nan), "-m", str(tiny_ckpt), "-o", str(out)], "nan.nii.gz: image contains 1 NaN"),
        (["segment", str(good), "-m", str(tmp_path / "none.pt"), "-o", str(out)], "none.pt: checkpoint not found"),
        (["segment", str(good), "-m", str(other), "-o", str(out)], "other.pt: not a napari-pvs checkpoint"),
        (["segment", str(good), "-m", str(tiny_ckpt), "-o", str(tmp_path / "out.png")], "out.png: output mask must be"),
        (["segment", str(good), "-m", str(tiny_ckpt), "-o", str(out), "--agreement", str(tmp_path / "a.nii.gz")],
         "tiny_unet.pt: --agreement needs an ensemble checkpoint, this one is a 'unet' model"),
        (["train", "--image", str(good), "--mask", str(small_mask), "-o", str(tmp_path / "m.pt")],
         "mask_small.nii.gz: grid (16, 32, 4) differs"),
        (["train", "--image", str(good), "--mask", str(good_mask), "--model", "nope", "-o", str(tmp_path / "m.pt")],
         "unknown model 'nope'; available: cmgraph, dynunet, frangi, gloms, liteunet, mfnsde, unet"),
        (["train", "--image", str(good), "--mask", str(good_mask), "--init-from", str(tmp_path / "no.pt"),
          "-o", str(tmp_path / "m.pt")], "no.pt: checkpoint to start from not found"),
        (["count", str(text), "--bg-slice", "1", "--cso-slice", "2"], "notes.txt: not a readable scan"),
        (["count", str(good), "--bg-slice", "9", "--cso-slice", "2"], "BG slice 9 is outside the volume"),
        (["simulate", str(four_d), "-o", str(tmp_path / "sim")], "fmri.nii.gz: image has 4 dimensions"),
    ]
    for argv, needle in cases:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, argv
        assert err.startswith("napari-pvs: error: ") and err.count("\n") == 1, err
        assert needle in err, (needle, err)
    assert not out.exists() and not (tmp_path / "m.pt").exists() and not (tmp_path / "sim").exists()
    assert not list(tmp_path.glob(".*part*"))


def test_unknown_model_name_exit_2(tmp_path, capsys):
    img = _nifti(tmp_path, "t2.nii.gz", np.ones((16, 16, 3), np.float32))
    msk = _nifti(tmp_path, "m.nii.gz", np.ones((16, 16, 3), np.uint8))
    assert main(["train", "--image", str(img), "--mask", str(msk), "--model", "nope", "-o", str(tmp_path / "c.pt")]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
