"""GUI-free core of napari-pvs.

Never imports napari, qtpy or magicgui: it runs headless, on a cluster, in the CLI and in
tests. Subpackages are named after what they do:

========================  =================================================================
``io``                    :class:`Volume` (array + geometry), NIfTI load/save, atomic writes
``data``                  registry of the real public MRI files (pooch)
``anatomy``               brain mask, tissue classes, BG/CSO regions, ventricle landmark
``synth``                 synthetic PVS rendering and insertion (uses ``anatomy``)
``models``                one file per network with its own config; losses; registry
``training``              task-neutral loop (events, budget, cancel, checkpoints) + tasks
``inference``             sliding-window prediction, device and mixed precision
``rating``                counting on the BG/CSO rating slices, Potter grade, per-PVS table
``candidates``            real PVS-like objects without a network (ignore masks, reference)
``project``               annotation projects: SQLite catalogue + NIfTI versions, agreement
``checkpoint``, ``default_model``, ``preprocess``, ``metrics``, ``progress``, ``errors``
========================  =================================================================

Array convention everywhere in the engine: a 3D volume is a NumPy array of shape
``(Z, Y, X)``, i.e. the NIfTI voxel axes ``(k, j, i)`` reversed, so that axis 0 is the
slice axis of a scan acquired slice by slice and ``data[z]`` is slice ``z`` exactly as
numbered in the NIfTI file (and in ITK-SNAP or FSLeyes). The affine always maps NIfTI
voxel indices ``(i, j, k)`` to world RAS+ millimetres, as in the file.
"""

from .errors import PVSInputError
from .io import Volume, load_mask, load_volume, save_volume

__all__ = ["PVSInputError", "Volume", "load_volume", "load_mask", "save_volume"]
