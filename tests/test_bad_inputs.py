"""Every class of the bad-input corpus (``tests/bad_inputs.py``) through the command line
(``main`` in this process), the Python API and the napari reader: refused in one line
naming the file and the problem (exit 2), no traceback, no partial output, the input
untouched; the odd-but-valid classes work."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from bad_inputs import CASES, make_context, run_api, run_cli_inprocess, run_reader
from conftest import data_root

FRONT_ENDS = {"cli": run_cli_inprocess, "api": run_api, "napari": run_reader}


@pytest.fixture(scope="module")
def base():
    # world-traversable, so that the no-permission class can run as another user when this is root
    d = Path(tempfile.mkdtemp(prefix="pvs-corpus-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def ctx(base):
    root = data_root()
    return make_context(base / "ctx", root if root.exists() else None)


def test_the_corpus_has_at_least_40_classes():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("front", list(FRONT_ENDS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, front, base, ctx, monkeypatch):
    if case.needs_data and ctx.data is None:
        pytest.skip("needs the shared data")
    import napari_pvs.plugin.reader as reader

    monkeypatch.setattr(reader, "_ask_series", lambda path: None)   # no dialog: the engine's message
    root = base / f"{front}-{CASES.index(case):02d}"
    outcome = FRONT_ENDS[front](case, root, ctx)
    if outcome is None:
        pytest.skip(f"the {front} front end does not apply")
    assert outcome.ok, (outcome.detail, outcome.problems)
