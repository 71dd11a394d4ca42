"""Every napari-pvs dock widget in a real, shown napari window at 1366x768 and 1600x1000, with a
real T2 open (slider, scale bar in mm, axis labels): does each fit without clipping?

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots_widgets.py \
        --data ../shared/data [--out docs/figures/widgets]

Writes ``<widget>_<W>x<H>.png`` (the whole window). The Count widget counts a quick
bright-voxel mask so that its table and chart are filled; Train shows a short real run
(20 steps of a small U-Net) so that its live plot has a curve.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from screenshots import pump  # noqa: E402 - the scripts' shared Qt helper

WIDGETS = ["Segment PVS", "Train PVS model", "Compare models", "Annotate PVS", "Active learning",
           "Count PVS (BG/CSO)", "Cohort (whole study)", "Register images"]
SIZES = [(1366, 768), (1600, 1000)]
SCAN = "open_ms/longitudinal/patient01/study1_T2W.nii.gz"


def slug(name: str) -> str:
    return name.split(" (")[0].lower().replace(" ", "_")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "widgets")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--sizes", nargs="*", default=None, help="e.g. 1600x1000")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import numpy as np
    import napari

    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes] if args.sizes else SIZES
    for w_px, h_px in sizes:
        for name in WIDGETS:
            if args.only and slug(name) not in args.only:
                continue
            viewer = napari.Viewer(title=f"napari-pvs: {name}")
            viewer.window.show()
            viewer.window._qt_window.showNormal()
            viewer.window._qt_window.resize(w_px, h_px)      # after show: napari restores its saved size
            pump(0.3)
            (t2,) = viewer.open(str(args.data / SCAN), plugin="napari-pvs")
            _, widget = viewer.window.add_plugin_dock_widget("napari-pvs", name)
            if name.startswith("Count"):
                from napari_pvs.plugin.viewer import source_geometry

                data = np.asarray(t2.data, np.float32)
                thr = np.percentile(data[data > 0], 99.7)
                mask = viewer.add_labels((data > thr).astype(np.uint8), name="bright voxels (demo mask)",
                                         metadata=dict(t2.metadata), **source_geometry(t2))
                widget.labels.value = mask
                widget.bg_slice.value, widget.cso_slice.value = 15, 25
                widget.count()
            if name.startswith("Train"):
                from napari_pvs.plugin.viewer import source_geometry

                data = np.asarray(t2.data, np.float32)
                thr = np.percentile(data[data > 0], 99.7)
                mask = viewer.add_labels((data > thr).astype(np.uint8), name="bright voxels (demo mask)",
                                         metadata=dict(t2.metadata), **source_geometry(t2))
                row = widget._pairs[0]
                row.image.value, row.labels.value = t2, mask
                widget.features.value = "4,8,16"
                widget.epochs.value, widget.steps_per_epoch.value = 2, 10
                widget.patch_size.value = 64
                widget.checkpoint.value = str(args.out / "_demo.pt")
                widget.start()
                end = time.perf_counter() + 600
                while widget.worker is not None and time.perf_counter() < end:
                    pump(0.5)
                print("train:", widget.status.text()[:200])
                from qtpy.QtWidgets import QScrollArea

                bar = widget.findChild(QScrollArea).verticalScrollBar()
                pump(0.6)
                bar.setValue(bar.maximum())                   # the live plot, at the bottom
            viewer.dims.set_current_step(0, 15)
            pump(1.5)
            path = args.out / f"{slug(name)}_{w_px}x{h_px}.png"
            viewer.screenshot(str(path), canvas_only=False)
            print("wrote", path, "slider", viewer.dims.current_step[0])
            viewer.close()
            pump(0.3)
    demo = args.out / "_demo.pt"
    if demo.exists():
        demo.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
