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
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PVSInputError
from ..progress import format_seconds, map_events
from .scoring import STRATEGIES
from .selection import SelectionConfig, SliceChoice, select_slices
from .uncertainty import UncertaintyConfig, VolumeScores, score_volume

__all__ = ["ALConfig", "ALEvent", "ProjectScores", "ScoringInputs", "FinetunePlan", "labelled_slices",
           "scoring_inputs", "score_images", "score_project", "suggest", "select_next", "plan_finetune",
           "run_finetune", "record_finetune", "round_message", "finetune_round", "active_learning_loop",
           "project_checkpoint", "HOLDOUT_MIN_VOLUMES"]

#: with fewer annotated scans, fine-tuning trains on all of them and its validation DSC
#: measures the fit on the annotated slices; from this many on, a quarter is held out
HOLDOUT_MIN_VOLUMES = 4


@dataclass(frozen=True)
class ALConfig:
    """Settings of an active-learning round.

    Attributes
    ----------
    strategy : str
        ``"bald"``, ``"entropy"``, ``"random"`` or ``"load"``.
    n_per_round : int
        Slices proposed per round.
    uncertainty : UncertaintyConfig
        Sampler and number of stochastic passes (``load`` uses one deterministic pass).
    selection : SelectionConfig
        Diversity term.
    finetune_minutes : float
        Wall-clock budget of each fine-tuning (equal budget per round).
    finetune_steps : int
        Upper bound on optimisation steps per round (epochs of ``steps_per_epoch``).
    steps_per_epoch : int
        Steps between validations (the live validation DSC).
    learning_rate : float or None
        None: the checkpoint's training learning rate times ``lr_factor``.
    lr_factor : float
        Fine-tuning a trained model at its full training rate (Adagrad 0.05) on a few
        slices wrecked the shipped model in 20 steps (validation DSC 0 on the slice it had
        segmented itself); 0.2 by default.
    validate_start : bool
        Validate the starting model first and keep it unless fine-tuning beats it on the
        validation slices, so a round never records a worse model (default True).
    versions : str
        Which versions are annotations (``"latest"``, ``"reviewed"``, ``"consensus"``).
    seed : int

    Raises
    ------
    ValueError
        Unknown strategy, non-positive counts or budget.
    """

    strategy: str = "bald"
    n_per_round: int = 10
    uncertainty: UncertaintyConfig = UncertaintyConfig()
    selection: SelectionConfig = SelectionConfig()
    finetune_minutes: float = 5.0
    finetune_steps: int = 2000
    steps_per_epoch: int = 25
    learning_rate: float | None = None
    lr_factor: float = 0.2
    validate_start: bool = True
    versions: str = "latest"
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.n_per_round < 1 or self.finetune_steps < 1 or self.steps_per_epoch < 1:
            raise ValueError(f"n_per_round, finetune_steps and steps_per_epoch must be >= 1, got {self.n_per_round}, "
                             f"{self.finetune_steps} and {self.steps_per_epoch}")
        if not self.lr_factor > 0:
            raise ValueError(f"lr_factor must be > 0, got {self.lr_factor}")
        if not self.finetune_minutes > 0:
            raise ValueError(f"finetune_minutes must be > 0, got {self.finetune_minutes}")


@dataclass(frozen=True)
class ALEvent:
    """Progress of an active-learning job.

    Attributes
    ----------
    kind : str
        ``"score"`` (scoring progress), ``"proposed"`` (a batch is ready: ``queue``),
        ``"waiting"`` (for the batch to be annotated), ``"train"`` (fine-tuning progress:
        ``inner`` is the :class:`~napari_pvs.engine.training.TrainEvent`), ``"round"`` (a
        round was recorded: ``record``) or ``"done"``.
    round : int
        1-based round of the loop (0 outside a loop).
    message : str
    inner : object or None
        The scoring or training event relayed.
    queue : tuple of SliceChoice
    record : dict or None
        The recorded round (:meth:`Project.al_rounds` row).
    """

    kind: str
    round: int = 0
    message: str = ""
    inner: object = None
    queue: tuple = ()
    record: dict | None = None

    @property
    def fraction(self) -> float | None:
        if self.kind in ("round", "done"):
            return 1.0
        return getattr(self.inner, "fraction", None)

    def summary(self) -> str:
        prefix = f"round {self.round}: " if self.round else ""
        if self.inner is not None and hasattr(self.inner, "summary"):
            return prefix + self.inner.summary()
        return prefix + self.message


