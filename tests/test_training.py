"""Training generator, checkpoints and inference on small synthetic volumes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import SMALL_FEATURES, blob_volume

from napari_pvs.engine.models.checkpoint import load_model, save_checkpoint
from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.inference import predict_volume, segment_iter
from napari_pvs.engine.io import Volume
from napari_pvs.engine.metrics import overlap_metrics
from napari_pvs.engine.models import UNetConfig, build_model
from napari_pvs.engine.progress import run_to_end
from napari_pvs.engine.training import LoopConfig, TrainConfig, TrainEvent, run_training, split_by_volume, train

TINY = {"features": SMALL_FEATURES}
TINY_UNET = UNetConfig(features=SMALL_FEATURES)


def run(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def test_paper_defaults():
    cfg = TrainConfig()
    assert (cfg.model, cfg.optimizer, cfg.learning_rate, cfg.batch_size) == ("mfnsde", "adagrad", 0.05, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.learning_rate = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        TrainConfig(model="nope")


def test_split_is_by_volume():
    tr, va = split_by_volume(5, 0.25, seed=3)
    assert sorted(tr + va) == [0, 1, 2, 3, 4] and not set(tr) & set(va) and len(va) == 1
    assert split_by_volume(1, 0.25, 0) == ([0], [0])


def test_train_learns_and_checkpoint_is_self_contained(tmp_path):
    vols = [blob_volume(s) for s in range(3)]
    cfg = TrainConfig(model="mfnsde", model_config=TINY, epochs=3, steps_per_epoch=20, patch_size=(64, 64))
    ckpt = tmp_path / "model.pt"
    events, result = run(train([v for v, _ in vols[:2]], [m for _, m in vols[:2]], cfg, ckpt))
    assert all(isinstance(e, TrainEvent) for e in events)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("step") == 60 and kinds.count("epoch") == 3
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == list(range(1, 61))
    assert all(e.elapsed_s >= 0 and np.isfinite(e.loss) for e in steps)
    assert result.best_val_metric == max(e.val_metric for e in events if e.kind == "epoch")
    assert result.best_val_metric > 0.5 and result.metric_name == "DSC"
    # validation runs on a fixed sample of patches: a small share of the time
    assert 0 < result.val_seconds < result.seconds and result.val_share < 0.5
    assert result.steps_per_second > 0
    # reload with nothing else
    raw = torch.load(ckpt, weights_only=True)
    assert raw["model_name"] == "mfnsde" and raw["model_config"]["features"] == (8, 16, 32)
    assert raw["train_config"]["loop"]["learning_rate"] == 0.05 and raw["spacing_mm"] == pytest.approx(0.5)
    assert raw["normalization"] == {"method": "percentile", "percentiles": [0.5, 99.5]}
    assert [d["role"] for d in raw["training_data"]].count("validation") == 1
    loaded = load_model(ckpt)
    test_vol, test_mask = vols[2]
    pred = predict_volume(loaded, test_vol)
    assert pred.prob.shape == test_vol.shape and pred.prob.dtype == np.float32
    assert 0 <= pred.prob.min() and pred.prob.max() <= 1
    assert overlap_metrics(pred.mask, test_mask).dsc > 0.5


def test_closing_the_generator_stops_cleanly(tmp_path):
    v, m = blob_volume(0)
    cfg = TrainConfig(model="unet", model_config=TINY, epochs=50, steps_per_epoch=5, patch_size=(64, 64))
    ckpt = tmp_path / "m.pt"
    gen = train([v], [m], cfg, ckpt)
    seen = []
    for ev in gen:
        seen.append(ev)
        if ev.kind == "epoch" and ev.epoch == 2:
            break
    gen.close()
    assert seen[-1].epoch == 2 and seen[-1].step == 10
    assert load_model(ckpt).name == "unet"  # the checkpoint written so far is complete
    assert not list(tmp_path.glob(".*part*"))


def test_patch_workers_train_and_stop(tmp_path):
    """loader_workers > 0: patches come from DataLoader worker processes, batches keep their
    shapes, training learns, and the workers are gone when the run ends (also when closed early)."""
    import multiprocessing

    vols = [blob_volume(s) for s in range(2)]
    cfg = TrainConfig(model="mfnsde", model_config=TINY, epochs=3, steps_per_epoch=20, patch_size=(64, 64),
                      batch_size=4, loader_workers=2)
    assert TrainConfig.from_dict(dataclasses.asdict(cfg)).loader_workers == 2
    with pytest.raises(ValueError, match="loader_workers must be >= 0"):
        TrainConfig(loader_workers=-1)
    from napari_pvs.engine.training import SegmentationTask

    task = SegmentationTask([v for v, _ in vols], [m for _, m in vols], cfg, val_indices=[1])
    task.setup(torch.device("cpu"))
    batch = task.sample_batch(torch.device("cpu"))
    assert batch["image"].shape == (4, 1, 64, 64) and batch["label"].shape == (4, 1, 64, 64)
    assert set(torch.unique(batch["label"]).tolist()) <= {0.0, 1.0}
    assert len(multiprocessing.active_children()) == 2
    task.teardown()
    assert multiprocessing.active_children() == []

    events, result = run(train([v for v, _ in vols], [m for _, m in vols], cfg, tmp_path / "m.pt",
                               val_indices=[1]))
    assert [e.kind for e in events].count("step") == 60 and result.best_val_metric > 0.3
    assert multiprocessing.active_children() == []
    assert torch.load(tmp_path / "m.pt", weights_only=True)["train_config"]["loader_workers"] == 2
    gen = train([v for v, _ in vols], [m for _, m in vols], cfg, tmp_path / "m2.pt", val_indices=[1])
    for ev in gen:
        if ev.kind == "step":
            break
    assert len(multiprocessing.active_children()) == 2
    gen.close()
    assert multiprocessing.active_children() == []


def test_time_budget_stops_training(tmp_path):
    v, m = blob_volume(0)
    cfg = TrainConfig(model="unet", model_config=TINY, epochs=1000, steps_per_epoch=1000,
                      patch_size=(64, 64), max_minutes=0.02)
    events, result = run(train([v], [m], cfg, tmp_path / "m.pt"))
    assert events[-1].kind == "done" and "time budget" in events[-1].message
    assert result.steps_done < 1000 and result.checkpoint is not None and result.checkpoint.exists()


def test_bad_training_input(tmp_path):
    v, m = blob_volume(0)
    cfg = TrainConfig(model="unet", model_config=TINY, epochs=1, steps_per_epoch=1, patch_size=(64, 64))
    with pytest.raises(PVSInputError, match="differs from the image grid"):
        next(train([v], [m[:, :-1]], cfg, tmp_path / "m.pt"))
    with pytest.raises(PVSInputError, match="no PVS voxel"):
        next(train([v], [np.zeros_like(m)], cfg, tmp_path / "m.pt"))
    with pytest.raises(PVSInputError, match="1 images but 2 masks"):
        next(train([v], [m, m], cfg, tmp_path / "m.pt"))
    assert not (tmp_path / "m.pt").exists()


def test_load_model_errors(tmp_path):
    with pytest.raises(PVSInputError, match="missing.pt: checkpoint not found"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PVSInputError, match="junk.pt: not a readable checkpoint"):
        load_model(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(PVSInputError, match="other.pt: not a napari-pvs checkpoint"):
        load_model(other)
    good = tmp_path / "unet.pt"
    save_checkpoint(good, model=build_model("unet", TINY), model_name="unet", model_config=TINY_UNET,
                    spacing_mm=0.5, percentiles=(0.5, 99.5))
    assert load_model(good, expected_model="unet").name == "unet"
    with pytest.raises(PVSInputError, match="unet.pt: checkpoint is for model 'unet', expected 'mfnsde'"):
        load_model(good, expected_model="mfnsde")
    # weights of one model under the other's name
    raw = torch.load(good, weights_only=True)
    raw["model_name"] = "mfnsde"
    torch.save(raw, tmp_path / "swapped.pt")
    with pytest.raises(PVSInputError, match="swapped.pt: stored config of model 'mfnsde' is invalid.*num_res_units"):
        load_model(tmp_path / "swapped.pt")
    raw["model_config"] = {"features": [8, 16, 32]}
    torch.save(raw, tmp_path / "swapped.pt")
    with pytest.raises(PVSInputError, match="swapped.pt: weights do not fit model 'mfnsde'"):
        load_model(tmp_path / "swapped.pt")


def test_inference_resamples_to_model_spacing_and_back(tmp_path):
    """A model stored at 0.5 mm given a 1.0 mm volume sees slices resampled to 0.5 mm
    (in sliding windows of its training patch size), and its probability comes back on
    the 1.0 mm source grid."""
    seen = []

    class Probe(torch.nn.Module):
        divisor = 4

        def forward(self, batch):
            x = batch["image"]  # networks receive the batch dict
            seen.append(tuple(x.shape))
            return 10.0 * (x - 0.5)

    save_checkpoint(tmp_path / "u.pt", model=build_model("unet", TINY), model_name="unet",
                    model_config=TINY_UNET, spacing_mm=0.5, percentiles=(0.5, 99.5), patch_size=(64, 64))
    loaded = load_model(tmp_path / "u.pt")
    assert loaded.roi_size == (64, 64)
    loaded.model = Probe()
    img = np.full((3, 40, 50), 20, np.float32)  # normalised to 0 ...
    img[:, 10:20, 20:30] = 100                    # ... and 1
    vol = Volume(img, np.diag([1.0, 1.0, 2.0, 1.0]))
    events = []
    gen = segment_iter(loaded, vol, batch_size=2, crop_to_head=False)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            pred = stop.value
            break
    assert all(s[1:] == (1, 64, 64) for s in seen)
    # 40x50 at 1 mm -> 80x100 at 0.5 mm -> 2x2 windows of 64 (overlap 0.25) per slice;
    # without resampling it would be one (padded) window per slice
    assert sum(s[0] for s in seen) == 3 * 4
    assert [e.done for e in events] == [0, 2, 3] and events[-1].total == 3
    assert pred.prob.shape == vol.shape
    np.testing.assert_array_equal(pred.mask[:, 10:20, 20:30], 1)
    assert pred.mask.sum() == 3 * 10 * 10


def test_inference_skips_the_background(tmp_path):
    """Only the head's slices and in-plane box go through the network; the rest is 0."""
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, batch):
            seen.append(tuple(batch["image"].shape))
            return torch.full_like(batch["image"], 10.0)  # probability ~1 wherever it runs

    save_checkpoint(tmp_path / "u.pt", model=build_model("unet", TINY), model_name="unet",
                    model_config=TINY_UNET, spacing_mm=1.0, percentiles=(0.5, 99.5), patch_size=(32, 32))
    loaded = load_model(tmp_path / "u.pt")
    loaded.model = Probe()
    img = np.zeros((6, 200, 200), np.float32)
    img[1:5, 80:120, 90:130] = np.random.default_rng(0).uniform(50, 150, (4, 40, 40))  # the "head"
    vol = Volume(img, np.eye(4))
    pred = predict_volume(loaded, vol, batch_size=8)
    assert pred.mask[[0, 5]].sum() == 0             # slices without head are not run
    assert pred.mask[1:5, :40].sum() == 0 and pred.mask[1:5, :, :40].sum() == 0
    assert pred.mask[1:5, 80:120, 90:130].all()
    # rows 80-119 grown by the 8 px window overlap and aligned to the 24 px window grid:
    # 72-127, 2 windows; columns 90-129: 82-137 -> 72-151, 3 windows (a whole slice: 8 x 8)
    assert sum(s[0] for s in seen) == 4 * 2 * 3
    full = predict_volume(loaded, vol, batch_size=8, crop_to_head=False)
    assert full.mask.sum() == 6 * 200 * 200


