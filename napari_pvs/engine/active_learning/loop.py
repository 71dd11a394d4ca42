"""The active-learning loop on an annotation project.

One round: score the slices not annotated yet (:func:`score_project`), propose a batch
(:func:`~.selection.select_slices`), wait until the batch is annotated (by a rater in
napari, or by a callback such as the benchmark's simulated annotator), fine-tune the
current model on everything annotated so far (:func:`finetune_round`, only the slices
marked done or reviewed are labelled) and record the round in the project; then re-score.
Every step is a generator of :class:`ALEvent` (the CLI iterates it, napari runs it in a
worker; closing it stops at the next yield).

The current model of a project is its newest round's or training run's checkpoint
(:meth:`~napari_pvs.engine.project.Project.current_checkpoint`), else the shipped default
model. Fine-tuned checkpoints go to the project's ``models/`` folder.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator
from pathlib import Path

from ..progress import map_events
from .config import ALConfig, ALEvent, labelled_slices
from .finetune import finetune_round
from .selection import SliceChoice
from .suggest import suggest

__all__ = ["active_learning_loop"]


def active_learning_loop(project, config: ALConfig = ALConfig(), *, rounds: int = 1,
                         annotator: Callable[[list[SliceChoice]], None] | None = None, poll_s: float = 5.0,
                         checkpoint: str | Path | None = None) -> Generator[ALEvent, None, list[dict]]:
    """Run ``rounds`` active-learning rounds: suggest, wait for the batch, fine-tune, record.

    Parameters
    ----------
    project : Project
        Open for writing.
    config : ALConfig
    rounds : int
    annotator : callable, optional
        Called with each batch; must annotate it in the project (save versions with the
        slices marked done). Without it the loop yields ``"waiting"`` events every
        ``poll_s`` seconds until every proposed slice is marked done or reviewed in a saved
        version (a rater working in napari); close the generator to stop.
    poll_s : float
    checkpoint : str or Path, optional
        Model of the first round; default :func:`project_checkpoint`. Later rounds use the
        round before.

    Yields
    ------
    ALEvent

    Returns
    -------
    list of dict
        The recorded rounds.

    Raises
    ------
    PVSInputError
        As :func:`score_project` and :func:`finetune_round`.
    """
    records = []
    ckpt = checkpoint
    for r in range(1, rounds + 1):
        batch, _ = yield from map_events(suggest(project, config, checkpoint=ckpt),
                                        lambda ev, r=r: dataclasses.replace(ev, round=r))
        if not batch:
            yield ALEvent("done", round=r, message="no slice left to annotate")
            break
        if annotator is not None:
            annotator(batch)
        else:
            while True:
                done = labelled_slices(project, config.versions)
                missing = [c for c in batch if c.slice not in done.get(c.image_id, [])]
                if not missing:
                    break
                yield ALEvent("waiting", round=r, queue=tuple(missing),
                              message=f"waiting for {len(missing)} of {len(batch)} proposed slices to be annotated")
                time.sleep(poll_s)
        record = yield from finetune_round(project, config, checkpoint=ckpt, suggestions=batch, round_no=r)
        records.append(record)
        ckpt = record["checkpoint"]
    yield ALEvent("done", message=f"{len(records)} rounds recorded")
    return records

