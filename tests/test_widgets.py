"""The napari-pvs dock widgets: Train (real training in a thread, cancel), Segment, Count.

Runs headless (pytest-xvfb starts Xvfb) with napari's ``make_napari_viewer`` fixture and
pytest-qt's ``qtbot``. Training uses a tiny network on a small synthetic volume so the
whole file runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtCore import Qt, QTimer  # noqa: E402

from conftest import TINY_FEATURES, real_file, tiny_ensemble, write_nifti  # noqa: E402
from napari_pvs.plugin.layers import layer_to_volume  # noqa: E402
from napari_pvs.plugin.viewer import go_to_slice  # noqa: E402

T2_REL = "open_ms/longitudinal/patient01/study1_T2W.nii.gz"
TINY = TINY_FEATURES


def synthetic_t2(shape=(6, 96, 96), seed=0):
    """A head-like ellipse (T2-ish intensities) with bright dot/line 'PVS'; returns
    (image float32, mask uint8), both (Z, Y, X)."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    yy, xx = np.mgrid[:y, :x]
    head = ((yy - y / 2) / (0.42 * y)) ** 2 + ((xx - x / 2) / (0.4 * x)) ** 2 <= 1
    img = np.where(head, 300.0, 5.0)[None].repeat(z, 0)
    mask = np.zeros(shape, np.uint8)
    for s in range(z):
        for _ in range(12):
            cy, cx = rng.integers(int(0.25 * y), int(0.75 * y)), rng.integers(int(0.25 * x), int(0.75 * x))
            length = int(rng.integers(1, 5))
            mask[s, cy:cy + 2, cx:cx + length] = 1
    img = img + mask * 500.0 + rng.normal(0, 15, shape)
    return img.astype(np.float32), mask


def oblique_nifti(tmp_path: Path, data_zyx: np.ndarray, name="t2.nii.gz") -> Path:
    """Write ``data_zyx`` as an LPS, slightly oblique NIfTI (qform code 1, sform code 2)."""
    aff = np.array([[-0.5, 0.01, 0.05, 100.0], [0.01, -0.5, 0.08, 110.0], [0.0, 0.02, 3.0, -60.0], [0, 0, 0, 1]])
    return write_nifti(tmp_path / name, np.ascontiguousarray(data_zyx.transpose(2, 1, 0)), aff,
                       qform_code=1, sform_code=2)


@pytest.fixture
def errors(monkeypatch):
    """Capture the one-line error notifications the widgets show."""
    import napari.utils.notifications as notifications

    seen: list[str] = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: seen.append(str(msg)))
    return seen


# --------------------------------------------------------------------------- layer helper


