"""Screenshots of atlas-placed rating slices (Count widget) and of the Register images
widget on real scans, in a shown napari window.

Run under a virtual X server::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots_registration.py --out screenshots/

What it does:

1. opens the open_ms patient04 T2 with the plugin's reader and segments it with the
   shipped default model (a PVS labels layer); the Count widget's *Place slices by
   atlas* registers the MNI template with the Allen labels to it, then *Count* counts
   the PVS within the atlas areas; saves the window on the placed BG slice
   (``rating_slices_bg.png``) and CSO slice (``rating_slices_cso.png``) with the atlas
   regions, the landmarks and the count table;
2. opens patient01 visit 1's T2 and T1; the Register images widget registers the T1 to
   the T2 (``--method``, default affine); saves the overlay with
   the deformation grid (``registration.png``), the Jacobian map
   (``registration_jacobian.png``), the QC views checkerboard and edges
   (``registration_checkerboard.png``, ``registration_edges.png``) and the dock
   (``registration_widget.png``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from napari_pvs.plugin.viewer import source_geometry  # noqa: E402
from screenshots import close_notifications, grab_widget, pump, save_png, wait_worker  # noqa: E402

log = logging.getLogger("screenshots_registration")


def show_slice(viewer, layer, k: int, axial_axis: int) -> None:
    """Move the viewer to axial slice ``k`` of ``layer`` (through the layer's centre)."""
    centre = (np.asarray(layer.data.shape, float) - 1) / 2
    centre[axial_axis] = k
    viewer.dims.set_point(range(3), tuple(np.asarray(layer.data_to_world(centre), float)))
    pump(0.5)


def show_point(viewer, ras_mm) -> None:
    """Move the viewer to a world RAS mm point (napari-pvs world frame: (S, P, L) = (z, -y, -x)),
    so that a landmark there lies in the displayed plane even on an oblique scan."""
    x, y, z = (float(v) for v in ras_mm)
    viewer.dims.set_point(range(3), (z, -y, -x))
    pump(0.5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("screenshots"))
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--method", default="affine", choices=["affine", "classical"])
    ap.add_argument("--size", type=int, nargs=2, default=(1580, 980))
    ap.add_argument("--parts", default="rating,registration",
                    help="which shots: 'rating' (atlas-placed slices), 'registration' (T1 to T2 and its QC views)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    # 1. rating slices
    if "rating" in args.parts:
        _rating_slices(args, out)
    if "registration" in args.parts:
        _registration(args, out)
    return 0


def _rating_slices(args, out: Path) -> None:
    import napari

    from napari_pvs.widgets.count import CountWidget

    viewer = napari.Viewer(title="napari-pvs: rating slices by atlas", show=True)
    viewer.window.resize(*args.size)
    (t2,) = viewer.open(args.data / "open_ms/longitudinal/patient04/study1_T2W.nii.gz", plugin="napari-pvs")
    from napari_pvs.engine.models.checkpoint import load_model
    from napari_pvs.engine.data import default_checkpoint
    from napari_pvs.engine.inference import predict_volume
    from napari_pvs.plugin.layers import geometry_metadata, layer_to_volume

    pred = predict_volume(load_model(default_checkpoint()), layer_to_volume(t2))
    viewer.add_labels(pred.mask, name="PVS (default model)", metadata=geometry_metadata(t2), **source_geometry(t2))
    viewer.layers.selection.active = t2
    count = CountWidget(viewer)
    viewer.window.add_dock_widget(count, name="Count PVS (BG/CSO)", area="right")
    count.reset_choices()
    count.labels.value = viewer.layers["PVS (default model)"]
    count.place.image.value = t2
    count.place.start()
    wait_worker(count.place, 600)
    rs = count.placement.slices
    log.info("placed: %s", count.place.status.text())
    counts = count.count()
    log.info("counts: %s", counts)
    pvs = viewer.layers["PVS (default model)"]
    viewer.layers.move(viewer.layers.index(pvs), len(viewer.layers))     # PVS drawn over the regions
    close_notifications(viewer)
    for name, point in (("bg", rs.ac_mm), ("cso", rs.cso_mm)):
        show_point(viewer, point)
        close_notifications(viewer)
        save_png(out / f"rating_slices_{name}.png", viewer.screenshot(canvas_only=False))
    viewer.close()


def _registration(args, out: Path) -> None:
    """2. registration T1 -> T2, with the QC views (checkerboard, edges)."""
    import napari

    from napari_pvs.widgets.registration import RegistrationWidget

    viewer = napari.Viewer(title="napari-pvs: register images", show=True)
    viewer.window.resize(*args.size)
    base = args.data / "open_ms/longitudinal/patient01"
    (fixed,) = viewer.open(base / "study1_T2W.nii.gz", plugin="napari-pvs")
    (moving,) = viewer.open(base / "study1_T1W.nii.gz", plugin="napari-pvs")
    moving.visible = False
    reg = RegistrationWidget(viewer)
    viewer.window.add_dock_widget(reg, name="Register images", area="right")
    reg.reset_choices()
    reg.fixed.value, reg.moving.value = fixed, moving
    reg.method.value = args.method
    reg.start()
    wait_worker(reg, 900)
    log.info("registered: %s", reg.status.text())
    show_slice(viewer, fixed, 18, 0)
    close_notifications(viewer)
    save_png(out / "registration.png", viewer.screenshot(canvas_only=False))
    if reg.jacobian_layer is not None:
        reg.jacobian_layer.visible = True
        reg.grid_layer.visible = False
        close_notifications(viewer)
        save_png(out / "registration_jacobian.png", viewer.screenshot(canvas_only=False))
        reg.jacobian_layer.visible = False
    for view in ("checkerboard", "edges"):
        reg.qc_view.value = view          # the widget's QC view picker
        pump(0.5)
        close_notifications(viewer)
        save_png(out / f"registration_{view}.png", viewer.screenshot(canvas_only=False))
    grab_widget(reg, out / "registration_widget.png")
    viewer.close()


if __name__ == "__main__":
    sys.exit(main())
