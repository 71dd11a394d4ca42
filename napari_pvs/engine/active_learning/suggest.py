"""Scoring a project's slices not annotated yet and proposing the next ones.

The project is read on the caller's thread (:func:`scoring_inputs`: its SQLite connection
stays there); the stochastic predictions run in a generator that touches no project
(:func:`score_images`), so napari runs it in a worker. :func:`score_project` and
:func:`suggest` chain them for the CLI and scripts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PVSInputError
from ..progress import format_seconds, map_events
from .config import ALConfig, ALEvent, labelled_slices, project_checkpoint
from .selection import SliceChoice, select_slices
from .uncertainty import VolumeScores, score_volume

__all__ = ["ProjectScores", "ScoringInputs", "scoring_inputs", "score_images", "score_project", "suggest",
           "select_next"]


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


def _brain_slices(image, min_fraction: float) -> np.ndarray:
    """The slices :func:`score_volume` would score (all slices when no brain is found)."""
    from ..preprocess import axial_stack
    from ..anatomy.regions import parenchyma_mask
    from .uncertainty import scorable_slices

    region = parenchyma_mask(image)
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
    from ..models.checkpoint import load_model

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
