"""Synthetic PVS on real anatomy (napari_pvs.engine.synth, napari_pvs.engine.anatomy).

Geometry and partial volume are checked on small synthetic grids with analytic answers;
placement, intensities, noise and determinism on a synthetic head phantom with known
tissue labels (no data needed) and on the real T2 images in ../shared/data (skipped
when absent).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import make_phantom, real_file
from scipy import ndimage as ndi

from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.io import Volume, load_mask, load_volume
from napari_pvs.engine.anatomy import brain_mask
from napari_pvs.engine.synth import (
    TABLE_COLUMNS,
    SimulationConfig,
    estimate_noise_sigma,
    render_pvs_fraction,
    simulate_pvs,
    write_table_csv,
)

# --------------------------------------------------------------------------- helpers




STUDY1 = "open_ms/longitudinal/patient01/study1_T2W.nii.gz"
MNI_T2 = "open_ms/mni/patient07/T2.nii.gz"
MNI_LESION = "open_ms/mni/patient07/lesion_mask.nii.gz"


def _thick_slice_affine(dz: float = 4.0, dxy: float = 0.5) -> np.ndarray:
    """LPS-like affine (x and y flipped), ``dxy`` in-plane, ``dz`` slices."""
    return np.array([[-dxy, 0, 0, 10.0], [0, -dxy, 0, 12.0], [0, 0, dz, -20.0], [0, 0, 0, 1]])


def _capsule_volume(width: float, length: float) -> float:
    r = width / 2
    return np.pi * r * r * (length - 2 * r) + 4 / 3 * np.pi * r ** 3


# --------------------------------------------------------------------------- rendering


def test_vertical_tube_is_a_dot_in_each_thick_slice():
    aff = _thick_slice_affine(4.0, 0.5)
    shape = (12, 40, 40)
    centre_vox = np.array([6.0, 20.0, 20.0])  # (z, y, x), a voxel centre
    vol = Volume(data=np.zeros(shape, np.float32), affine=aff)
    centre = vol.voxel_to_world(centre_vox)
    width, length = 1.5, 20.0
    f = render_pvs_fraction(shape, aff, centre, (0, 0, 1), width, length, "tube", 0.25)
    assert f.dtype == np.float32 and f.shape == shape
    assert 0.0 <= f.min() and f.max() <= 1.0
    mask = f >= 0.5
    # the tube spans z = centre +- 10 mm: slices 4..8 (centres at -8..+8 mm) are fully
    # crossed; each shows one small dot centred on the tube
    area = np.pi * (width / 2) ** 2
    for z in range(4, 9):
        lab, n = ndi.label(mask[z])
        assert n == 1, f"slice {z}: {n} components"
        assert 5 <= mask[z].sum() <= 12
        cy, cx = ndi.center_of_mass(f[z])
        assert abs(cy - 20) < 0.05 and abs(cx - 20) < 0.05
        # cross-section area kept by the partial-volume fractions (slices 4 and 8
        # hold the rounded ends)
        if 5 <= z <= 7:
            assert f[z].sum() * 0.25 == pytest.approx(area, rel=0.03)
    assert not mask[:3].any() and not mask[10:].any()
    # finer sub-sampling converges to the exact capsule volume
    fine = render_pvs_fraction(shape, aff, centre, (0, 0, 1), width, length, "tube", 0.05)
    assert fine.sum() * 0.25 * 4.0 == pytest.approx(_capsule_volume(width, length), rel=0.02)
    np.testing.assert_array_equal(fine >= 0.5, mask)


def test_inplane_tube_in_thick_slices_is_a_faint_line_not_in_mask():
    aff = _thick_slice_affine(4.0, 0.5)
    shape = (6, 40, 60)
    vol = Volume(data=np.zeros(shape, np.float32), affine=aff)
    centre = vol.voxel_to_world(np.array([3.0, 20.0, 30.0]))
    width, length = 1.5, 12.0
    f = render_pvs_fraction(shape, aff, centre, (1, 0, 0), width, length, "tube", 0.25)
    assert f.max() < 0.5, "a 1.5 mm tube lying in a 4 mm slice cannot fill half a voxel"
    assert not (f >= 0.5).any()
    line = f[3] > 0.1
    ys, xs = np.nonzero(line)
    assert (xs.max() - xs.min() + 1) * 0.5 >= 0.8 * length   # long along x
    assert ys.max() - ys.min() + 1 <= 4                      # thin along y
    assert f.sum() * 0.25 * 4.0 == pytest.approx(_capsule_volume(width, length), rel=0.05)


def test_oblique_ellipsoid_volume_and_axis():
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    shape = (40, 40, 40)
    direction = np.array([1.0, 2.0, 2.0]) / 3.0
    centre = np.array([19.3, 20.1, 20.4])
    width, length = 4.0, 16.0
    f = render_pvs_fraction(shape, aff, centre, direction, width, length, "ellipsoid", 0.25)
    expected = 4 / 3 * np.pi * (length / 2) * (width / 2) ** 2
    assert f.sum() == pytest.approx(expected, rel=0.03)
    # fraction-weighted centroid and principal axis (voxel index == world here, (x, y, z))
    zz, yy, xx = np.nonzero(f)
    w = f[zz, yy, xx]
    pts = np.stack([xx, yy, zz], axis=1).astype(float)
    c = (pts * w[:, None]).sum(0) / w.sum()
    assert np.allclose(c, centre, atol=0.05)
    cov = ((pts - c) * w[:, None]).T @ (pts - c) / w.sum()
    axis = np.linalg.eigh(cov)[1][:, -1]
    assert abs(axis @ direction) > 0.999


def test_render_rejects_bad_arguments():
    aff = np.eye(4)
    with pytest.raises(ValueError):
        render_pvs_fraction((5, 5, 5), aff, (2, 2, 2), (0, 0, 1), 1.0, 3.0, shape="cube")
    with pytest.raises(ValueError):
        render_pvs_fraction((5, 5, 5), aff, (2, 2, 2), (0, 0, 0), 1.0, 3.0)


# --------------------------------------------------------------------------- noise


def test_estimate_noise_sigma_on_known_noise():
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(np.arange(20), np.arange(64), np.arange(64), indexing="ij")
    clean = 200 + 2.0 * x + 50.0 * (y > 32)          # ramp plus an edge
    data = clean + rng.normal(0, 7.0, clean.shape)
    assert estimate_noise_sigma(data) == pytest.approx(7.0, rel=0.1)
    mask = np.zeros(clean.shape, bool)
    mask[:, 5:30, 5:60] = True
    assert estimate_noise_sigma(data, mask) == pytest.approx(7.0, rel=0.1)
    assert estimate_noise_sigma(np.full((5, 5, 5), 3.0)) == 0.0


# --------------------------------------------------------------------------- phantom


@pytest.fixture(scope="module")
def phantom_run():
    vol, lab = make_phantom()
    return vol, lab, simulate_pvs(vol, seed=0)


def test_phantom_placement_respects_anatomy(phantom_run):
    vol, lab, res = phantom_run
    cfg = SimulationConfig()
    assert len(res.table) == cfg.n_bg + cfg.n_cso
    f = res.fraction
    assert res.mask.any()
    assert not ((f > 0) & (lab == 3)).any(), "PVS in CSF / ventricles"
    assert not ((res.mask > 0) & (lab == 2)).any(), "PVS mask voxel in the cortex"
    assert not ((f > 0) & (lab == 0)).any()
    # BG below the top of the ventricles (z = 20 mm), CSO above; BG near the centre
    bg = [r for r in res.table if r["region"] == "BG"]
    cso = [r for r in res.table if r["region"] == "CSO"]
    assert max(r["centre_z_mm"] for r in bg) < min(r["centre_z_mm"] for r in cso)
    assert max(r["centre_z_mm"] for r in bg) < 20.0 < max(r["centre_z_mm"] for r in cso)
    assert all(abs(r["centre_x_mm"]) < 0.25 * 124 and abs(r["centre_y_mm"]) < 0.25 * 156
               for r in bg)


def test_phantom_lesion_array_is_avoided():
    vol, lab = make_phantom()
    x, y, z = (np.asarray(vol.voxel_to_world(np.indices(vol.shape).reshape(3, -1).T))
               .T.reshape((3,) + vol.shape))
    # a 24 mm wide lesion in the centrum semiovale white matter, right of the midline
    lesion = (((x - 25) ** 2 + y ** 2 + (z - 30) ** 2) <= 12 ** 2).astype(np.uint8)
    assert (lab[lesion > 0] == 1).all()
    cfg = SimulationConfig(n_bg=2, n_cso=60)
    res = simulate_pvs(vol, seed=5, lesion_mask=lesion, config=cfg)
    dist = ndi.distance_transform_edt(lesion == 0, sampling=np.array(vol.voxel_size))
    assert dist[res.fraction > 0].min() > cfg.lesion_margin_mm
    assert not res.regions[lesion > 0].any()
    # without the lesion mask, PVS do land there
    free = simulate_pvs(vol, seed=5, config=cfg)
    assert (free.fraction[dist <= cfg.lesion_margin_mm] > 0).any()


def test_phantom_intensity_and_noise(phantom_run):
    vol, lab, res = phantom_run
    assert res.noise_sigma == pytest.approx(10.0, rel=0.15)
    assert res.info["csf_intensity"] == pytest.approx(900.0, abs=10.0)
    out = res.image.data
    assert out.dtype == np.float32
    untouched = res.fraction == 0
    np.testing.assert_array_equal(out[untouched], vol.data[untouched])
    # where a voxel is entirely PVS, the signal is tissue + c * (CSF - tissue) + noise
    delta = (out - vol.data)[res.mask > 0]
    assert delta.mean() > 0.4 * (900 - 450)
    # the added noise tops the input's (scaled) noise up to the image's sigma:
    # out = in + w (I_csf - in) + sigma sqrt(w (2 - w)) n, with w = fraction * contrast
    w = np.zeros(vol.shape)
    for r in res.table:
        f = render_pvs_fraction(vol.shape, vol.affine,
                                (r["centre_x_mm"], r["centre_y_mm"], r["centre_z_mm"]),
                                (r["dir_x"], r["dir_y"], r["dir_z"]), r["width_mm"],
                                r["length_mm"], r["shape"])
        w = np.maximum(w, f * r["contrast"])
    sel = w > 0.2
    assert sel.sum() > 300
    inp = vol.data.astype(float)[sel]
    expected = inp + w[sel] * (res.info["csf_intensity"] - inp)
    z = (out.astype(float)[sel] - expected) / (res.noise_sigma * np.sqrt(w[sel] * (2 - w[sel])))
    assert abs(z.mean()) < 0.15
    assert z.std() == pytest.approx(1.0, abs=0.1)
    # so against the noiseless phantom, the total noise inside PVS is the image's (10)
    clean = np.array([0.0, 300.0, 450.0, 900.0])[lab][sel]
    total = out.astype(float)[sel] - (clean + w[sel] * (res.info["csf_intensity"] - clean))
    assert total.std() == pytest.approx(10.0, rel=0.12)


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def study1():
    return load_volume(real_file(STUDY1))


@pytest.fixture(scope="module")
def study1_run(study1):
    return simulate_pvs(study1, seed=0)


def test_outputs_on_real_image(study1, study1_run):
    res = study1_run
    assert res.image.shape == study1.shape
    assert res.image.data.dtype == np.float32
    assert np.array_equal(res.image.affine, study1.affine)
    assert res.image.header is study1.header
    assert res.mask.dtype == np.uint8 and res.fraction.dtype == np.float32
    assert res.regions.dtype == np.uint8 and set(np.unique(res.regions)) == {0, 1, 2}
    assert 0.0 <= res.fraction.min() and res.fraction.max() <= 1.0
    np.testing.assert_array_equal(res.mask, (res.fraction >= 0.5).astype(np.uint8))
    assert res.mask.sum() > 100
    # exactly unchanged wherever there is no PVS
    untouched = res.fraction == 0
    np.testing.assert_array_equal(res.image.data[untouched],
                                  study1.data.astype(np.float32)[untouched])
    # PVS voxels are brighter than before, towards the CSF intensity
    before = study1.data.astype(np.float64)[res.mask > 0]
    after = res.image.data.astype(np.float64)[res.mask > 0]
    assert after.mean() > before.mean() + 5 * res.noise_sigma
    assert after.mean() < res.info["csf_intensity"] + 3 * res.noise_sigma
    assert 2.0 < res.noise_sigma < 0.1 * res.info["csf_intensity"]


def test_table_on_real_image(study1, study1_run):
    res = study1_run
    cfg = SimulationConfig()
    table = res.table
    assert len(table) == cfg.n_bg + cfg.n_cso
    assert [r["id"] for r in table] == list(range(1, len(table) + 1))
    assert sum(r["region"] == "BG" for r in table) == cfg.n_bg
    assert {r["shape"] for r in table} == {"tube", "ellipsoid"}
    assert sum(r["n_mask_voxels"] for r in table) == int(res.mask.sum())
    cos_tilt = np.cos(np.deg2rad(cfg.max_tilt_deg))
    centre0 = np.array(res.info["brain_centre_xyz"])
    for r in table:
        assert set(TABLE_COLUMNS) <= set(r)
        assert cfg.width_mm[0] <= r["width_mm"] <= cfg.width_mm[1]
        assert cfg.length_mm[0] <= r["length_mm"] <= cfg.length_mm[1]
        assert cfg.contrast[0] <= r["contrast"] <= cfg.contrast[1]
        d = np.array([r["dir_x"], r["dir_y"], r["dir_z"]])
        assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-9)
        xyz = np.array([r["centre_x_mm"], r["centre_y_mm"], r["centre_z_mm"]])
        zyx = np.array([r["centre_z"], r["centre_y"], r["centre_x"]])
        assert np.allclose(study1.voxel_to_world(zyx), xyz, atol=1e-6)
        code = res.regions[tuple(np.round(zyx).astype(int))]
        assert code == (1 if r["region"] == "BG" else 2)
        if r["region"] == "BG":
            assert d[2] >= cos_tilt - 1e-9          # superior-inferior
        else:
            radial = (xyz - centre0) / np.linalg.norm(xyz - centre0)
            assert abs(d @ radial) >= cos_tilt - 1e-9
    bg_z = [r["centre_z_mm"] for r in table if r["region"] == "BG"]
    cso_z = [r["centre_z_mm"] for r in table if r["region"] == "CSO"]
    assert max(bg_z) < min(cso_z)
    # each row re-renders to exactly its mask voxels
    r = table[0]
    f = render_pvs_fraction(study1.shape, study1.affine,
                            (r["centre_x_mm"], r["centre_y_mm"], r["centre_z_mm"]),
                            (r["dir_x"], r["dir_y"], r["dir_z"]), r["width_mm"],
                            r["length_mm"], r["shape"], SimulationConfig().supersample_mm)
    assert int((f >= 0.5).sum()) == r["n_mask_voxels"]
    assert np.array_equal(f > 0, (res.fraction > 0) & (f > 0))


def test_placement_on_real_image(study1, study1_run):
    res = study1_run
    cfg = SimulationConfig()
    spacing = np.array(study1.voxel_size)
    touched = res.fraction > 0
    # inside the eligible map dilated by the placement margin
    dist_to_eligible = ndi.distance_transform_edt(res.regions == 0, sampling=spacing)
    assert dist_to_eligible[touched].max() <= cfg.placement_margin_mm + 1e-6
    # well inside the brain: not in the cortex
    brain = brain_mask(study1)
    depth = ndi.distance_transform_edt(np.pad(brain, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    assert depth[touched].min() >= cfg.surface_margin_mm - cfg.placement_margin_mm - 1e-6
    # never in CSF-bright tissue (ventricles, sulci): original intensity well below CSF
    orig = study1.data.astype(float)
    assert np.percentile(orig[res.mask > 0], 99) < 0.7 * res.info["csf_intensity"]


def test_determinism(study1, study1_run):
    again = simulate_pvs(study1, seed=0)
    np.testing.assert_array_equal(again.image.data, study1_run.image.data)
    np.testing.assert_array_equal(again.fraction, study1_run.fraction)
    assert again.table == study1_run.table
    other = simulate_pvs(study1, seed=1)
    assert other.table != study1_run.table
    assert not np.array_equal(other.mask, study1_run.mask)


def test_lesions_are_avoided():
    image = load_volume(real_file(MNI_T2))
    lesion = load_mask(real_file(MNI_LESION), image)
    cfg = SimulationConfig(n_bg=10, n_cso=40)
    res = simulate_pvs(image, seed=3, lesion_mask=lesion, config=cfg)
    assert len(res.table) == 50 and res.mask.any()
    les = lesion.data > 0
    assert les.sum() > 1000
    dist = ndi.distance_transform_edt(~les, sampling=np.array(image.voxel_size))
    assert dist[res.fraction > 0].min() > cfg.lesion_margin_mm
    assert not (res.regions[dist <= cfg.lesion_margin_mm] > 0).any()


# --------------------------------------------------------------------------- errors


def test_lesion_mask_on_other_grid_is_rejected():
    vol, _ = make_phantom()
    vol = Volume(data=vol.data, affine=vol.affine, path=Path("/data/sub-01_T2w.nii.gz"))
    with pytest.raises(PVSInputError, match="differs") as info:
        simulate_pvs(vol, lesion_mask=np.zeros((10, 10, 10), np.uint8))
    msg = str(info.value)
    assert "sub-01_T2w.nii.gz" in msg and "same" in msg and "\n" not in msg


def test_bad_images_are_rejected():
    with pytest.raises(PVSInputError, match="3D"):
        simulate_pvs(Volume(data=np.zeros((30, 30), np.float32), affine=np.eye(4)))
    with pytest.raises(PVSInputError, match="no brain"):
        simulate_pvs(Volume(data=np.zeros((30, 30, 30), np.float32), affine=np.eye(4),
                            path=Path("empty.nii.gz")))
    small = np.zeros((30, 30, 30), np.float32)
    small[10:20, 10:20, 10:20] = 100.0            # a 10 mm cube: too small for a brain
    with pytest.raises(PVSInputError, match="no brain"):
        simulate_pvs(Volume(data=small, affine=np.eye(4)))


def test_config_is_validated():
    with pytest.raises(PVSInputError, match="width_mm"):
        SimulationConfig(width_mm=(2.5, 1.0))
    with pytest.raises(PVSInputError, match="contrast"):
        SimulationConfig(contrast=(0.5, 1.5))
    with pytest.raises(PVSInputError, match="n_bg"):
        SimulationConfig(n_bg=-1)


# --------------------------------------------------------------------------- csv


def test_write_table_csv_round_trip(tmp_path, phantom_run):
    _, _, res = phantom_run
    out = write_table_csv(res.table, tmp_path / "sub" / "pvs.csv")
    assert out == tmp_path / "sub" / "pvs.csv"
    assert [p.name for p in out.parent.iterdir()] == ["pvs.csv"]   # no temp files left
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(res.table)
    assert tuple(rows[0].keys()) == TABLE_COLUMNS
    for got, want in zip(rows, res.table, strict=True):
        assert int(got["id"]) == want["id"] and got["region"] == want["region"]
        assert float(got["width_mm"]) == want["width_mm"]
        assert int(got["n_mask_voxels"]) == want["n_mask_voxels"]
    empty = write_table_csv([], tmp_path / "empty.csv")
    assert empty.read_text().strip().split(",") == list(TABLE_COLUMNS)


def test_rating_slice_levels_from_the_ventricle_landmark(study1):
    from napari_pvs.engine.anatomy import analyze_anatomy, rating_slice_levels

    anat = analyze_anatomy(study1)
    levels = rating_slice_levels(study1, anat)
    n = study1.shape[study1.axial_axis]
    assert 0 <= levels["bg"] < levels["cso"] < n
    centre = (np.asarray(study1.shape, float) - 1) / 2

    def z_mm(k):
        idx = centre.copy()
        idx[study1.axial_axis] = k
        return float(study1.voxel_to_world(idx)[2])

    # the BG slice lies inside the BG region's height, the CSO slice ~1 cm above the
    # ventricles' roof (within half a 4 mm slice)
    lo, hi = anat.bg_level_mm
    assert lo <= z_mm(levels["bg"]) <= hi
    assert abs(z_mm(levels["cso"]) - (anat.ventricle_top_mm + 10.0)) <= 2.0 + 1e-6
    assert anat.ventricles.any() and anat.regions.max() == 2


def test_wide_csf_holds_the_ventricles_not_thin_bright_tubes_or_sheets():
    """wide_csf: the phantom's 12 mm wide ventricles are in it, and a thin horn opening onto
    them; a 1 mm bright tube (a PVS) and a 2 mm thick bright sheet (a narrow sulcus) in
    white matter are not."""
    from napari_pvs.engine.anatomy import wide_csf

    vol, lab = make_phantom(noise=5.0)
    data = vol.data.copy()
    tube = np.zeros(lab.shape, bool)
    tube[10:30, 60, 100] = True            # 1 x 1 mm in-plane, 60 mm long, in white matter
    sheet = np.zeros(lab.shape, bool)
    sheet[12:28, 110:130, 40:42] = True     # 2 mm thick, 20 mm x 48 mm
    assert (lab[tube] == 1).all() and (lab[sheet] == 1).all()
    data[tube | sheet] = 900.0
    # a thin (1 mm) CSF horn, 5 mm long, opening onto the left ventricle: within the reach
    horn = np.zeros(lab.shape, bool)
    ventricle_row = np.flatnonzero(lab[24, 88, 40:106] == 3) + 40      # not the CSF rim
    x0 = int(ventricle_row.min())
    horn[24, 88, x0 - 5:x0] = True
    assert (lab[horn] == 1).all()
    data[horn] = 900.0
    image = Volume(data=data, affine=vol.affine)
    brain = brain_mask(image)
    got = wide_csf(image, brain)
    assert got.shape == image.shape and got.dtype == bool
    ventricles = (lab == 3) & (brain_mask(vol) & (ndi.binary_erosion(lab > 0, iterations=3)))
    assert got[ventricles].mean() > 0.8           # all but the tips narrower than 4 mm
    deep = ndi.distance_transform_edt(ventricles, sampling=vol.voxel_size) > 1.5
    assert deep.sum() > 1000 and got[deep].all()
    assert not got[tube].any() and not got[sheet].any()
    far_end = horn.copy()
    far_end[24, 88, x0 - 2:x0] = False
    assert got[horn].all() and not wide_csf(image, brain, reach_mm=0)[far_end].any()
    assert not got[~brain].any()
    with pytest.raises(ValueError, match="brain mask shape"):
        wide_csf(image, brain[:-1])


def test_insert_same_pvs_renders_dark_pvs_into_a_t1_like_contrast():
    """The PVS of a T2 simulation go into a co-registered image whose CSF is dark (T1-like):
    same voxels, darker than the tissue around them; the mask is the simulation's."""
    from napari_pvs.engine.anatomy import wide_csf
    from napari_pvs.engine.synth import insert_same_pvs

    t2, lab = make_phantom(noise=5.0)
    sim = simulate_pvs(t2, seed=4)
    assert sim.weight is not None and sim.weight.shape == t2.shape
    np.testing.assert_array_equal(sim.weight > 0, sim.fraction > 0)
    # a T1-like image: WM bright, GM darker, CSF dark
    t1_vals = np.array([0.0, 800.0, 600.0, 150.0], np.float32)
    t1 = t2.with_data(t1_vals[lab] + np.random.default_rng(0).normal(0, 5.0, t2.shape).astype(np.float32))
    csf = wide_csf(t2, brain_mask(t2))
    out = insert_same_pvs(sim, t1, csf, seed=1)
    core = sim.mask > 0
    assert out.data[core].mean() < t1.data[core].mean() - 150     # the PVS are dark on the T1
    untouched = sim.weight == 0
    np.testing.assert_array_equal(out.data[untouched], t1.data[untouched])
    with pytest.raises(PVSInputError):
        insert_same_pvs(sim, t1, np.zeros(t2.shape, bool))