def test_fine_tuning_starts_from_checkpoint_weights(tmp_path):
    vols = [blob_volume(s) for s in range(2)]
    images, masks = [v for v, _ in vols], [m for _, m in vols]
    cfg = TrainConfig(model="unet", model_config=TINY, epochs=2, steps_per_epoch=15, patch_size=(64, 64))
    _, first = run(train(images, masks, cfg, tmp_path / "a.pt"))
    one = TrainConfig(model="unet", model_config=TINY, epochs=1, steps_per_epoch=1, patch_size=(64, 64),
                      learning_rate=1e-9)  # a step that hardly moves the weights
    ev_tuned, tuned = run(train(images, masks, one, tmp_path / "b.pt", init_from=first.checkpoint))
    ev_fresh, fresh = run(train(images, masks, one, tmp_path / "c.pt"))
    assert "fine-tuning from a.pt" in ev_tuned[0].message
    assert tuned.best_val_metric == pytest.approx(first.best_val_metric, abs=0.02)
    assert abs(tuned.best_val_metric - fresh.best_val_metric) > 0.05
    a = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["metrics"]["init_from"] == str(first.checkpoint)
    other = TrainConfig(model="unet", model_config={"features": (4, 8, 16)}, epochs=1, steps_per_epoch=1,
                        patch_size=(64, 64))
    with pytest.raises(PVSInputError, match="a.pt: cannot fine-tune from it"):
        run(train(images, masks, other, tmp_path / "d.pt", init_from=first.checkpoint))
    assert not (tmp_path / "d.pt").exists()


