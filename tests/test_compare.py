"""Model comparison: engine metrics and error maps, the CLI, and the Compare models widget."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import blob_volume

from napari_pvs.cli import main
from napari_pvs.engine.models.checkpoint import save_checkpoint
from napari_pvs.engine.comparison import (FN, FP, TP, compare_iter, error_components, error_map, frangi_baseline,
                                          mask_metrics)
from napari_pvs.engine.io import save_volume
from napari_pvs.engine.models import build_model
from napari_pvs.engine.progress import run_to_end


def _two_blobs():
    ref = np.zeros((4, 20, 20), np.uint8)
    ref[1, 2:5, 2:5] = 1       # found, a little too large
    ref[2, 10:12, 10:12] = 1   # missed
    pred = np.zeros_like(ref)
    pred[1, 2:6, 2:5] = 1
    pred[3, 15:17, 15:17] = 1  # false positive
    return pred, ref


def test_mask_metrics_voxels_and_components():
    pred, ref = _two_blobs()
    m = mask_metrics(pred, ref)
    # voxels: 9 TP, 3 + 4 FP, 4 FN
    assert m["dsc"] == pytest.approx(2 * 9 / (2 * 9 + 7 + 4))
    assert m["sensitivity"] == pytest.approx(9 / 13) and m["ppv"] == pytest.approx(9 / 16)
    # components: 2 predicted, 2 reference, 1 matched
    assert (m["n_pred"], m["n_ref"], m["matched"], m["count_abs_diff"]) == (2, 2, 1, 0)
    assert m["detection_f1"] == pytest.approx(0.5)
    s = mask_metrics(pred, ref, slice_index=2)  # only the missed blob on that slice
    assert (s["n_pred"], s["n_ref"], s["detection_f1"], s["dsc"]) == (0, 1, 0.0, 0.0)
    with pytest.raises(ValueError, match="outside"):
        mask_metrics(pred, ref, slice_index=9)
    with pytest.raises(ValueError, match="differs"):
        mask_metrics(pred[:2], ref)


def test_error_maps_voxel_and_component():
    pred, ref = _two_blobs()
    vox = error_map(pred, ref)
    assert (vox == TP).sum() == 9 and (vox == FP).sum() == 7 and (vox == FN).sum() == 4
    comp = error_map(pred, ref, components=True)
    assert (comp[1] == TP).sum() == 12          # the matched component is TP as a whole
    assert (comp[3] == FP).sum() == 4 and (comp[2] == FN).sum() == 4
    found = error_components(comp)
    assert [(c.kind, c.centre[0], c.n_voxels) for c in found] == [("FP", 3, 4), ("FN", 2, 4)]


def test_compare_iter_runs_every_model_and_rethresholds(tmp_path):
    vol, truth = blob_volume(0, shape=(4, 48, 48))
    net = build_model("unet", {"features": (4, 8, 16)}).eval()
    ckpt = save_checkpoint(tmp_path / "u.pt", model=net, model_name="unet", model_config=net.config,
                           spacing_mm=0.5, percentiles=(0.5, 99.5), patch_size=(32, 32))
    from napari_pvs.engine.models.checkpoint import load_model

    events = []
    comp = run_to_end(compare_iter(vol, [load_model(ckpt), frangi_baseline(0.5, threshold=0.05)],
                                   reference=truth, brain_only=False, outside_brain_zero=False,
                                   wide_csf_zero=False), events.append)
    assert [p.name for p in comp.predictions] == ["unet", "frangi"]
    assert events[0].index == 0 and events[-1].index == 1 and 0 <= events[-1].fraction <= 1
    assert comp.predictions[1].n_parameters == 0 and comp.predictions[0].n_parameters > 0
    rows = comp.metrics(0.5)
    assert [r["model"] for r in rows] == ["unet (u)", "frangi"] and all("dsc" in r for r in rows)
    # the frangi baseline finds bright blobs; a stricter threshold calls fewer voxels
    assert rows[1]["sensitivity"] > 0.5
    assert comp.masks(0.9)[1].sum() < comp.masks(0.5)[1].sum()
    with pytest.raises(Exception, match="reference mask shape"):
        run_to_end(compare_iter(vol, [frangi_baseline()], reference=truth[:2]))


def test_compare_cli_writes_the_table(tmp_path, capsys):
    vol, truth = blob_volume(1, shape=(4, 48, 48))
    img = save_volume(tmp_path / "t2.nii.gz", vol.data, vol)
    ref = save_volume(tmp_path / "ref.nii.gz", truth, vol, dtype="uint8")
    net = build_model("unet", {"features": (4, 8, 16)}).eval()
    ckpt = save_checkpoint(tmp_path / "u.pt", model=net, model_name="unet", model_config=net.config,
                           spacing_mm=0.5, percentiles=(0.5, 99.5), patch_size=(32, 32))
    out = tmp_path / "m.csv"
    assert main(["compare", str(img), "-m", str(ckpt), "--frangi", "--reference", str(ref), "-o", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split("\t")[:4] == ["model", "parameters", "inference_s", "dsc"]
    rows = list(csv.DictReader(open(out)))
    assert [r["model"] for r in rows] == ["unet (u)", "frangi"] and float(rows[1]["sensitivity"]) > 0
    assert main(["compare", str(img), "--frangi", "-o", str(tmp_path / "x.txt")]) == 2


def _layers_by_name(viewer):
    return [ly.name for ly in viewer.layers]


def test_compare_widget_grid_errors_threshold_and_jump(make_napari_viewer, qtbot, tmp_path):
    from napari_pvs.widgets.compare import LAYER_PREFIX, CompareWidget

    vol, truth = blob_volume(2, shape=(5, 48, 48))
    torch.manual_seed(0)
    paths = []
    for k in range(2):
        net = build_model("unet", {"features": (4, 8, 16)}).eval()
        paths.append(save_checkpoint(tmp_path / f"net{k}.pt", model=net, model_name="unet", model_config=net.config,
                                     spacing_mm=0.5, percentiles=(0.5, 99.5), patch_size=(32, 32)))
    viewer = make_napari_viewer()
    scale = (3.0, 0.5, 0.5)
    t2 = viewer.add_image(vol.data, name="T2", scale=scale)
    viewer.add_labels(truth, name="truth", scale=scale)
    widget = CompareWidget(viewer)
    widget.reset_choices()
    widget.image.value = t2
    widget.reference.value = viewer.layers["truth"]
    widget.checkpoints.value = paths
    widget.frangi.value = True
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    comp = widget.comparison
    assert comp is not None and len(comp.predictions) == 3
    # grid: (T2, model) pairs at the bottom of the layer list, the user's layers hidden
    names = _layers_by_name(viewer)
    assert names[:6] == [f"{LAYER_PREFIX}T2 · unet (net0)", f"{LAYER_PREFIX}unet (net0)",
                         f"{LAYER_PREFIX}T2 · unet (net1)", f"{LAYER_PREFIX}unet (net1)",
                         f"{LAYER_PREFIX}T2 · frangi", f"{LAYER_PREFIX}frangi"]
    assert viewer.grid.enabled and viewer.grid.stride == 2
    assert not t2.visible and viewer.layers[0].data is t2.data  # the same data, not a copy
    assert tuple(viewer.layers[1].scale) == scale
    frangi_layer = widget.model_layers[2]
    assert set(np.unique(frangi_layer.data)) <= {0, TP, FP, FN}
    np.testing.assert_array_equal(frangi_layer.data, error_map(comp.predictions[2].mask(0.5), truth, components=True))
    assert widget.metrics_table.rowCount() == 3
    dsc_05 = widget.metrics_rows[2]["dsc"]
    # threshold slider: masks, colours and metrics follow without a new inference
    widget.errors.value = "voxels"
    widget.threshold.value = 0.9
    np.testing.assert_array_equal(frangi_layer.data, error_map(comp.predictions[2].mask(0.9), truth))
    assert widget.metrics_rows[2]["dsc"] != dsc_05 or comp.masks(0.9)[2].sum() == comp.masks(0.5)[2].sum()
    # a model's row lists its errors; clicking one jumps there (slice and camera)
    widget.select_model(2, jump=False)
    assert widget.components and widget.components_table.rowCount() == len(widget.components)
    last = len(widget.components) - 1
    widget.jump_to_component(last)
    z = widget.components[last].centre[0]
    assert widget.current_slice == z
    assert "slice_dsc" in widget.metrics_rows[0]
    widget.stop_comparing()
    assert _layers_by_name(viewer) == ["T2", "truth"] and t2.visible and not viewer.grid.enabled


def test_compare_widget_needs_two_models(make_napari_viewer):
    from napari_pvs.widgets.compare import CompareWidget

    vol, _ = blob_volume(0, shape=(4, 32, 32))
    viewer = make_napari_viewer()
    viewer.add_image(vol.data, name="T2")
    widget = CompareWidget(viewer)
    widget.reset_choices()
    widget.checkpoints.value = []
    widget.frangi.value = True
    widget.start()
    assert widget.worker is None and "at least two models" in widget.status.text()
