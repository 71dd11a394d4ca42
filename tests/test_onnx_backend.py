"""ONNX Runtime backend: the same probabilities as torch (within 1e-3), the ensemble's
members too, the ONNX file cached by the checkpoint's sha256, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import blob_volume, tiny_ensemble

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from napari_pvs.engine.errors import PVSInputError  # noqa: E402
from napari_pvs.engine.inference import predict_volume  # noqa: E402
from napari_pvs.engine.inference.onnx_backend import OnnxEnsembleNet, OnnxNet, onnx_model  # noqa: E402
from napari_pvs.engine.models import UNetConfig, build_model  # noqa: E402
from napari_pvs.engine.models.checkpoint import load_model, save_checkpoint  # noqa: E402


@pytest.fixture
def unet_ckpt(tmp_path):
    torch.manual_seed(0)
    cfg = UNetConfig(features=(4, 8, 16))
    return save_checkpoint(tmp_path / "u.pt", model=build_model("unet", cfg), model_name="unet", model_config=cfg,
                           spacing_mm=0.5, percentiles=(0.5, 99.5), patch_size=(32, 32))


def test_onnx_unet_matches_torch_on_a_volume(unet_ckpt, tmp_path):
    ref = load_model(unet_ckpt)
    fast = onnx_model(ref, cache_dir=tmp_path / "cache")
    assert isinstance(fast.model, OnnxNet) and fast.info["backend"] == "onnx"
    windows = torch.randn(5, 1, 32, 32)
    with torch.inference_mode():
        expected = torch.sigmoid(ref.model({"image": windows}))
    got = torch.sigmoid(fast.model({"image": windows}))
    assert got.shape == expected.shape == (5, 1, 32, 32)
    assert float((got - expected).abs().max()) < 1e-3
    vol, _ = blob_volume(3, shape=(4, 64, 64))
    p_ref = predict_volume(ref, vol, brain_only=False)
    p_fast = predict_volume(fast, vol, brain_only=False)
    assert p_fast.prob.shape == vol.shape and p_fast.prob.dtype == np.float32
    assert float(np.abs(p_fast.prob - p_ref.prob).max()) < 1e-3
    assert np.array_equal(p_fast.mask, p_ref.mask) or np.mean(p_fast.mask != p_ref.mask) < 1e-4


def test_onnx_ensemble_members_and_cache(tmp_path):
    path, _ = tiny_ensemble(tmp_path)
    ref = load_model(path)
    cache = tmp_path / "cache"
    fast = onnx_model(ref, cache_dir=cache)
    assert isinstance(fast.model, OnnxEnsembleNet)
    files = list(cache.glob("*.onnx"))
    assert len(files) == 1 and len(files[0].stem) == 64            # <sha256>.onnx
    windows = torch.randn(3, fast.model.session.get_inputs()[0].shape[1], 32, 32)
    with torch.inference_mode():
        expected = torch.sigmoid(ref.model.forward_members({"image": windows}))
    got = torch.sigmoid(fast.model.forward_members({"image": windows}))
    assert got.shape == expected.shape == (3, 4, 32, 32)              # the ensemble, then 3 members
    assert float((got - expected).abs().max()) < 1e-3
    mtime = files[0].stat().st_mtime_ns
    again = onnx_model(load_model(path), cache_dir=cache)             # the cached file, not a new export
    assert files[0].stat().st_mtime_ns == mtime and again.info["onnx_file"] == str(files[0])


def test_load_segmenter_backend_errors(unet_ckpt):
    from napari_pvs.engine.usecases import load_segmenter

    with pytest.raises(PVSInputError, match="unknown inference backend 'tensorrt'"):
        load_segmenter(unet_ckpt, backend="tensorrt")
    with pytest.raises(PVSInputError, match="runs on the CPU"):
        load_segmenter(unet_ckpt, device="cuda", backend="onnx")