@pytest.mark.parametrize("shape", [(9, 40, 37), (40, 37)])
def test_fill_holes_equals_scipy(shape):
    """The brain mask's hole filling (fill_voids) gives scipy's binary_fill_holes."""
    from napari_pvs.engine.anatomy.morphology import fill_holes

    rng = np.random.default_rng(len(shape))
    for density in (0.0, 0.3, 0.5, 0.7, 1.0):
        mask = rng.random(shape) < density
        mask = ndi.binary_closing(mask) if 0 < density < 1 else mask
        got = fill_holes(mask)
        assert got.dtype == bool and got.shape == shape
        np.testing.assert_array_equal(got, ndi.binary_fill_holes(mask))
    shell = np.zeros(shape, bool)             # a closed box (a square in 2D) with a hollow inside
    shell[tuple(slice(1, n - 1) for n in shape)] = True
    shell[tuple(slice(3, n - 3) for n in shape)] = False
    centre = tuple(n // 2 for n in shape)
    assert fill_holes(shell)[centre] and not shell[centre]


def test_box_limited_mask_helpers_equal_whole_array_ones():
    """dilate_mm (distances on the mask's box), largest_component (cc3d) and the wide-CSF
    geodesic reach (dilations on the seed's box) equal the whole-array scipy versions, with
    anisotropic voxels and masks touching the array's border."""
    from napari_pvs.engine.anatomy.morphology import dilate_mm, largest_component
    from napari_pvs.engine.anatomy.tissue import _geodesic_reach

    spacing = np.array([3.0, 0.5, 0.7])
    rng = np.random.default_rng(7)
    for density in (0.001, 0.01, 0.05):
        mask = rng.random((12, 50, 44)) < density
        mask[0, 0, 0] = mask[-1, -1, -1] = True          # the border is reached
        for radius in (0.4, 1.0, 3.5):
            full = ndi.distance_transform_edt(~mask, sampling=spacing) <= radius
            np.testing.assert_array_equal(dilate_mm(mask, radius, spacing), full)
        lab, n = ndi.label(ndi.binary_dilation(mask))
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        np.testing.assert_array_equal(largest_component(lab > 0), lab == sizes.argmax())
    within = rng.random((12, 50, 44)) < 0.6
    seed = np.zeros_like(within)
    seed[6, 25, 22] = seed[0, 2, 40] = True
    within |= seed
    grown = _geodesic_reach(seed, within, spacing, 2.0)
    expected = _geodesic_reach(seed, within, spacing, 2.0, on_box=False)
    np.testing.assert_array_equal(grown, expected)
    assert grown.sum() > seed.sum()
    assert not largest_component(np.zeros((3, 4, 5), bool)).any()


def test_brain_mask_does_not_depend_on_the_background_around_the_head():
    """The brain mask's distance transforms run on the foreground's box: padding the scan with
    background changes nothing inside and marks nothing outside."""
    vol, _ = make_phantom()
    mask = brain_mask(vol)
    assert mask.any()
    pad = ((3, 5), (12, 7), (9, 14))
    padded = Volume(np.pad(np.asarray(vol.data), pad), vol.affine)
    got = brain_mask(padded)
    inner = tuple(slice(a, a + n) for (a, _), n in zip(pad, vol.shape, strict=True))
    np.testing.assert_array_equal(got[inner], mask)
    assert got.sum() == mask.sum()
