"""The engine never imports napari, qtpy or magicgui (it must run headless)."""

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


def test_engine_layout_one_way_imports():
    """Every engine module imports only the engine (and libraries): never the widgets,
    the CLI, the reader/writer or napari_pvs.plugin.layers."""
    import ast
    from pathlib import Path

    pkg = Path(__file__).resolve().parents[1] / "napari_pvs"
    offenders = []
    for path in (pkg / "engine").rglob("*.py"):
        here = ["napari_pvs", *path.relative_to(pkg).parts[:-1]]  # the module's package
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 0:
                base = node.module or ""
            else:
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            # "from X import a" may import the submodule X.a: check both
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                if target == "napari_pvs.__version__":  # the package root holds only the version
                    continue
                if target.startswith("napari_pvs") and target != "napari_pvs" \
                        and not target.startswith("napari_pvs.engine"):
                    offenders.append(f"{path.relative_to(pkg)}: {target}")
    assert offenders == []
