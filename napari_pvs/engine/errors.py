"""Errors raised by the engine for bad user input."""

from __future__ import annotations

from pathlib import Path


class PVSInputError(ValueError):
    """Bad input (file, array or option) that the user can fix.

    The message is one line that names the offending file (when there is one) and what
    is wrong with it, e.g. ``"scan.nii.gz: image has 4 dimensions, expected 3"``. The CLI
    prints it and exits with code 2; the napari widgets show it as a notification.

    Parameters
    ----------
    message : str
        What is wrong (and, ideally, what was expected).
    path : str or Path, optional
        The file concerned; prefixed to the message.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        text = " ".join(str(message).split())  # always a single line
        if self.path is not None:
            text = f"{self.path}: {text}"
        super().__init__(text)


class TrainingDiverged(PVSInputError):
    """Training stopped because the loss became NaN or infinite before any checkpoint was
    written (a learning rate too high, or broken masks). When a checkpoint had been written,
    training ends normally instead, with ``TrainResult.diverged`` set and that checkpoint kept."""