def test_layer_to_volume_uses_metadata_or_scale(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    img, _ = synthetic_t2((4, 20, 24))
    path = oblique_nifti(tmp_path, img)
    (opened,) = viewer.open(str(path), plugin="napari-pvs")
    vol = layer_to_volume(opened)
    src = nib.load(str(path))
    np.testing.assert_array_equal(vol.affine, src.affine)
    assert vol.header is opened.metadata["nifti_header"]
    assert vol.path == path and vol.shape == (4, 20, 24)
    assert vol.orientation == ("L", "P", "S")

    # without NIfTI metadata: the layer's own transform, in the napari-pvs world frame
    # (world axes S, P, L in mm), so +X in the data is the subject's left
    plain = viewer.add_labels(np.zeros((4, 20, 24), np.uint8), scale=(3.0, 0.5, 0.25), translate=(9, 1, 2))
    pv = layer_to_volume(plain)
    np.testing.assert_allclose(pv.affine, [[-0.25, 0, 0, -2], [0, -0.5, 0, -1], [0, 0, 3, 9], [0, 0, 0, 1]])
    np.testing.assert_allclose(pv.voxel_size, (3.0, 0.5, 0.25))
    assert pv.header is None and pv.path is None and pv.orientation == ("L", "P", "S")
    # a voxel's world position in napari agrees with the derived affine (RAS -> S, P, L)
    ras = pv.voxel_to_world(np.array([2, 7, 11]))
    np.testing.assert_allclose(plain.data_to_world((2, 7, 11)), (ras[2], -ras[1], -ras[0]))

    # a header that does not fit the data (e.g. metadata copied onto a cropped layer) is dropped
    cropped = viewer.add_labels(np.zeros((4, 10, 10), np.uint8), metadata=dict(opened.metadata))
    cv = layer_to_volume(cropped)
    assert cv.header is None
    np.testing.assert_array_equal(cv.affine, src.affine)

    from napari_pvs.engine.errors import PVSInputError

    flat = viewer.add_image(np.zeros((10, 10)))
    with pytest.raises(PVSInputError, match="expected a 3D volume"):
        layer_to_volume(flat)


# --------------------------------------------------------------------------- train


def _train_setup(make_napari_viewer, tmp_path, *, epochs, steps):
    viewer = make_napari_viewer()
    img, mask = synthetic_t2()
    image = viewer.add_image(img, name="t2", scale=(3.0, 0.5, 0.5))
    labels = viewer.add_labels(mask, name="pvs", scale=(3.0, 0.5, 0.5))
    dock, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Train PVS model")
    assert viewer.window._qt_window.dockWidgetArea(dock) == Qt.RightDockWidgetArea
    assert widget.pairs[0].image.value is image
    assert widget.pairs[0].labels.value is labels
    widget.model.value = "unet"
    widget.features.value = ", ".join(map(str, TINY))
    widget.patch_size.value = 64
    widget.batch_size.value = 2
    widget.epochs.value = epochs
    widget.steps_per_epoch.value = steps
    widget.device.value = "cpu"
    widget.checkpoint_path = tmp_path / "models" / "tiny.pt"
    return viewer, widget


def test_train_widget_defaults_to_user_data_dir(make_napari_viewer):
    from platformdirs import user_data_dir

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Train PVS model")
    path = widget.checkpoint_path
    assert path.is_relative_to(Path(user_data_dir("napari-pvs", appauthor=False)))
    assert not path.is_relative_to(Path.cwd()) or Path.cwd() == Path.home()
    assert path.suffix == ".pt" and path.name.startswith("mfnsde-")
    widget.model.value = "unet"
    assert widget.checkpoint_path.name.startswith("unet-")  # follows the model while not edited
    assert set(widget.model.choices) == {"mfnsde", "unet", "liteunet", "gloms", "cmgraph", "dynunet", "frangi"}
    widget.model.value = "gloms"
    assert widget.learning_rate.value == pytest.approx(3e-3)  # the family's own learning rate (Adam)
    widget.model.value = "mfnsde"
    assert widget.learning_rate.value == pytest.approx(0.05)
    assert widget.worker is None and widget.last_event is None
    assert widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_train_in_thread_cancel_keeps_gui_responsive(make_napari_viewer, qtbot, tmp_path):
    viewer, widget = _train_setup(make_napari_viewer, tmp_path, epochs=50, steps=200)
    planned = 50 * 200

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    qtbot.mouseClick(widget.train_button, Qt.LeftButton)
    worker = widget.worker
    assert type(worker).__name__ == "GeneratorWorker"
    assert not widget.train_button.isEnabled() and widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: widget.last_event is not None and widget.last_event.kind == "step"
                    and widget.last_event.step >= 5, timeout=90_000)
    # the GUI thread kept running its event loop while training ran in the worker thread
    n0 = len(ticks)
    qtbot.wait(500)
    assert len(ticks) - n0 >= 8, "GUI event loop blocked during training"
    # while the job runs, Python's full collections skip the objects alive at its start
    import gc

    from napari_pvs.plugin import gc_hold

    assert gc_hold.holding() and gc.get_freeze_count() > 1000
    assert widget.status.text().startswith("epoch 1 | step ")
    assert "loss" in widget.status.text()
    step = widget.last_event.step
    assert widget.progress.maximum() == 1000
    # the bar follows the events a few times a second (JobRunner.progress_interval_s)
    qtbot.waitUntil(lambda: widget.progress.value() >= int(1000 * step / planned), timeout=2_000)
    assert 0 < widget.progress.value() < 1000

    with qtbot.waitSignal(worker.finished, timeout=60_000):
        qtbot.mouseClick(widget.cancel_button, Qt.LeftButton)
    timer.stop()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5_000)
    stopped_at = widget.last_event.step
    assert widget.last_event.kind == "step"
    assert stopped_at < planned // 20, f"training did not stop promptly ({stopped_at} of {planned} steps)"
    qtbot.wait(300)
    assert widget.last_event.step == stopped_at  # no more events after the cancel
    assert widget.result is None
    assert widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert widget._form.enabled
    assert "cancelled" in widget.status.text().lower()
    assert not (tmp_path / "models" / "tiny.pt").exists()  # no epoch finished, no checkpoint
    assert "gen" not in widget.runner._holder  # the engine generator was closed
    assert not gc_hold.holding() and gc.get_freeze_count() == 0     # nothing stays frozen after the job

    # the viewer still works
    pts = viewer.add_points(np.array([[3, 40, 40]]), name="after")
    assert pts in viewer.layers
    shot = viewer.screenshot()
    assert shot.ndim == 3 and shot.shape[2] == 4 and shot.shape[0] > 10


