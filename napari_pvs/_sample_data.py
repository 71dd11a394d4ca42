"""napari sample data: a real clinical T2 with simulated PVS and their mask.

The image is the first-visit T2-weighted scan of patient 01 of the open_ms longitudinal
MS database (Lesjak et al., Neuroinformatics 2016, CC-BY; 406x448x36 voxels of
0.51x0.51x4.0 mm), fetched and sha256-verified with
:func:`napari_pvs.engine.datasets.fetch` (local data directory, else a download into the
per-user cache). Realistic synthetic PVS (:func:`napari_pvs.engine.simulate.simulate_pvs`,
fixed seed) are inserted into it, which gives a voxel-exact ground-truth mask: no public
data set has manual PVS masks.
"""

from __future__ import annotations

import logging

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

__all__ = ["make_sample_data", "SAMPLE_T2", "SAMPLE_SEED"]

log = logging.getLogger(__name__)

SAMPLE_T2 = "open_ms/longitudinal/patient01/study1_T2W.nii.gz"
SAMPLE_SEED = 0


def make_sample_data() -> "list[napari.types.LayerDataTuple]":
    """Real T2 (open_ms patient01, visit 1) with simulated PVS, and the PVS mask.

    Returns
    -------
    list of LayerDataTuple
        ``(image float32 (Z, Y, X), {...}, "image")`` and ``(mask uint8 (Z, Y, X), {...},
        "labels")``, both with ``scale`` = voxel size (mm) and the T2's ``affine`` and
        ``nifti_header`` in their metadata (so the mask can be saved on the T2's grid).
    """
    from .engine.datasets import fetch
    from .engine.io import load_volume
    from .engine.simulate import simulate_pvs
    from .widgets._layers import volume_metadata

    path = fetch(SAMPLE_T2)
    t2 = load_volume(path)
    sim = simulate_pvs(t2, seed=SAMPLE_SEED)
    log.info("sample data: %d synthetic PVS in %s", len(sim.table), path.name)
    scale = tuple(t2.voxel_size)
    info = {"simulated_pvs": True, "simulation_seed": SAMPLE_SEED, "n_simulated_pvs": len(sim.table),
            "citation": "open_ms (Lesjak et al., Neuroinformatics 2016), CC-BY"}
    image_meta = volume_metadata(t2, **info)
    mask_meta = volume_metadata(t2, **info)
    return [
        (sim.image.data, {"name": "study1_T2W + simulated PVS", "scale": scale, "colormap": "gray",
                          "metadata": image_meta}, "image"),
        (sim.mask, {"name": "simulated PVS mask", "scale": scale, "metadata": mask_meta,
                    "opacity": 0.8}, "labels"),
    ]
