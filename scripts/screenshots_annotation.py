"""Screenshots of the *Annotate PVS* widget on a real T2, in a shown napari window.

Run under a virtual X server::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots_annotation.py --out screenshots/

What it does, as a rater would (the project goes to a temporary folder unless ``--project``):

1. creates a project, opens the real open_ms patient01 visit-1 T2 and adds it, loads it as
   rater ``alice``;
2. on the BG slice (``--slice``, default 16) asks for vesselness candidates, accepts the
   first ``--accept`` of them and rejects the next one, marks the slice done and saves:
   ``annotate_candidates.png`` (window with the candidates layer, before deciding) and
   ``annotate_progress.png`` (after);
3. adds a second rater ``bob`` whose mask on that slice is the shipped default model's
   detections (through the Python API), compares the two raters and jumps to the first
   disagreement: ``annotate_agreement.png``; the dock itself: ``annotate_widget.png``.
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

log = logging.getLogger("screenshots_annotation")
T2 = "open_ms/longitudinal/patient01/study1_T2W.nii.gz"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("screenshots"))
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--project", type=Path, help="project folder (default: a temporary one)")
    ap.add_argument("--slice", type=int, default=16, help="axial slice to annotate")
    ap.add_argument("--accept", type=int, default=3, help="candidates to accept")
    ap.add_argument("--size", type=int, nargs=2, default=(1580, 980))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import napari

    from napari_pvs.widgets.annotate import AnnotateWidget

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    project_dir = args.project or Path(tempfile.mkdtemp(prefix="pvs_project_")) / "project"
    viewer = napari.Viewer(title="napari-pvs: Annotate PVS", show=True)
    viewer.window.resize(*args.size)
    w = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Annotate PVS", area="right")
    pump(1.0)
    w.folder.value = project_dir
    w.rater.value = "alice"
    w.create_project()
    viewer.open(str(args.data / T2), plugin="napari-pvs")
    w.add_image()
    w.load_subject()
    lo, hi = np.percentile(w.image_layer.data, [0.5, 99.7])
    w.image_layer.contrast_limits = (float(lo), float(hi))
    s = w.session
    centre = (np.asarray(s.image.shape, float) - 1) / 2
    centre[s.image.axial_axis] = args.slice
    w.go_to(centre, field_mm=120)
    w.suggest.scope.value = "slice on screen"
    w.suggest.start()
    while w.suggest.worker is not None:
        pump(0.1)
    pump(0.5)
    props = s.proposals
    log.info("%d candidates on slice %d", props.n, args.slice)
    w.go_to(centre, field_mm=120)
    close_notifications(viewer)
    save_png(out / "annotate_candidates.png", viewer.screenshot(canvas_only=False))
    for _ in range(min(args.accept, props.n)):
        w.decide("accept")
    if s.current is not None:
        w.decide("reject")
    w.go_to(centre, field_mm=120)
    w.mark("done")
    w.save()
    viewer.layers["PVS candidates"].visible = False
    pump(0.5)
    close_notifications(viewer)
    save_png(out / "annotate_progress.png", viewer.screenshot(canvas_only=False))

    # a second rater: the shipped default model's detections on that slice
    from napari_pvs.engine.models.checkpoint import load_model
    from napari_pvs.engine.data import default_checkpoint
    from napari_pvs.engine.inference import predict_volume

    image = w.project.load_image(s.image.id)
    pred = predict_volume(load_model(default_checkpoint()), image)
    bob = np.zeros(s.image.shape, np.uint8)
    idx = [slice(None)] * 3
    idx[s.image.axial_axis] = args.slice
    bob[tuple(idx)] = pred.mask[tuple(idx)]
    w.project.save_annotation(s.image, "bob", bob, slice_status={args.slice: "done"},
                              note="the default model's detections")
    w._refresh_subjects()
    w.other_rater.value = "bob"
    w.go_to(centre)
    w.compare()
    if w.agreement.disagreements:
        w.next_disagreement()
    w._camera().zoom = w._camera().zoom * 70 / 120          # a wider view than the jump's
    pump(0.5)
    close_notifications(viewer)
    save_png(out / "annotate_agreement.png", viewer.screenshot(canvas_only=False))
    grab_widget(w, out / "annotate_widget.png")
    log.info("agreement: %s", w.agreement.summary())
    w.close_project()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