def test_train_to_the_end_writes_loadable_checkpoint(make_napari_viewer, qtbot, tmp_path):
    viewer, widget = _train_setup(make_napari_viewer, tmp_path, epochs=2, steps=3)
    widget.model.value = "mfnsde"
    qtbot.mouseClick(widget.train_button, Qt.LeftButton)
    worker = widget.worker
    assert worker is not None and not widget.train_button.isEnabled()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    ev = widget.last_event
    assert ev.kind == "done" and ev.step == 6 and ev.total_steps == 6 and ev.epoch == 2
    assert ev.best_val_metric is not None and 0.0 <= ev.best_val_metric <= 1.0
    assert widget.n_events == 1 + 6 + 2 + 1  # start, steps, epochs, done
    assert widget.result is not None and widget.result.steps_done == 6
    ckpt = tmp_path / "models" / "tiny.pt"
    assert widget.result.checkpoint == ckpt and ckpt.is_file()
    assert widget.progress.value() == widget.progress.maximum() == 1000
    assert "best validation DSC" in widget.status.text()

    from napari_pvs.engine.models.checkpoint import load_model

    loaded = load_model(ckpt)
    assert loaded.name == "mfnsde" and tuple(loaded.config.features) == TINY
    assert loaded.spacing_mm == pytest.approx(0.5)
    assert loaded.info["train_config"]["loop"]["epochs"] == 2


def test_train_errors_are_one_line_notifications(make_napari_viewer, qtbot, tmp_path, errors):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Train PVS model")
    widget.train_button.click()  # no layers at all
    assert widget.worker is None
    assert errors and "choose a T2 Image layer" in errors[-1]

    img, _ = synthetic_t2((4, 64, 64))
    viewer.add_image(img, name="t2")
    viewer.add_labels(np.zeros(img.shape, np.uint8), name="empty")
    widget.model.value = "unet"
    widget.features.value = "4, 8, 16"
    widget.patch_size.value = 64
    widget.checkpoint_path = tmp_path / "never.pt"
    widget.features.value = "4, x"
    widget.train_button.click()
    assert "features must be integers" in errors[-1] and widget.worker is None
    widget.features.value = "4, 8, 16"

    n = len(errors)
    widget.train_button.click()  # mask without PVS: the engine's check refuses it on the main thread
    assert widget.worker is None and len(errors) == n + 1
    assert "no PVS voxel" in errors[-1] and "\n" not in errors[-1]
    assert widget.train_button.isEnabled() and widget.result is None
    assert not (tmp_path / "never.pt").exists()

    viewer.add_labels(np.zeros((4, 32, 32), np.uint8), name="small")
    widget.pairs[0].labels.value = viewer.layers["small"]
    widget.train_button.click()
    assert "layer 'small': grid (32, 32, 4) differs" in errors[-1] and widget.worker is None
    # same shape but another voxel size: the affine check of the CLI refuses it too
    viewer.add_labels(np.ones(img.shape, np.uint8), name="other grid", scale=(2.0, 0.7, 0.7))
    widget.pairs[0].labels.value = viewer.layers["other grid"]
    widget.train_button.click()
    assert "layer 'other grid': affine differs" in errors[-1] and widget.worker is None


def test_errors_in_the_worker_are_one_notification(make_napari_viewer, qtbot, tmp_path, errors):
    viewer, widget = _train_setup(make_napari_viewer, tmp_path, epochs=1, steps=1)
    # a checkpoint of another config to start from: refused when the worker starts
    from napari_pvs.engine.models.checkpoint import save_checkpoint
    from napari_pvs.engine.models import UNetConfig, build_model

    cfg = UNetConfig(features=(8, 16))
    save_checkpoint(tmp_path / "other.pt", model=build_model("unet", cfg), model_name="unet",
                    model_config=cfg, spacing_mm=0.5, percentiles=(0.5, 99.5))
    widget.init_from.value = tmp_path / "other.pt"
    n = len(errors)
    widget.train_button.click()
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert len(errors) == n + 1 and "other.pt: cannot fine-tune from it" in errors[-1]
    assert "\n" not in errors[-1] and widget.result is None and widget.train_button.isEnabled()


