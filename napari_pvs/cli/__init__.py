"""The ``napari-pvs`` command line: one module per command group, all calling the engine's
use cases (:mod:`napari_pvs.engine.usecases`) and stores.

=================  ==========================================================
module             commands
=================  ==========================================================
:mod:`.simulate`   ``simulate``
:mod:`.train`      ``train``
:mod:`.segment`    ``segment``
:mod:`.rating`     ``count``, ``locate-slices``
:mod:`.registration`  ``register``, ``train-registration``
:mod:`.compare`    ``compare``, ``ensemble``
:mod:`.project`    ``project init|add|import-mask|status|agreement|export``
:mod:`.al`         ``al suggest|round|history``
=================  ==========================================================

Shared conventions (:mod:`._common`): ``-o/--output`` is what a command writes (its help says
file or folder), ``-m/--checkpoint`` a checkpoint file, ``--model`` a network family,
``--json PATH`` (``-`` for standard output), ``--max-minutes``, ``-v`` anywhere; exit status
0 / 1 (unexpected) / 2 (bad input) / 130 (Ctrl-C).
"""

from .main import build_parser, main

__all__ = ["main", "build_parser"]
