"""Where PVS can lie in a scan: the brain and the parenchyma, found from the image.

One name per idea, used by inference, training, active learning and candidates alike:

``find_brain_mask``
    :func:`~napari_pvs.engine.anatomy.brain_mask`, or None when no brain is found (the
    caller then leaves the image unrestricted).
``find_wide_csf``
    CSF spaces wider than 4 mm (:func:`~napari_pvs.engine.anatomy.wide_csf`: ventricles,
    cisterns, wide sulci), or None when the brain's intensities do not separate.
``parenchyma_mask``
    The brain less those wide CSF spaces: where inference keeps predictions, slices are
    scored for active learning and the Frangi baseline fits its threshold.

All masks are bool ``(Z, Y, X)`` on the image grid.

Example
-------
>>> from napari_pvs.engine.anatomy import parenchyma_mask
>>> region = parenchyma_mask(t2)          # doctest: +SKIP
>>> None if region is None else region.shape == t2.shape   # doctest: +SKIP
True
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import PVSInputError
from ..io import Volume
from .brain import brain_mask
from .tissue import wide_csf

__all__ = ["find_brain_mask", "find_wide_csf", "parenchyma_mask"]

log = logging.getLogger(__name__)


def find_brain_mask(image: Volume) -> np.ndarray | None:
    """bool ``(Z, Y, X)`` brain mask of ``image`` (:func:`brain_mask`), or None when no
    brain is found (logged, not raised)."""
    try:
        return brain_mask(image)
    except PVSInputError as exc:
        log.info("no brain mask (%s): the whole head is used", exc)
        return None


def find_wide_csf(image: Volume, brain: np.ndarray) -> np.ndarray | None:
    """bool ``(Z, Y, X)`` CSF spaces wider than 4 mm inside ``brain`` (:func:`wide_csf`),
    or None when the brain's intensities do not separate into three classes."""
    try:
        return wide_csf(image, brain)
    except PVSInputError as exc:
        log.info("no CSF class (%s): wide CSF spaces are not masked", exc)
        return None


def parenchyma_mask(image: Volume, brain: np.ndarray | None = None) -> np.ndarray | None:
    """The brain less the CSF spaces wider than 4 mm: bool ``(Z, Y, X)``, or None when no
    brain is found (then nothing is restricted).

    Parameters
    ----------
    image : Volume
        T2-weighted scan ``(Z, Y, X)``.
    brain : np.ndarray, optional
        Its brain mask when already known (default :func:`find_brain_mask`).
    """
    brain = find_brain_mask(image) if brain is None else brain
    if brain is None:
        return None
    csf = find_wide_csf(image, brain)
    return brain if csf is None else brain & ~csf