@dataclass
class ProjectScores:
    """Scores of the project's T2 images under one model.

    Attributes
    ----------
    volumes : dict
        ``(subject, image_id) -> VolumeScores`` (None for ``random``, which runs no model).
    candidates : dict
        ``(subject, image_id) -> {"slices", "entropy", "bald", "load_mm2"}``: the slices
        not annotated yet, for :func:`select_slices`.
    slice_mm : dict
        ``(subject, image_id) -> axial slice distance (mm)``.
    checkpoint : Path or None
    seconds : float
    """

    volumes: dict
    candidates: dict
    slice_mm: dict
    checkpoint: Path | None
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


def project_checkpoint(project) -> Path:
    """The project's current model (:meth:`Project.current_checkpoint`), else the shipped
    default model."""
    from ..default_model import default_checkpoint

    return project.current_checkpoint() or default_checkpoint()


def labelled_slices(project, versions: str = "latest") -> dict[int, list[int]]:
    """``image_id -> axial slices marked done or reviewed`` in the chosen versions
    (:func:`~napari_pvs.engine.project.export.chosen_versions`)."""
    from ..project.export import chosen_versions

    return {int(v.image_id): sorted(int(k) for k in slices) for v, slices in chosen_versions(project, versions)}


def _brain_slices(image, min_fraction: float) -> np.ndarray:
    """The slices :func:`score_volume` would score (all slices when no brain is found)."""
    from ..preprocess import axial_stack
    from .uncertainty import scorable_slices, scoring_region

    region = scoring_region(image)
    if region is None:
        return np.arange(image.shape[image.axial_axis])
    return scorable_slices(axial_stack(image, region).sum(axis=(1, 2)), min_fraction)


@dataclass
class ScoringInputs:
    """What :func:`score_images` needs from a project, read on the caller's thread (the
    project's SQLite connection stays there): ``items`` of ``((subject, image_id), Volume,
    slices not annotated yet)``, ``slice_mm`` (axial slice distance per scan) and the
    checkpoint (None for ``random``)."""

    items: list
    slice_mm: dict
    checkpoint: Path | None


def scoring_inputs(project, config: ALConfig = ALConfig(), *, checkpoint: str | Path | None = None,
                   subjects: Sequence[str] | None = None) -> ScoringInputs:
    """Load the project's T2 images and their slices not annotated yet.

    Raises
    ------
    PVSInputError
        No T2 image in the project.
    """
    images = [im for im in project.images() if im.role == "T2" and (subjects is None or im.subject in subjects)]
    if not images:
        raise PVSInputError("the project has no T2 image to score", project.root)
    done = labelled_slices(project, config.versions)
    ckpt = None
    if config.strategy != "random":
        ckpt = Path(checkpoint) if checkpoint is not None else project_checkpoint(project)
    items, slice_mm = [], {}
    for rec in images:
        key = (rec.subject, int(rec.id))
        slice_mm[key] = float(rec.voxel_size[rec.axial_axis])
        todo = sorted(set(range(rec.shape[rec.axial_axis])) - set(done.get(int(rec.id), [])))
        items.append((key, project.load_image(rec.id), todo))
    return ScoringInputs(items, slice_mm, ckpt)


def score_images(inputs: ScoringInputs, config: ALConfig = ALConfig()) -> Generator[ALEvent, None, ProjectScores]:
    """Score the slices of :func:`scoring_inputs` (no project access: runs in a worker).

    ``config.strategy`` decides what is computed: ``bald``/``entropy`` run
    ``config.uncertainty.n_samples`` stochastic passes, ``load`` one deterministic pass,
    ``random`` no model (only the brain's slices, as scoring would keep them).

    Yields ``"score"`` events; returns :class:`ProjectScores`.

    Raises
    ------
    PVSInputError
        An unreadable checkpoint.
    """
    from ..checkpoint import load_model

    t0 = time.perf_counter()
    loaded = load_model(inputs.checkpoint) if inputs.checkpoint is not None else None
    ucfg = config.uncertainty
    if config.strategy == "load":
        ucfg = dataclasses.replace(ucfg, sampler="tta", n_samples=1)
    out = ProjectScores({}, {}, dict(inputs.slice_mm), inputs.checkpoint)
    for i, (key, image, todo) in enumerate(inputs.items, 1):
        name = f"{key[0]} ({i}/{len(inputs.items)})"
        if loaded is None:
            yield ALEvent("score", message=f"finding the brain slices of {name}")
            out.candidates[key] = {"slices": np.intersect1d(_brain_slices(image, ucfg.min_brain_fraction), todo)}
            out.volumes[key] = None
            continue
        scores: VolumeScores = yield from map_events(score_volume(loaded, image, ucfg, slices=todo, name=name),
                                                     lambda ev: ALEvent("score", inner=ev))
        out.volumes[key] = scores
        sl = scores.scored
        out.candidates[key] = {"slices": sl, "entropy": scores.entropy[sl], "bald": scores.bald[sl],
                               "load_mm2": scores.load_mm2[sl]}
    out.seconds = time.perf_counter() - t0
    return out


