"""Checks that a scan can be segmented, counted or trained on, before any work starts.

:func:`load_volume` refuses what cannot be read as a 3D image. What can be read but makes
no sense as a T2 scan to segment is refused here, with one line naming the file:
a constant image (all zero, or one value), voxel sizes outside the range of brain MRI,
and a volume whose processing would not fit in the memory this machine has. An output
path equal to an input is refused before anything is written.

Refer to: Wardlaw JM et al., "Neuroimaging standards for research into small vessel disease
and its contribution to ageing and neurodegeneration" (STRIVE), Lancet Neurol 2013,
doi:10.1016/S1474-4422(13)70124-8 (PVS are rated on T2 with slices of at most a few mm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PVSInputError
from .volume import Volume

__all__ = ["MAX_VOXEL_MM", "MIN_VOXEL_MM", "SEGMENT_BYTES_PER_VOXEL", "READ_BYTES_PER_VOXEL", "check_scan",
           "check_memory", "check_output_paths", "available_memory_bytes"]

#: thickest voxel (slice) a scan may have, in mm: PVS (1-3 mm wide) vanish in thicker slices
MAX_VOXEL_MM = 7.0
#: thinnest voxel, in mm: below this the header's voxel size is wrong (or it is not MRI of a head)
MIN_VOXEL_MM = 0.1
#: resident bytes per voxel that segmenting takes beyond torch's own (measured: 1 mm 182x218x182
#: T2, 1064 MB peak with about 400 MB for torch and the model: 92 B/voxel; rounded up)
SEGMENT_BYTES_PER_VOXEL = 100
#: bytes per voxel to read a scan as float32 (the stored data plus the float32 copy) besides the file's own
READ_BYTES_PER_VOXEL = 8


def available_memory_bytes() -> int:
    """Memory this process can still take (psutil's ``available``), in bytes."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(shape: tuple[int, ...], bytes_per_voxel: float, what: str, path: str | Path | None = None,
                 *, available: int | None = None) -> None:
    """Refuse work whose estimated memory exceeds what is available.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (any axis order).
    bytes_per_voxel : float
        Estimated resident bytes per voxel of the work (e.g. :data:`SEGMENT_BYTES_PER_VOXEL`).
    what : str
        The work, for the message ("segmenting", "reading").
    path : str or Path, optional
        The file concerned.
    available : int, optional
        Bytes available (default: :func:`available_memory_bytes`).

    Raises
    ------
    PVSInputError
        ``"scan.nii.gz: 1024x1024x1024 voxels: segmenting needs about 107.4 GB, 21.9 GB is available"``.

    Example
    -------
    >>> check_memory((1024, 1024, 1024), 100, "segmenting", available=8 * 10**9)
    Traceback (most recent call last):
    ...
    napari_pvs.engine.errors.PVSInputError: 1024x1024x1024 voxels: segmenting needs about 107.4 GB, 8.0 GB is available; crop the volume or use a machine with more memory
    """
    need = float(np.prod([int(n) for n in shape], dtype=np.float64)) * float(bytes_per_voxel)
    have = available_memory_bytes() if available is None else int(available)
    if need > have:
        dims = "x".join(str(int(n)) for n in shape)
        raise PVSInputError(f"{dims} voxels: {what} needs about {need / 1e9:.1f} GB, {have / 1e9:.1f} GB is "
                            "available; crop the volume or use a machine with more memory", path)


def check_scan(volume: Volume, path: str | Path | None = None) -> Volume:
    """Refuse a volume that cannot be a T2 scan to segment: constant intensities, or voxel
    sizes outside ``[MIN_VOXEL_MM, MAX_VOXEL_MM]``.

    Parameters
    ----------
    volume : Volume
        Data ``(Z, Y, X)``, any dtype, with its affine.
    path : str or Path, optional
        Named in the message (default: ``volume.path``).

    Returns
    -------
    Volume
        ``volume`` itself.

    Raises
    ------
    PVSInputError
        ``"t2.nii.gz: image is constant (every voxel is 0): nothing to segment"``;
        ``"t2.nii.gz: voxel size 1.00 x 1.00 x 10.00 mm: slices thicker than 7 mm ..."``.

    Example
    -------
    >>> import numpy as np
    >>> from napari_pvs.engine.io import Volume
    >>> check_scan(Volume(np.zeros((4, 8, 8), np.float32), np.eye(4)))
    Traceback (most recent call last):
    ...
    napari_pvs.engine.errors.PVSInputError: image is constant (every voxel is 0.0): nothing to segment
    """
    path = volume.path if path is None else path
    data = volume.data
    lo, hi = (data.min(), data.max()) if data.size else (0, 0)
    if lo == hi:
        raise PVSInputError(f"image is constant (every voxel is {lo}): nothing to segment", path)
    sizes = volume.voxel_size
    size_text = " x ".join(f"{s:.2f}" for s in sizes)
    if max(sizes) > MAX_VOXEL_MM:
        raise PVSInputError(f"voxel size {size_text} mm: slices thicker than {MAX_VOXEL_MM:g} mm hide PVS "
                            "(1-3 mm wide); a T2 with thinner slices is needed", path)
    if min(sizes) < MIN_VOXEL_MM:
        raise PVSInputError(f"voxel size {size_text} mm: below {MIN_VOXEL_MM:g} mm, the header's voxel size is "
                            "probably wrong (mm expected)", path)
    return volume


def check_output_paths(outputs, inputs) -> None:
    """Refuse an output that is one of the inputs (the same file, through any link).

    Raises
    ------
    PVSInputError
        ``"t2.nii.gz: the output would overwrite the input"``.
    """
    ins = {}
    for p in inputs:
        if p is None:
            continue
        p = Path(p)
        ins[p.resolve()] = p
    for out in outputs:
        if out is None:
            continue
        r = Path(out).resolve()
        if r in ins:
            raise PVSInputError("the output would overwrite the input; choose another output path", out)
