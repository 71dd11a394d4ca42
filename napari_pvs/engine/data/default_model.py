"""Where the shipped default model lives (no torch import: widgets can ask at import time).

Refer to ``napari_pvs/weights/README.md`` for what the model is and how it was made.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PVSInputError

__all__ = ["DEFAULT_CHECKPOINT_NAME", "default_checkpoint"]

#: file name of the shipped default model in ``napari_pvs/weights/``
DEFAULT_CHECKPOINT_NAME = "pvs_default.pt"


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
    path = Path(__file__).resolve().parents[2] / "weights" / DEFAULT_CHECKPOINT_NAME
    if not path.is_file():
        raise PVSInputError("the default model is not installed; make it with "
                            "'python scripts/make_default_model.py --out DIR --install'", path)
    return path
