"""The docs stay true to the code: the CLI reference is what the parsers give, the engine's
docstring examples run (doctests), the README stays short and links to pages that exist."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current():
    from napari_pvs.cli.reference import cli_reference

    assert (ROOT / "docs" / "cli.md").read_text() == cli_reference(), \
        "docs/cli.md is stale: python -m napari_pvs.cli.reference > docs/cli.md"


def _engine_modules():
    import napari_pvs.engine as engine

    return sorted(m.name for m in pkgutil.walk_packages(engine.__path__, "napari_pvs.engine."))


@pytest.mark.parametrize("name", _engine_modules())
def test_engine_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0


def test_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert "not for clinical" in text.lower()
    for target in re.findall(r"\]\(((?:docs|CITATION|LICENSE)[^)#]*)", text):
        assert (ROOT / target).exists(), target
