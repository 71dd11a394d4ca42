"""The shipped models: the fast default (a liteunet student) and the accurate ensemble it is distilled
from: present, small, self-describing, and the defaults of the CLI."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import write_nifti

from napari_pvs.engine.data import (ACCURATE_CHECKPOINT_NAME, DEFAULT_CHECKPOINT_NAME, accurate_checkpoint,
                                    default_checkpoint, resolve_checkpoint, sha256_file)
from napari_pvs.engine.models.checkpoint import load_model, read_checkpoint

HELD_OUT = {"open_ms/longitudinal/patient01/study2_T2W.nii.gz", "open_ms/mni/patient07/T2.nii.gz"}


def test_default_model_is_the_fast_student_and_records_its_recipe():
    path = default_checkpoint()
    assert path.name == DEFAULT_CHECKPOINT_NAME and path.parent.name == "weights"
    assert path.stat().st_size + accurate_checkpoint().stat().st_size <= 20 * 2**20     # both shipped models
    ck = read_checkpoint(path)
    recipe = ck["recipe"]
    assert recipe["kind"] == "student" and "make_student_model.py" in recipe["script"]
    assert recipe["teacher"]["sha256"] == sha256_file(accurate_checkpoint())            # distilled from 'accurate'
    trained_on = {d["path"] for d in recipe["data"]}
    assert {"clinical_stroke/T2.nii", "arc/M2265_T2w.nii.gz", "arc/M2208_T2w_mni.nii.gz"} <= trained_on
    assert not trained_on & HELD_OUT and HELD_OUT <= set(recipe["held_out"])
    assert all(len(d["sha256"]) == 64 for d in recipe["data"])
    w10, w50, w90 = recipe["measured_pvs"]["width_mm_p10_p50_p90"]
    assert 0 < w10 <= w50 <= w90 < 3.0
    assert recipe["stages"]["student"]["steps"] > 0
    assert "benchmark" in ck and ck["benchmark"]["scans"]
    loaded = load_model(path)
    assert loaded.name == "liteunet" and loaded.config.whole_slice and loaded.config.context_slices == 1
    assert loaded.spacing_mm == pytest.approx(0.6)


def test_accurate_model_is_the_former_default_ensemble():
    path = accurate_checkpoint()
    assert path.name == ACCURATE_CHECKPOINT_NAME and resolve_checkpoint("accurate") == path
    assert resolve_checkpoint(None) == resolve_checkpoint("default") == default_checkpoint()
    ck = read_checkpoint(path)
    recipe = ck["recipe"]
    members = recipe["members"]
    assert len(members) == 3
    for m in members:
        assert m["recipe"]["ignore_real_pvs"] is True
        assert "make_default_model.py" in m["script"]
        assert HELD_OUT <= set(m["held_out"])
        assert all(len(d["sha256"]) == 64 for d in m["data"])
    assert all("--lesion-mimics" in m["script"] and "--context-slices 1" in m["script"] for m in members)
    assert len({re.search(r"--seed (\d+)", m["script"]).group(1) for m in members}) == 3  # three seeds
    assert "--ensemble" in recipe["script"]
    loaded = load_model(path)
    assert loaded.name == "ensemble"
    assert loaded.model.config.member == "mfnsde" and loaded.model.config.n_members == 3
    assert loaded.model.config.member_config["context_slices"] == 1


def test_cli_segment_uses_the_default_model(tmp_path, capsys):
    from napari_pvs.cli import main

    rng = np.random.default_rng(0)
    data = rng.normal(300, 10, (64, 64, 4)).astype(np.float32)         # (i, j, k)
    data[20:24, 30:33, :] = 900                                          # a bright dot
    aff = np.diag([0.5, 0.5, 3.0, 1.0])
    img = write_nifti(tmp_path / "t2.nii.gz", data, aff)
    out = tmp_path / "mask.nii.gz"
    assert main(["segment", str(img), "-o", str(out)]) == 0
    assert "with liteunet (pvs_default.pt)" in capsys.readouterr().out
    import nibabel as nib

    m = nib.load(str(out))
    assert m.shape == (64, 64, 4)
    np.testing.assert_allclose(m.affine, aff)


def test_missing_default_model_is_a_clear_error(monkeypatch, tmp_path):
    import napari_pvs.engine.data.default_model as dm
    from napari_pvs.engine.errors import PVSInputError

    monkeypatch.setattr(dm, "DEFAULT_CHECKPOINT_NAME", "absent.pt")
    with pytest.raises(PVSInputError, match="default model is not installed"):
        dm.default_checkpoint()
    monkeypatch.setattr(dm, "ACCURATE_CHECKPOINT_NAME", "absent.pt")
    with pytest.raises(PVSInputError, match="accurate model is not installed"):
        dm.resolve_checkpoint("accurate")
