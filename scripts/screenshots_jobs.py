"""Screenshots of a long job in napari's activity dock, and of an unexpected error's
notification, in a real shown napari window.

Run under a virtual X server::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots_jobs.py --out docs/figures

1. opens the real open_ms patient01 visit-1 T2 and docks *Segment PVS* with the shipped
   default model; starts *Segment*; once the job has progressed, opens napari's activity
   dock (the job runner's ``napari.utils.progress``) and grabs the whole screen (the
   activity dock is a window of its own): ``jobs_activity_dock.png``;
2. makes *Train PVS model* fail with an unexpected error (a patched task that raises) and
   grabs the screen with napari's error notification: ``jobs_error_notification.png``;
   ``jobs_summary.json`` records what was on screen (the dock's progress rows, the
   notifications and whether each carries a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pump(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def grab_screen(path: Path) -> None:
    from qtpy.QtWidgets import QApplication

    QApplication.instance().primaryScreen().grabWindow(0).save(str(path))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("screenshots"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import napari
    import numpy as np
    from napari.utils.notifications import notification_manager

    from napari_pvs.engine.data import fetch

    seen = []
    notification_manager.notification_ready.connect(seen.append)   # the Notification itself
    viewer = napari.Viewer(title="napari-pvs: jobs in the activity dock")
    viewer.window._qt_window.resize(1500, 950)
    viewer.window._qt_window.move(0, 0)
    viewer.window.show()
    viewer.open(str(fetch("open_ms/longitudinal/patient01/study1_T2W.nii.gz")), plugin="napari-pvs")
    _, seg = viewer.window.add_plugin_dock_widget("napari-pvs", "Segment PVS")
    seg.reset_choices()
    pump(1.0)
    seg.start()
    t0 = time.perf_counter()
    while seg.worker is not None and (seg.last_event is None or (seg.last_event.fraction or 0) < 0.3):
        pump(0.2)
        if time.perf_counter() - t0 > 600:
            break
    viewer.window._status_bar._toggle_activity_dock(True)   # napari's own dock (script only)
    pump(1.5)
    dialog = viewer.window._qt_window._activity_dialog
    from qtpy.QtWidgets import QLabel

    labels = [lb.text() for lb in dialog.findChildren(QLabel) if lb.text()]
    grab_screen(args.out / "jobs_activity_dock.png")
    summary = {"activity_dock_labels": labels, "segment_status_at_grab": seg.status.text()}
    while seg.worker is not None:
        pump(0.5)
    summary["segment_status_at_end"] = seg.status.text()

    # an unexpected error in a widget job: one notification, with its traceback
    from napari_pvs.engine.training import SegmentationTask

    def broken(self, device):
        raise RuntimeError("simulated disk failure while preparing the training data")

    SegmentationTask.setup = broken
    img = np.asarray(viewer.layers[0].data)
    mask = np.zeros(img.shape, np.uint8)
    mask[16, 200:203, 200:203] = 1
    lab = viewer.add_labels(mask, name="pvs", scale=viewer.layers[0].scale, affine=viewer.layers[0].affine,
                            metadata=dict(viewer.layers[0].metadata))
    _, tw = viewer.window.add_plugin_dock_widget("napari-pvs", "Train PVS model")
    tw.reset_choices()
    tw.pairs[0].image.value = viewer.layers[0]
    tw.pairs[0].labels.value = lab
    tw.model.value = "unet"
    tw.epochs.value, tw.steps_per_epoch.value = 1, 1
    tw.checkpoint_path = args.out / "never_written.pt"
    n0 = len(seen)
    tw.start()
    while tw.worker is not None:
        pump(0.2)
    pump(1.5)
    grab_screen(args.out / "jobs_error_notification.png")
    new = seen[n0:]
    summary["notifications_after_the_error"] = [
        {"type": type(n).__name__, "message": str(n.message),
         "traceback_frames": len(__import__("traceback").extract_tb(n.exception.__traceback__))
         if getattr(n, "exception", None) is not None else 0} for n in new]
    summary["train_status"] = tw.status.text()
    (args.out / "jobs_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
