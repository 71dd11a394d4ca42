"""The package's floors: one-way imports (import-linter contracts in pyproject.toml), no
import cycle anywhere, and a CLI whose help imports no torch."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    """engine -> never napari/Qt/magicgui/widgets/cli; widgets -> never cli; plugin modules ->
    never widgets; the engine's floors in order (``[tool.importlinter]`` in pyproject.toml)."""
    # in a subprocess: import-linter configures logging (it would silence this process's loggers)
    out = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                          f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True))"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def _import_graph():
    import grimp

    graph = grimp.build_graph("napari_pvs", include_external_packages=False, cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_no_import_cycle_between_modules():
    """Every module-level and function-level import counts (grimp reads both)."""
    from graphlib import CycleError, TopologicalSorter

    deps = _import_graph()
    try:
        tuple(TopologicalSorter(deps).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_a_cycle_is_found_when_there_is_one():
    """The cycle check can fail: the same sorter on a graph with a loop."""
    from graphlib import CycleError, TopologicalSorter

    deps = _import_graph()
    deps["napari_pvs.engine.io"].add("napari_pvs.engine.usecases.segmentation")   # io -> segmentation -> io
    with pytest.raises(CycleError):
        tuple(TopologicalSorter(deps).static_order())


@pytest.mark.parametrize("argv", [["--help"], ["segment", "--help"], ["count", "--help"], ["al", "round", "--help"],
                                  ["project", "status", "--help"], ["--version"]])
def test_cli_help_imports_no_torch_and_is_fast(argv):
    code = ("import sys\nfrom napari_pvs.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "heavy = [m for m in ('torch', 'monai', 'napari', 'qtpy', 'scipy', 'nibabel') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))\n")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    assert out.stdout.strip().splitlines()[-1] == "HEAVY=", out.stdout
    assert seconds < 1.5, f"napari-pvs {' '.join(argv)} took {seconds:.2f} s"


def test_cli_choices_match_the_engine():
    from napari_pvs.cli import al
    from napari_pvs.engine.active_learning import SAMPLERS, STRATEGIES

    assert al.STRATEGIES == STRATEGIES and al.SAMPLERS == SAMPLERS
