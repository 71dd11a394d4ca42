"""Screenshot of the Cohort widget in a real, shown napari window: a cohort run (or resumed)
through the job runner, the table filled, and one row opened (the scan, its PVS mask, the
atlas regions and the QC figure).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots_cohort.py \
        INPUT OUTDIR [--row 0] [--out docs/figures]

INPUT and OUTDIR as for ``napari-pvs cohort run``; rerunning on a finished OUTDIR skips the
finished scans, so the table fills at once. Writes ``cohort_widget.png``.
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", type=Path)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--row", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("screenshots"))
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import napari

    viewer = napari.Viewer(title="napari-pvs: Cohort")
    viewer.window._qt_window.resize(1600, 1000)
    viewer.window.show()
    _, w = viewer.window.add_plugin_dock_widget("napari-pvs", "Cohort (whole study)")
    w.input.value = str(args.input)
    w.output.value = args.outdir
    w.workers.value = 1
    if not w.start():
        print("the cohort did not start:", w.status.text())
        return 1
    end = time.perf_counter() + args.timeout
    while w.worker is not None and time.perf_counter() < end:
        pump(0.5)
    print(w.status.text())
    w.open_row(args.row)
    viewer.scale_bar.visible = True
    pump(2.0)
    viewer.screenshot(str(args.out / "cohort_widget.png"), canvas_only=False)
    print("layers:", [ly.name for ly in viewer.layers])
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
