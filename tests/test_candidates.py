"""Real PVS-like objects (top-hat + STRIVE filters) on the head phantom with known objects."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_phantom
from scipy import ndimage as ndi

from napari_pvs.engine.candidates import (CandidateConfig, component_widths_mm, find_pvs_candidates,
                                          ignore_config, nearest_region, reference_config, strive_filter)
from napari_pvs.engine.io import Volume

# phantom: 1 x 1 x 3 mm voxels, (Z, Y, X) = (44, 176, 146); WM 300, CSF 900, noise 10
DOTS = [(14, 60, 50), (14, 60, 96), (18, 110, 45), (18, 115, 100), (22, 70, 30), (24, 100, 120)]
BLOB = (16, 88, 40)        # 7 x 7 voxels: 7 mm wide, too wide for a PVS
LESION_DOT = (20, 60, 73)


def _phantom_with_objects(contrast: float = 0.7):
    vol, lab = make_phantom()
    data = np.array(vol.data)
    level = 300 + contrast * 600
    for z, y, x in DOTS:                      # 2 x 2 voxels in-plane (2 mm), 2 slices (6 mm)
        data[z:z + 2, y:y + 2, x:x + 2] = level
    z, y, x = BLOB
    data[z:z + 2, y - 3:y + 4, x - 3:x + 4] = level
    z, y, x = LESION_DOT
    data[z:z + 2, y:y + 2, x:x + 2] = level
    lesion = np.zeros(vol.shape, np.uint8)
    lesion[z - 1:z + 3, y - 2:y + 4, x - 2:x + 4] = 1
    return Volume(data=data, affine=vol.affine), lab, lesion


@pytest.fixture(scope="module")
def phantom_candidates():
    vol, lab, lesion = _phantom_with_objects()
    # the phantom's regions are crude: test the detector everywhere (regions_only off)
    return vol, lab, lesion, find_pvs_candidates(vol, lesion, config=_anywhere(reference_config()))


def _anywhere(cfg):
    return dataclasses.replace(cfg, regions_only=False)


def test_bright_dots_found_wide_blob_lesion_and_ventricles_not(phantom_candidates):
    vol, lab, lesion, res = phantom_candidates
    found = res.labels > 0
    for z, y, x in DOTS:
        assert found[z:z + 2, y:y + 2, x:x + 2].any(), (z, y, x)
    z, y, x = BLOB
    assert not found[z:z + 2, y - 3:y + 4, x - 3:x + 4].any()
    assert not found[lesion > 0].any()
    assert not found[lab == 3].any()            # ventricles and the CSF rim
    assert res.info["n_kept"] == len(DOTS) == len(res.table)
    for row in res.table:
        assert row["width_mm"] <= 3.0 and row["volume_mm3"] > 0
        assert row["contrast"] > 0.3 and row["snr"] > 3
    assert res.mask.dtype == np.uint8 and res.mask.shape == vol.shape


def test_header_rounding_of_the_voxel_size_changes_nothing():
    """A voxel of 1.0000000252 mm (the stroke T2's header) once gave a one-voxel "disk":
    empty rings around every object, so no candidate survived the white-matter ring test."""
    from napari_pvs.engine.candidates.pvs_like import _inplane_disk

    vol, lab, lesion = _phantom_with_objects()
    aff = np.array(vol.affine, dtype=float)
    aff[:3, :3] *= 1.0 + 2.52e-8
    rounded = Volume(data=np.asarray(vol.data), affine=aff)
    assert _inplane_disk(rounded, 1.0).sum() == _inplane_disk(vol, 1.0).sum() == 5
    res = find_pvs_candidates(rounded, lesion, config=_anywhere(reference_config()))
    assert res.info["n_kept"] == len(DOTS)


def test_faint_objects_only_in_the_generous_ignore_settings():
    vol, _, lesion = _phantom_with_objects(contrast=0.22)
    strict = find_pvs_candidates(vol, lesion, config=_anywhere(reference_config()))
    generous = find_pvs_candidates(vol, lesion, config=_anywhere(ignore_config()))
    hits = [generous.labels[z:z + 2, y:y + 2, x:x + 2].any() for z, y, x in DOTS]
    assert all(hits)
    assert strict.info["n_kept"] == 0
    # the ignore mask is dilated by 0.5 mm (the rim) but never enters the lesion
    assert generous.mask.sum() > (generous.labels > 0).sum()
    assert not generous.mask[lesion > 0].any()


def test_regions_only_keeps_candidates_near_bg_and_cso(phantom_candidates):
    vol, lab, lesion, anywhere = phantom_candidates
    near = find_pvs_candidates(vol, lesion, config=reference_config())
    assert near.info["n_kept"] < anywhere.info["n_kept"]
    assert near.table and all(row["region"] in ("BG", "CSO") for row in near.table)


def test_grey_matter_surroundings_are_not_pvs():
    vol, lab = make_phantom()
    data = np.array(vol.data)
    z, y, x = 18, 110, 45
    data[z:z + 2, y - 4:y + 6, x - 4:x + 6] = 450.0        # a grey-matter island in the WM ...
    data[z:z + 2, y:y + 2, x:x + 2] = 900.0                 # ... with a bright dot in it
    v = Volume(data=data, affine=vol.affine)
    cfg = _anywhere(reference_config())
    assert not (find_pvs_candidates(v, config=cfg).labels[z:z + 2, y:y + 2, x:x + 2] > 0).any()
    off = dataclasses.replace(cfg, min_wm_ring=0.0)
    assert (find_pvs_candidates(v, config=off).labels[z:z + 2, y:y + 2, x:x + 2] > 0).any()


def test_strive_filter_and_widths():
    aff = np.diag([0.5, 0.5, 3.0, 1.0])
    vol = Volume(np.zeros((4, 40, 40), np.float32), aff)
    labels = np.zeros(vol.shape, np.int32)
    labels[1, 5, 5:25] = 1                   # a 1-pixel line: 0.5 mm wide, 10 mm long
    labels[1, 20:30, 20:30] = 2              # 5 x 5 mm square: too wide
    labels[2, 35, 35] = 3                    # a single voxel (0.75 mm^3)
    widths = component_widths_mm(labels, vol, 3)
    assert widths[0] == pytest.approx(0.5)
    assert widths[1] == pytest.approx(4.5, abs=0.6)
    ok = strive_filter(labels, 3, vol, max_width_mm=3.0, min_volume_mm3=1.0)
    assert ok.tolist() == [True, False, False]


def test_config_validation_and_nearest_region():
    with pytest.raises(ValueError, match="hysteresis"):
        CandidateConfig(hysteresis=0.0)
    with pytest.raises(ValueError, match="min_volume_mm3"):
        CandidateConfig(min_volume_mm3=10, max_volume_mm3=5)
    regions = np.zeros((1, 1, 20), np.uint8)
    regions[0, 0, 0] = 1
    near = nearest_region(regions, (1.0, 1.0, 1.0), max_mm=5.0)
    assert near[0, 0, :6].tolist() == [1] * 6 and near[0, 0, 6:].max() == 0


def test_candidates_on_real_scan(data_dir):
    from napari_pvs.engine.anatomy import analyze_anatomy
    from napari_pvs.engine.io import load_volume

    vol = load_volume(data_dir / "open_ms/longitudinal/patient01/study1_T2W.nii.gz")
    anat = analyze_anatomy(vol)
    res = find_pvs_candidates(vol, config=reference_config(), anatomy=anat)
    # dozens of real PVS-like objects, all inside the brain, none in the ventricles
    assert 20 <= res.info["n_kept"] <= 600
    assert not (res.labels > 0)[~anat.brain].any()
    assert not (res.labels > 0)[anat.ventricles].any()
    assert {row["region"] for row in res.table} >= {"BG", "CSO"}
    lab, n = ndi.label(res.labels > 0, structure=ndi.generate_binary_structure(3, 3))
    assert n == res.info["n_kept"]
