"""Screenshots of the Compare models widget on a real T2 with simulated PVS, in 2D and 3D.

Run under a virtual X server::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots_compare.py \
        --checkpoint A.pt --checkpoint B.pt --out screenshots/

What it does: opens open_ms patient01 visit 2's T2 (``--scan``), inserts synthetic PVS
(seed 100; the simulated truth is the reference), compares the shipped default model, the
given checkpoints and the Frangi baseline, and saves the grid on the CSO rating slice
(``compare_2d.png``, zoomed to the right hemisphere's white matter), the same in 3D
(``compare_3d.png``) and the dock with its tables (``compare_widget.png``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import close_notifications, grab_widget, pump, save_png, wait_worker  # noqa: E402
from screenshots_registration import show_slice  # noqa: E402

log = logging.getLogger("screenshots_compare")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("screenshots"))
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--scan", default="open_ms/longitudinal/patient01/study2_T2W.nii.gz")
    ap.add_argument("--slice", type=int, default=32, help="axial slice to show (default: patient01 v2's CSO)")
    ap.add_argument("--checkpoint", action="append", default=[], type=Path)
    ap.add_argument("--zoom", type=float, default=1.4)
    ap.add_argument("--size", type=int, nargs=2, default=(1580, 980))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import napari

    from napari_pvs.engine.data import default_checkpoint
    from napari_pvs.engine.io import load_volume, save_volume
    from napari_pvs.engine.synth import simulate_pvs, wide_simulation
    from napari_pvs.plugin.viewer import source_geometry
    from napari_pvs.widgets.compare import CompareWidget

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    vol = load_volume(args.data / args.scan)
    sim = simulate_pvs(vol, seed=100, config=wide_simulation())
    tmp = Path(tempfile.mkdtemp(prefix="napari-pvs-compare-"))
    save_volume(tmp / "t2_simulated_pvs.nii.gz", sim.image.data, sim.image)
    save_volume(tmp / "simulated_truth.nii.gz", sim.mask, sim.image, dtype="uint8")
    viewer = napari.Viewer(title="napari-pvs: compare models", show=True)
    viewer.window.resize(*args.size)
    (t2,) = viewer.open(tmp / "t2_simulated_pvs.nii.gz", plugin="napari-pvs")
    (truth_img,) = viewer.open(tmp / "simulated_truth.nii.gz", plugin="napari-pvs")
    viewer.layers.remove(truth_img)  # opened as an image: re-add it as labels on the same grid
    truth = viewer.add_labels(np.asarray(truth_img.data).astype(np.uint8), name="simulated truth",
                              metadata=truth_img.metadata, **source_geometry(truth_img))  # mm, like the scan
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Compare models", area="right")
    widget.reset_choices()
    widget.image.value, widget.reference.value = t2, truth
    widget.checkpoints.value = [default_checkpoint(), *args.checkpoint]
    widget.frangi.value = True
    widget.start()
    wait_worker(widget, 1800)
    log.info("compared: %s", widget.status.text())
    show_slice(viewer, t2, args.slice, sim.image.axial_axis)
    viewer.camera.zoom = viewer.camera.zoom * args.zoom
    widget.select_model(0, jump=False)
    close_notifications(viewer)
    pump(1.0)
    save_png(out / "compare_2d.png", viewer.screenshot(canvas_only=False))
    grab_widget(widget, out / "compare_widget.png")
    widget.three_d.value = True
    viewer.camera.angles = (0.0, 0.0, 90.0)
    pump(2.0)
    close_notifications(viewer)
    save_png(out / "compare_3d.png", viewer.screenshot(canvas_only=False))
    for row in widget.metrics_rows:
        log.info("%s", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
