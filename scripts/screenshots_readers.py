"""Screenshots of the readers in a real, shown napari window: a DICOM series folder opened as
napari opens a dropped folder (the napari-pvs reader, ``accepts_directories``), and a
FreeSurfer ``norm.mgz``, each in world mm with a scale bar.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots_readers.py --out docs/figures

Writes ``reader_dicom_folder.png``, ``reader_mgz.png`` and ``readers_summary.json`` (layer
names, shapes, voxel sizes in mm, the world position of the centre voxel).
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

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.instance().processEvents()
        time.sleep(0.01)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("screenshots"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import napari
    import numpy as np

    from napari_pvs.engine.data import fetch

    folder = fetch("dicom/studyforrest_t1w/N2D_0001.dcm").parent
    summary = {}
    for key, path, name in (("dicom", folder, "reader_dicom_folder.png"),
                            ("mgz", fetch("mgz/norm.mgz"), "reader_mgz.png")):
        viewer = napari.Viewer(title=f"napari-pvs reader: {path.name}")
        viewer.window._qt_window.resize(1200, 900)
        viewer.window.show()
        (layer,) = viewer.open(str(path), plugin="napari-pvs")
        viewer.scale_bar.visible = True
        viewer.dims.axis_labels = ("S", "P", "L") if key == "dicom" else viewer.dims.axis_labels
        centre = (np.asarray(layer.data.shape) - 1) / 2
        viewer.dims.set_point(range(3), tuple(layer.data_to_world(centre)))
        pump(1.0)
        viewer.screenshot(str(args.out / name), canvas_only=False)
        summary[key] = {"layer": layer.name, "shape": list(layer.data.shape),
                        "scale_mm": [round(float(s), 4) for s in layer.scale],
                        "centre_world_mm": [round(float(v), 2) for v in layer.data_to_world(centre)],
                        "metadata_keys": sorted(k for k in layer.metadata if k != "nifti_header")}
        viewer.close()
    (args.out / "readers_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