def score_project(project, config: ALConfig = ALConfig(), *, checkpoint: str | Path | None = None,
                  subjects: Sequence[str] | None = None) -> Generator[ALEvent, None, ProjectScores]:
    """Score every T2 slice of the project that is not annotated yet:
    :func:`scoring_inputs` then :func:`score_images`.

    Parameters
    ----------
    project : Project
    config : ALConfig
    checkpoint : str or Path, optional
        Default: :func:`project_checkpoint`.
    subjects : sequence of str, optional
        Default: every subject with a T2.

    Yields
    ------
    ALEvent
        ``"score"`` events.

    Returns
    -------
    ProjectScores

    Raises
    ------
    PVSInputError
        No T2 image in the project; an unreadable checkpoint.
    """
    inputs = scoring_inputs(project, config, checkpoint=checkpoint, subjects=subjects)
    return (yield from score_images(inputs, config))


def suggest(project, config: ALConfig = ALConfig(), *, checkpoint: str | Path | None = None, n: int | None = None,
            ) -> Generator[ALEvent, None, tuple[list[SliceChoice], ProjectScores]]:
    """Score the project (:func:`score_project`) and propose the next ``n`` slices
    (default ``config.n_per_round``). Yields ``"score"`` events, then one ``"proposed"``;
    returns ``(choices, scores)``."""
    scores = yield from score_project(project, config, checkpoint=checkpoint)
    choices = select_next(scores, config, n)
    yield ALEvent("proposed", queue=tuple(choices),
                  message=f"{len(choices)} slices proposed ({config.strategy}) in {format_seconds(scores.seconds)}")
    return choices, scores


def select_next(scores: ProjectScores, config: ALConfig = ALConfig(), n: int | None = None) -> list[SliceChoice]:
    """The next ``n`` (default ``config.n_per_round``) slices of scored project slices
    (:func:`~.selection.select_slices` with ``config``'s strategy, diversity and seed)."""
    return select_slices(scores.candidates, config.strategy, n or config.n_per_round, slice_mm=scores.slice_mm,
                         config=dataclasses.replace(config.selection, seed=config.seed))


def _finetune_config(checkpoint: Path, config: ALConfig):
    """The checkpoint's own training config with the round's budget, learning rate and
    start validation, so that fine-tuning keeps its model, spacing, patch size and
    normalisation."""
    from ..checkpoint import read_checkpoint
    from ..training import TrainConfig

    ck = read_checkpoint(checkpoint)
    tc = dict(ck.get("train_config") or {})
    tc = {k: v for k, v in tc.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
    tc.update(model=ck["model_name"], model_config=ck["model_config"], spacing_mm=float(ck["spacing_mm"]),
              patch_size=tuple(ck["patch_size"]), percentiles=tuple(ck["normalization"]["percentiles"]),
              max_minutes=config.finetune_minutes, seed=config.seed,
              steps_per_epoch=config.steps_per_epoch,
              epochs=max(1, -(-config.finetune_steps // config.steps_per_epoch)))
    tc["validate_start"] = config.validate_start
    if config.learning_rate is not None:
        tc["learning_rate"] = config.learning_rate
    else:
        tc["learning_rate"] = float(tc.get("learning_rate", TrainConfig.learning_rate)) * config.lr_factor
    return TrainConfig(**tc)


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
    from ..project.training import project_training_data, training_metadata

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
    from ..project.training import record_project_run

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
    reviewed are labelled (:func:`~napari_pvs.engine.project.training.project_training_data`).
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

