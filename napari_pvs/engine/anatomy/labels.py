"""FreeSurfer-numbered label maps (SynthSeg's training maps): structure groups.

Refer to: Fischl B., "FreeSurfer", NeuroImage 2012, doi:10.1016/j.neuroimage.2012.01.021
(the label numbers, ``FreeSurferColorLUT.txt``); Billot B. et al., "SynthSeg:
Segmentation of brain MRI scans of any contrast and resolution without retraining",
Medical Image Analysis 2023, doi:10.1016/j.media.2023.102789 (the shared label maps).
"""

from __future__ import annotations

import numpy as np

__all__ = ["LABEL_GROUPS", "label_groups"]

#: FreeSurfer labels -> structure groups (0 = background and everything outside the brain)
LABEL_GROUPS: dict[str, tuple[int, ...]] = {
    "cerebral white matter": (2, 41), "cerebral cortex": (3, 42), "lateral ventricles": (4, 5, 43, 44),
    "cerebellum": (7, 8, 46, 47), "thalamus": (10, 49), "caudate": (11, 50), "putamen": (12, 51),
    "pallidum": (13, 52), "third/fourth ventricle": (14, 15), "brainstem": (16,), "hippocampus": (17, 53),
    "amygdala": (18, 54), "CSF": (24,), "ventral DC": (28, 60)}


def label_groups(labels: np.ndarray) -> np.ndarray:
    """FreeSurfer label map -> group indices.

    Parameters
    ----------
    labels : np.ndarray
        Integer (or integer-valued float) FreeSurfer labels, any shape.

    Returns
    -------
    np.ndarray
        uint8, same shape: 1..14 in :data:`LABEL_GROUPS` order, 0 for background and every
        label outside the groups (e.g. SynthSeg's extra-cerebral labels 500-530).

    Example
    -------
    >>> label_groups(np.array([0, 2, 41, 24, 507])).tolist()
    [0, 1, 1, 13, 0]
    """
    lut = np.zeros(int(max(labels.max(), 1)) + 1, np.uint8)
    for g, labs in enumerate(LABEL_GROUPS.values(), start=1):
        for lab in labs:
            if lab < lut.size:
                lut[lab] = g
    return lut[np.asarray(labels, dtype=np.int64)]
