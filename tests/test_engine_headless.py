"""The engine never imports napari, qtpy or magicgui (it must run headless); its light parts
import no torch or MONAI."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_no_gui():
    code = (
        "import sys, pkgutil, importlib, napari_pvs.engine, napari_pvs.cli, napari_pvs.plugin.layers\n"
        "for m in pkgutil.walk_packages(napari_pvs.engine.__path__, 'napari_pvs.engine.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'magicgui', 'PyQt5', 'PySide6', 'PyQt6'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"GUI modules imported by the engine: {out.stdout}"


def test_project_and_rating_code_imports_no_torch_or_monai():
    """Project commands, rater agreement and counting start without torch and MONAI (MONAI's
    import alone took 5.7 s here; ``metrics`` imports them only where a tensor is needed)."""
    code = ("import sys, napari_pvs.engine.project, napari_pvs.engine.project.agreement, napari_pvs.engine.metrics\n"
            "import napari_pvs.engine.rating\n"
            "print(','.join(sorted(m for m in ('torch', 'monai') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported: {out.stdout}"