def test_unexpected_worker_error_is_one_notification_with_its_traceback(make_napari_viewer, qtbot, tmp_path,
                                                                        errors, monkeypatch):
    import traceback

    from napari.utils.notifications import notification_manager

    viewer, widget = _train_setup(make_napari_viewer, tmp_path, epochs=1, steps=1)
    from napari_pvs.engine.training import SegmentationTask

    def broken(self, device):
        raise RuntimeError("disk on fire")

    received = []
    monkeypatch.setattr(notification_manager, "receive_error",
                        lambda exctype, value, tb=None, thread=None: received.append((exctype, value, tb)))
    monkeypatch.setattr(SegmentationTask, "setup", broken)
    n = len(errors)
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert errors[n:] == []                                   # not a one-line error: bad input it is not
    ((exctype, value, tb),) = received                        # one napari error notification ...
    assert exctype is RuntimeError and str(value) == "disk on fire"
    assert "broken" in [f.name for f in traceback.extract_tb(tb)]   # ... with the traceback to the raise
    assert widget.status.text() == "failed: RuntimeError: disk on fire"
    assert viewer.add_points(np.array([[1, 2, 3]])) in viewer.layers     # the viewer lives


@pytest.mark.parametrize("model", ["cmgraph", "dynunet", "frangi", "gloms", "liteunet", "mfnsde", "unet"])
def test_train_widget_trains_every_model_it_offers(make_napari_viewer, qtbot, tmp_path, errors, model):
    """Every family in the model box trains a few steps from the widget, the weight-free
    Frangi baseline included (its threshold is fitted)."""
    from napari_pvs.engine.models.checkpoint import load_model

    viewer, widget = _train_setup(make_napari_viewer, tmp_path, epochs=1, steps=2)
    assert sorted(widget.model.choices) == ["cmgraph", "dynunet", "frangi", "gloms", "liteunet", "mfnsde", "unet"]
    widget.model.value = model
    widget.features.value = "8, 16, 32" if model == "dynunet" else "4, 8, 16, 32"
    widget.checkpoint_path = tmp_path / f"{model}.pt"
    widget.train_button.click()
    assert errors == [] and widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert errors == [], errors
    result = widget.result
    assert result is not None and result.checkpoint == tmp_path / f"{model}.pt"
    assert result.stop_reason == ("fitted" if model == "frangi" else "finished")
    assert load_model(result.checkpoint).name == model
    assert "best validation DSC" in widget.status.text()


def test_train_widget_pairs(make_napari_viewer):
    viewer = make_napari_viewer()
    img, mask = synthetic_t2((4, 64, 64))
    viewer.add_image(img, name="a")
    viewer.add_labels(mask, name="a_pvs")
    viewer.add_image(img, name="b")
    viewer.add_labels(mask, name="b_pvs")
    from napari_pvs.widgets import TrainWidget

    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)  # napari fills the layer pickers of docked widgets
    widget.add_pair_button.changed.emit(True)
    assert len(widget.pairs) == 2
    widget.pairs[0].image.value = viewer.layers["a"]
    widget.pairs[0].labels.value = viewer.layers["a_pvs"]
    widget.pairs[1].image.value = viewer.layers["b"]
    widget.pairs[1].labels.value = viewer.layers["b_pvs"]
    widget.features.value = "4, 8, 16"
    assert widget.pairs[1].image.choices == (viewer.layers["a"], viewer.layers["b"])
    req = widget.request()
    assert len(req.images) == len(req.masks) == 2 and req.init_from is None
    assert [im.meta["napari_layer"] for im in req.images] == ["a", "b"]
    config = req.config
    assert config.model_config.features == TINY and config.patch_size == (128, 128)
    assert config.max_minutes is None
    widget._remove_pair(widget.pairs[1])
    assert len(widget.pairs) == 1
    widget.deleteLater()


# --------------------------------------------------------------------------- segment


