"""napari sample data: a real clinical T2 with simulated PVS and their mask.

The image is the first-visit T2-weighted scan of patient 01 of the open_ms longitudinal
MS database (Lesjak et al., Neuroinformatics 2016, CC-BY; 406x448x36 voxels of
0.51x0.51x4.0 mm), fetched and sha256-verified with
:func:`napari_pvs.engine.data.fetch` (local data directory, else a download into the
per-user cache). Realistic synthetic PVS (:func:`napari_pvs.engine.synth.simulate_pvs`,
fixed seed) are inserted into it, which gives a voxel-exact ground-truth mask: no public
data set has manual PVS masks.

Inside a running napari (*File > Open Sample*), the simulation (a few seconds) runs in the
job runner (:class:`~napari_pvs.plugin.jobs.JobRunner`: a worker thread, napari's activity
dock, one notification on error): :func:`make_sample_data` returns the T2 and an empty mask
layer at once, and both are filled in when the simulation is done
(``metadata["simulation"]`` goes from ``"running"`` to ``"done"``). :func:`load_sample`
simulates before returning (scripts).
"""

from __future__ import annotations

import logging
import uuid

import numpy as np

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

__all__ = ["make_sample_data", "load_sample", "sample_layer_data", "SAMPLE_T2", "SAMPLE_SEED", "IMAGE_NAME", "MASK_NAME"]

log = logging.getLogger(__name__)

SAMPLE_T2 = "open_ms/longitudinal/patient01/study1_T2W.nii.gz"
SAMPLE_SEED = 0
IMAGE_NAME = "study1_T2W + simulated PVS"
MASK_NAME = "simulated PVS mask"


def sample_layer_data(t2, image: np.ndarray, mask: np.ndarray, **info) -> "list[napari.types.LayerDataTuple]":
    """Layer data tuples ``[(image, kwargs, "image"), (mask, kwargs, "labels")]`` on the T2's
    geometry (``scale`` and ``affine`` in the napari-pvs world frame, the NIfTI affine and
    header in the metadata)."""
    from .layers import layer_geometry, volume_metadata

    geom = layer_geometry(t2)
    info = {"simulated_pvs": True, "simulation_seed": SAMPLE_SEED,
            "citation": "open_ms (Lesjak et al., Neuroinformatics 2016), CC-BY", **info}
    return [
        (image, {"name": IMAGE_NAME, **geom, "colormap": "gray", "metadata": volume_metadata(t2, **info)},
         "image"),
        (mask, {"name": MASK_NAME, **geom, "metadata": volume_metadata(t2, **info), "opacity": 0.8}, "labels"),
    ]


def _running_viewer():
    """The current napari viewer when called inside a running napari with a Qt app, else None."""
    try:
        import napari
        from qtpy.QtWidgets import QApplication
    except ImportError:  # pragma: no cover - napari is optional for the engine
        return None
    if QApplication.instance() is None:
        return None
    return napari.current_viewer()


def _fill_in(viewer, token: str, sim) -> None:
    """Put the simulation into the sample's two layers (found by their metadata token)."""
    for layer in list(viewer.layers):
        if layer.metadata.get("sample_token") != token:
            continue
        layer.data = sim.image.data if layer.metadata.get("role") == "image" else sim.mask
        layer.metadata.update(simulation="done", n_simulated_pvs=len(sim.table))
        if layer.metadata.get("role") == "image":
            layer.reset_contrast_limits()


def _sample_t2():
    from ..engine.data import fetch
    from ..engine.io import load_volume

    return load_volume(fetch(SAMPLE_T2))


def load_sample() -> "list[napari.types.LayerDataTuple]":
    """Real T2 (open_ms patient01, visit 1) with simulated PVS, and the PVS mask, simulated
    before returning.

    Returns
    -------
    list of LayerDataTuple
        ``(image float32 (Z, Y, X), {...}, "image")`` and ``(mask uint8 (Z, Y, X), {...},
        "labels")`` on the T2's geometry.

    Raises
    ------
    PVSInputError
        The T2 cannot be found or downloaded.
    """
    from ..engine.synth import simulate_pvs

    t2 = _sample_t2()
    sim = simulate_pvs(t2, seed=SAMPLE_SEED)
    log.info("sample data: %d synthetic PVS in %s", len(sim.table), SAMPLE_T2)
    return sample_layer_data(t2, sim.image.data, sim.mask, simulation="done", n_simulated_pvs=len(sim.table))


def make_sample_data() -> "list[napari.types.LayerDataTuple]":
    """The npe2 sample: as :func:`load_sample`, but inside a running napari the simulation
    runs in a worker thread and fills in the returned layers (see the module docstring).

    Raises
    ------
    PVSInputError
        The T2 cannot be found or downloaded.
    """
    viewer = _running_viewer()
    if viewer is None:
        return load_sample()
    t2 = _sample_t2()

    from .jobs import JobRunner, notify_info

    token = uuid.uuid4().hex
    layers = sample_layer_data(t2, np.asarray(t2.data, dtype=np.float32), np.zeros(t2.shape, np.uint8),
                               simulation="running", sample_token=token)
    layers[0][1]["metadata"]["role"], layers[1][1]["metadata"]["role"] = "image", "mask"
    runner = JobRunner("sample data")
    _RUNNERS.add(runner)                        # kept alive until the job ends
    runner.returned.connect(lambda sim: _fill_in(viewer, token, sim))
    runner.finished.connect(lambda: _RUNNERS.discard(runner))
    runner.start(lambda: _simulate_job(t2), "inserting synthetic PVS into the T2")
    notify_info("napari-pvs sample: inserting synthetic PVS into the T2 in the background ...")
    return layers


#: the sample-data runners still running
_RUNNERS: set = set()


def _simulate_job(t2):
    """The simulation as a job generator (one event, then the result)."""
    from ..engine.progress import StageEvent
    from ..engine.synth import simulate_pvs

    yield StageEvent("simulate", 0, 1, message="inserting synthetic PVS")
    return simulate_pvs(t2, seed=SAMPLE_SEED)
