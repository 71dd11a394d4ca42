"""The engine never imports napari, qtpy or magicgui (it must run headless)."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_no_gui():
    code = (
        "import sys, pkgutil, importlib, napari_pvs.engine, napari_pvs.cli, napari_pvs.layers\n"
        "for m in pkgutil.walk_packages(napari_pvs.engine.__path__, 'napari_pvs.engine.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'magicgui', 'PyQt5', 'PySide6', 'PyQt6'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"GUI modules imported by the engine: {out.stdout}"


def test_engine_layout_one_way_imports():
    """Every engine module imports only the engine (and libraries): never the widgets,
    the CLI, the reader/writer or napari_pvs.layers."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "napari_pvs" / "engine"
    offenders = []
    for path in root.rglob("*.py"):
        depth = len(path.relative_to(root).parts) - 1  # folders below engine/
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                if node.level == 0:
                    target = node.module
                elif node.level > depth + 1:  # climbs out of the engine
                    target = "napari_pvs." + node.module
                else:
                    continue
                if target.startswith("napari_pvs") and not target.startswith("napari_pvs.engine"):
                    offenders.append(f"{path.name}: {target}")
    assert offenders == []
