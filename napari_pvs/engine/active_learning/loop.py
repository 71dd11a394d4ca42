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

__all__ = ["ALConfig", "ALEvent", "ProjectScores", "labelled_slices", "score_project", "suggest",
           "finetune_round", "active_learning_loop", "project_checkpoint", "HOLDOUT_MIN_VOLUMES"]

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
        None: the checkpoint's training learning rate.
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
    versions: str = "latest"
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.n_per_round < 1 or self.finetune_steps < 1 or self.steps_per_epoch < 1:
            raise ValueError(f"n_per_round, finetune_steps and steps_per_epoch must be >= 1, got {self.n_per_round}, "
                             f"{self.finetune_steps} and {self.steps_per_epoch}")
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
    """Axial slices whose brain area is at least ``min_fraction`` of the largest slice's
    (all slices when no brain is found), as :func:`score_volume` scores them."""
    from ..inference.sliding import _brain_or_none
    from ..preprocess import axial_stack

    brain = _brain_or_none(image)
    if brain is None:
        return np.arange(image.shape[image.axial_axis])
    area = axial_stack(image, brain).sum(axis=(1, 2))
    return np.flatnonzero((area > 0) & (area >= min_fraction * area.max()))


def score_project(project, config: ALConfig = ALConfig(), *, checkpoint: str | Path | None = None,
                  subjects: Sequence[str] | None = None) -> Generator[ALEvent, None, ProjectScores]:
    """Score every T2 slice of the project that is not annotated yet.

    Parameters
    ----------
    project : Project
    config : ALConfig
        ``strategy`` decides what is computed: ``bald``/``entropy`` run
        ``config.uncertainty.n_samples`` stochastic passes, ``load`` one deterministic
        pass, ``random`` no model (only the brain's slices).
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
    from ..checkpoint import load_model

    t0 = time.perf_counter()
    images = [im for im in project.images() if im.role == "T2" and (subjects is None or im.subject in subjects)]
    if not images:
        raise PVSInputError("the project has no T2 image to score", project.root)
    done = labelled_slices(project, config.versions)
    ckpt = None
    loaded = None
    if config.strategy != "random":
        ckpt = Path(checkpoint) if checkpoint is not None else project_checkpoint(project)
        loaded = load_model(ckpt)
    ucfg = config.uncertainty
    if config.strategy == "load":
        ucfg = dataclasses.replace(ucfg, sampler="tta", n_samples=1)
    out = ProjectScores({}, {}, {}, ckpt)
    for i, rec in enumerate(images, 1):
        image = project.load_image(rec.id)
        key = (rec.subject, int(rec.id))
        out.slice_mm[key] = float(rec.voxel_size[rec.axial_axis])
        todo = sorted(set(range(rec.shape[rec.axial_axis])) - set(done.get(int(rec.id), [])))
        name = f"{rec.subject} ({i}/{len(images)})"
        if loaded is None:
            yield ALEvent("score", message=f"finding the brain slices of {name}")
            keep = np.intersect1d(_brain_slices(image, ucfg.min_brain_fraction), todo)
            out.candidates[key] = {"slices": keep}
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


def suggest(project, config: ALConfig = ALConfig(), *, checkpoint: str | Path | None = None, n: int | None = None,
            ) -> Generator[ALEvent, None, tuple[list[SliceChoice], ProjectScores]]:
    """Score the project (:func:`score_project`) and propose the next ``n`` slices
    (default ``config.n_per_round``). Yields ``"score"`` events, then one ``"proposed"``;
    returns ``(choices, scores)``."""
    scores = yield from score_project(project, config, checkpoint=checkpoint)
    choices = select_slices(scores.candidates, config.strategy, n or config.n_per_round, slice_mm=scores.slice_mm,
                            config=dataclasses.replace(config.selection, seed=config.seed))
    yield ALEvent("proposed", queue=tuple(choices),
                  message=f"{len(choices)} slices proposed ({config.strategy}) in {format_seconds(scores.seconds)}")
    return choices, scores


def _finetune_config(checkpoint: Path, config: ALConfig):
    """The checkpoint's own training config with the round's budget, so that fine-tuning
    keeps its model, spacing, patch size and normalisation."""
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
    if config.learning_rate is not None:
        tc["learning_rate"] = config.learning_rate
    return TrainConfig(**tc)


def finetune_round(project, config: ALConfig = ALConfig(), *, checkpoint: str | Path | None = None,
                   suggestions: Sequence[SliceChoice] = (), round_no: int = 0,
                   ) -> Generator[ALEvent, None, dict]:
    """Fine-tune the current model on everything annotated so far and record the round.

    The checkpoint (default :func:`project_checkpoint`) is the starting point and gives the
    training config (its own, with ``config``'s budget, steps and seed); the new checkpoint
    is written to ``<project>/models/al_round_NNN.pt``. Only the slices marked done or
    reviewed are labelled (:func:`~napari_pvs.engine.project.training.train_from_project`).
    With fewer than :data:`HOLDOUT_MIN_VOLUMES` annotated scans all of them train and the
    validation DSC is the fit on the annotated slices; from then on a quarter of the scans
    is held out.

    Yields
    ------
    ALEvent
        ``"train"`` events (``inner``: TrainEvent with the live validation DSC), then one
        ``"round"``.

    Returns
    -------
    dict
        The recorded round (:meth:`Project.al_rounds` row).

    Raises
    ------
    PVSInputError
        Nothing annotated yet (no labelled slice with a PVS voxel); a checkpoint that
        cannot be read.
    """
    from ..project.training import train_from_project

    ckpt = Path(checkpoint) if checkpoint is not None else project_checkpoint(project)
    cfg = _finetune_config(ckpt, config)
    labelled = labelled_slices(project, config.versions)
    n_slices = sum(len(v) for v in labelled.values())
    # few annotated scans: every one trains (validation then measures the fit on the
    # annotated slices); from HOLDOUT_MIN_VOLUMES on, a quarter of them is held out
    val = "all" if len(labelled) < HOLDOUT_MIN_VOLUMES else None
    k = len(project.al_rounds()) + 1
    out = project.root / "models" / f"al_round_{k:03d}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = yield from map_events(train_from_project(project, cfg, out, versions=config.versions, init_from=ckpt,
                                                      val_indices=val),
                                   lambda ev: ALEvent("train", round=round_no, inner=ev))
    if result.checkpoint is None or not Path(result.checkpoint).is_file():
        raise PVSInputError("fine-tuning ended before its first validation: no checkpoint was written", out)
    run_id = next((r["id"] for r in reversed(project.training_runs())
                   if Path(r["checkpoint"]) == Path(result.checkpoint).resolve()), None)
    rid = project.record_al_round(result.checkpoint, strategy=config.strategy, n_slices=n_slices,
                                  val_dsc=result.best_val_metric, suggestions=[c.as_dict() for c in suggestions],
                                  run_id=run_id)
    record = next(r for r in project.al_rounds() if r["id"] == rid)
    dsc = "n/a" if result.best_val_metric is None else f"{result.best_val_metric:.3f}"
    yield ALEvent("round", round=round_no, record=record,
                  message=f"round {k}: {n_slices} labelled slices, validation DSC {dsc}, {result.steps_done} steps "
                          f"in {format_seconds(result.seconds)}")
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