class _Line(torch.nn.Module):
    """y = a x + b, reading its input from the batch dict."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)

    def forward(self, batch):
        return self.lin(batch["x"])


class _LineTask:
    """A toy regression task (y = 3x) to show that the loop is task-neutral."""

    model_name, model_config, metric_name = "line", None, "-MSE"

    def build_model(self):
        return _Line()

    def setup(self, device):
        self.gen = torch.Generator().manual_seed(0)
        return "toy line fit"

    def sample_batch(self, device):
        x = torch.rand(16, 1, generator=self.gen)
        return {"x": x, "y": 3 * x}

    def loss(self, outputs, batch):
        return torch.nn.functional.mse_loss(outputs, batch["y"])

    def validate(self, model, device):
        x = torch.linspace(0, 1, 11)[:, None]
        return -float(torch.nn.functional.mse_loss(model({"x": x}), 3 * x))

    def save_checkpoint(self, path, model, metrics):
        torch.save({"state": model.state_dict(), **metrics}, path)
        return path


def test_loop_runs_any_task(tmp_path):
    cfg = LoopConfig(epochs=4, steps_per_epoch=50, optimizer="adam", learning_rate=0.1, device="cpu")
    events = []
    result = run_to_end(run_training(_LineTask(), cfg, tmp_path / "line.pt"), events.append)
    assert [e.kind for e in events].count("epoch") == 4 and events[0].message.startswith("toy line fit")
    assert result.metric_name == "-MSE" and result.best_val_metric > -0.05
    saved = torch.load(tmp_path / "line.pt", weights_only=True)
    assert saved["best_val_metric"] == result.best_val_metric
    assert saved["state"]["lin.weight"].item() == pytest.approx(3.0, abs=0.3)
    assert events[-1].fraction == 1.0 and 0 < events[5].fraction < 1


def test_train_event_summary_and_fraction():
    ev = TrainEvent("epoch", epoch=2, step=30, total_steps=100, loss=0.5, val_metric=0.61,
                    best_val_metric=0.7, elapsed_s=75.0, budget_s=100.0)
    assert ev.summary() == "epoch 2 | step 30/100 | loss 0.5000 | val DSC 0.610 | best 0.700 | 1 min 15 s"
    assert ev.fraction == pytest.approx(0.75)  # the budget is nearer than the step count
    with pytest.raises(ValueError, match="optimizer"):
        LoopConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="unknown model"):
        TrainConfig(model="nope")


class _NearFitLineTask(_LineTask):
    """Starts near the answer (w = 2.9), so a wild learning rate can only make it worse."""

    def build_model(self):
        m = _Line()
        with torch.no_grad():
            m.lin.weight.fill_(2.9)
            m.lin.bias.zero_()
        return m


def test_validate_start_keeps_the_starting_weights_when_training_is_worse(tmp_path):
    cfg = LoopConfig(epochs=2, steps_per_epoch=5, optimizer="adam", learning_rate=5.0, device="cpu",
                     validate_start=True)
    events = []
    result = run_to_end(run_training(_NearFitLineTask(), cfg, tmp_path / "keep.pt"), events.append)
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in epochs] == [0, 1, 2] and epochs[0].message == "starting weights"
    start = epochs[0].val_metric
    assert start > -0.01 and all(e.val_metric < start for e in epochs[1:])    # training only got worse
    assert result.best_val_metric == pytest.approx(start)
    saved = torch.load(tmp_path / "keep.pt", weights_only=True)
    assert saved["epoch"] == 0 and saved["state"]["lin.weight"].item() == pytest.approx(2.9)
    # without it the best checkpoint is the best *trained* one, worse than the start
    plain = run_to_end(run_training(_NearFitLineTask(), dataclasses.replace(cfg, validate_start=False),
                                    tmp_path / "plain.pt"))
    assert plain.best_val_metric < start
