"""The fast student ``liteunet``: whole-slice inference equals the network on the padded brain box,
ONNX Runtime within 1e-3 of torch on slices of any size, and the box and its slices."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import blob_volume

from napari_pvs.engine.inference import predict_stack, predict_volume, whole_slice_box
from napari_pvs.engine.models import LiteUNet, LiteUNetConfig, build_model
from napari_pvs.engine.models.checkpoint import load_model, save_checkpoint


@pytest.fixture
def lite_ckpt(tmp_path):
    torch.manual_seed(0)
    cfg = LiteUNetConfig(features=(4, 8, 16))
    return save_checkpoint(tmp_path / "lite.pt", model=build_model("liteunet", cfg), model_name="liteunet",
                           model_config=cfg, spacing_mm=0.5, percentiles=(0.5, 99.5), patch_size=(32, 32))


def test_liteunet_shapes_and_config_round_trip():
    net = LiteUNet(LiteUNetConfig(features=(4, 8, 16, 32))).eval()
    assert net.divisor == 8 and net.config.input_channels == 3 and net.config.whole_slice
    with torch.inference_mode():
        out = net(torch.zeros(2, 3, 40, 24))
    assert out.shape == (2, 1, 40, 24)
    with pytest.raises(ValueError, match="multiple"):
        net(torch.zeros(1, 3, 36, 24))
    assert build_model("liteunet", {"features": [4, 8]}).config == LiteUNetConfig(features=(4, 8))


def test_whole_slice_box_is_a_divisor_multiple_around_the_roi():
    roi = torch.zeros(5, 100, 90, dtype=torch.bool)
    roi[1, 30:41, 20:33] = True
    roi[3, 50:52, 60:61] = True
    stack = torch.rand(5, 100, 90)
    todo, (rows, cols) = whole_slice_box(stack, roi, divisor=16, margin=8)
    assert todo.tolist() == [1, 3]
    assert (rows.stop - rows.start) % 16 == 0 and (cols.stop - cols.start) % 16 == 0
    assert rows.start <= 30 - 8 and rows.stop >= 52 + 8 and cols.start <= 20 - 8 and cols.stop >= 61 + 8
    empty, _ = whole_slice_box(stack, torch.zeros_like(roi), divisor=16)
    assert empty.size == 0


def test_whole_slice_prediction_is_the_network_on_the_padded_box(lite_ckpt):
    loaded = load_model(lite_ckpt)
    torch.manual_seed(1)
    stack = torch.rand(6, 70, 50)
    roi = torch.zeros(6, 70, 50, dtype=torch.bool)
    roi[1:5, 10:60, 5:45] = True
    gen = predict_stack(loaded, stack, roi_mask=roi, batch_size=3)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        prob = stop.value
    assert prob.shape == (6, 70, 50)
    assert float(prob[0].abs().max()) == 0.0 and float(prob[5].abs().max()) == 0.0   # no ROI: not run
    todo, (rows, cols) = whole_slice_box(stack, roi, loaded.config.divisor)
    ctx = torch.stack([stack[[max(z - 1, 0), z, min(z + 1, 5)]] for z in todo])[:, :, rows, cols]
    h, w = ctx.shape[-2:]
    padded = torch.nn.functional.pad(ctx, (0, -w % 4, 0, -h % 4))      # zero-padded to the divisor
    with torch.inference_mode():
        expected = torch.sigmoid(loaded.model(padded))[:, 0, :h, :w]
    assert torch.allclose(prob[todo][:, rows, cols], expected, atol=1e-6)


def test_liteunet_onnx_matches_torch_on_any_slice_size(lite_ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from napari_pvs.engine.inference.onnx_backend import onnx_model

    ref = load_model(lite_ckpt)
    fast = onnx_model(ref, cache_dir=tmp_path / "cache")
    for shape in ((2, 3, 32, 32), (3, 3, 48, 80)):       # not the export's window size
        x = torch.randn(*shape)
        with torch.inference_mode():
            expected = torch.sigmoid(ref.model({"image": x}))
        assert float((torch.sigmoid(fast.model({"image": x})) - expected).abs().max()) < 1e-3
    vol, _ = blob_volume(3, shape=(6, 72, 60))
    p_ref = predict_volume(ref, vol, brain_only=False)
    p_fast = predict_volume(fast, vol, brain_only=False)
    assert p_ref.prob.shape == vol.shape
    assert float(np.abs(p_fast.prob - p_ref.prob).max()) < 1e-3


def test_segmenting_with_the_student_imports_no_monai(lite_ckpt, tmp_path):
    """The fast path (CLI segment with a liteunet checkpoint) never imports MONAI, whose import
    alone takes 3-6 s on 2 cores; the families that need it are imported on first use."""
    code = ("import sys\nfrom napari_pvs.cli import main\n"
            "from napari_pvs.engine.io import save_volume\nsys.path.insert(0, 'tests')\n"
            "from conftest import blob_volume\n"
            f"vol, _ = blob_volume(3, shape=(4, 64, 64)); save_volume({str(tmp_path / 't2.nii.gz')!r}, vol.data, vol)\n"
            f"rc = main(['segment', {str(tmp_path / 't2.nii.gz')!r}, '-o', {str(tmp_path / 'm.nii.gz')!r}, "
            f"'--checkpoint', {str(lite_ckpt)!r}, '--device', 'cpu'])\n"
            "assert rc == 0, rc\nprint('monai' in sys.modules, 'transformers' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["False", "False"], out.stdout
    assert (tmp_path / "m.nii.gz").is_file()
    from napari_pvs.engine.models import MODEL_REGISTRY

    assert "mfnsde" in MODEL_REGISTRY and len(MODEL_REGISTRY) >= 9      # every family on demand


def test_dice_bce_loss_ignores_masked_voxels_and_gives_a_gradient_at_zero_output():
    from napari_pvs.engine.models.losses import DiceBCELoss
    from napari_pvs.engine.training import TrainConfig

    loss = DiceBCELoss(1.0)
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2, 2] = 1
    logits = torch.full((1, 1, 8, 8), -10.0, requires_grad=True)   # predicts nothing
    value = loss(logits, target)
    value.backward()
    assert float(value) > 1.0 and float(logits.grad[0, 0, 2, 2]) < 0      # pushed up where the PVS is
    wrong = logits.detach().clone()
    wrong[..., 5, 5] = 10.0                                               # a false positive ...
    mask = torch.ones_like(target)
    mask[..., 5, 5] = 0                                                   # ... in an ignored voxel
    assert float(loss(wrong, target, mask)) == pytest.approx(float(loss(logits.detach(), target, mask)), abs=1e-4)
    assert TrainConfig(model="liteunet", bce_weight=1).bce_weight == 1.0
    with pytest.raises(ValueError, match="bce_weight"):
        TrainConfig(model="liteunet", bce_weight=-1)
