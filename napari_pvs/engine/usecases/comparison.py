"""Use case *compare*: several models on one scan, with metrics against a reference.

:func:`comparison_models` builds the model list the same way for every front end (the
checkpoints, then the unfitted Frangi baseline when asked, the shipped default model when
nothing else is given); :func:`compare_job` runs them
(:func:`~napari_pvs.engine.comparison.compare_iter`: the same inference as *segment*) and
returns a :class:`~napari_pvs.engine.comparison.Comparison` whose probability maps
re-threshold without new inference; :func:`compare` is the one-call form.

Used by ``napari-pvs compare``, the Compare widget and the Python API.

Example
-------
>>> from napari_pvs.engine.usecases import compare, comparison_models
>>> models = comparison_models(t2, ["a.pt", "b.pt"], frangi=True)        # doctest: +SKIP
>>> rows = compare(t2, models, reference=truth).metrics(0.5)               # doctest: +SKIP
>>> [(r["model"], round(r["dsc"], 2)) for r in rows]                        # doctest: +SKIP
[('mfnsde (a)', 0.61), ('unet (b)', 0.55), ('frangi', 0.08)]
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from pathlib import Path

import numpy as np

from ..errors import PVSInputError
from ..io import Volume
from ..progress import run_to_end

__all__ = ["comparison_models", "compare_job", "compare"]


def comparison_models(image: Volume, checkpoints: Sequence[str | Path] = (), *, frangi: bool = False,
                      modality: str = "T2", device: str = "auto", default_if_empty: bool = True,
                      min_models: int = 1) -> list:
    """The models to compare, loaded (bad files are refused here, on the caller's thread).

    Parameters
    ----------
    image : Volume
        The scan ``(Z, Y, X)``: the Frangi baseline filters at its finest in-plane spacing.
    checkpoints : sequence of str or Path
        Checkpoint files, in the order of the result.
    frangi : bool
        Add the unfitted Frangi vesselness baseline
        (:func:`~napari_pvs.engine.comparison.frangi_baseline`).
    modality : str
        ``"T2"`` (bright PVS) or ``"T1"`` for the Frangi baseline.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    default_if_empty : bool
        With no checkpoint and no Frangi, the shipped default model.
    min_models : int
        Refuse fewer models than this (a comparison widget wants two).

    Returns
    -------
    list of LoadedModel

    Raises
    ------
    PVSInputError
        A checkpoint that cannot be read; fewer than ``min_models`` models.
    """
    from ..comparison import frangi_baseline
    from ..data import default_checkpoint
    from ..device import pick_device
    from ..models.checkpoint import load_model
    from ..preprocess import inplane_spacing

    dev = pick_device(device)
    models = [load_model(Path(p).expanduser(), device=dev) for p in checkpoints]
    if frangi:
        models.append(frangi_baseline(min(inplane_spacing(image)), modality=modality))
    if not models and default_if_empty:
        models = [load_model(default_checkpoint(), device=dev)]
    if len(models) < min_models:
        words = {2: "two", 3: "three"}.get(min_models, str(min_models))
        raise PVSInputError(f"choose at least {words} models: checkpoints, or one and the Frangi baseline")
    return models


def compare_job(image: Volume, models: Sequence, *, reference: Volume | np.ndarray | None = None,
                threshold: float = 0.5, device: str | None = None) -> Generator[object, None, object]:
    """Run every model on ``image``; yields
    :class:`~napari_pvs.engine.comparison.CompareProgress`, returns the
    :class:`~napari_pvs.engine.comparison.Comparison`.

    Parameters
    ----------
    image : Volume
        T2 (or T1 for T1 models) ``(Z, Y, X)``.
    models : sequence of LoadedModel
        From :func:`comparison_models`.
    reference : Volume or np.ndarray, optional
        Binary reference mask on the image grid (a project version, a simulated truth).
    threshold : float
        Probability threshold for the masks.

    Raises
    ------
    PVSInputError
        No models; a reference on another grid.
    """
    from ..comparison import compare_iter

    return (yield from compare_iter(image, list(models), reference=reference, threshold=threshold, device=device))


def compare(image: Volume, models: Sequence, *, on_event: Callable[[object], None] | None = None, **kwargs):
    """:func:`compare_job` run to its end (same parameters), calling ``on_event`` with each event."""
    return run_to_end(compare_job(image, models, **kwargs), on_event)
