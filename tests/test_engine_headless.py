"""The engine never imports napari, qtpy or magicgui (it must run headless)."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_no_gui():
    code = (
        "import sys, napari_pvs.engine, napari_pvs.engine.io, napari_pvs.engine.datasets, "
        "napari_pvs.engine.simulate, napari_pvs.engine.models, napari_pvs.engine.training, "
        "napari_pvs.engine.inference, napari_pvs.engine.counting, napari_pvs.engine.checkpoint, "
        "napari_pvs.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'magicgui', 'PyQt5', 'PySide6', 'PyQt6'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"GUI modules imported by the engine: {out.stdout}"
