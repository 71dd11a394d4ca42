"""ACSGRegNet: forward/backward, identity, world-mm conversion, training on synthetic pairs,
checkpoint round trip, no folding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_pvs.engine.io import Volume
from napari_pvs.engine.models import ACSGRegConfig, ACSGRegNet
from napari_pvs.engine.progress import run_to_end
from napari_pvs.engine.registration import folding_fraction, jacobian_determinant, warp_volume
from napari_pvs.engine.registration.network import (ACSGRegTrainConfig, RegistrationTask, label_groups,
                                                    register_network)

SMALL = ACSGRegConfig(shape=(24, 32, 24), grid_mm=6.0, features=(4, 8, 8, 8), heads=2)


def _blob_labels(spacing=2.0):
    """A FreeSurfer-numbered phantom: white matter (2), cortex (3), ventricles (4, 43),
    caudate (11), putamen (12)."""
    shape = (60, 76, 64)
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = [-64, -76, -60]
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    p = np.stack([xx, yy, zz], -1) * spacing + aff[:3, 3]

    def ell(c, r):
        return (((p - np.asarray(c)) / np.asarray(r)) ** 2).sum(-1) <= 1

    lab = np.zeros(shape, np.int16)
    lab[ell((0, 0, 0), (55, 70, 50))] = 3
    lab[ell((0, 0, 5), (45, 58, 40))] = 2
    lab[ell((-12, 5, 5), (8, 25, 12))] = 4
    lab[ell((12, 5, 5), (8, 25, 12))] = 43
    lab[ell((-20, 20, -5), (6, 8, 8))] = 11
    lab[ell((22, 10, -8), (7, 12, 9))] = 12
    return Volume(lab, aff)


def test_forward_backward_shapes_and_gradients():
    torch.manual_seed(0)
    net = ACSGRegNet(SMALL)
    f, m = torch.rand(2, 1, *SMALL.shape), torch.rand(2, 1, *SMALL.shape)
    out = net(f, m)
    assert out["warped"].shape == (2, 1, *SMALL.shape) and out["ddf"].shape == (2, 3, *SMALL.shape)
    assert out["affine"].shape == (2, 4, 4)
    (out["warped"].mean() + out["ddf"].abs().mean()).backward()
    for name in ("encoder.0.conv.weight", "self_attn.attn.qkv.weight", "cross_attn.cross_attn.to_q.weight",
                 "dec_self.flow.weight", "dec_cross.flow.weight", "affine_net.6.weight"):
        g = dict(net.named_parameters())[name].grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name
    with pytest.raises(ValueError, match=r"fixed must be \(B, 1, 24, 32, 24\)"):
        net(torch.rand(1, 1, 24, 32, 20), m[:1])
    with pytest.raises(ValueError, match="multiple of 8"):
        ACSGRegConfig(shape=(20, 32, 24))


def test_identity_on_identical_images_at_initialisation():
    torch.manual_seed(1)
    net = ACSGRegNet(SMALL).eval()
    x = torch.rand(1, 1, *SMALL.shape)
    with torch.no_grad():
        out = net(x, x)
    assert out["ddf"].abs().max() < 1e-2
    torch.testing.assert_close(out["affine"][0], torch.eye(4), atol=1e-6, rtol=0)
    assert (out["warped"] - x)[..., 2:-2, 2:-2, 2:-2].abs().max() < 1e-2
    assert 0.49 < float(out["gate"].mean()) < 0.51


def test_world_transform_from_the_network_affine(monkeypatch):
    """A network affine of +2 voxels along D (= +z on the RAS network grid) becomes a
    world translation of 2 grid voxels plus the centroid shift."""
    labels = _blob_labels()
    fixed = Volume((label_groups(labels.data) > 0).astype(np.float32), labels.affine)
    shifted = labels.affine.copy()
    shifted[:3, 3] += [5.0, -3.0, 2.0]
    moving = Volume(fixed.data, shifted)
    net = ACSGRegNet(SMALL).eval()
    a = torch.eye(4)
    a[0, 3] = 2.0
    monkeypatch.setattr(net, "affine_matrix", lambda f, m: a[None].clone())
    tr = run_to_end(register_network(fixed, moving, net))
    p = np.array([[0.0, 0, 0], [10, 20, -15]])
    expected = p + np.array([5.0, -3.0, 2.0]) + np.array([0, 0, 2 * SMALL.grid_mm])
    np.testing.assert_allclose(tr.map_points(p), expected, atol=0.05)
    assert tr.method == "acsgreg" and tr.ddf.shape == (3, *SMALL.shape)


def test_training_on_a_synthetic_pair_improves_dice_without_folding_and_round_trips(tmp_path):
    """Fit one synthetic pair (8 steps): the validation Dice rises from the identity
    start, the diffeomorphic part does not fold, and the checkpoint rebuilds the net."""
    from napari_pvs.engine.models.checkpoint import load_model
    from napari_pvs.engine.training.loop import LoopConfig, run_training

    task = RegistrationTask([_blob_labels()], SMALL,
                            ACSGRegTrainConfig(n_val=1, rotation_deg=5, scale_range=0.05, shift_mm=8), seed=0)
    task.sample_batch = lambda device: task.val[0]
    loop = LoopConfig(epochs=1, steps_per_epoch=8, optimizer="adam", learning_rate=5e-3, device="cpu",
                      validate_start=True)
    res = run_to_end(run_training(task, loop, tmp_path / "reg.pt"))
    start, end = (h["val_metric"] for h in res.history)
    assert end > start + 0.15, (start, end)
    loaded = load_model(res.checkpoint, expected_model="acsgreg")
    assert loaded.model.config == SMALL
    with torch.no_grad():
        d = loaded.model(task.val[0])["ddf_local"][0].numpy()
    assert np.abs(d).max() > 0.1                                  # it does deform
    grid = np.diag([SMALL.grid_mm] * 3 + [1.0])
    assert folding_fraction(jacobian_determinant(d * SMALL.grid_mm, grid)) < 0.001


def test_register_network_warps_labels_on_the_fixed_grid():
    labels = _blob_labels()
    fixed = Volume(label_groups(labels.data).astype(np.float32), labels.affine)
    net = ACSGRegNet(SMALL).eval()
    tr = run_to_end(register_network(fixed, fixed, net))
    same = warp_volume(labels, fixed, tr, order=0).data
    assert (same == labels.data).mean() > 0.98                   # identity at initialisation
