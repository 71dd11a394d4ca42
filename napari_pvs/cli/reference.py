"""The CLI reference (``docs/cli.md``), generated from the parsers themselves.

``python -m napari_pvs.cli.reference > docs/cli.md`` writes it; a test checks that the
committed file is what the parsers give, so the reference never drifts from the code.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["cli_reference"]

WIDTH = 100


def _walk(parser: argparse.ArgumentParser, prefix: str):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{prefix} {name}")


def cli_reference() -> str:
    """The Markdown reference of every ``napari-pvs`` command (help texts at 100 columns)."""
    from .main import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        parts = ["# `napari-pvs` command reference",
                 "",
                 "Generated from the parsers (`python -m napari_pvs.cli.reference > docs/cli.md`); a test keeps it "
                 "current. Every command takes `-v` (details, and the traceback of an unexpected error). Exit "
                 "status: 0 done, 1 unexpected error, 2 bad input or usage, 130 interrupted.",
                 ""]
        for name, parser in _walk(build_parser(), "napari-pvs"):
            parts += [f"## `{name}`", "", "```text", parser.format_help().rstrip(), "```", ""]
        return "\n".join(parts)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


if __name__ == "__main__":  # pragma: no cover
    print(cli_reference(), end="")
