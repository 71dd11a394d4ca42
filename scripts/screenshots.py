"""Screenshots of napari-pvs in a real, shown napari window (2D, 3D and the dock widgets).

Run under a virtual X server (a real GL context; ``QT_QPA_PLATFORM=offscreen`` gives
black canvases)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py --out screenshots/

What it does:

1. opens a T2: by default the plugin's sample data (the real open_ms patient01 visit-1
   T2 with simulated PVS and their mask), or ``--image scan.nii.gz`` (``--mask`` for its
   PVS mask);
2. gets a model: ``--model CKPT``, or else trains a small model for ``--train-minutes``
   (default 1) with the *Train PVS model* widget on the image and its (simulated) mask. That
   demo model has seen the very image it segments and trained for a minute on CPU: the
   screenshots say so. ``--no-train`` shows the simulated mask as the overlay instead
   (and says so);
3. segments the T2 with the *Segment PVS* widget (probability + mask layers), counts PVS on
   the BG and CSO slices with the *Count PVS (BG/CSO)* widget;
4. saves PNGs in ``--out``: ``2d_canvas.png`` / ``2d_window.png`` (axial slice
   ``--slice``, default 16, through the basal ganglia of study1), ``2d_cso_canvas.png``
   (slice ``--cso-slice``), ``3d_canvas.png`` / ``3d_window.png`` (T2 as attenuated MIP,
   mask as iso-surface labels), the dock widgets (``widget_*.png``) and ``summary.json``
   (counts, Dice of the prediction against the simulated mask).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("screenshots")


def pump(seconds: float = 0.2) -> None:
    """Run the Qt event loop for a while (lets the window paint)."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def wait_worker(widget, timeout_s: float) -> None:
    """Process events until ``widget.worker`` is None (its thread finished)."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.perf_counter() + timeout_s
    last = 0.0
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - last > 10:
            last = time.perf_counter()
            log.info("  %s", widget.status.text().replace("\n", " "))
        if time.perf_counter() > end:
            widget.cancel()
            end = time.perf_counter() + 120
    pump(0.3)


def save_png(path: Path, rgba: np.ndarray) -> Path:
    from imageio.v3 import imwrite

    imwrite(path, np.asarray(rgba))
    log.info("wrote %s %s", path, tuple(np.asarray(rgba).shape))
    return path


def camera(viewer):
    """``viewer.scene.camera`` (napari >= 0.9) or ``viewer.camera``."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def text_overlay(viewer):
    """``viewer.canvas.overlays.text`` (napari >= 0.9) or ``viewer.text_overlay``."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays.text if canvas is not None and hasattr(canvas, "overlays") else viewer.text_overlay


def close_notifications(viewer) -> None:
    """Close the notification pop-ups so they do not cover the canvas in screenshots."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for w in viewer.window._qt_window.findChildren(NapariQtNotification):
        w.close()
    pump(0.3)


