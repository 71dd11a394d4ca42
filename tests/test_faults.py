"""Faults: a loss that becomes NaN or infinite, out of GPU memory during inference (an
injected error), and the last good checkpoint kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL_FEATURES
from test_training import _LineTask

from napari_pvs.engine.errors import PVSInputError, TrainingDiverged
from napari_pvs.engine.inference import segment_iter
from napari_pvs.engine.io import Volume
from napari_pvs.engine.models import UNetConfig, build_model
from napari_pvs.engine.models.checkpoint import load_model, save_checkpoint
from napari_pvs.engine.progress import run_to_end
from napari_pvs.engine.training import LoopConfig, run_training


class _PoisonedLine(_LineTask):
    """The toy task whose loss turns NaN (or inf) from step ``at`` on."""

    def __init__(self, at: int, value: float = float("nan")):
        self.at, self.value, self.calls = at, value, 0

    def loss(self, outputs, batch):
        self.calls += 1
        loss = super().loss(outputs, batch)
        return loss * self.value if self.calls >= self.at else loss


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_nan_or_inf_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, value):
    cfg = LoopConfig(epochs=5, steps_per_epoch=20, optimizer="adam", learning_rate=0.1, device="cpu")
    ckpt = tmp_path / "line.pt"
    events = []
    result = run_to_end(run_training(_PoisonedLine(at=47, value=value), cfg, ckpt), events.append)
    assert result.diverged and result.steps_done == 46 and result.epochs_done == 3
    assert "the loss became" in result.stop_reason and "epoch 2" in result.stop_reason
    assert events[-1].kind == "done" and "the loss became" in events[-1].message
    assert [e.kind for e in events].count("epoch") == 2          # no validation after the bad step
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 2 and all(torch.isfinite(t).all() for t in saved["state"].values())


def test_a_nan_loss_before_any_checkpoint_is_one_clear_error(tmp_path):
    cfg = LoopConfig(epochs=2, steps_per_epoch=20, optimizer="adam", learning_rate=0.1, device="cpu")
    with pytest.raises(TrainingDiverged, match="the loss became nan at step 3 .*no checkpoint had been written"):
        run_to_end(run_training(_PoisonedLine(at=3), cfg, tmp_path / "line.pt"))
    assert not (tmp_path / "line.pt").exists()


def _oom_model(tmp_path, max_windows: int):
    cfg = UNetConfig(features=SMALL_FEATURES)
    if not (tmp_path / "u.pt").exists():      # one set of weights for every call
        save_checkpoint(tmp_path / "u.pt", model=build_model("unet", cfg), model_name="unet", model_config=cfg,
                        spacing_mm=1.0, percentiles=(0.5, 99.5), patch_size=(32, 32))
    loaded = load_model(tmp_path / "u.pt")
    net = loaded.model
    seen = []
    real_forward = net.forward

    def forward(batch):
        n = batch["image"].shape[0]
        seen.append(n)
        if n > max_windows:       # what CUDA raises when a pass does not fit
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {n} windows")
        return real_forward(batch)

    net.forward = forward
    return loaded, seen


def test_out_of_memory_backs_off_to_fewer_windows_with_the_same_result(tmp_path):
    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(100, 20, (3, 96, 96)).astype(np.float32), np.eye(4))
    ref_model, _ = _oom_model(tmp_path, max_windows=1000)
    ref = run_to_end(segment_iter(ref_model, vol, crop_to_head=False, windows_per_pass=8))
    loaded, seen = _oom_model(tmp_path, max_windows=2)
    pred = run_to_end(segment_iter(loaded, vol, crop_to_head=False, windows_per_pass=8))
    assert max(seen) == 8 and seen.count(8) == 1 and 4 in seen and max(n for n in seen if n <= 2) == 2
    np.testing.assert_allclose(pred.prob, ref.prob, atol=1e-5)


def test_out_of_memory_with_one_window_is_one_line(tmp_path):
    vol = Volume(np.random.default_rng(0).normal(100, 20, (2, 64, 64)).astype(np.float32), np.eye(4))
    loaded, _ = _oom_model(tmp_path, max_windows=0)
    with pytest.raises(PVSInputError, match=r"out of cpu memory even with one window at a time"):
        run_to_end(segment_iter(loaded, vol, crop_to_head=False, windows_per_pass=4))


WIDGETS = ["Train PVS model", "Segment PVS", "Count PVS (BG/CSO)", "Annotate PVS", "Active learning",
           "Register images", "Compare models", "Cohort (whole study)"]


def test_an_exception_in_any_widget_job_is_one_notification_and_the_viewer_lives(make_napari_viewer, qtbot,
                                                                                 monkeypatch):
    """Every job panel of every widget (the composed ones' panels included) gets a job that
    raises half-way; each gives exactly one napari error notification, re-enables its start
    button, and the viewer goes on working."""
    from napari.utils.notifications import notification_manager

    from napari_pvs.widgets._job import JobPanel

    received = []
    monkeypatch.setattr(notification_manager, "receive_error",
                        lambda exctype, value, tb=None, thread=None: received.append((exctype, str(value))))
    viewer = make_napari_viewer()
    tried = []
    for name in WIDGETS:
        _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", name)
        panels = widget.findChildren(JobPanel) or ([widget.job] if getattr(widget, "job", None) else [])
        assert panels, name
        for panel in panels:
            def job(label=f"{name}/{panel.name}"):
                yield None
                raise RuntimeError(f"injected fault in {label}")

            monkeypatch.setattr(panel, "_prepare", lambda job=job: (job, "faulty job"))
            before = len(received)
            assert panel.start()
            qtbot.waitUntil(lambda p=panel: p.worker is None, timeout=30_000)
            assert len(received) == before + 1, (name, panel.name, received[before:])
            assert received[-1][0] is RuntimeError and "injected fault" in received[-1][1]
            assert panel.start_button.isEnabled() and panel.status.text().startswith("failed: RuntimeError")
            tried.append(f"{name}/{panel.name}")
    assert len(tried) >= 9, tried            # 8 widgets, Active learning has two panels
    layer = viewer.add_image(np.zeros((4, 8, 8), np.float32))     # the viewer lives
    assert layer in viewer.layers and viewer.dims.ndim == 3
