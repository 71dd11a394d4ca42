"""The shipped default model: present, small, self-describing, and the default of the CLI."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import write_nifti

from napari_pvs.engine.data import DEFAULT_CHECKPOINT_NAME, default_checkpoint
from napari_pvs.engine.models.checkpoint import load_model, read_checkpoint


def test_default_model_is_shipped_small_and_records_its_recipe():
    path = default_checkpoint()
    assert path.name == DEFAULT_CHECKPOINT_NAME and path.parent.name == "weights"
    assert path.stat().st_size <= 20 * 2**20
    ck = read_checkpoint(path)
    recipe = ck["recipe"]
    # a deep ensemble of 2.5D mfnsde members, each with its own recipe
    members = recipe["members"]
    assert len(members) == 3
    held_out = {"open_ms/longitudinal/patient01/study2_T2W.nii.gz", "open_ms/mni/patient07/T2.nii.gz"}
    for m in members:
        assert m["recipe"]["ignore_real_pvs"] is True
        assert "make_default_model.py" in m["script"]
        assert held_out <= set(m["held_out"])
        assert {d["path"] for d in m["data"]} >= {"open_ms/longitudinal/patient01/study1_T2W.nii.gz"}
        assert all(len(d["sha256"]) == 64 for d in m["data"])
        if "--init-from" in m["script"]:  # a fine-tune records what it started from
            assert len(m["parent"]["sha256"]) == 64 and "make_default_model.py" in m["parent"]["recipe"]["script"]
    assert all("--lesion-mimics" in m["script"] and "--context-slices 1" in m["script"] for m in members)
    assert len({re.search(r"--seed (\d+)", m["script"]).group(1) for m in members}) == 3  # three seeds
    assert held_out <= set(recipe["held_out"])
    assert "--ensemble" in recipe["script"]
    assert "benchmark" in ck and ck["benchmark"]["scans"]
    loaded = load_model(path)
    assert loaded.name == "ensemble"
    assert loaded.model.config.member == "mfnsde" and loaded.model.config.n_members == 3
    assert loaded.model.config.member_config["context_slices"] == 1


def test_cli_segment_uses_the_default_model(tmp_path):
    from napari_pvs.cli import main

    rng = np.random.default_rng(0)
    data = rng.normal(300, 10, (64, 64, 4)).astype(np.float32)         # (i, j, k)
    data[20:24, 30:33, :] = 900                                          # a bright dot
    aff = np.diag([0.5, 0.5, 3.0, 1.0])
    img = write_nifti(tmp_path / "t2.nii.gz", data, aff)
    out = tmp_path / "mask.nii.gz"
    assert main(["segment", str(img), "-o", str(out)]) == 0
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
