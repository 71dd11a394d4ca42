"""Use case *train*: a PVS segmentation model from image/mask pairs or an annotation project.

Three steps, so that a GUI keeps the project (an SQLite catalogue bound to its thread) on
its own thread and only the training runs in a worker:

1. :func:`plan_training` (caller's thread): checks the request with the engine's own rules
   (a mask on another grid, masks without PVS, a missing checkpoint to start from, a
   folder that cannot be made) and reads the project's labelled slices;
2. :func:`run_training_plan` (any thread): trains every family of the registry, the
   weight-free ``frangi`` baseline included (its threshold is fitted), yielding
   :class:`~napari_pvs.engine.training.TrainEvent`;
3. :func:`record_training` (caller's thread): records the run in the project.

:func:`train_job` chains the three (the CLI's ``napari-pvs train``) and :func:`train` is the
one-call form. The Train widget calls 1-3 through its job runner.

Example
-------
>>> from napari_pvs.engine.training import TrainConfig
>>> from napari_pvs.engine.usecases import TrainRequest, train
>>> cfg = TrainConfig.for_model("mfnsde", epochs=2, steps_per_epoch=10)
>>> out = train(TrainRequest(cfg, "model.pt", images=[t2], masks=[mask]))   # doctest: +SKIP
>>> out.result.best_val_metric                                                # doctest: +SKIP
0.41
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PVSInputError
from ..io import Volume, check_same_grid
from ..progress import run_to_end
from ..training import (ProjectTrainingData, SegmentationTask, TrainConfig, TrainEvent, TrainResult,
                        project_training_data, record_project_run, training_metadata)
from ..training.run import train as train_on_pairs

__all__ = ["TrainRequest", "TrainPlan", "TrainOutcome", "plan_training", "run_training_plan", "record_training",
           "train_job", "train"]


@dataclass(frozen=True)
class TrainRequest:
    """What to train.

    Attributes
    ----------
    config : TrainConfig
        Model family and settings (saved in the checkpoint).
    checkpoint : str or Path
        Where the best checkpoint is written (atomically); its folder is created.
    images, masks : sequence of Volume
        T2 volumes ``(Z, Y, X)`` and their binary PVS masks on the same grids (nonzero =
        PVS); or none, with ``project``.
    project : Project, str or Path, optional
        An annotation project (open, or its folder): train on the slices marked done or
        reviewed of its ``versions``; the run is recorded in it.
    versions : str
        ``"latest"``, ``"reviewed"`` or ``"consensus"`` (with ``project``).
    init_from : str or Path, optional
        Fine-tune from this checkpoint's weights (same family and config).
    """

    config: TrainConfig
    checkpoint: str | Path
    images: Sequence[Volume] = ()
    masks: Sequence[Volume | np.ndarray] = ()
    project: object | None = None
    versions: str = "latest"
    init_from: str | Path | None = None


@dataclass
class TrainPlan:
    """A checked request, ready to run (see :func:`plan_training`)."""

    config: TrainConfig
    checkpoint: Path
    images: list[Volume]
    masks: list
    ignore_masks: list | None = None
    metadata: dict = field(default_factory=dict)
    init_from: Path | None = None
    project: object | None = None
    project_data: ProjectTrainingData | None = None

    @property
    def description(self) -> str:
        """One line for a status bar: model, volumes, planned steps."""
        c = self.config
        steps = "threshold fit" if c.model == "frangi" else f"{c.epochs * c.steps_per_epoch} steps"
        src = f"project {getattr(self.project, 'name', '')} ({len(self.images)} image(s))" if self.project \
            else f"{len(self.images)} volume(s)"
        return f"{c.model}, {src}, {steps}"


@dataclass(frozen=True)
class TrainOutcome:
    """What :func:`train_job` returns: the training result and, with a project, the id of
    the recorded run."""

    result: TrainResult
    run_id: int | None = None

    def summary(self) -> str:
        """One line: stop reason, steps, time, best validation metric, checkpoint."""
        from ..progress import format_seconds

        r = self.result
        best = "n/a" if r.best_val_metric is None else f"{r.best_val_metric:.3f}"
        text = (f"training done ({r.stop_reason}): {r.steps_done} steps in {format_seconds(r.seconds)} "
                f"({100 * r.val_share:.0f} % validating), best validation {r.metric_name} {best}; "
                f"checkpoint {r.checkpoint}")
        if self.run_id is not None:
            text += f"; recorded as run {self.run_id} in the project"
        return text


def _open_project(project):
    if project is None or not isinstance(project, (str, Path)):
        return project
    from ..project import Project

    return Project.open(project)


def plan_training(request: TrainRequest) -> TrainPlan:
    """Check a :class:`TrainRequest` and gather its data (caller's thread).

    Raises
    ------
    PVSInputError
        Both or neither of pairs and project; unequal numbers of images and masks; a mask
        on another grid than its image; masks without any PVS voxel; nothing labelled in
        the project; a missing ``init_from``; a checkpoint folder that cannot be made.
    """
    images, masks = list(request.images), list(request.masks)
    if request.project is not None and (images or masks):
        raise PVSInputError("give either a project or image/mask pairs, not both")
    if request.project is None and not images:
        raise PVSInputError("nothing to train on: give image/mask pairs or a project")
    if len(images) != len(masks):
        raise PVSInputError(f"{len(images)} images but {len(masks)} masks; expected one mask per image")
    init_from = None if request.init_from is None else Path(request.init_from).expanduser()
    if init_from is not None and not init_from.is_file():
        raise PVSInputError("checkpoint to start from not found", init_from)
    ckpt = Path(request.checkpoint).expanduser()
    if ckpt.suffix.lower() != ".pt":
        raise PVSInputError("the checkpoint must be a .pt file", ckpt)
    try:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PVSInputError(f"cannot create the checkpoint folder ({exc.strerror})", ckpt.parent) from None
    plan = TrainPlan(request.config, ckpt, images, masks, init_from=init_from)
    if request.project is not None:
        project = _open_project(request.project)
        data = project_training_data(project, request.versions)
        plan.images, plan.masks, plan.ignore_masks = data.images, data.masks, data.ignore_masks
        plan.metadata = training_metadata(project, data, request.versions)
        plan.project, plan.project_data = project, data
    else:
        for image, mask in zip(images, masks, strict=True):
            if isinstance(mask, Volume):
                check_same_grid(image, mask)
    # the task's own checks (grids, PVS voxels, validation split), before any thread starts
    SegmentationTask(plan.images, plan.masks, plan.config, ignore_masks=plan.ignore_masks)
    return plan


def run_training_plan(plan: TrainPlan) -> Generator[TrainEvent, None, TrainResult]:
    """Train (no project access: safe in a worker thread); yields
    :class:`~napari_pvs.engine.training.TrainEvent`, returns the ``TrainResult``. Closing
    the generator stops at the next step; the best checkpoint so far stays valid."""
    return (yield from train_on_pairs(plan.images, plan.masks, plan.config, plan.checkpoint,
                                       init_from=plan.init_from, ignore_masks=plan.ignore_masks,
                                       metadata=plan.metadata or None))


def record_training(plan: TrainPlan, result: TrainResult) -> TrainOutcome:
    """Record a finished training in the plan's project (caller's thread); a plan without a
    project records nothing."""
    run_id = None
    if plan.project is not None and plan.project_data is not None:
        run_id = record_project_run(plan.project, result, plan.config, plan.project_data)
    return TrainOutcome(result, run_id)


def train_job(request: TrainRequest) -> Generator[TrainEvent, None, TrainOutcome]:
    """Plan, train and record in one generator (one thread): yields
    :class:`~napari_pvs.engine.training.TrainEvent`, returns a :class:`TrainOutcome`.

    Raises
    ------
    PVSInputError
        As :func:`plan_training`, when first advanced.
    """
    plan = plan_training(request)
    result = yield from run_training_plan(plan)
    return record_training(plan, result)


def train(request: TrainRequest, on_event: Callable[[TrainEvent], None] | None = None) -> TrainOutcome:
    """:func:`train_job` run to its end, calling ``on_event`` with each event."""
    return run_to_end(train_job(request), on_event)
