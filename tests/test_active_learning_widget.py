"""The Active learning dock widget (make_napari_viewer under Xvfb): score into a queue, jump to
a queued slice in the Annotate widget with the model's candidates, the uncertainty layer,
retrain in a worker (recorded, queue re-scored) and cancel (nothing recorded)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from conftest import make_phantom  # noqa: E402
from napari_pvs.engine.io import save_volume  # noqa: E402
from napari_pvs.engine.project import Project  # noqa: E402


@pytest.fixture
def al_project(tmp_path):
    """A project with the phantom T2 (one slice annotated) and a tiny model with dropout
    recorded as its training run."""
    from test_active_learning import _ckpt

    vol, _ = make_phantom(noise=8.0)
    data = vol.data.copy()
    truth = np.zeros(vol.shape, np.uint8)
    for y, x in ((60, 50), (60, 100), (120, 60)):
        data[10:34, y:y + 2, x:x + 2] = 800.0
        truth[10:34, y:y + 2, x:x + 2] = 1
    t2 = save_volume(tmp_path / "t2.nii.gz", data, vol)
    ckpt = _ckpt(tmp_path / "tiny.pt", dropout=0.3, spacing_mm=1.0)
    with Project.create(tmp_path / "proj") as p:
        p.add_image(t2, subject="s1")
        p.save_annotation("s1", "alice", truth, slice_status={20: "done"})
        p.record_training_run(ckpt, config={}, metrics={}, versions=[1])
    return tmp_path / "proj"


def _wait(qtbot, job, timeout=120_000):
    qtbot.waitUntil(lambda: not job.is_running, timeout=timeout)


def test_queue_jump_uncertainty_retrain_and_cancel(make_napari_viewer, qtbot, al_project):
    from napari_pvs.widgets._state import release_project
    from napari_pvs.widgets.active_learning import ActiveLearningWidget
    from napari_pvs.widgets.annotate import AnnotateWidget

    viewer = make_napari_viewer()
    w = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.folder.value = al_project
    w.n.value = 4
    w.samples.value = 2
    w.score.start()
    _wait(qtbot, w.score)
    assert w.table.rowCount() == 4 and len(w.queue) == 4
    assert all(c.slice != 20 for c in w.queue)                            # never the annotated slice
    assert [w.table.item(r, 1).text() for r in range(4)] == [str(c.slice) for c in w.queue]
    assert w.scores.volumes[("s1", 1)].sampler == "mc_dropout"

    # selecting a row opens the subject in the Annotate widget at that slice
    ann = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(ann)
    ann.rater.value = "alice"
    w.show_map.value = True
    w.table.selectRow(1)
    assert w.state is ann.state and ann.session is not None and ann.session.rater == "alice"
    assert ann.session.image.subject == "s1" and ann.current_slice() == w.queue[1].slice
    layer = viewer.layers["uncertainty (BALD)"]
    assert layer.data.shape == (44, 176, 146) and float(layer.data.max()) > 0

    # the rater marks two slices done; retraining records a round and re-scores the queue
    ann.mark("done")
    done = {20, 5, w.queue[1].slice}
    ann.go_to((5, 88, 73))
    ann.mark("done")
    assert w._done_now() == 3
    w.minutes.value = 2.0
    w.steps.value = 4
    w.retrain.start()
    _wait(qtbot, w.retrain)
    rounds = w.project().al_rounds()
    assert len(rounds) == 1 and rounds[0]["n_slices"] == 3 and rounds[0]["val_dsc"] is not None
    assert len(rounds[0]["suggestions"]) == 4
    assert w.history.points == [(3, rounds[0]["val_dsc"])]
    # the history plot: the round's point, drawn on napari's theme background
    from matplotlib.colors import to_hex
    from napari.utils.theme import get_theme

    qtbot.waitUntil(lambda: w.history.figure is not None and len(w.history.figure.axes[0].lines) > 0,
                    timeout=20_000)
    line = w.history.figure.axes[0].lines[0]
    assert list(line.get_xdata()) == [3] and list(line.get_ydata()) == [rounds[0]["val_dsc"]]
    assert to_hex(w.history.figure.get_facecolor()) == to_hex(get_theme(viewer.theme).canvas.as_hex())
    assert w.project().current_checkpoint().name == "al_round_001.pt"
    _wait(qtbot, w.score)                                                  # re-scored with the new model
    assert w.scores.checkpoint.name == "al_round_001.pt"
    assert w.queue and not {c.slice for c in w.queue} & done              # the annotated slices left the queue

    # retrain automatically after N newly done slices; cancel: a long fine-tuning stopped
    # early records nothing
    w.steps.value = 100000
    w.minutes.value = 60.0
    w.auto.value = True
    w.auto_n.value = 1
    assert not w.check_auto_retrain() and not w.retrain.is_running         # nothing new since the round
    ann.go_to((30, 88, 73))
    ann.mark("done")                       # the mark signals the widget, which starts a round (no polling)
    assert w.retrain.is_running
    qtbot.waitUntil(lambda: w.retrain.n_events >= 2, timeout=60_000)
    w.retrain.cancel()
    _wait(qtbot, w.retrain)
    assert len(w.project().al_rounds()) == 1 and "cancelled" in w.retrain.status.text()
    w.auto.value = False
    ann.close_project()
    release_project(w.project())
