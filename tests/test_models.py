"""Tests of the model registry, the two 2D networks and the deep-supervision loss."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
import torch
import torch.nn.functional as F

from napari_pvs.engine.models import (
    MODEL_REGISTRY,
    MfNSDe,
    ModelConfig,
    UNet2D,
    available_models,
    build_model,
    deep_supervision_loss,
    downsample_label_max,
    model_config_from_dict,
    register_model,
    required_divisor,
)

SMALL = ModelConfig(features=(4, 8, 16, 32))  # 3 down-samplings, divisor 8, fast
MODELS = ["unet", "mfnsde"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- registry


def test_registry_lists_both_models():
    assert available_models() == ["mfnsde", "unet"]
    for name in MODELS:
        assert MODEL_REGISTRY[name].description
    assert isinstance(build_model("unet", SMALL), UNet2D)
    assert isinstance(build_model("MfNSDe", SMALL), MfNSDe)  # case-insensitive


def test_unknown_model_names_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown model 'x'; available: mfnsde, unet"):
        build_model("x")


def test_register_duplicate_name_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_model("unet", "again")(lambda cfg: torch.nn.Identity())


@pytest.mark.parametrize("name", MODELS)
def test_build_from_dict_config(name):
    d = {"features": [4, 8, 16], "out_channels": 2, "in_channels": 3}
    model = build_model(name, d)
    assert model.config == ModelConfig(in_channels=3, out_channels=2, features=(4, 8, 16))
    assert model.divisor == 4
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 20)).shape == (1, 2, 16, 20)


def test_bad_config_rejected():
    with pytest.raises(ValueError, match="unknown model config key"):
        build_model("unet", {"featurez": [4, 8]})
    with pytest.raises(ValueError, match="at least 2 levels"):
        ModelConfig(features=(8,))
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(dropout=1.5)


def test_config_round_trip_through_json():
    cfg = ModelConfig(in_channels=2, features=(8, 16, 32), dropout=0.1, deep_supervision=False)
    assert model_config_from_dict(dataclasses.asdict(cfg)) == cfg
    back = model_config_from_dict(json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert back == cfg and isinstance(back.features, tuple)
    assert model_config_from_dict(dataclasses.asdict(ModelConfig())) == ModelConfig()
    assert ModelConfig(features=[16, 32]) == ModelConfig(features=(16, 32))


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", MODELS)
def test_eval_output_matches_input_shape(name):
    model = build_model(name, SMALL).eval()
    assert model.divisor == required_divisor(SMALL) == 8
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 96))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 1, 64, 96)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [(1, 1, 60, 96), (1, 1, 64, 100)])
def test_indivisible_size_raises(name, shape):
    model = build_model(name, SMALL).eval()
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.randn(*shape))


@pytest.mark.parametrize("name", MODELS)
def test_wrong_channels_or_ndim_raise(name):
    model = build_model(name, SMALL).eval()
    with pytest.raises(ValueError, match="channel"):
        model(torch.randn(1, 2, 64, 64))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.randn(1, 64, 64))


def test_unet_train_mode_returns_one_tensor():
    model = build_model("unet", SMALL).train()
    out = model(torch.randn(2, 1, 32, 48))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 32, 48)


def test_mfnsde_train_mode_deep_supervision_outputs():
    model = build_model("mfnsde", SMALL).train()
    out = model(torch.randn(2, 1, 64, 96))
    assert isinstance(out, list)
    L = len(SMALL.features) - 1
    assert len(out) == 2 * L - 1 == len(model.output_scales)
    assert model.output_scales == [1, 1, 1, 2, 4]
    assert out[0].shape == (2, 1, 64, 96)  # final output first
    for o, s in zip(out, model.output_scales):
        assert o.shape == (2, 1, 64 // s, 96 // s)
    assert out[-2].shape[-2:] == (32, 48) and out[-1].shape[-2:] == (16, 24)
    # the first train-mode output is the eval output (same weights, same node)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 96)).shape == out[0].shape


def test_mfnsde_without_deep_supervision_returns_tensor():
    cfg = dataclasses.replace(SMALL, deep_supervision=False)
    model = build_model("mfnsde", cfg).train()
    out = model(torch.randn(2, 1, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 32, 32)
    # same parameter set with and without deep supervision: checkpoints interchange
    ds = build_model("mfnsde", SMALL)
    assert ds.state_dict().keys() == model.state_dict().keys()


def test_default_mfnsde_is_light():
    n = sum(p.numel() for p in build_model("mfnsde").parameters())
    assert 100_000 < n < 2_000_000


# --------------------------------------------------------------------------- loss


def test_max_pooling_keeps_thin_line():
    target = torch.zeros(1, 1, 64, 64)
    target[0, 0, :, 29] = 1.0  # one-voxel-wide vertical line, off the 4-grid
    target[0, 0, 41, 5:60] = 1.0  # and a horizontal one
    pooled = downsample_label_max(target, (16, 16))
    assert pooled.shape == (1, 1, 16, 16)
    assert torch.all(pooled[0, 0, :, 29 // 4] == 1)  # every row still has the line
    assert torch.all(pooled[0, 0, 41 // 4, 5 // 4 : 59 // 4 + 1] == 1)
    assert set(pooled.unique().tolist()) == {0.0, 1.0}
    # what max-pooling protects against: nearest sampling drops both lines entirely
    assert F.interpolate(target, size=(16, 16), mode="nearest").sum() == 0
    # non-integer factors go through adaptive max-pooling
    odd = downsample_label_max(target, (20, 13))
    assert odd.shape == (1, 1, 20, 13) and odd.sum() > 0
    assert downsample_label_max(target, (64, 64)) is target
    with pytest.raises(ValueError):
        downsample_label_max(target, (128, 64))


def _perfect_logits(target, scale=50.0):
    return (target * 2 - 1) * scale


def test_deep_supervision_loss_perfect_and_inverted():
    target = torch.zeros(2, 1, 32, 32)
    target[:, :, :, 13] = 1.0
    target[1, 0, 7, 3:20] = 1.0
    sizes = [(32, 32), (32, 32), (16, 16), (8, 8)]
    perfect = [_perfect_logits(downsample_label_max(target, s)) for s in sizes]
    inverted = [-p for p in perfect]
    assert deep_supervision_loss(perfect, target).item() < 1e-3
    assert deep_supervision_loss(inverted, target).item() > 0.99
    assert deep_supervision_loss(perfect[0], target).item() < 1e-3  # single tensor
    # a low-resolution output matching a nearest-neighbour (not max-pooled) label loses
    nearest = _perfect_logits(F.interpolate(target, size=(8, 8), mode="nearest"))
    assert deep_supervision_loss([nearest], target).item() > 0.5
    # weights are normalised; a weight on a bad output raises the loss
    mixed = [perfect[0], inverted[1]]
    assert deep_supervision_loss(mixed, target, weights=[3, 1]).item() == pytest.approx(
        0.25 * deep_supervision_loss(inverted[1], target).item(), abs=1e-3
    )
    with pytest.raises(ValueError):
        deep_supervision_loss(mixed, target, weights=[1])
    with pytest.raises(ValueError):
        deep_supervision_loss([], target)


def test_deep_supervision_loss_custom_loss_fn():
    target = (torch.rand(2, 1, 16, 16) > 0.8).float()
    outs = [torch.randn(2, 1, 16, 16), torch.randn(2, 1, 8, 8)]
    bce = torch.nn.BCEWithLogitsLoss()
    expected = 0.5 * (
        bce(outs[0], target) + bce(outs[1], F.max_pool2d(target, 2))
    )
    assert torch.allclose(deep_supervision_loss(outs, target, loss_fn=bce), expected)


# --------------------------------------------------------------------------- training


def _dots_batch(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = 0.1 * torch.randn(n, 1, size, size, generator=g)
    lab = torch.zeros(n, 1, size, size)
    for b in range(n):
        ys = torch.randint(2, size - 2, (6,), generator=g)
        xs = torch.randint(2, size - 2, (6,), generator=g)
        lab[b, 0, ys, xs] = 1.0
    img = img + 2.0 * lab
    return img, lab


def test_mfnsde_few_adagrad_steps_reduce_loss():
    img, lab = _dots_batch()
    model = build_model("mfnsde", ModelConfig(features=(8, 16, 32))).train()
    opt = torch.optim.Adagrad(model.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = deep_supervision_loss(model(img), lab)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-3:]) < losses[0] - 0.05, losses


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip_gives_identical_outputs(name):
    model = build_model(name, SMALL)
    # one train step so that norm running statistics and weights move off their init
    model.train()
    out = model(torch.randn(2, 1, 32, 32))
    deep_supervision_loss(out, (torch.rand(2, 1, 32, 32) > 0.9).float()).backward()
    model.eval()
    buf = io.BytesIO()
    torch.save(
        {"model": name, "config": dataclasses.asdict(model.config), "state": model.state_dict()},
        buf,
    )
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    torch.manual_seed(123)  # a fresh model with different random weights
    fresh = build_model(ckpt["model"], model_config_from_dict(ckpt["config"]))
    x = torch.randn(2, 1, 64, 96)
    fresh.eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), model(x))
    fresh.load_state_dict(ckpt["state"])
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
