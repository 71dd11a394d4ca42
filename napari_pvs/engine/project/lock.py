"""The project's writer lock: one writing process per project.

A ``filelock.FileLock`` on ``<project>/.writer.lock`` (an OS lock: ``flock`` on POSIX,
``msvcrt`` locking on Windows) is held while a :class:`Project` is open for writing. The
operating system releases it when the process ends, however it ends (a crash or SIGKILL
leaves no stale lock). ``<project>/.writer.json`` names the holder (host, pid, since),
which the error message of a second writer gives. SQLite's own locking keeps the catalogue
whole in any case; this lock makes a second writer fail at once (or after ``wait_s``) with
a clear message instead of interleaving versions with the first.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import PVSInputError

__all__ = ["WriterLock", "ProjectLockedError", "LOCK_NAME", "HOLDER_NAME"]

LOCK_NAME = ".writer.lock"
HOLDER_NAME = ".writer.json"


class ProjectLockedError(PVSInputError):
    """The project is open for writing in another process (or another project object)."""


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
        ``"project is open for writing elsewhere (host, pid N, since T)"`` after ``wait_s``.
    """

    def __init__(self, root: Path, *, wait_s: float = 0.0):
        self.path = Path(root) / LOCK_NAME
        self._holder = Path(root) / HOLDER_NAME
        lock = FileLock(self.path, timeout=max(float(wait_s), 0.0))
        try:
            lock.acquire()
        except Timeout:
            raise ProjectLockedError(
                f"project is open for writing elsewhere ({_read_holder(self._holder)}); close it there or "
                "open this one read-only", root) from None
        self._lock: FileLock | None = lock
        tmp = self._holder.with_name(self._holder.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                   "since": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        os.replace(tmp, self._holder)

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def held(self) -> bool:
        return self._lock is not None


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"{info.get('host', '?')}, pid {info.get('pid', '?')}, since {info.get('since', '?')}"
    except (OSError, ValueError):
        return "unknown process"
