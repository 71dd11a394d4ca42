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
    MaxPoolDeepSupervisionLoss,
    MfNSDe,
    MfNSDeConfig,
    UNet2D,
    UNetConfig,
    available_models,
    build_model,
    config_from_dict,
    deep_supervision_loss,
    downsample_label_max,
    model_spec,
    register_model,
)

SMALL = {"features": (4, 8, 16, 32)}  # 3 down-samplings, divisor 8, fast
MODELS = ["unet", "mfnsde"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- registry


def test_registry_lists_both_models():
    assert {"mfnsde", "unet"} <= set(available_models())
    for name in MODELS:
        assert MODEL_REGISTRY[name].description
    # the registry maps each name to its network class and its own config class
    assert (MODEL_REGISTRY["mfnsde"].network, MODEL_REGISTRY["mfnsde"].config_class) == (MfNSDe, MfNSDeConfig)
    assert (MODEL_REGISTRY["unet"].network, MODEL_REGISTRY["unet"].config_class) == (UNet2D, UNetConfig)
    assert isinstance(build_model("unet", SMALL), UNet2D)
    assert isinstance(build_model("MfNSDe", SMALL), MfNSDe)  # case-insensitive


def test_unknown_model_names_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown model 'x'; available: cmgraph, dynunet, frangi, gloms, liteunet, mfnsde, unet"):
        build_model("x")


def test_register_duplicate_name_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_model("unet", "again", UNetConfig)(torch.nn.Identity)
    with pytest.raises(ValueError, match="frozen dataclass"):
        register_model("other", "not a config", dict)


@pytest.mark.parametrize("name", MODELS)
def test_build_from_dict_config(name):
    d = {"features": [4, 8, 16], "out_channels": 2, "in_channels": 3}
    model = build_model(name, d)
    assert model.config == model_spec(name).config_class(in_channels=3, out_channels=2, features=(4, 8, 16))
    assert model.divisor == 4
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 20)).shape == (1, 2, 16, 20)


def test_bad_config_rejected():
    with pytest.raises(ValueError, match="unknown model config key"):
        build_model("unet", {"featurez": [4, 8]})
    with pytest.raises(ValueError, match="unknown model config key.*deep_supervision"):
        build_model("unet", {"deep_supervision": True})  # an mfnsde-only field
    with pytest.raises(ValueError, match="at least 2 levels"):
        MfNSDeConfig(features=(8,))
    with pytest.raises(ValueError, match="dropout"):
        UNetConfig(dropout=1.5)
    with pytest.raises(ValueError, match="num_res_units"):
        UNetConfig(num_res_units=-1)


def test_config_round_trip_through_json():
    cfg = MfNSDeConfig(in_channels=2, features=(8, 16, 32), dropout=0.1, deep_supervision=False)
    assert config_from_dict("mfnsde", dataclasses.asdict(cfg)) == cfg
    back = config_from_dict("mfnsde", json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert back == cfg and isinstance(back.features, tuple)
    ucfg = UNetConfig(features=(8, 16), num_res_units=1)
    assert config_from_dict("unet", json.loads(json.dumps(dataclasses.asdict(ucfg)))) == ucfg
    assert config_from_dict("unet", None) == UNetConfig()
    assert MfNSDeConfig(features=[16, 32]) == MfNSDeConfig(features=(16, 32))


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", MODELS)
def test_eval_output_matches_input_shape(name):
    model = build_model(name, SMALL).eval()
    assert model.divisor == model.config.divisor == 8
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
    with pytest.raises(ValueError, match="batch has no image entry"):
        model({"t2": torch.randn(1, 1, 64, 64)})


@pytest.mark.parametrize("name", MODELS)
def test_batch_dict_and_tensor_give_the_same_output(name):
    model = build_model(name, SMALL).eval()
    x = torch.randn(2, 1, 32, 40)
    with torch.no_grad():
        a = model({"image": x, "unused_extra_input": torch.zeros(2, 3)})
        b = model(x)
    assert torch.equal(a, b)


def test_unet_train_mode_returns_one_tensor():
    model = build_model("unet", SMALL).train()
    out = model(torch.randn(2, 1, 32, 48))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 32, 48)


def test_mfnsde_train_mode_deep_supervision_outputs():
    model = build_model("mfnsde", SMALL).train()
    out = model(torch.randn(2, 1, 64, 96))
    assert isinstance(out, list)
    L = len(SMALL["features"]) - 1
    assert len(out) == 2 * L - 1 == len(model.output_scales)
    assert model.output_scales == [1, 1, 1, 2, 4]
    assert out[0].shape == (2, 1, 64, 96)  # final output first
    for o, s in zip(out, model.output_scales, strict=True):
        assert o.shape == (2, 1, 64 // s, 96 // s)
    assert out[-2].shape[-2:] == (32, 48) and out[-1].shape[-2:] == (16, 24)
    # the first train-mode output is the eval output (same weights, same node); the
    # attention gates use instance norm, so train and eval modes compute the same thing
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        train_out = model.train()(x)[0]
        eval_out = model.eval()(x)
    assert torch.allclose(eval_out, train_out, atol=1e-5)
    assert eval_out.abs().max() > 0 and eval_out.std() > 0


def test_mfnsde_without_deep_supervision_returns_tensor():
    cfg = MfNSDeConfig(**SMALL, deep_supervision=False)
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


def test_deep_supervision_loss_is_monai_subclass_with_maxpool():
    from monai.losses import DeepSupervisionLoss

    loss = MaxPoolDeepSupervisionLoss()
    assert isinstance(loss, DeepSupervisionLoss)
    target = torch.zeros(1, 1, 32, 32)
    target[0, 0, :, 9] = 1.0  # a one-voxel line that nearest-neighbour down-sampling loses
    low = _perfect_logits(downsample_label_max(target, (8, 8)))
    assert loss([_perfect_logits(target), low], target).item() < 1e-3
    assert loss.get_weights(4) == [0.25] * 4


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
    model = build_model("mfnsde", {"features": (8, 16, 32)}).train()
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
    fresh = build_model(ckpt["model"], config_from_dict(ckpt["model"], ckpt["config"]))
    x = torch.randn(2, 1, 64, 96)
    fresh.eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), model(x))
    fresh.load_state_dict(ckpt["state"])
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
