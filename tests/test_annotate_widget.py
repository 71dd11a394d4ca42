"""The Annotate PVS dock widget (make_napari_viewer under Xvfb): project, annotate, autosave,
candidate accept/reject, version switch, agreement and consensus."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from conftest import make_phantom, open_annotate  # noqa: E402
from napari_pvs.engine.io import save_volume  # noqa: E402


@pytest.fixture
def phantom_t2(tmp_path):
    vol, lab = make_phantom(noise=8.0)
    data = vol.data.copy()
    for y, x in ((60, 50), (60, 100), (120, 60)):
        data[16:26, y:y + 2, x:x + 1] = 800.0          # three vertical "PVS" in white matter
    return save_volume(tmp_path / "t2.nii.gz", data, vol)


@pytest.fixture
def widget(make_napari_viewer, tmp_path, phantom_t2):
    _, w = open_annotate(make_napari_viewer, tmp_path / "proj", phantom_t2)
    yield w
    w.close_project()


def test_annotate_mark_save_and_autosave(widget, tmp_path):
    w = widget
    s = w.session
    assert w.labels_layer.data.shape == (44, 176, 146) and w.image_layer is not None
    assert w.current_slice() == 0                       # "next unfinished" went to slice 0
    w.brush_mm.value = 3.0
    assert w.labels_layer.brush_size == 3               # 3 mm at 1 mm pixels
    w.go_to((20, 60, 50))
    assert w.current_slice() == 20
    w.labels_layer.data[20, 60:62, 50] = 1              # paint (the session edits the layer's array)
    w.mark("done")
    assert s.status_of(20) == "done" and s.changed
    assert "done 1/44: 20" in w.progress_label.text()
    w.next_unfinished()
    assert w.current_slice() == 21
    # leaving a changed slice autosaved the work; the explicit save makes a manual version
    (first,) = w.project.versions(s.image, kind="autosave")
    assert first.slice_status == {20: "done"} and first.n_voxels == 2
    w.save()
    v = w.project.latest_version(s.image, "alice")
    assert v.kind == "manual" and v.slice_status == {20: "done"} and v.n_voxels == 2
    # autosave: only when changed, after the interval
    w.autosave_s.value = 5
    w.labels_layer.data[21, 120:122, 60] = 1
    s._last_save_t -= 10
    w.autosave()
    a = w.project.versions(s.image, kind="autosave")
    assert len(a) == 2 and a[-1].n_voxels == 4
    s._last_save_t -= 10
    w.autosave()
    assert len(w.project.versions(s.image, kind="autosave")) == 2     # nothing changed
    assert w.versions.versions_list.count() == 3


def test_candidates_accept_reject_and_version_switch(widget, qtbot):
    w = widget
    w.go_to((20, 88, 73))
    w.candidates.scope.value = "slice on screen"
    w.candidates.suggest.start()
    qtbot.waitUntil(lambda: w.candidates.suggest.worker is None, timeout=60_000)
    props = w.session.proposals
    assert props is not None and props.n >= 3 and {p["slice"] for p in props.table} == {20}
    assert "PVS candidates" in w.viewer.layers
    first = w.session.current
    assert w.current_slice() == 20 and first is not None
    w.state.decide("accept")
    second = w.session.current
    w.state.decide("reject")
    mask = w.labels_layer.data
    assert (mask[props.labels == first["id"]] == 1).all()
    assert (mask[props.labels == second["id"]] == 0).all()
    w.save()
    v = w.project.latest_version(w.session.image, "alice")
    assert [d["decision"] for d in w.project.decisions(v.id)] == ["accept", "reject"]
    # switch to an empty version made earlier and back; show the changes
    empty = w.project.save_annotation(w.session.image, "alice", np.zeros(mask.shape, np.uint8), note="empty")
    w.versions.refresh()
    w.versions.versions_list.setCurrentRow(0)                    # newest first: the empty one
    w.versions.load_selected_version()
    assert w.labels_layer.data.sum() == 0 and w.session.base.id == empty.id
    w.versions.versions_list.setCurrentRow(1)                    # the one with the accepted candidate
    w.versions.show_changes()
    diff = w.viewer.layers[f"changes v{v.id} -> now"].data
    assert (diff == 2).sum() == first["n_voxels"] and (diff == 1).sum() == 0


def test_agreement_and_consensus_in_the_widget(widget):
    w = widget
    img = w.session.image
    bob = np.zeros(img.shape, np.uint8)
    bob[20, 60:62, 50] = 1
    bob[20, 120:122, 60] = 1
    w.project.save_annotation(img, "bob", bob, slice_status={20: "done"})
    w.labels_layer.data[20, 60:62, 50] = 1
    w.labels_layer.data[20, 60:62, 100] = 1
    w.go_to((20, 60, 50))
    w.mark("done")
    w.agreement_panel.refresh_raters()
    w.agreement_panel.other_rater.value = "bob"
    w.go_to((20, 88, 73))
    w.agreement_panel.compare()
    ag = w.agreement_panel.agreement
    assert (ag.n_a, ag.n_b, len(ag.matched), len(ag.disagreements)) == (2, 2, 1, 2)
    assert "detection F1 0.50" in w.agreement_panel.label.text() and "slice 20: 2 vs 2 PVS" in w.agreement_panel.label.text()
    w.agreement_panel.next_disagreement()
    d0 = ag.disagreements[w.agreement_panel.cursor]
    assert w.current_slice() == 20
    w.agreement_panel.decide_disagreement(True)                          # accept the first, then reject the second
    w.agreement_panel.decide_disagreement(False)
    w.agreement_panel.save_consensus()
    cons = w.project.latest_version(img, "consensus")
    assert cons.kind == "consensus" and cons.n_components == 2 and cons.slice_status == {20: "done"}
    m = w.project.load_version(cons.id)
    lab = ag.labels_a if d0.rater == "A" else ag.labels_b
    assert m[lab == d0.label].all() and m[20, 60, 50] == 1


def test_train_widget_trains_on_a_project_and_records_the_run(make_napari_viewer, qtbot, tmp_path):
    from conftest import SMALL_FEATURES, blob_volume
    from napari_pvs.engine.project import Project
    from napari_pvs.widgets._state import release_project
    from napari_pvs.widgets.train import TrainWidget

    image, mask = blob_volume(3)
    t2 = save_volume(tmp_path / "blob.nii.gz", image.data, image)
    with Project.create(tmp_path / "proj") as p:
        p.add_image(t2, subject="b1")
        p.save_annotation("b1", "alice", mask, slice_status={2: "done"})
    w = TrainWidget(make_napari_viewer())
    w.project.value = tmp_path / "proj"
    w.model.value = "unet"
    w.features.value = ", ".join(str(f) for f in SMALL_FEATURES)
    w.epochs.value, w.steps_per_epoch.value, w.patch_size.value = 1, 3, 64
    w.checkpoint_path = tmp_path / "proj_model.pt"
    from napari_pvs.engine.usecases import plan_training

    plan = plan_training(w.request())
    assert len(plan.images) == 1 and plan.ignore_masks[0][2].sum() == 0 and plan.ignore_masks[0][0].all()
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert w.result is not None and "recorded as run 1" in w.status.text()
    proj = w.plan.project
    runs = proj.training_runs()
    assert len(runs) == 1 and runs[0]["versions"] == [1] and runs[0]["checkpoint"].endswith("proj_model.pt")
    release_project(proj)
