"""What every ``napari-pvs`` command shares: exit codes, errors, ``-v``, output paths, JSON,
and progress (a bar on a terminal, plain periodic lines in a batch-system log).

Nothing here imports torch: ``napari-pvs --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INTERRUPTED", "common_parent", "check_nifti_out",
           "write_json", "run_with_progress", "Progress", "add_checkpoint_arg", "add_json_arg", "add_device_arg",
           "say"]

R = TypeVar("R")

#: exit codes: success, unexpected error, bad input or usage, interrupted (Ctrl-C, as shells do)
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def common_parent() -> argparse.ArgumentParser:
    """A parent parser giving every (sub-)command ``-v/--verbose`` (after the command too)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="log details, and print the traceback of an unexpected error")
    return p


def add_checkpoint_arg(p: argparse.ArgumentParser, help_: str, *, repeat: bool = False) -> None:
    """``-m/--checkpoint CKPT``: a checkpoint file (a model family is ``--model``)."""
    p.add_argument("-m", "--checkpoint", metavar="CKPT", action="append" if repeat else "store", help=help_)


def add_json_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--json PATH``: write ``what`` as JSON to PATH (``-``: standard output)."""
    p.add_argument("--json", metavar="PATH", help=f"write {what} as JSON to PATH ('-': standard output)")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present, default), cpu or cuda")


def check_nifti_out(path: str | Path, what: str) -> None:
    """Refuse an output path that is not ``.nii``/``.nii.gz`` before any work starts.

    Raises
    ------
    PVSInputError
    """
    from ..engine.errors import PVSInputError
    from ..engine.io import is_nifti_name

    if not is_nifti_name(path):
        raise PVSInputError(f"{what} must be a .nii or .nii.gz file", path)


def write_json(obj: Any, dest: str) -> None:
    """Write ``obj`` as indented JSON to ``dest`` (atomically), or to standard output for ``-``."""
    text = json.dumps(obj, indent=1, default=str)
    if dest == "-":
        print(text)
        return
    from ..engine.io import atomic_path

    with atomic_path(dest) as tmp:
        Path(tmp).write_text(text + "\n")


def say(*parts: Any) -> None:
    """A status line on standard error (results go to standard output)."""
    print(*parts, file=sys.stderr, flush=True)


class Progress:
    """Progress of a long command from job events (``fraction``, ``summary()``).

    On a terminal a ``tqdm`` bar on standard error; otherwise (a batch system's log, a
    pipe) a plain line every ``every_s`` seconds (the first after ``every_s``, so a quick
    command prints none) and a last one at the end, so a log shows that work goes on.
    :meth:`note` prints a line that stays (an epoch's result).
    """

    def __init__(self, desc: str, *, every_s: float = 10.0, stream=None, tty: bool | None = None):
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s
        self._last = time.monotonic()
        self._printed = False
        self._bar = None
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=1000, desc=desc, file=self.stream, leave=False, dynamic_ncols=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]")

    def update(self, event: Any) -> None:
        fraction = getattr(event, "fraction", None)
        summary = event.summary() if callable(getattr(event, "summary", None)) else str(event)
        if self._bar is not None:
            if fraction is not None:
                self._bar.n = int(round(1000 * min(max(fraction, 0.0), 1.0)))
            self._bar.set_postfix_str(summary[:90], refresh=True)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or (fraction == 1.0 and self._printed):
            self._last, self._printed = now, True
            pct = "" if fraction is None else f"{100 * fraction:5.1f} % "
            print(f"{self.desc}: {pct}{summary}", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_with_progress(gen: Generator[Any, None, R], desc: str, *, every_s: float = 10.0,
                      note=None) -> R:
    """Run a job generator to its end with a :class:`Progress`; ``note(event)`` may return
    a line to keep (or None). Closing on Ctrl-C stops the job at its next yield."""
    from ..engine.progress import run_to_end

    with Progress(desc, every_s=every_s) as prog:
        def show(ev) -> None:
            prog.update(ev)
            line = note(ev) if note is not None else None
            if line:
                prog.note(line)

        try:
            return run_to_end(gen, show)
        finally:
            gen.close()
