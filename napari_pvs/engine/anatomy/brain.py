"""Brain mask of a T2-weighted image by intensity and morphology (no atlas).

Learned skull-strippers (SynthStrip, HD-BET) need weights that cannot be downloaded at
run time here, and classical ones (FSL BET) are not Python packages; this rule-based mask
(scipy/scikit-image morphology) is enough to keep synthetic PVS and inference windows
inside the head's brain.
"""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_otsu

from ..errors import PVSInputError
from ..io import Volume
from .morphology import (check_3d, crop_to, edt_inside, edt_to, fill_holes, largest_component, smoothed,
                         spacing_mm)

__all__ = ["brain_mask"]


def brain_mask(image: Volume, *, erosion_mm: float = 8.0) -> np.ndarray:
    """Brain mask by intensity thresholding and morphology, for T2 images with or
    without skull.

    The lightly smoothed image is thresholded between background and tissue (Otsu,
    capped at 40 % of the median tissue intensity so that dark white matter stays in);
    the foreground is eroded by ``erosion_mm`` (Euclidean, in mm, so anisotropic voxels
    are handled), which cuts the thin bridges between brain and scalp; the largest
    connected component is kept, grown back by ``erosion_mm`` inside the foreground,
    and its holes are filled (in 3D and in every axial slice).

    Parameters
    ----------
    image : Volume
        3D scalar image, ``(Z, Y, X)``.
    erosion_mm : float
        Erosion radius in mm.

    Returns
    -------
    np.ndarray
        bool ``(Z, Y, X)``.

    Raises
    ------
    PVSInputError
        The image is not 3D, or no brain is found (empty or too thin foreground).
    """
    check_3d(image)
    spacing = spacing_mm(image)
    sm = smoothed(image, 0.7)
    if not np.isfinite(sm).all() or float(sm.max()) <= float(sm.min()):
        raise PVSInputError("no brain found: the image is constant or not finite", image.path)
    t = float(threshold_otsu(sm))
    tissue = sm[sm > t]
    if tissue.size:
        t = min(t, 0.4 * float(np.median(tissue)))
    fg = sm > t
    # the morphology runs on a grid of about 1 mm (every 2nd voxel of a 0.5 mm image)
    step = np.maximum(1, np.round(1.0 / spacing)).astype(int)
    coarse = tuple(slice(None, None, int(k)) for k in step)
    fg_c = fg[coarse]
    # the distance transforms run on the foreground's box only: outside it all is background,
    # so the distances inside it are the same (exact), and skull-stripped scans cost less
    core = np.zeros(fg_c.shape, dtype=bool)
    if fg_c.any():
        box = crop_to(fg_c, (1, 1, 1))
        core[box] = edt_inside(fg_c[box], spacing * step) > erosion_mm
    if not core.any():
        raise PVSInputError(
            f"no brain found: no foreground region thicker than {2 * erosion_mm:g} mm", image.path)
    core = largest_component(core)
    grown = np.zeros(fg_c.shape, dtype=bool)      # only its part inside the foreground is used
    grown[box] = edt_to(core[box], spacing * step) <= erosion_mm + 0.5 * float((spacing * step).max())
    for ax, k in enumerate(step):
        if k > 1:
            grown = np.repeat(grown, k, axis=ax)
    brain = grown[:fg.shape[0], :fg.shape[1], :fg.shape[2]] & fg
    brain = fill_holes(brain)
    ax = image.axial_axis
    moved = np.moveaxis(brain, ax, 0)
    for s in range(moved.shape[0]):
        if moved[s].any():
            moved[s] = fill_holes(moved[s])
    return brain
