"""Train a segmentation network on what was annotated in a project.

Only the axial slices marked done or reviewed are labelled: every other slice of a partly
annotated volume goes into the ignore mask of
:class:`~napari_pvs.engine.training.SegmentationTask` (left out of the loss, never a patch
centre), so one annotated slice is worth something and an unannotated PVS is not taught
as background. The run (config, metrics, versions, checkpoint path and sha256) is
recorded in the project when it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Generator

import numpy as np

from ..errors import PVSInputError
from ..io import Volume
from ..project.export import chosen_versions
from ..project.store import Project, slices_mask
from .run import train
from .segmentation import train_config_to_dict

__all__ = ["ProjectTrainingData", "project_training_data", "train_from_project", "record_project_run",
           "training_metadata"]


@dataclass
class ProjectTrainingData:
    """Images, masks and ignore masks (all ``(Z, Y, X)``) of the chosen versions.

    ``masks[i]`` is uint8 0/1 with PVS only on labelled slices; ``ignore_masks[i]`` is bool,
    True on every slice not marked done/reviewed. ``versions[i]`` is the version id."""

    images: list[Volume]
    masks: list[np.ndarray]
    ignore_masks: list[np.ndarray]
    versions: list[int]
    labelled_slices: list[list[int]]


def project_training_data(project: Project, versions: str = "latest") -> ProjectTrainingData:
    """Training data from a project's chosen versions (``"latest"``, ``"reviewed"`` or
    ``"consensus"``; :func:`~napari_pvs.engine.project.export.chosen_versions`).

    Raises
    ------
    PVSInputError
        No version with labelled slices, or no PVS voxel on any labelled slice.
    """
    chosen = chosen_versions(project, versions)
    if not chosen:
        raise PVSInputError(f"no T2 image has a {versions} version with slices marked done or reviewed",
                            project.root)
    data = ProjectTrainingData([], [], [], [], [])
    for v, slices in chosen:
        img = project.image(v.image_id)
        mask = project.load_version(v.id)
        labelled = slices_mask(img.shape, img.axial_axis, slices)
        data.images.append(project.load_image(img.id))
        data.masks.append((mask * labelled).astype(np.uint8))
        data.ignore_masks.append(~labelled)
        data.versions.append(v.id)
        data.labelled_slices.append(list(slices))
    if not any(m.any() for m in data.masks):
        raise PVSInputError(f"the {versions} versions hold no PVS voxel on their labelled slices", project.root)
    return data


def train_from_project(project: Project, config, checkpoint_path: str | Path, *, versions: str = "latest",
                       init_from: str | Path | None = None, val_indices=None) -> Generator:
    """:func:`~napari_pvs.engine.training.train` on :func:`project_training_data`, then
    record the run in the project. ``val_indices`` (indices into the chosen T2 images, in
    project order) picks the validation volumes, as in
    :class:`~napari_pvs.engine.training.SegmentationTask`; ``"all"`` trains and validates
    on every labelled slice (a fit measure: nothing is held out). Yields the training's
    :class:`~napari_pvs.engine.training.TrainEvent` s and returns its ``TrainResult``;
    the run is then listed by :meth:`Project.training_runs`.

    Raises
    ------
    PVSInputError
        As :func:`project_training_data` and :func:`~napari_pvs.engine.training.train`.
    """
    data = project_training_data(project, versions)
    if val_indices == "all":
        val_indices = list(range(len(data.images)))
    result = yield from train(data.images, data.masks, config, checkpoint_path, init_from=init_from,
                              ignore_masks=data.ignore_masks, val_indices=val_indices,
                              metadata=training_metadata(project, data, versions))
    record_project_run(project, result, config, data)
    return result


def training_metadata(project: Project, data: ProjectTrainingData, versions: str) -> dict:
    """What a checkpoint records of the project data it learnt from (its ``recipe``)."""
    return {"project": str(project.root), "versions_rule": versions, "versions": data.versions,
            "labelled_slices": data.labelled_slices}


def record_project_run(project: Project, result, config, data: ProjectTrainingData) -> int | None:
    """Record a finished training (``TrainResult``) on ``data`` in the project; returns the
    run id, or None when no checkpoint was written."""
    if result.checkpoint is None or not Path(result.checkpoint).is_file():
        return None
    return project.record_training_run(result.checkpoint, config=train_config_to_dict(config),
                                       metrics={"best_val_dsc": result.best_val_metric, "steps": result.steps_done,
                                                "seconds": result.seconds, "stop_reason": result.stop_reason},
                                       versions=data.versions)
