"""The project's writer lock: one writing process per project.

An advisory ``flock`` on ``<project>/.writer.lock`` held while a :class:`Project` is open
for writing. The kernel releases it when the process ends, however it ends (a crash or
SIGKILL leaves no stale lock). The file holds the host and pid of the holder, which the
error message names. SQLite's own locking keeps the catalogue whole in any case; this lock
makes a second writer fail at once with a clear message instead of interleaving versions
with the first. On systems without ``fcntl`` (Windows) only SQLite's locking applies.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import PVSInputError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["WriterLock", "ProjectLockedError", "LOCK_NAME"]

LOCK_NAME = ".writer.lock"


class ProjectLockedError(PVSInputError):
    """The project is open for writing in another process."""


class WriterLock:
    """Exclusive writer lock of a project folder (see the module docstring).

    Parameters
    ----------
    root : Path
        Project folder.
    wait_s : float
        Seconds to wait for the lock before giving up (0: fail at once).

    Raises
    ------
    ProjectLockedError
        ``"project is open for writing elsewhere (host, pid N)"`` after ``wait_s``.
    """

    def __init__(self, root: Path, *, wait_s: float = 0.0):
        self.path = Path(root) / LOCK_NAME
        self._fd: int | None = None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:  # pragma: no cover
            self._fd = fd
            return
        deadline = time.monotonic() + max(wait_s, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(self.path)
                    os.close(fd)
                    raise ProjectLockedError(
                        f"project is open for writing elsewhere ({holder}); close it there or "
                        "open this one read-only", root) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"{info.get('host', '?')}, pid {info.get('pid', '?')}, since {info.get('since', '?')}"
    except (OSError, ValueError):
        return "unknown process"
