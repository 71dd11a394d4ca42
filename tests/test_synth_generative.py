"""T2-like images generated from a label map (SynthSeg-style): geometry, contrast order,
determinism, the label-derived anatomy, and PVS placed only in white matter and BG."""

import numpy as np
import pytest

from napari_pvs.engine.anatomy import REGION_BG, REGION_CSO
from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.io import Volume
from napari_pvs.engine.synth import SimulationConfig, simulate_pvs
from napari_pvs.engine.synth.generative import GeneratedT2, GenerativeConfig, generate_t2

#: voxel (i, j, k) -> RAS of a 1 mm map stored L, I, A (as the shared SynthSeg maps are)
LIA = np.array([[-1.0, 0, 0, 40], [0, 0, 1, -40], [0, -1, 0, 40], [0, 0, 0, 1]])


def _world(shape_ijk, affine):
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape_ijk], indexing="ij"), -1).reshape(-1, 3)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape_ijk, 3)


@pytest.fixture(scope="module")
def label_map() -> Volume:
    """An 80 mm head: scalp, CSF rim, cortex, left (x < 0) / right white matter, lateral
    ventricles, putamen and caudate, all placed in world RAS mm."""
    shape = (80, 80, 80)
    xyz = _world(shape, LIA)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    r = np.sqrt(x ** 2 + y ** 2 + (z / 1.1) ** 2)
    lab = np.zeros(shape, np.int32)
    lab[r < 38] = 507
    lab[r < 34] = 24
    lab[r < 32] = 3
    lab[(r < 27) & (x < 0)] = 2
    lab[(r < 27) & (x >= 0)] = 41
    lab[(np.abs(x) - 4) ** 2 + (y / 2) ** 2 + (z - 4) ** 2 < 9] = 4
    lab[((np.abs(x) - 4) ** 2 + (y / 2) ** 2 + (z - 4) ** 2 < 9) & (x > 0)] = 43
    lab[(np.abs(x) - 13) ** 2 + y ** 2 + ((z + 6) / 1.5) ** 2 < 20] = 12
    lab[((np.abs(x) - 13) ** 2 + y ** 2 + ((z + 6) / 1.5) ** 2 < 20) & (x > 0)] = 51
    lab[(np.abs(x) - 8) ** 2 + (y - 8) ** 2 + (z + 2) ** 2 < 6] = 11
    return Volume(lab.transpose(2, 1, 0).astype(np.float32), LIA)


def test_generated_grid_contrast_and_geometry(label_map):
    cfg = GenerativeConfig()
    gen = generate_t2(label_map, seed=4, config=cfg)
    img = gen.image
    assert img.orientation == ("R", "A", "S")
    assert img.data.dtype == np.float32 and gen.labels.shape == img.shape
    vz, vy, vx = img.voxel_size
    assert cfg.in_plane_mm[0] - 1e-6 <= vx <= cfg.in_plane_mm[1] + 1e-6 and vx == pytest.approx(vy)
    assert cfg.thin_slice_mm[0] - 1e-6 <= vz <= cfg.thick_slice_mm[1] + 1e-6
    # each structure stays where the map put it in world space (no flipped or swapped axis)
    for lab in (2, 41, 12, 4):
        before = label_map.voxel_to_world(np.argwhere(label_map.data == lab).astype(float)).mean(0)
        after = img.voxel_to_world(np.argwhere(gen.labels == lab).astype(float)).mean(0)
        assert np.allclose(after, before, atol=max(vz, 1.0)), (lab, before, after)
    assert label_map.voxel_to_world(np.argwhere(label_map.data == 2).astype(float))[:, 0].mean() < -5
    med = {name: float(np.median(img.data[np.isin(gen.labels, labs)]))
           for name, labs in (("csf", (4, 43)), ("cortex", (3,)), ("wm", (2, 41)))}
    assert med["csf"] > med["cortex"] > med["wm"] > 100, med
    assert float(np.median(img.data[gen.labels == 0])) < 0.2 * med["wm"]


def test_generated_is_deterministic_per_seed(label_map):
    a, b, c = (generate_t2(label_map, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.image.data, b.image.data) and np.array_equal(a.image.affine, b.image.affine)
    assert a.image.shape != c.image.shape or not np.allclose(a.image.data, c.image.data)
    assert a.image.meta["generated"]["seed"] == 1


def test_label_anatomy_places_pvs_in_white_matter_and_bg(label_map):
    gen = generate_t2(label_map, seed=3, config=GenerativeConfig(thick_fraction=0.0))
    anat = gen.anatomy()
    assert set(np.unique(gen.labels[anat.regions == REGION_BG])) <= {11, 12, 51}
    assert set(np.unique(gen.labels[anat.regions == REGION_CSO])) <= {2, 41}
    assert anat.csf_intensity == pytest.approx(np.median(gen.image.data[np.isin(gen.labels, (4, 43))]))
    sim = simulate_pvs(gen.image, seed=2, anatomy=anat,
                       config=SimulationConfig(n_bg=3, n_cso=6, length_mm=(2.0, 5.0)))
    assert sim.mask.any()
    inside = gen.labels[sim.mask > 0]
    assert np.isin(inside, (2, 41, 11, 12, 51)).mean() > 0.95
    assert sim.image.data[sim.mask > 0].mean() > gen.image.data[np.isin(gen.labels, (2, 41))].mean()


def test_generated_rejects_bad_label_maps(label_map):
    with pytest.raises(PVSInputError, match="no labelled voxel"):
        generate_t2(Volume(np.zeros((8, 8, 8), np.float32), np.eye(4)))
    no_csf = np.where(np.isin(label_map.data, (4, 43, 24)), 2, label_map.data)
    with pytest.raises(PVSInputError, match="no CSF label"):
        generate_t2(Volume(no_csf, label_map.affine))
    gen = generate_t2(label_map, seed=0)
    no_putamen = GeneratedT2(gen.image, np.where(np.isin(gen.labels, (12, 51)), 2, gen.labels))
    with pytest.raises(PVSInputError, match="no lateral ventricle or putamen"):
        no_putamen.anatomy()
    with pytest.raises(ValueError, match="in_plane_mm"):
        GenerativeConfig(in_plane_mm=(1.0, 0.5))
