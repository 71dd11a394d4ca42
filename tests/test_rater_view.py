"""What a rater sees (issue 30): the slider's number is the slice number the widgets show and
take, on axial, oblique and coronally stored scans, before and after a Points layer is added;
units in mm; the Annotate keys; undo of candidate decisions."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from conftest import open_annotate, real_file, write_nifti  # noqa: E402
from napari_pvs.plugin.viewer import axial_axis_of, followed_layer, source_geometry  # noqa: E402

# NIfTI affines (voxel (i, j, k) -> RAS mm) of the three storages
AFFINES = {
    "axial": np.array([[-0.5, 0, 0, 60.0], [0, 0.5, 0, -70.0], [0, 0, 3.0, -40.0], [0, 0, 0, 1]]),
    # patient01-like: 0.5 mm in plane, 4 mm slices, tilted a few degrees about two axes
    "oblique": np.array([[-0.513, -0.023, 0.136, 100.0], [0.023, -0.513, 0.093, 110.0],
                         [0.017, 0.013, 3.997, -60.0], [0, 0, 0, 1]]),
    # FreeSurfer / arc M2265 storage: i -> L, j -> I, k -> A
    "coronal": np.array([[-1.0, 0, 0, 20.0], [0, 0, 1.0, -30.0], [0, -1.0, 0, 25.0], [0, 0, 0, 1]]),
}


def _scan(tmp_path, storage: str):
    """A small head-like phantom written with ``AFFINES[storage]``; returns the path."""
    rng = np.random.default_rng(0)
    shape_ijk = (48, 40, 12) if storage != "coronal" else (40, 24, 36)
    data = rng.normal(300, 10, shape_ijk).astype(np.float32)
    return write_nifti(tmp_path / f"{storage}_T2w.nii.gz", data, AFFINES[storage])


def _annotating(make_napari_viewer, tmp_path, storage: str):
    """A viewer with the Annotate PVS widget, a new project, the ``storage`` phantom added and
    loaded for rater alice; returns ``(viewer, widget)``."""
    return open_annotate(make_napari_viewer, tmp_path / "proj", _scan(tmp_path, storage))


def _slice_labels(layer, axis: int) -> np.ndarray:
    """Labels whose value is the data index along ``axis`` + 1 (what napari draws tells the slice)."""
    lab = np.zeros(layer.data.shape, np.int32)
    idx = [slice(None)] * 3
    for k in range(layer.data.shape[axis]):
        idx[axis] = k
        lab[tuple(idx)] = k + 1
    return lab


def _drawn(labels) -> list[int]:
    raw = np.unique(np.asarray(labels._slice.image.raw))
    return (raw[raw > 0] - 1).tolist()


def _check_slider(viewer, labels, axis: int, widgets: dict) -> None:
    """Each step of the slider draws that data slice and every widget reports it."""
    dim = viewer.dims.not_displayed[0]
    n = labels.data.shape[axis]
    assert viewer.dims.nsteps[dim] == n
    for k in sorted({0, 1, n // 2, n - 2, n - 1}):
        viewer.dims.set_current_step(dim, k)
        assert _drawn(labels) == [k], f"slider {k}"
        for name, current in widgets.items():
            assert current() == k, f"{name}: slider {k}, widget {current()}"


@pytest.mark.parametrize("storage", ["axial", "oblique", "coronal"])
def test_slider_number_is_the_slice_number(make_napari_viewer, tmp_path, storage):

    viewer, w = _annotating(make_napari_viewer, tmp_path, storage)
    axis = w.session.image.axial_axis
    assert axis == (1 if storage == "coronal" else 0) == axial_axis_of(w.labels_layer)
    assert followed_layer(viewer) is w.labels_layer
    # the slider moves through axial slices: for the coronal storage napari slices dim 1
    assert viewer.dims.not_displayed == (axis,)
    # a probe layer on the same grid tells which data slice napari draws
    probe = viewer.add_labels(_slice_labels(w.labels_layer, axis), name="probe",
                              **source_geometry(w.labels_layer))
    _, count = viewer.window.add_plugin_dock_widget("napari-pvs", "Count PVS (BG/CSO)")
    count.labels.value = w.labels_layer
    widgets = {"Annotate": w.current_slice, "Count": count.current_slice}
    _check_slider(viewer, probe, axis, widgets)
    # the progress line names the slider's number
    viewer.dims.set_current_step(axis, 3)
    w._update_progress()
    assert "slice 3 is todo" in w.progress_label.text()
    # widgets that take a slice put the slider on that number
    w.state.go_to_slice(5)
    assert viewer.dims.current_step[axis] == 5 and _drawn(probe) == [5]

    viewer.add_points(np.zeros((0, 3)), name="clicks")     # napari would switch to 1 mm steps
    assert [str(u) for u in viewer.layers["clicks"].units] == ["millimeter"] * 3
    _check_slider(viewer, probe, axis, widgets)
    viewer.layers.remove("clicks")
    _check_slider(viewer, probe, axis, widgets)


@pytest.mark.parametrize("rel", ["open_ms/longitudinal/patient01/study1_T2W.nii.gz",   # oblique, 4 mm
                                 "arc/M2265_T2w.nii.gz"])                              # coronal LIA
def test_slider_on_real_scans(make_napari_viewer, rel):
    viewer = make_napari_viewer()
    _, count = viewer.window.add_plugin_dock_widget("napari-pvs", "Count PVS (BG/CSO)")
    (t2,) = viewer.open(str(real_file(rel)), plugin="napari-pvs")
    axis = axial_axis_of(t2)
    probe = viewer.add_labels(_slice_labels(t2, axis), name="probe", metadata=dict(t2.metadata),
                              **source_geometry(t2))
    count.labels.value = probe
    assert followed_layer(viewer) is t2
    _check_slider(viewer, probe, axis, {"Count": count.current_slice})
    viewer.add_points(np.zeros((0, 3)))
    _check_slider(viewer, probe, axis, {"Count": count.current_slice})


def test_units_scale_bar_and_axis_labels(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.window.add_plugin_dock_widget("napari-pvs", "Segment PVS")
    (t2,) = viewer.open(str(_scan(tmp_path, "oblique")), plugin="napari-pvs")
    assert viewer.scale_bar.visible
    assert [str(u) for u in t2.units] == ["millimeter"] * 3
    assert tuple(viewer.dims.axis_labels) == ("I→S", "A→P", "R→L")
    (cor,) = viewer.open(str(_scan(tmp_path, "coronal")), plugin="napari-pvs")
    assert tuple(cor.axis_labels) == ("A→P", "S→I", "R→L")
    # the status bar: the cursor's world position named by anatomy, in mm, then the value
    viewer.layers.selection.active = t2
    viewer.cursor.position = (-10.0, 3.5, 0.25)
    viewer.status = t2.get_status(viewer.cursor.position, world=True)
    assert viewer.status["coordinates"].startswith("S -10.00, P 3.50, L 0.25 mm")
    viewer.status = "Ready"                                  # plain messages are left alone
    assert viewer.status == "Ready"


def test_annotate_keys_are_free_and_bound_on_the_viewer(make_napari_viewer, tmp_path):
    from napari.utils.shortcuts import default_shortcuts

    from napari_pvs.widgets.annotation_state import KEYS

    napari_keys = {str(k).replace("+", "-").lower() for keys in default_shortcuts.values() for k in keys}
    for what, key in KEYS.items():
        if what != "undo":                            # Ctrl+Z is napari's Labels undo, extended here
            assert key.lower() not in napari_keys, key
    viewer, w = _annotating(make_napari_viewer, tmp_path, "axial")
    viewer.layers.selection.active = w.image_layer           # the rater picked the T2 (contrast)
    bound = {str(k) for k in viewer.keymap}
    assert all(any(key.split("-")[-1] in b for b in bound) for key in KEYS.values())
    from qtpy.QtGui import QHideEvent, QShowEvent

    w.hideEvent(QHideEvent())                                 # the dock closed or tabbed away
    assert not w._keys_bound and not any("J" in str(k) for k in viewer.keymap)
    w.showEvent(QShowEvent())
    assert w._keys_bound


def test_undo_accept_reject_and_version_load(make_napari_viewer, tmp_path):
    from types import SimpleNamespace


    viewer, w = _annotating(make_napari_viewer, tmp_path, "axial")
    st, s = w.state, w.session
    shape = s.mask.shape
    labels = np.zeros(shape, np.int32)
    labels[4, 10:12, 10:13] = 1
    labels[6, 20:22, 20:21] = 2
    table = [{"id": i, "centre": c, "slice": c[0], "n_voxels": int((labels == i).sum()), "width_mm": 1.0,
              "score": 0.9} for i, c in ((1, (4, 10, 11)), (2, (6, 20, 20)))]
    st.show_proposals(SimpleNamespace(labels=labels, table=table, method="test", n=2))
    assert s.current["id"] == 1
    st.decide("accept")
    assert s.mask[4, 10:12, 10:13].all() and s.current["id"] == 2
    w.labels_layer.paint((6, 30, 30), 1)                     # a paint stroke after the accept
    assert s.mask[6, 30, 30] == 1
    assert st.undo() == "paint" and s.mask[6, 30, 30] == 0
    assert st.undo() == "accept candidate 1"
    assert not s.mask.any() and s.current["id"] == 1
    assert st.candidates_layer.selected_label == 1 and w.current_slice() == 4     # shown again
    assert st.labels_layer.data is s.mask and not st.labels_layer.data.any()
    st.decide("reject")
    assert s.current["id"] == 2
    assert s.decisions[-1]["decision"] == "reject"
    assert st.undo() == "reject candidate 1" and s.current["id"] == 1
    assert not any(d["candidate"] == 1 and d["decision"] == "reject" for d in s.decisions)
    # load version, undone: the unsaved mask comes back
    st.decide("accept")
    v = st.save()
    assert v is not None and v.kind == "manual" and v.n_voxels == 6
    s2 = st.session
    s2.mask[2, 5, 5] = 1
    empty = w.project.save_annotation(s2.image, "alice", np.zeros(shape, np.uint8), note="empty")
    st.load_version(empty.id)
    assert not st.session.mask.any()
    assert st.undo() == f"load version {empty.id}"
    assert st.session is s2 and st.labels_layer.data[2, 5, 5] == 1 and st.labels_layer.data[4, 10, 11] == 1


def test_registration_qc_images():
    from napari_pvs.widgets.registration import checkerboard, edge_map

    fixed = np.zeros((2, 40, 40), np.float32)
    warped = np.ones((2, 40, 40), np.float32)
    fixed[0, 0, 0] = 1.0                                        # 99.5th percentile scaling
    board = checkerboard(fixed + 0.0, warped, (3.0, 1.0, 1.0), square_mm=10.0)
    assert board.shape == fixed.shape and board.dtype == np.float32
    assert board[1, 5, 5] == 0.0 and board[1, 5, 15] == 1.0 and board[1, 15, 15] == 0.0   # 10 mm squares
    step = np.zeros((1, 20, 20), np.float32)
    step[:, :, 10:] = 1.0
    edges = edge_map(step)
    assert edges[0, 10, 9:11].min() > 0.9 and edges[0, 10, :5].max() == 0.0


def test_training_plot_and_counts_chart(qtbot):
    from napari_pvs.engine.training.loop import TrainEvent
    from napari_pvs.widgets.plots import CountsChart, TrainingPlot

    plot = TrainingPlot()
    qtbot.addWidget(plot)
    plot.add(TrainEvent(kind="start"))
    for step in range(1, 6):
        plot.add(TrainEvent(kind="step", epoch=1, step=step, total_steps=10, loss=1.0 / step))
    plot.add(TrainEvent(kind="epoch", epoch=1, step=5, total_steps=10, loss=0.5, val_metric=0.42))
    assert plot.steps == [1, 2, 3, 4, 5] and plot.epochs == [(5, 0.42)]
    qtbot.waitUntil(lambda: plot.figure is not None and len(plot.figure.axes) == 2 and bool(plot.figure.axes[1].lines),
                    timeout=10_000)
    ax2 = plot.figure.axes[1]
    assert ax2.lines[0].get_ydata().tolist() == [0.42]             # drawn at once after an epoch
    chart = CountsChart()
    qtbot.addWidget(chart)
    chart.set_counts([("BG 15", 3, 5, 2), ("CSO 25", 1, 0, 1)])
    # built and rasterised in the plot thread, then shown: the image is the figure, in the theme's background
    qtbot.waitUntil(lambda: chart.figure is not None and bool(chart.figure.axes[0].patches), timeout=10_000)
    bars = chart.figure.axes[0].patches
    assert [round(b.get_height()) for b in bars] == [3, 1, 5, 0]
    assert not chart.image.pixmap().isNull()
    shown = chart.image.pixmap().toImage()
    assert shown.height() >= 170
    corner = shown.pixelColor(2, 2)                             # napari's dark canvas colour, #262930
    assert max(abs(corner.red() - 0x26), abs(corner.green() - 0x29), abs(corner.blue() - 0x30)) <= 8
