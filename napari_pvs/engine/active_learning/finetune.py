"""Fine-tuning rounds: the current model learns from every annotated slice.

:func:`plan_finetune` reads the project (caller's thread), :func:`run_finetune` trains (a
generator that touches no project: napari runs it in a worker), :func:`record_finetune`
records the run and the round; :func:`finetune_round` chains them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import PVSInputError
from ..progress import format_seconds, map_events
from .config import ALConfig, ALEvent, project_checkpoint
from .selection import SliceChoice

__all__ = ["FinetunePlan", "plan_finetune", "run_finetune", "record_finetune", "round_message", "finetune_round",
           "HOLDOUT_MIN_VOLUMES"]

#: with fewer annotated scans, fine-tuning trains on all of them and its validation DSC
#: measures the fit on the annotated slices; from this many on, a quarter is held out
HOLDOUT_MIN_VOLUMES = 4


def _finetune_config(checkpoint: Path, config: ALConfig):
    """The checkpoint's own training config with the round's budget, learning rate and
    start validation, so that fine-tuning keeps its model, spacing, patch size and
    normalisation."""
    from ..models.checkpoint import read_checkpoint, trainable_checkpoint
    from ..training import TrainConfig

    ck = trainable_checkpoint(read_checkpoint(checkpoint))  # an ensemble: its first member
    own = {**(ck.get("train_config") or {}), "model": ck["model_name"], "model_config": ck["model_config"]}
    base = TrainConfig.from_dict(own)
    lr = config.learning_rate if config.learning_rate is not None else base.learning_rate * config.lr_factor
    return dataclasses.replace(
        base, spacing_mm=float(ck["spacing_mm"]), patch_size=tuple(ck["patch_size"]),
        percentiles=tuple(ck["normalization"]["percentiles"]), max_minutes=config.finetune_minutes, seed=config.seed,
        steps_per_epoch=config.steps_per_epoch, epochs=max(1, -(-config.finetune_steps // config.steps_per_epoch)),
        validate_start=config.validate_start, learning_rate=float(lr))


@dataclass
class FinetunePlan:
    """A fine-tuning round prepared from a project on the caller's thread
    (:func:`plan_finetune`): the annotated data, the training config, the starting and
    the output checkpoint, the number of labelled slices and the validation volumes."""

    data: object
    train_config: object
    init_from: Path
    out: Path
    n_slices: int
    val_indices: list[int] | None
    metadata: dict


def plan_finetune(project, config: ALConfig = ALConfig(), *, checkpoint: str | Path | None = None) -> FinetunePlan:
    """Read what a fine-tuning round needs from the project (see :func:`finetune_round`).

    Raises
    ------
    PVSInputError
        Nothing annotated yet; a checkpoint that cannot be read.
    """
    from ..training.project import project_training_data, training_metadata

    ckpt = Path(checkpoint) if checkpoint is not None else project_checkpoint(project)
    cfg = _finetune_config(ckpt, config)
    data = project_training_data(project, config.versions)
    n_slices = sum(len(s) for s in data.labelled_slices)
    # few annotated scans: every one trains (validation then measures the fit on the
    # annotated slices); from HOLDOUT_MIN_VOLUMES on, a quarter of them is held out
    val = list(range(len(data.images))) if len(data.images) < HOLDOUT_MIN_VOLUMES else None
    out = project.root / "models" / f"al_round_{len(project.al_rounds()) + 1:03d}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    return FinetunePlan(data, cfg, ckpt, out, n_slices, val, training_metadata(project, data, config.versions))


def run_finetune(plan: FinetunePlan, round_no: int = 0) -> Generator[ALEvent, None, object]:
    """Train the plan (no project access: runs in a worker); yields ``"train"`` events
    (``inner``: TrainEvent with the live validation DSC), returns the ``TrainResult``."""
    from ..training import train

    d = plan.data
    gen = train(d.images, d.masks, plan.train_config, plan.out, init_from=plan.init_from,
                ignore_masks=d.ignore_masks, val_indices=plan.val_indices, metadata=plan.metadata)
    return (yield from map_events(gen, lambda ev: ALEvent("train", round=round_no, inner=ev)))


def record_finetune(project, plan: FinetunePlan, result, config: ALConfig = ALConfig(),
                    suggestions: Sequence[SliceChoice] = ()) -> dict:
    """Record a finished fine-tuning as a training run and an active-learning round;
    returns the round (:meth:`Project.al_rounds` row).

    Raises
    ------
    PVSInputError
        The training ended before its first validation (no checkpoint).
    """
    from ..training.project import record_project_run

    run_id = record_project_run(project, result, plan.train_config, plan.data)
    if run_id is None:
        raise PVSInputError("fine-tuning ended before its first validation: no checkpoint was written", plan.out)
    rid = project.record_al_round(result.checkpoint, strategy=config.strategy, n_slices=plan.n_slices,
                                  val_dsc=result.best_val_metric, suggestions=[c.as_dict() for c in suggestions],
                                  run_id=run_id)
    return next(r for r in project.al_rounds() if r["id"] == rid)


def round_message(record: dict, result) -> str:
    """One line about a recorded round."""
    dsc = "n/a" if record["val_dsc"] is None else f"{record['val_dsc']:.3f}"
    return (f"round {record['id']}: {record['n_slices']} labelled slices, validation DSC {dsc}, "
            f"{result.steps_done} steps in {format_seconds(result.seconds)}")


def finetune_round(project, config: ALConfig = ALConfig(), *, checkpoint: str | Path | None = None,
                   suggestions: Sequence[SliceChoice] = (), round_no: int = 0,
                   ) -> Generator[ALEvent, None, dict]:
    """Fine-tune the current model on everything annotated so far and record the round:
    :func:`plan_finetune`, :func:`run_finetune`, :func:`record_finetune`.

    The checkpoint (default :func:`project_checkpoint`) is the starting point and gives the
    training config (its own, with ``config``'s budget, steps and seed); the new checkpoint
    is written to ``<project>/models/al_round_NNN.pt``. Only the slices marked done or
    reviewed are labelled (:func:`~napari_pvs.engine.training.project.project_training_data`).
    With fewer than :data:`HOLDOUT_MIN_VOLUMES` annotated scans all of them train and the
    validation DSC is the fit on the annotated slices; from then on a quarter of the scans
    is held out.

    Yields
    ------
    ALEvent
        ``"train"`` events, then one ``"round"``.

    Returns
    -------
    dict
        The recorded round (:meth:`Project.al_rounds` row).

    Raises
    ------
    PVSInputError
        Nothing annotated yet (no labelled slice with a PVS voxel); a checkpoint that
        cannot be read; training that ended before its first validation.
    """
    plan = plan_finetune(project, config, checkpoint=checkpoint)
    result = yield from run_finetune(plan, round_no)
    record = record_finetune(project, plan, result, config, suggestions)
    yield ALEvent("round", round=round_no, record=record, message=round_message(record, result))
    return record
