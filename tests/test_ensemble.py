"""Deep ensembles: several checkpoints of one family in one checkpoint, probabilities averaged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_pvs.engine.models.checkpoint import ensemble_checkpoint, load_model, read_checkpoint, save_checkpoint
from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.models import EnsembleConfig, MfNSDeConfig, available_models, build_model

CFG = MfNSDeConfig(features=(4, 8))


def _member(path, seed, *, spacing=0.6, cfg=CFG):
    torch.manual_seed(seed)
    model = build_model("mfnsde", cfg)
    return save_checkpoint(path, model=model, model_name="mfnsde", model_config=cfg, spacing_mm=spacing,
                           percentiles=(0.5, 99.5), patch_size=(32, 32),
                           training_data=[{"image": f"scan{seed}.nii.gz"}], metrics={"best_val_dsc": 0.1 * seed},
                           recipe={"script": f"member {seed}"})


def test_ensemble_output_is_the_mean_member_probability(tmp_path):
    paths = [_member(tmp_path / f"m{k}.pt", k) for k in range(3)]
    out = ensemble_checkpoint(paths, tmp_path / "ens.pt", recipe={"note": "test"})
    ens = load_model(out)
    assert ens.name == "ensemble" and ens.config.n_members == 3
    assert ens.config.member == "mfnsde" and ens.config.context_slices == 0 and ens.config.out_channels == 1
    assert ens.spacing_mm == pytest.approx(0.6) and ens.roi_size == (32, 32)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        got = torch.sigmoid(ens.model({"image": x}))
        want = torch.stack([torch.sigmoid(load_model(p).model({"image": x})) for p in paths]).mean(0)
    assert got.shape == (2, 1, 32, 32)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    raw = read_checkpoint(out)
    assert [m["script"] for m in raw["recipe"]["members"]] == ["member 0", "member 1", "member 2"]
    assert raw["recipe"]["note"] == "test"
    assert [r["member"] for r in raw["training_data"]] == [0, 1, 2]
    assert [m["best_val_dsc"] for m in raw["metrics"]["members"]] == pytest.approx([0.0, 0.1, 0.2])


def test_ensemble_segments_a_volume_like_any_model(tmp_path):
    from napari_pvs.engine.inference import predict_volume
    from napari_pvs.engine.io import Volume

    paths = [_member(tmp_path / f"m{k}.pt", k) for k in range(2)]
    ens = load_model(ensemble_checkpoint(paths, tmp_path / "ens.pt"))
    rng = np.random.default_rng(0)
    vol = Volume(data=rng.normal(100, 5, (3, 40, 36)).astype(np.float32), affine=np.diag([0.6, 0.6, 3.0, 1.0]))
    pred = predict_volume(ens, vol, brain_only=False, outside_brain_zero=False, wide_csf_zero=False)
    assert pred.prob.shape == (3, 40, 36) and pred.prob.dtype == np.float32
    assert 0.0 <= pred.prob.min() <= pred.prob.max() <= 1.0


def test_ensemble_member_probabilities_come_from_the_same_pass(tmp_path):
    from napari_pvs.engine.inference import predict_volume
    from napari_pvs.engine.io import Volume

    paths = [_member(tmp_path / f"m{k}.pt", k) for k in range(3)]
    ens = load_model(ensemble_checkpoint(paths, tmp_path / "ens.pt"))
    rng = np.random.default_rng(1)
    vol = Volume(data=rng.normal(100, 5, (3, 40, 36)).astype(np.float32), affine=np.diag([0.6, 0.6, 3.0, 1.0]))
    opts = dict(brain_only=False, outside_brain_zero=False, wide_csf_zero=False)
    plain = predict_volume(ens, vol, **opts)
    pred = predict_volume(ens, vol, members=True, **opts)
    assert plain.member_probs is None
    np.testing.assert_allclose(pred.prob, plain.prob, atol=1e-6)  # the ensemble itself is unchanged
    assert pred.member_probs.shape == (3, 3, 40, 36) and pred.member_probs.dtype == np.float32
    for k, path in enumerate(paths):  # each member as if it ran alone (windows overlap: 32 px on 40 x 36)
        alone = predict_volume(load_model(path), vol, **opts)
        np.testing.assert_allclose(pred.member_probs[k], alone.prob, atol=1e-5)
    # the members disagree (random weights), and the agreement counts them per voxel
    t = float(np.median(pred.member_probs))
    agree = pred.agreement(t)
    assert agree.dtype == np.uint8 and agree.shape == (3, 40, 36)
    np.testing.assert_array_equal(agree, (pred.member_probs >= t).sum(0))
    assert set(np.unique(agree)) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="no member probabilities"):
        plain.agreement()
    with pytest.raises(ValueError, match="needs an ensemble checkpoint, got a 'mfnsde'"):
        predict_volume(load_model(paths[0]), vol, members=True, **opts)


def test_ensemble_members_must_match(tmp_path):
    a = _member(tmp_path / "a.pt", 0)
    with pytest.raises(PVSInputError, match="spacing_mm"):
        ensemble_checkpoint([a, _member(tmp_path / "b.pt", 1, spacing=0.8)], tmp_path / "e.pt")
    with pytest.raises(PVSInputError, match="share family and config"):
        ensemble_checkpoint([a, _member(tmp_path / "c.pt", 1, cfg=MfNSDeConfig(features=(4, 8, 16)))],
                            tmp_path / "e.pt")
    with pytest.raises(ValueError, match="at least 2 checkpoints"):
        ensemble_checkpoint([a], tmp_path / "e.pt")
    assert not (tmp_path / "e.pt").exists()


def test_ensemble_config_is_validated_and_kept_out_of_training_menus():
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleConfig(member="mfnsde", n_members=1)
    with pytest.raises(ValueError, match="must be a segmentation network"):
        EnsembleConfig(member="ensemble", n_members=2)
    with pytest.raises(ValueError, match="unknown model config key"):
        EnsembleConfig(member="mfnsde", member_config={"depth": 3}, n_members=2)
    assert "ensemble" not in available_models() and "ensemble" in available_models(None)


def test_fine_tuning_from_an_ensemble_starts_from_its_first_member(tmp_path):
    from napari_pvs.engine.models.checkpoint import trainable_checkpoint

    paths = [_member(tmp_path / f"m{k}.pt", k) for k in range(2)]
    ens = read_checkpoint(ensemble_checkpoint(paths, tmp_path / "ens.pt"))
    first = trainable_checkpoint(ens)
    assert first["model_name"] == "mfnsde" and first["model_config_class"] == "MfNSDeConfig"
    want = read_checkpoint(paths[0])["state_dict"]
    assert set(first["state_dict"]) == set(want)
    assert all(torch.equal(first["state_dict"][k], want[k]) for k in want)
    second = trainable_checkpoint(ens, 1)["state_dict"]
    assert not all(torch.equal(second[k], want[k]) for k in want)
    single = read_checkpoint(paths[1])
    assert trainable_checkpoint(single) is single
    with pytest.raises(IndexError, match="no member 2"):
        trainable_checkpoint(ens, 2)
    # the training loop accepts the ensemble as a starting point (its first member's weights)
    from napari_pvs.engine.training.loop import _load_init

    class _Task:
        model_name, model_config = "mfnsde", CFG

    model = build_model("mfnsde", CFG)
    _load_init(_Task(), model, tmp_path / "ens.pt")
    assert all(torch.equal(model.state_dict()[k], want[k]) for k in want)


def test_cli_ensemble_writes_a_loadable_checkpoint(tmp_path, capsys):
    from napari_pvs.cli import main

    paths = [str(_member(tmp_path / f"m{k}.pt", k)) for k in range(2)]
    out = tmp_path / "ens.pt"
    assert main(["ensemble", *paths, "-o", str(out)]) == 0
    assert "ensemble of 2 mfnsde networks" in capsys.readouterr().out
    assert load_model(out).config.n_members == 2
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    assert main(["ensemble", paths[0], str(bad), "-o", str(tmp_path / "e2.pt")]) != 0
    assert "bad.pt" in capsys.readouterr().err and not (tmp_path / "e2.pt").exists()