def _tiny_checkpoint(path: Path, spacing_mm=0.8) -> Path:
    import torch

    from napari_pvs.engine.models.checkpoint import save_checkpoint
    from napari_pvs.engine.models import UNetConfig, build_model

    torch.manual_seed(0)
    cfg = UNetConfig(features=TINY)
    return save_checkpoint(path, model=build_model("unet", cfg), model_name="unet", model_config=cfg,
                           spacing_mm=spacing_mm, percentiles=(0.5, 99.5))


def _run_segment(qtbot, widget):
    qtbot.mouseClick(widget.segment_button, Qt.LeftButton)
    worker = widget.worker
    assert type(worker).__name__ == "GeneratorWorker", widget.status.text()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5_000)


def test_segment_widget_adds_layers_on_the_t2_grid(make_napari_viewer, qtbot, tmp_path):
    from napari_pvs.plugin.writer import write_labels

    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt")
    img, _ = synthetic_t2((5, 70, 60))
    path = oblique_nifti(tmp_path, img, "subject_T2.nii.gz")
    viewer = make_napari_viewer()
    (t2,) = viewer.open(str(path), plugin="napari-pvs")
    t2.translate = (1.0, 2.0, 3.0)
    viewer.add_image(np.zeros((5, 10, 10)), name="decoy")
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Segment PVS")
    widget.image.value = t2
    widget.checkpoint_path = ckpt
    _run_segment(qtbot, widget)

    prob = viewer.layers["subject_T2 PVS probability"]
    mask = viewer.layers["subject_T2 PVS mask"]
    assert type(prob).__name__ == "Image" and type(mask).__name__ == "Labels"
    for layer in (prob, mask):
        assert layer.data.shape == t2.data.shape == (5, 70, 60)
        np.testing.assert_allclose(layer.scale, t2.scale)
        np.testing.assert_allclose(layer.translate, t2.translate)
        np.testing.assert_allclose(layer.affine.affine_matrix, t2.affine.affine_matrix)
    assert prob.data.dtype == np.float32 and 0.0 <= prob.data.min() and prob.data.max() <= 1.0
    assert prob.colormap.name == "magma" and prob.blending == "additive"
    np.testing.assert_allclose(prob.contrast_limits, (0.0, 1.0))
    np.testing.assert_array_equal(mask.data, (prob.data >= 0.5).astype(np.uint8))
    np.testing.assert_array_equal(mask.metadata["affine"], nib.load(str(path)).affine)
    assert mask.metadata["nifti_header"] is t2.metadata["nifti_header"]
    assert widget.progress.value() == widget.progress.maximum() == 1000
    assert widget.segment_button.isEnabled() and not widget.cancel_button.isEnabled()

    # the mask saves on the T2's grid
    (out,) = write_labels(str(tmp_path / "pred.nii.gz"), mask.data, {"metadata": mask.metadata,
                                                                      "scale": mask.scale})
    np.testing.assert_array_equal(nib.load(out).affine, nib.load(str(path)).affine)

    # threshold changes re-threshold the same probability map
    widget.threshold.value = 0.3
    np.testing.assert_array_equal(mask.data, (prob.data >= 0.3).astype(np.uint8))
    # a second run updates the layers in place
    n_layers = len(viewer.layers)
    _run_segment(qtbot, widget)
    assert len(viewer.layers) == n_layers
    assert viewer.layers["subject_T2 PVS mask"] is mask
    np.testing.assert_array_equal(mask.data, (prob.data >= 0.3).astype(np.uint8))


def test_segment_widget_shows_what_only_some_ensemble_members_call_pvs(make_napari_viewer, qtbot, tmp_path):
    ens, members = tiny_ensemble(tmp_path, spacing_mm=0.8)
    img, _ = synthetic_t2((4, 60, 50))
    path = oblique_nifti(tmp_path, img, "ens_T2.nii.gz")
    viewer = make_napari_viewer()
    (t2,) = viewer.open(str(path), plugin="napari-pvs")
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Segment PVS")
    widget.checkpoint_path = ens
    _run_segment(qtbot, widget)
    pred = widget.prediction
    assert pred.member_probs.shape == (3, *t2.data.shape)
    unc = viewer.layers["ens_T2 PVS uncertain"]
    mask = viewer.layers["ens_T2 PVS mask"]
    assert widget.uncertain_layer.name == unc.name  # the widget holds napari's public proxy of it
    assert unc.metadata["members"] == 3, unc.metadata.keys()
    assert viewer.layers.index(unc) < viewer.layers.index(mask)  # the mask stays on top
    np.testing.assert_allclose(unc.affine.affine_matrix, t2.affine.affine_matrix)
    # random members hover near 0.5: at their median they disagree
    widget.threshold.value = float(np.median(pred.member_probs))
    t = float(widget.threshold.value)  # as the spin box rounds it
    want = (pred.member_probs >= t).sum(0).astype(np.uint8)
    want[pred.prob >= t] = 0
    np.testing.assert_array_equal(unc.data, want)
    assert unc.data.max() > 0 and not (unc.data.astype(bool) & mask.data.astype(bool)).any()
    assert "uncertain object(s) that only some of the 3 members call PVS" in widget.status.text()
    # a single model has no member agreement: its run removes the layer
    widget.checkpoint_path = members[0]
    _run_segment(qtbot, widget)
    assert "ens_T2 PVS uncertain" not in viewer.layers and widget.uncertain_layer is None
    assert widget.prediction.member_probs is None


