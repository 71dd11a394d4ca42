"""Train a PVS segmentation model on (T2, mask) volume pairs: every family of the registry.

:func:`train` dispatches: a network goes through the task-neutral loop
(:func:`~napari_pvs.engine.training.loop.run_training` with a
:class:`~napari_pvs.engine.training.segmentation.SegmentationTask`); the ``frangi``
baseline has no weights and fits its threshold
(:func:`~napari_pvs.engine.training.baseline.fit_frangi`). Both yield the same
:class:`~napari_pvs.engine.training.loop.TrainEvent` and return a
:class:`~napari_pvs.engine.training.loop.TrainResult`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np

from ..io import Volume
from .baseline import fit_frangi
from .loop import TrainEvent, TrainResult, run_training
from .segmentation import SegmentationTask, TrainConfig

__all__ = ["train"]


def train(images: Sequence[Volume], masks: Sequence[Volume | np.ndarray], config: TrainConfig,
          checkpoint_path: str | Path, *, init_from: str | Path | None = None,
          ignore_masks: Sequence[np.ndarray | None] | None = None,
          val_indices: Sequence[int] | None = None, metadata: dict | None = None
          ) -> Generator[TrainEvent, None, TrainResult]:
    """Train a 2D PVS segmentation network, yielding progress events.

    Parameters
    ----------
    images : sequence of Volume
        T2-weighted volumes, data ``(Z, Y, X)``, any voxel size/orientation.
    masks : sequence of Volume or np.ndarray
        Binary PVS masks on the same grids (nonzero = PVS).
    config : TrainConfig
    checkpoint_path : str or Path
        Where the best checkpoint (highest validation DSC) is written, atomically.
    init_from : str or Path, optional
        Fine-tune: start from this checkpoint's weights (same model and config).
    ignore_masks, val_indices, metadata : optional
        See :class:`SegmentationTask`.

    Yields
    ------
    TrainEvent

    Returns
    -------
    TrainResult
        As the generator's return value (``StopIteration.value``).

    Raises
    ------
    PVSInputError
        No volumes, different numbers of images and masks, a mask on another grid, masks
        without any PVS voxel, or an ``init_from`` checkpoint for another model or config.
        Raised when the generator is first advanced.
    """
    if config.model == "frangi":  # no weights to optimise: fit its threshold
        return (yield from fit_frangi(images, masks, config, checkpoint_path, ignore_masks=ignore_masks,
                                      val_indices=val_indices, metadata=metadata))
    task = SegmentationTask(images, masks, config, ignore_masks=ignore_masks, val_indices=val_indices,
                            metadata=metadata)
    return (yield from run_training(task, config.loop_config(), checkpoint_path, init_from=init_from))
