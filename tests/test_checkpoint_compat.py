"""Checkpoints written by napari-pvs 0.1.0 (format version 1, one config class for every
model) still load and predict the same mask (fixtures made at commit dd567cc, see
tests/fixtures/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_pvs.engine.models.checkpoint import CHECKPOINT_VERSION, load_model, read_checkpoint, save_checkpoint
from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.inference import predict_volume
from napari_pvs.engine.io import load_volume
from napari_pvs.engine.models import MfNSDeConfig, UNetConfig

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name, config_class", [("mfnsde", MfNSDeConfig), ("unet", UNetConfig)])
def test_version_1_checkpoint_loads_and_predicts_the_same_mask(name, config_class):
    raw = torch.load(FIXTURES / f"legacy_{name}_v1.pt", weights_only=True)
    assert raw["version"] == 1 and "model_config_class" not in raw
    loaded = load_model(FIXTURES / f"legacy_{name}_v1.pt")
    assert loaded.name == name and isinstance(loaded.config, config_class)
    assert loaded.config.features == (4, 8, 16)
    expected = np.load(FIXTURES / f"legacy_{name}_v1_prediction.npz")
    # the rules new in 0.2 are off: 0.1.0 did not zero the probability outside the brain
    # or in wide CSF spaces
    pred = predict_volume(loaded, load_volume(FIXTURES / "legacy_t2.nii.gz"), outside_brain_zero=False,
                          wide_csf_zero=False)
    assert expected["mask"].sum() > 100  # the fixture predicts something
    np.testing.assert_array_equal(pred.mask, expected["mask"])
    np.testing.assert_allclose(pred.prob, expected["prob"], atol=1e-5)


def test_new_checkpoints_store_the_config_class(tmp_path):
    cfg = UNetConfig(features=(4, 8), num_res_units=1)
    from napari_pvs.engine.models import build_model

    path = save_checkpoint(tmp_path / "u.pt", model=build_model("unet", cfg), model_name="unet",
                           model_config=cfg, spacing_mm=0.7, percentiles=(1.0, 99.0))
    raw = read_checkpoint(path)
    assert raw["version"] == CHECKPOINT_VERSION == 2
    assert raw["model_config_class"] == "UNetConfig" and raw["task"] == "segmentation"
    assert load_model(path).config == cfg
    raw["version"] = 99
    torch.save(raw, tmp_path / "future.pt")
    with pytest.raises(PVSInputError, match="future.pt: checkpoint format version 99 is newer"):
        load_model(tmp_path / "future.pt")