def test_segment_widget_real_t2(make_napari_viewer, qtbot, tmp_path):
    path = real_file(T2_REL)
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt", spacing_mm=1.0)
    viewer = make_napari_viewer()
    (t2,) = viewer.open(str(path), plugin="napari-pvs")
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Segment PVS")
    assert widget.image.value is t2
    widget.checkpoint_path = ckpt
    _run_segment(qtbot, widget)
    prob = viewer.layers["study1_T2W PVS probability"]
    mask = viewer.layers["study1_T2W PVS mask"]
    assert prob.data.shape == mask.data.shape == (36, 448, 406)
    np.testing.assert_allclose(mask.scale, t2.scale)
    np.testing.assert_allclose(prob.scale, (4.0, 0.5134, 0.5134), atol=1e-3)
    np.testing.assert_array_equal(mask.metadata["affine"], nib.load(str(path)).affine)
    # the mask's paint overlays are built when the rater first picks a tool, and then work
    assert not mask._overlays["brush_stroke"].visible and not mask._overlays["polygon"].visible
    mask.mode = "paint"
    assert mask._overlays["brush_stroke"].visible and mask._overlays["polygon"].visible
    mask.paint((18, 200, 200), 7)
    assert mask.data[18, 200, 200] == 7


def test_segment_widget_bad_checkpoint(make_napari_viewer, qtbot, tmp_path, errors):
    viewer = make_napari_viewer()
    img, _ = synthetic_t2((3, 32, 32))
    viewer.add_image(img, name="t2")
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Segment PVS")
    widget.checkpoint_path = tmp_path / "missing.pt"
    widget.segment_button.click()
    assert widget.worker is None and "checkpoint not found" in errors[-1]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    widget.checkpoint_path = bad
    n = len(errors)
    widget.segment_button.click()  # read on the main thread: refused before any worker starts
    assert widget.worker is None and len(errors) == n + 1
    assert "bad.pt: not a readable checkpoint" in errors[-1]
    assert "t2 PVS mask" not in viewer.layers
    assert widget.segment_button.isEnabled()


# --------------------------------------------------------------------------- count


