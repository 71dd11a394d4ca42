"""Where the shipped default model lives (no torch import: widgets can ask at import time).

Refer to ``napari_pvs/weights/README.md`` for what the model is and how it was made.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PVSInputError

__all__ = ["DEFAULT_CHECKPOINT_NAME", "ACCURATE_CHECKPOINT_NAME", "SHIPPED_MODELS", "default_checkpoint",
           "accurate_checkpoint", "resolve_checkpoint"]

#: file name of the shipped default model in ``napari_pvs/weights/``
DEFAULT_CHECKPOINT_NAME = "pvs_default.pt"
#: file name of the shipped "accurate" model (the ensemble the default is distilled from)
ACCURATE_CHECKPOINT_NAME = "pvs_accurate.pt"
#: names a user may give instead of a checkpoint file (``--checkpoint accurate``)
SHIPPED_MODELS = {"default": DEFAULT_CHECKPOINT_NAME, "accurate": ACCURATE_CHECKPOINT_NAME}


def _weights(name: str) -> Path:
    return Path(__file__).resolve().parents[2] / "weights" / name


def default_checkpoint() -> Path:
    """Path of the shipped default PVS model (``napari_pvs/weights/pvs_default.pt``).

    It is an ``mfnsde`` trained by ``scripts/make_default_model.py`` (``make default-model``)
    on synthetic PVS in three real T2 scans with an ignore mask on the scans' own real
    PVS-like objects (the recipe variant that did best on the real-scan benchmark); its
    recipe and data sources (``read_checkpoint(...)["recipe"]``) and its real-scan
    benchmark numbers (``["benchmark"]``) are in the checkpoint.

    Raises
    ------
    PVSInputError
        The file is not installed (a source checkout without it: run
        ``python scripts/make_default_model.py --install``).
    """
    path = _weights(DEFAULT_CHECKPOINT_NAME)
    if not path.is_file():
        raise PVSInputError("the default model is not installed; make it with 'make default-model'", path)
    return path


def accurate_checkpoint() -> Path:
    """Path of the shipped "accurate" model (``napari_pvs/weights/pvs_accurate.pt``): the deep
    ensemble of three 2.5D MfNS_De that the default model is distilled from. Three network
    passes (slower), with a member-agreement map.

    Raises
    ------
    PVSInputError
        The file is not installed.
    """
    path = _weights(ACCURATE_CHECKPOINT_NAME)
    if not path.is_file():
        raise PVSInputError("the accurate model is not installed; make it with 'make accurate-model'", path)
    return path


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """A checkpoint file from what a user gave: None or ``""`` or ``"default"`` (the shipped
    default), ``"accurate"`` (the shipped ensemble), else a path (``~`` expanded; not checked
    here).

    Example
    -------
    >>> resolve_checkpoint("accurate").name
    'pvs_accurate.pt'
    """
    if checkpoint is None or str(checkpoint) in ("", "default"):
        return default_checkpoint()
    if str(checkpoint) == "accurate":
        return accurate_checkpoint()
    return Path(checkpoint).expanduser()