def grab_widget(widget, path: Path) -> Path:
    pump(0.2)
    pix = widget.grab()
    pix.save(str(path))
    log.info("wrote %s (%dx%d)", path, pix.width(), pix.height())
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("screenshots"), help="output folder")
    ap.add_argument("--image", type=Path, help="T2 NIfTI (default: sample data with simulated PVS)")
    ap.add_argument("--mask", type=Path, help="PVS mask of --image (to train the demo model)")
    ap.add_argument("--model", type=Path, help="checkpoint (.pt); default: train a demo model")
    ap.add_argument("--train-minutes", type=float, default=1.0, help="demo training budget (min)")
    ap.add_argument("--train-model", default="unet", help="demo model (unet is fastest on CPU)")
    ap.add_argument("--train-features", default="16, 32, 64, 128", help="demo model features")
    ap.add_argument("--no-train", action="store_true",
                    help="no model: show the simulated mask as the overlay")
    ap.add_argument("--slice", type=int, default=16, help="axial BG slice for the 2D view")
    ap.add_argument("--cso-slice", type=int, default=24, help="axial CSO slice")
    ap.add_argument("--size", type=int, nargs=2, default=(1580, 980), metavar=("W", "H"))
    ap.add_argument("--dock-width", type=int, default=470, help="width of the dock area (px)")
    ap.add_argument("--angles", type=float, nargs=3, default=(-20.0, 30.0, -90.0),
                    help="3D camera Euler angles (degrees)")
    ap.add_argument("--attenuation", type=float, default=0.15, help="T2 attenuated-MIP attenuation")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import napari

    from napari_pvs.plugin.viewer import go_to_slice

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-pvs", show=True)
    viewer.window.resize(*args.size)
    pump(1.0)

    # ---------------------------------------------------------------- data
    if args.image is None:
        log.info("loading the sample data (real T2 + simulated PVS) ...")
        t2, truth = viewer.open_sample("napari-pvs", "t2_simulated_pvs")
        deadline = time.time() + 300
        while truth.metadata.get("simulation") != "done" and time.time() < deadline:
            pump(0.2)  # the sample's simulation runs in a worker thread
        source = "open_ms patient01 study1 T2W (Lesjak et al. 2016, CC-BY) + simulated PVS"
    else:
        (t2,) = viewer.open(str(args.image), plugin="napari-pvs")
        truth = viewer.open(str(args.mask), plugin="napari-pvs")[0] if args.mask else None
        source = args.image.name
    truth_name = truth.name if truth is not None else None
    lo, hi = np.percentile(t2.data, [0.5, 99.7])
    t2.contrast_limits = (float(lo), float(hi))
    pump(0.5)

    # ---------------------------------------------------------------- model
    note = ""
    ckpt = args.model
    train_w = None
    if ckpt is None and not args.no_train:
        if truth is None:
            log.error("no --model and no mask to train one: give --model, --mask or --no-train")
            return 2
        train_dock, train_w = viewer.window.add_plugin_dock_widget("napari-pvs", "Train PVS model")
        train_w.pairs[0].image.value = t2
        train_w.pairs[0].labels.value = truth
        train_w.model.value = args.train_model
        train_w.features.value = args.train_features
        train_w.epochs.value = 1000
        train_w.steps_per_epoch.value = 50
        train_w.batch_size.value = 4
        train_w.patch_size.value = 128
        train_w.max_minutes.value = args.train_minutes
        train_w.checkpoint_path = out / "demo_model.pt"
        log.info("training a demo model for %.1f min ...", args.train_minutes)
        train_w.start()
        wait_worker(train_w, args.train_minutes * 60 + 600)
        if train_w.result is None or train_w.result.checkpoint is None:
            log.error("training failed: %s", train_w.status.text())
            return 1
        ckpt = train_w.result.checkpoint
        r = train_w.result
        note = (f"DEMO model: {args.train_model} ({args.train_features}) trained {r.seconds / 60:.1f} min "
                f"on CPU on THIS image's simulated PVS ({r.steps_done} steps, best val DSC "
                f"{r.best_val_metric:.2f}); not a validated model")
        close_notifications(viewer)
        train_png = grab_widget(train_w, out / "widget_train.png")
        viewer.window.remove_dock_widget(train_dock)

    seg_w = None
    if ckpt is not None:
        _, seg_w = viewer.window.add_plugin_dock_widget("napari-pvs", "Segment PVS")
        seg_w.image.value = t2
        seg_w.checkpoint_path = ckpt
        log.info("segmenting with %s ...", ckpt)
        seg_w.start()
        wait_worker(seg_w, 600)
        if seg_w.prediction is None:
            log.error("segmentation failed: %s", seg_w.status.text())
            return 1
        prob, mask = seg_w.prob_layer, seg_w.mask_layer
        if not note:
            note = f"model {Path(ckpt).name}"
    else:
        prob, mask = None, truth
        note = "NO MODEL: the overlay is the SIMULATED PVS mask (ground truth), not a prediction"

    # ---------------------------------------------------------------- count
    count_dock, count_w = viewer.window.add_plugin_dock_widget("napari-pvs", "Count PVS (BG/CSO)")
    count_w.labels.value = mask
    count_w.bg_slice.value = args.slice
    count_w.cso_slice.value = args.cso_slice
    counts = count_w.count()
    from qtpy.QtCore import Qt

    viewer.window._qt_window.resizeDocks([count_dock], [args.dock_width], Qt.Horizontal)

    # ---------------------------------------------------------------- 2D
    from napari.utils.colormaps import DirectLabelColormap

    def solid(color):
        return DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: color})

    if truth is not None and truth is not mask:
        truth.visible = True
        truth.contour = 1
        truth.opacity = 1.0
        truth.colormap = solid("cyan")
        viewer.layers.move(viewer.layers.index(truth), len(viewer.layers))
    mask.opacity = 0.6
    mask.colormap = solid("yellow")
    if prob is not None:
        prob.opacity = 0.7
    viewer.layers.selection.active = t2
    import textwrap

    note = "\n".join(textwrap.wrap(note, 80))
    txt = text_overlay(viewer)
    txt.visible = True
    txt.font_size = 9
    txt.color = "white"
    txt.position = "top_left"
    if prob is not None and truth is not None and truth is not mask:
        legend = "yellow: predicted PVS mask | magma: PVS probability\ncyan outline: simulated PVS (truth)"
    elif prob is not None:
        legend = "yellow: predicted PVS mask | magma: PVS probability"
    else:
        legend = "yellow: simulated PVS mask"

    viewer.dims.ndisplay = 2
    go_to_slice(viewer, t2, args.slice)
    viewer.reset_view()
    camera(viewer).zoom *= 1.1
    txt.text = f"{source}\naxial slice {args.slice} (basal ganglia)\n{note}\n{legend}"
    close_notifications(viewer)
    pump(1.0)
    shots = {}
    shots["2d_canvas"] = save_png(out / "2d_canvas.png", viewer.screenshot(canvas_only=True, flash=False))
    shots["2d_window"] = save_png(out / "2d_window.png", viewer.screenshot(canvas_only=False, flash=False))

    go_to_slice(viewer, t2, args.cso_slice)
    txt.text = f"{source}\naxial slice {args.cso_slice} (centrum semiovale)\n{note}\n{legend}"
    pump(0.8)
    shots["2d_cso_canvas"] = save_png(out / "2d_cso_canvas.png", viewer.screenshot(canvas_only=True, flash=False))

    # ---------------------------------------------------------------- 3D
    viewer.dims.ndisplay = 3
    t2.rendering = "attenuated_mip"
    t2.attenuation = args.attenuation
    t2.opacity = 0.6
    t2.contrast_limits = (float(lo), float(hi) * 1.3)
    if prob is not None:
        prob.visible = False
    if truth is not None and truth is not mask:
        truth.visible = False
    mask.rendering = "iso_categorical"
    mask.opacity = 1.0
    viewer.reset_view()
    cam = camera(viewer)
    cam.angles = tuple(args.angles)
    cam.zoom *= 1.25
    txt.text = f"{source}\n3D: T2 attenuated MIP + PVS mask (iso surfaces)\n{note}"
    close_notifications(viewer)
    pump(1.5)
    shots["3d_canvas"] = save_png(out / "3d_canvas.png", viewer.screenshot(canvas_only=True, flash=False))
    shots["3d_window"] = save_png(out / "3d_window.png", viewer.screenshot(canvas_only=False, flash=False))

    # ---------------------------------------------------------------- widgets
    if train_w is not None:
        shots["widget_train"] = train_png
    for name, w in (("segment", seg_w), ("count", count_w)):
        if w is not None:
            shots[f"widget_{name}"] = grab_widget(w, out / f"widget_{name}.png")

    summary = {
        "source": source,
        "note": note,
        "checkpoint": str(ckpt) if ckpt else None,
        "n_pred_voxels": int(np.count_nonzero(mask.data)),
        "n_truth_voxels": int(np.count_nonzero(truth.data)) if truth is not None else None,
        "counts": counts.rows() if counts is not None else None,
        "screenshots": {k: str(v) for k, v in shots.items()},
    }
    if prob is not None and truth is not None and truth_name != mask.name:
        from napari_pvs.engine.metrics import dice

        summary["dice_vs_simulated"] = float(dice(mask.data > 0, truth.data > 0))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
