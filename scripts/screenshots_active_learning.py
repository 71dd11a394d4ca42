"""Screenshots of the *Active learning* widget beside a real T2, in a shown napari window.

Run under a virtual X server::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots_active_learning.py --out screenshots/

What it does, as a rater would (the project goes to a temporary folder):

1. creates a project with the real open_ms patient01 visit-1 T2 and patient04; rater
   ``alice`` has annotated one slice of patient01 (the shipped default model's detections
   on slice ``--slice``, imported through the Python API);
2. the Active learning widget fine-tunes the shipped model on it (``--steps`` steps) so the
   history shows a round, then scores the slices not annotated yet (BALD over test-time
   augmentation passes) into the queue;
3. selects the first queue entry: the Annotate PVS widget opens the subject at that slice
   with the model's candidates and the BALD map: ``active_learning.png`` (window) and
   ``active_learning_widget.png`` (the dock).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import close_notifications, grab_widget, pump, save_png  # noqa: E402

log = logging.getLogger("screenshots_active_learning")
SCANS = {"p01v1": "open_ms/longitudinal/patient01/study1_T2W.nii.gz",
         "p04": "open_ms/longitudinal/patient04/study1_T2W.nii.gz"}


def wait(job) -> None:
    while job.is_running:
        pump(0.2)
    pump(0.5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("screenshots"))
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--slice", type=int, default=16, help="the slice alice annotated")
    ap.add_argument("--steps", type=int, default=20, help="fine-tuning steps of the round shown")
    ap.add_argument("--samples", type=int, default=3, help="test-time augmentation passes")
    ap.add_argument("--size", type=int, nargs=2, default=(1580, 980))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import napari

    from napari_pvs.engine.models.checkpoint import load_model
    from napari_pvs.engine.data import default_checkpoint
    from napari_pvs.engine.inference import predict_volume
    from napari_pvs.engine.project import Project
    from napari_pvs.widgets.active_learning import ActiveLearningWidget
    from napari_pvs.widgets.annotate import AnnotateWidget

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="pvs_al_")) / "project"
    with Project.create(root) as p:
        for name, rel in SCANS.items():
            p.add_image(args.data / rel, subject=name)
        rec = p.image("p01v1")
        pred = predict_volume(load_model(default_checkpoint()), p.load_image(rec.id))
        mask = np.zeros(rec.shape, np.uint8)
        idx = [slice(None)] * 3
        idx[rec.axial_axis] = args.slice
        mask[tuple(idx)] = pred.mask[tuple(idx)]
        p.save_annotation(rec, "alice", mask, slice_status={args.slice: "done"}, note="model detections, checked")

    viewer = napari.Viewer(title="napari-pvs: Active learning", show=True)
    viewer.window.resize(*args.size)
    ann = AnnotateWidget(viewer)
    ann.rater.value = "alice"
    viewer.window.add_dock_widget(ann, name="Annotate PVS", area="right")
    w = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(w, name="Active learning", area="right", tabify=True)
    pump(1.0)
    w.folder.value = root
    w.n.value = 8
    w.samples.value = args.samples
    w.steps.value = args.steps
    w.retrain.start()
    wait(w.retrain)
    log.info("round: %s", w.retrain.status.text())
    wait(w.score)                                   # the queue re-scores after the round
    log.info("queue: %s", [(c.subject, c.slice, round(c.score, 5)) for c in w.queue])
    w.show_map.value = True
    w.table.selectRow(0)
    pump(1.0)
    layer = ann.image_layer
    lo, hi = np.percentile(layer.data, [0.5, 99.7])
    layer.contrast_limits = (float(lo), float(hi))
    c = w.queue[0]
    centre = (np.asarray(ann.session.image.shape, float) - 1) / 2
    centre[ann.session.image.axial_axis] = c.slice
    ann.go_to(centre, field_mm=150)
    pump(0.5)
    close_notifications(viewer)
    save_png(out / "active_learning.png", viewer.screenshot(canvas_only=False))
    grab_widget(w, out / "active_learning_widget.png")
    ann.close_project()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
