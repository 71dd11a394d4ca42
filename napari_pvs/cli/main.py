"""The ``napari-pvs`` entry point: the parser of every command group, and exit codes.

Exit status: 0 done; 1 an unexpected error (one line; the traceback with ``-v``); 2 bad
input or usage (one line ``napari-pvs: error: FILE: problem``, never a half-written output);
130 interrupted (Ctrl-C). Command modules import the engine (and torch) only when a
command runs, so ``napari-pvs --help`` and ``napari-pvs COMMAND --help`` answer at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from . import al, cohort, compare, project, rating, registration, segment, simulate, train
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, common_parent

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

#: the command groups, in the order of ``napari-pvs --help``
COMMAND_MODULES = (simulate, train, segment, rating, registration, compare, project, al, cohort)


def _version() -> str:
    from .. import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``napari-pvs`` with every command (no engine import)."""
    parent = common_parent()
    p = argparse.ArgumentParser(
        prog="napari-pvs", parents=[parent],
        description="Perivascular-space (PVS) tools on brain MRI: simulate PVS in real T2 scans, train and "
                    "compare segmentation networks, segment PVS, place the BG/CSO rating slices by atlas "
                    "registration and count PVS on them, annotation projects and active learning.",
        epilog="Exit status: 0 done, 1 unexpected error (-v prints the traceback), 2 bad input or usage, "
               "130 interrupted. Research use only, not for clinical diagnosis.")
    p.add_argument("--version", action="version", version=f"napari-pvs {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parsers(sub, parent)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-pvs`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from ..engine.errors import PVSInputError

    try:
        return int(args.func(args) or 0)
    except PVSInputError as exc:
        print(f"napari-pvs: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("napari-pvs: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place that turns any error into one line
        if verbose:
            traceback.print_exc()
        text = " ".join(str(exc).split())
        print(f"napari-pvs: error: unexpected {type(exc).__name__}: {text}"
              + ("" if verbose else " (run with -v for the traceback)"), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