def _blobs(shape, per_slice):
    """Labels with separate 2x2 blobs: ``per_slice = {z: (n_low_x, n_high_x)}``."""
    lab = np.zeros(shape, np.uint8)
    for z, (n_low, n_high) in per_slice.items():
        for i in range(n_low):
            r, c = 10 + 6 * (i % 12), 5 + 6 * (i // 12)        # x index < 30: low x half
            lab[z, r:r + 2, c:c + 2] = 1
        for i in range(n_high):
            r, c = 10 + 6 * (i % 12), 90 + 6 * (i // 12)       # x index >= 90: high x half
            lab[z, r:r + 2, c:c + 2] = 1
    return lab


def _click_count(qtbot, widget) -> None:
    """Press *Count* (it counts in a worker thread) and wait for the table."""
    widget.count_button.click()
    qtbot.waitUntil(lambda: not widget.counting, timeout=30_000)


def test_count_widget_table(make_napari_viewer, qtbot, tmp_path):
    import csv

    shape = (12, 100, 120)
    per_slice = {4: (3, 5), 9: (12, 2)}
    lab = _blobs(shape, per_slice)
    viewer = make_napari_viewer()
    layer = viewer.add_labels(lab, name="pvs", scale=(3.0, 0.5, 0.5))
    viewer.dims.set_current_step(0, 4)  # slice 4 (world 12 mm at 3 mm slices)
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Count PVS (BG/CSO)")
    assert widget.labels.value is layer
    assert widget.bg_slice.value == 4  # the viewer's current slice
    assert widget.bg_slice.max == 11
    widget.cso_slice.value = 9
    _click_count(qtbot, widget)

    counts = widget.last_counts
    assert type(counts).__name__ == "RatingCounts", widget.status.text()
    # no NIfTI geometry: the napari-pvs world frame (LPS, as displayed: the subject's left
    # on the screen's right) makes high X indices the subject's left
    assert (counts.bg.left, counts.bg.right, counts.bg.total) == (5, 3, 8)
    assert (counts.cso.left, counts.cso.right, counts.cso.total) == (2, 12, 14)
    rows = widget.table_values()
    assert [r[0] for r in rows] == ["BG", "CSO", "volume"]
    headers = [widget.table.horizontalHeaderItem(c).text() for c in range(widget.table.columnCount())]
    assert headers == ["region", "slice", "left", "right", "total", "on slice", "grade", "counted within",
                       "slices", "L/R split at", "area mm²", "volume mm³"]
    # no atlas regions: whole slices, so "on slice" = total; no slab: one slice each; no
    # atlas: left and right split at the centre of the field of view
    assert rows[0][:11] == ["BG", "4", "5", "3", "8", "8", "1", "slice", "1", "field of view", "8.00"]     # 8 blobs x 4 px x 0.25 mm²
    assert rows[1][:11] == ["CSO", "9", "2", "12", "14", "14", "2", "slice", "1", "field of view",
                            "14.00"]                                      # grade of the 12-PVS side
    assert rows[2][4] == "22" and rows[2][11] == "66.00"                 # 22 x 4 voxels x 0.75 mm³
    # a 3 mm slab on 3 mm slices is still the one slice
    widget.slab_mm.value = 3.0
    _click_count(qtbot, widget)
    assert widget.last_counts.bg.slab_slices == 1 and widget.last_counts.bg.total == 8
    widget.slab_mm.value = 0.0

    # the same mask in a RAS file geometry (+i towards the subject's right): left and right swap
    ras = np.diag([0.5, 0.5, 3.0, 1.0])
    ras[:3, 3] = (-30.0, -25.0, -10.0)
    layer.metadata["affine"] = ras
    _click_count(qtbot, widget)
    assert (widget.last_counts.bg.left, widget.last_counts.bg.right) == (3, 5)
    assert widget.table_values()[1][2:4] == ["12", "2"]

    out = widget.save_csv(tmp_path / "counts.csv")
    with open(out, newline="") as fh:
        written = list(csv.DictReader(fh))
    assert [r["region"] for r in written] == ["BG", "CSO", "volume"]
    assert written[0]["left"] == "3" and written[2]["total"] == "22"


def test_count_widget_uses_the_axial_axis_of_a_coronal_volume(make_napari_viewer):
    """A volume stored coronally (the NIfTI j axis runs inferior-superior): the rating slices
    run along data axis 1 (Y), whatever napari's dims order."""
    shape = (30, 16, 40)  # (Z=k: anterior-posterior, Y=j: inferior-superior, X=i: left-right)
    lab = np.zeros(shape, np.uint8)
    lab[10:13, 5, 4:6] = 1     # one PVS on axial slice 5, on the low-x side
    lab[3:5, 5, 30:33] = 1     # another one, on the high-x side
    lab[20, 11, 20] = 1        # one on axial slice 11
    coronal = np.array([[-1.0, 0, 0, 20], [0, 0, 1.0, -15], [0, 2.0, 0, -10], [0, 0, 0, 1]])
    viewer = make_napari_viewer()
    layer = viewer.add_labels(lab, name="cor", metadata={"affine": coronal})
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Count PVS (BG/CSO)")
    assert layer_to_volume(layer).axial_axis == 1
    assert widget.labels.value is layer and widget.bg_slice.max == 15  # 16 axial slices, not 30
    viewer.dims.set_current_step(1, 11)  # napari's dims follow the data axes of this layer
    widget.bg_here.click()
    assert widget.bg_slice.value == 11
    widget.bg_slice.value, widget.cso_slice.value = 5, 11
    counts = widget.count()
    assert (counts.bg.total, counts.cso.total) == (2, 1)
    assert {counts.bg.left, counts.bg.right} == {1}


def test_count_widget_slice_out_of_range(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Count PVS (BG/CSO)")
    _click_count(qtbot, widget)
    assert "choose a PVS Labels layer" in errors[-1]
    viewer.add_labels(np.zeros((5, 20, 20), np.uint8), name="m")
    assert widget.bg_slice.max == 4
    widget.bg_slice.value = 2
    widget.cso_slice.value = 4
    _click_count(qtbot, widget)
    assert widget.table_values()[0][4] == "0" and widget.table_values()[2][4] == "0"


def test_all_widgets_dock_together(make_napari_viewer):
    viewer = make_napari_viewer()
    classes = {"Train PVS model": "TrainWidget", "Segment PVS": "SegmentWidget", "Count PVS (BG/CSO)": "CountWidget",
               "Annotate PVS": "AnnotateWidget", "Active learning": "ActiveLearningWidget",
               "Register images": "RegistrationWidget"}
    names = list(classes)
    for name in names:
        dock, widget = viewer.window.add_plugin_dock_widget("napari-pvs", name)
        assert type(widget).__name__ == classes[name]
        assert viewer.window._qt_window.dockWidgetArea(dock) == Qt.RightDockWidgetArea
    docked = set(viewer.window.dock_widgets)
    assert {f"{n} (napari-pvs)" for n in names} <= docked, docked


def test_count_widget_current_slice_of_an_oblique_scan(make_napari_viewer, tmp_path):
    """On an oblique scan "current slice" is the slice napari draws. napari maps only the
    slider's world coordinate to data, so that slice can differ from ``world_to_data`` of
    the full point (at the layer's centre or at the plane's corner)."""
    img, _ = synthetic_t2((8, 120, 100))
    tilted = np.array([[-0.5, 0, 0, 25.0], [0, -0.5, 0.3, 45.0], [0, 0.1, 3.0, -10.0], [0, 0, 0, 1]])
    path = write_nifti(tmp_path / "oblique_T2.nii.gz", np.ascontiguousarray(img.transpose(2, 1, 0)), tilted)
    viewer = make_napari_viewer()
    (t2,) = viewer.open(str(path), plugin="napari-pvs")
    # each slice labelled with its own index + 1, so what napari draws names the slice
    by_slice = np.broadcast_to(np.arange(1, img.shape[0] + 1, dtype=np.uint8)[:, None, None], img.shape).copy()
    labels = viewer.add_labels(by_slice, name="pvs", scale=t2.scale,
                               affine=t2.affine, metadata={"affine": t2.metadata["affine"]})
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Count PVS (BG/CSO)")
    widget.labels.value = labels
    differs_from_full_point = 0
    for z in range(1, img.shape[0] - 1):
        assert go_to_slice(viewer, labels, z) == z
        drawn = np.unique(np.asarray(labels._slice.image.view))
        assert drawn.tolist() == [z + 1]                  # napari draws slice z ...
        assert widget.current_slice() == z                # ... and the widget says so
        widget._set_to_current(widget.bg_slice)
        assert widget.bg_slice.value == z
        centre = (viewer.dims.point[0], *t2.data_to_world((np.asarray(img.shape) - 1) / 2)[1:])
        differs_from_full_point += int(np.round(t2.world_to_data(centre)[0]) != z)
    # the full-point mapping the widget used before would have named another slice here
    assert differs_from_full_point > 0


def test_segment_widget_starts_on_the_shipped_model_one_click(make_napari_viewer, qtbot, tmp_path):
    from napari_pvs.engine.data import accurate_checkpoint, default_checkpoint

    img, _ = synthetic_t2((3, 60, 50))
    path = oblique_nifti(tmp_path, img, "one_click_T2.nii.gz")
    viewer = make_napari_viewer()
    (t2,) = viewer.open(str(path), plugin="napari-pvs")
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", "Segment PVS")
    assert widget.checkpoint_path == default_checkpoint()
    widget.model.value = "accurate (ensemble)"      # the model box puts the shipped file in the checkpoint box
    assert widget.checkpoint_path == accurate_checkpoint()
    widget.model.value = "default (fast)"
    assert widget.checkpoint_path == default_checkpoint()
    assert widget.image.value is t2
    _run_segment(qtbot, widget)                     # no other setting: one click
    mask = viewer.layers["one_click_T2 PVS mask"]
    assert mask.data.shape == t2.data.shape
    assert "pvs_default.pt" in widget.status.text() or "Segmented" in widget.status.text()
