"""The training-data recipe: ignore masks, wider simulation, thick slices, pseudo-labels,
and the masked loss that uses the ignore mask."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_FEATURES, make_phantom

from napari_pvs.engine.candidates import CandidateConfig, find_pvs_candidates
from napari_pvs.engine.models.checkpoint import read_checkpoint, update_checkpoint
from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.io import Volume
from napari_pvs.engine.models import MaxPoolDeepSupervisionLoss
from napari_pvs.engine.synth import (LesionMimicConfig, SimulationConfig, insert_lesion_mimics, render_pvs_fraction,
                                     simulate_pvs, wide_simulation)
from napari_pvs.engine.synth.render import wall_radius_factor
from napari_pvs.engine.training import (PseudoLabelConfig, RecipeConfig, TrainConfig, pseudo_label_example,
                                        synthetic_examples, thick_slice_volume, train)

REAL_DOTS = [(14, 60, 50), (18, 110, 45), (24, 100, 120)]


def _phantom_with_real_pvs():
    vol, lab = make_phantom()
    data = np.array(vol.data)
    for z, y, x in REAL_DOTS:
        data[z:z + 2, y:y + 2, x:x + 2] = 750.0
    return Volume(data=data, affine=vol.affine), lab


# ------------------------------------------------------------------------ masked loss


def test_ignored_voxels_get_no_gradient_and_do_not_count():
    torch.manual_seed(0)
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:8, 4:8] = 1
    ignore = torch.zeros_like(target)
    ignore[:, :, 10:14, 10:14] = 1                       # an unlabelled real PVS
    logits = torch.full_like(target, -6.0)
    logits[:, :, 4:8, 4:8] = 6.0
    logits[:, :, 10:14, 10:14] = 6.0                     # the network calls it PVS
    logits.requires_grad_(True)
    loss_fn = MaxPoolDeepSupervisionLoss()
    plain = loss_fn(logits, target)
    masked = loss_fn(logits, target, ignore)
    assert plain.item() > 0.2                           # punished as false positives ...
    assert masked.item() < 0.03                          # ... but not when ignored
    masked.backward()
    assert torch.count_nonzero(logits.grad[ignore > 0]) == 0
    # deep supervision: a pooled voxel that covers any ignored voxel is ignored
    half = torch.nn.functional.avg_pool2d(logits.detach(), 2)
    assert loss_fn([logits.detach(), half], target, ignore).item() < 0.03
    with pytest.raises(ValueError, match="ignore map shape"):
        loss_fn(logits, target, ignore[:, :, :8])


# ------------------------------------------------------------------------ simulation


def test_beaded_and_irregular_walls_change_the_radius_along_the_axis():
    aff = np.diag([0.25, 0.25, 0.25, 1.0])
    shape = (120, 40, 40)
    args = (shape, aff, (5.0, 5.0, 15.0), (0, 0, 1), 2.0, 24.0, "tube", 0.25)
    smooth = render_pvs_fraction(*args)
    beads = ([0.4], [2 * np.pi / 4.0], [0.0])
    from napari_pvs.engine.synth.render import render_local
    sl, frac, _ = render_local(*args, wall=beads)
    beaded = np.zeros(shape, np.float32)
    beaded[sl] = frac
    area_s = smooth.sum(axis=(1, 2))[30:90]
    area_b = beaded.sum(axis=(1, 2))[30:90]
    assert area_s.std() / area_s.mean() < 0.02            # a smooth tube: constant cross-section
    assert area_b.max() / area_b.min() > 2.5              # beads: (1.4 / 0.6)^2 = 5.4 at most
    assert float(wall_radius_factor(np.array([0.0]), None)) == 1.0


def test_wide_simulation_is_fainter_thinner_and_beaded():
    vol, _ = make_phantom()
    cfg = wide_simulation()
    assert cfg.contrast[0] <= 0.2 and cfg.width_mm[0] < 1.0 and cfg.width_mm[1] >= 3.0
    res = simulate_pvs(vol, seed=1, config=SimulationConfig(**{**cfg.__dict__, "n_bg": 5, "n_cso": 15}))
    assert len(res.table) >= 15
    assert any(row.get("beaded") for row in res.table)
    # the default config keeps the 0.1.0 random stream (no wall draws): no "beaded" key
    assert "beaded" not in simulate_pvs(vol, seed=1, config=SimulationConfig(n_bg=2, n_cso=2)).table[0]
    with pytest.raises(Exception, match="wall_irregularity"):
        SimulationConfig(wall_irregularity=0.9)


# ------------------------------------------------------------------------ recipe


def test_thick_slice_volume_keeps_world_positions():
    aff = np.array([[-1.0, 0, 0, 10.0], [0, -1.0, 0, 12.0], [0, 0, 1.0, -20.0], [0, 0, 0, 1]])
    data = np.arange(9 * 4 * 5, dtype=np.float32).reshape(9, 4, 5)
    vol = Volume(data, aff)
    frac = np.zeros(vol.shape, np.float32)
    frac[3:6] = 1.0
    thick, (tf,) = thick_slice_volume(vol, 3.0, frac)
    assert thick.shape == (3, 4, 5) and thick.voxel_size == pytest.approx((3.0, 1.0, 1.0))
    np.testing.assert_allclose(thick.data[1], data[3:6].mean(axis=0))
    # slice 1 of the thick volume sits where slice 4 (the middle of 3..5) was
    np.testing.assert_allclose(thick.voxel_to_world([1, 2, 2]), vol.voxel_to_world([4, 2, 2]))
    assert tf[1].min() == 1.0 and tf[0].max() == 0.0
    with pytest.raises(ValueError, match="differs"):
        thick_slice_volume(vol, 3.0, frac[:2])


@pytest.fixture(scope="module")
def phantom_examples():
    vol, lab = _phantom_with_real_pvs()
    recipe = RecipeConfig(simulation=SimulationConfig(n_bg=4, n_cso=10),
                          candidates=CandidateConfig(regions_only=False))
    cands = find_pvs_candidates(vol, config=recipe.candidates)
    return vol, lab, recipe, cands, synthetic_examples(vol, [1, 2], recipe, candidates=cands)


def test_synthetic_examples_ignore_the_real_pvs(phantom_examples):
    vol, lab, recipe, cands, examples = phantom_examples
    assert [e.kind for e in examples] == ["synthetic", "synthetic"]   # 3 mm slices: no thick copy
    for e in examples:
        assert e.mask.any() and e.ignore is not None
        assert not (e.mask.astype(bool) & e.ignore.astype(bool)).any()
        for z, y, x in REAL_DOTS:                 # the real PVS are ignored, not background
            assert e.ignore[z:z + 2, y:y + 2, x:x + 2].all()
        assert not e.ignore[lab == 3].any()
    off = synthetic_examples(vol, [1], RecipeConfig(simulation=recipe.simulation, ignore_real_pvs=False,
                                                     ignore_partial_volume=0.0))
    assert not off[0].ignore.any()


def test_thin_slice_scans_also_give_thick_copies():
    vol, _ = make_phantom()
    # resample the 3 mm phantom to 1.5 mm slices (nearest) to make a "thin-slice" scan
    data = np.repeat(np.asarray(vol.data), 2, axis=0)
    aff = np.array(vol.affine, dtype=float)
    aff[2, 2] = 1.5
    aff[2, 3] -= 0.75
    thin = Volume(data, aff)
    recipe = RecipeConfig(simulation=SimulationConfig(n_bg=2, n_cso=6), ignore_real_pvs=False)
    ex = synthetic_examples(thin, [3], recipe)
    assert [e.kind for e in ex] == ["synthetic", "synthetic-thick"]
    assert ex[1].image.voxel_size[0] == pytest.approx(3.0)
    assert ex[1].mask.shape == ex[1].image.shape and ex[1].mask.any()


def test_pseudo_labels_keep_confident_pvs_shaped_detections_only(phantom_examples):
    vol, lab, recipe, cands, _ = phantom_examples
    prob = np.zeros(vol.shape, np.float32)
    z, y, x = REAL_DOTS[0]
    prob[z:z + 2, y:y + 2, x:x + 2] = 0.97               # confident, PVS-sized, in WM: a label
    z, y, x = REAL_DOTS[1]
    prob[z:z + 2, y:y + 2, x:x + 2] = 0.7                # not confident: ignored
    prob[16:18, 80:90, 60:70] = 0.99                    # 10 mm wide: not a PVS, ignored
    prob[lab == 3] = 0.99                                # the ventricles: never a label
    ex, counts = pseudo_label_example(prob, vol, recipe, candidates=cands)
    z, y, x = REAL_DOTS[0]
    assert ex.mask[z:z + 2, y:y + 2, x:x + 2].all()
    assert counts["n_pseudo_labels"] == 1 and counts["pseudo_label_voxels"] == 8
    z, y, x = REAL_DOTS[1]
    assert ex.ignore[z:z + 2, y:y + 2, x:x + 2].all() and not ex.mask[z:z + 2, y:y + 2, x:x + 2].any()
    assert ex.ignore[16:18, 80:90, 60:70].all()
    assert not ex.mask[lab == 3].any()
    assert ex.kind == "pseudo" and ex.image is vol
    strict = RecipeConfig(pseudo=PseudoLabelConfig(min_peak_probability=0.98))
    assert pseudo_label_example(prob, vol, strict, candidates=cands)[1]["n_pseudo_labels"] == 0
    with pytest.raises(Exception, match="differs from the image grid"):
        pseudo_label_example(prob[:3], vol, recipe, candidates=cands)


def test_agreement_labels_add_the_detector_objects_the_teacher_supports(phantom_examples):
    vol, lab, recipe, cands, _ = phantom_examples
    prob = np.zeros(vol.shape, np.float32)
    ref_labels = np.zeros(vol.shape, np.int32)
    for k, (z, y, x) in enumerate(REAL_DOTS, start=1):
        ref_labels[z:z + 2, y:y + 2, x:x + 2] = k        # three strict objects of the detector
    z, y, x = REAL_DOTS[0]
    prob[z:z + 2, y:y + 2, x:x + 2] = 0.97               # the teacher is sure: a label either way
    z, y, x = REAL_DOTS[1]
    prob[z, y, x] = 0.4                                  # the teacher leans to PVS on one voxel
    z, y, x = REAL_DOTS[2]
    prob[z, y, x] = 0.1                                  # too little support: not a label
    reference = dataclasses.replace(cands, labels=ref_labels)
    agree = dataclasses.replace(recipe, pseudo=PseudoLabelConfig(agreement_peak=0.3))
    ex, counts = pseudo_label_example(prob, vol, agree, candidates=cands, reference=reference)
    assert counts["n_pseudo_labels"] == 1 and counts["n_agreement_labels"] == 2
    z, y, x = REAL_DOTS[1]
    assert ex.mask[z:z + 2, y:y + 2, x:x + 2].all()      # the detector's 8 voxels, not the teacher's 1
    z, y, x = REAL_DOTS[2]
    assert not ex.mask[z:z + 2, y:y + 2, x:x + 2].any()
    assert not (ex.mask.astype(bool) & ex.ignore.astype(bool)).any()
    assert int(ex.mask.sum()) == 16
    off, counts_off = pseudo_label_example(prob, vol, recipe, candidates=cands, reference=reference)
    assert counts_off["n_agreement_labels"] == 0 and int(off.mask.sum()) == 8
    with pytest.raises(ValueError, match="agreement_peak"):
        PseudoLabelConfig(agreement_peak=0.0)


def test_training_with_ignore_masks_records_the_recipe(phantom_examples, tmp_path):
    vol, lab, recipe, cands, examples = phantom_examples
    cfg = TrainConfig(model="unet", model_config={"features": TINY_FEATURES}, epochs=2, steps_per_epoch=2,
                      batch_size=2, patch_size=(32, 32), val_patches=4, device="cpu", domain_randomisation=True)
    ckpt = tmp_path / "m.pt"
    events = list(train([e.image for e in examples], [e.mask for e in examples], cfg, ckpt,
                        ignore_masks=[e.ignore for e in examples], val_indices=[1],
                        metadata={"recipe": "test", "copies": 2}))
    assert "ignore masks on 2 volume(s)" in events[0].message
    assert "1 training / 1 validation" in events[0].message
    ck = read_checkpoint(ckpt)
    assert ck["recipe"] == {"recipe": "test", "copies": 2}
    assert ck["train_config"]["domain_randomisation"] is True
    update_checkpoint(ckpt, benchmark={"f1": 0.5})
    assert read_checkpoint(ckpt)["benchmark"] == {"f1": 0.5}
    with pytest.raises(ValueError, match="model fields"):
        update_checkpoint(ckpt, state_dict={})
    with pytest.raises(Exception, match="out of range"):
        next(train([examples[0].image], [examples[0].mask], cfg, tmp_path / "x.pt", val_indices=[3]))


# ------------------------------------------------------------------- lesion mimics


def test_lesion_mimics_are_wide_ovoid_less_bright_than_csf_and_stay_in_tissue():
    vol, lab = make_phantom()
    cfg = LesionMimicConfig(n_lesions=5, diameter_mm=(5.0, 7.0), contrast=(0.5, 0.6), edge_mm=0.5)
    res = insert_lesion_mimics(vol, seed=4, config=cfg)
    assert 1 <= len(res.table) <= 5 and res.image.shape == vol.shape
    core = res.fraction >= 0.9
    assert core.any() and not res.mask[lab == 3].any() and not res.mask[lab == 0].any()
    before, after = np.asarray(vol.data), np.asarray(res.image.data)
    assert np.array_equal(after[res.fraction < 0.01], before[res.fraction < 0.01])   # nothing else changes
    # the core moves 0.5-0.6 of the way from white matter (300) to CSF (900): about 600-660
    assert 560 < np.median(after[core]) < 700
    for row in res.table:
        assert 5.0 <= row["diameter_mm"] <= 7.0 and row["length_mm"] >= row["diameter_mm"]
    # each lesion is one component, wider than 3 mm (STRIVE's PVS limit) in-plane
    from scipy import ndimage as ndi
    comps, n = ndi.label(res.mask)
    assert n == len(res.table)
    for sl in ndi.find_objects(comps):
        assert (sl[1].stop - sl[1].start) > 3 and (sl[2].stop - sl[2].start) > 3    # 1 mm in-plane voxels


def test_lesion_mimics_avoid_the_given_mask_and_refuse_bad_input():
    vol, lab = make_phantom()
    avoid = np.zeros(vol.shape, bool)
    avoid[:, :, :73] = True                           # the right half (array x < 73) is taken
    res = insert_lesion_mimics(vol, seed=1, config=LesionMimicConfig(n_lesions=4), avoid=avoid)
    assert len(res.table) >= 1 and not (res.fraction[avoid] > 0.05).any()
    with pytest.raises(PVSInputError, match="avoid mask shape"):
        insert_lesion_mimics(vol, avoid=avoid[:-1])
    with pytest.raises(ValueError, match="above 3 mm"):
        LesionMimicConfig(diameter_mm=(2.0, 5.0))
    with pytest.raises(ValueError, match="at most 1"):
        LesionMimicConfig(contrast=(0.5, 1.2))


def test_recipe_lesion_mimics_are_background_never_ignored(phantom_examples):
    vol, lab, recipe, cands, plain = phantom_examples
    rec = dataclasses.replace(recipe, lesion_mimics=LesionMimicConfig(n_lesions=4, diameter_mm=(5.0, 6.0)))
    ex = synthetic_examples(vol, [1], rec, candidates=cands)[0]
    assert "lesion mimics" in ex.source
    changed = np.abs(np.asarray(ex.image.data) - np.asarray(plain[0].image.data)) > 0
    assert changed.sum() > 50
    # the same synthetic PVS (same seed), the lesions added as background
    assert np.array_equal(ex.mask, plain[0].mask)
    assert not ex.mask[changed].any() and not ex.ignore[changed].any()
    real = cands.mask > 0
    assert not (changed & real).any()                    # kept away from the real PVS-like objects
