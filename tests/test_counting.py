"""Counting on rating slices: components per hemisphere, Potter grade, 3D count and volume."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pvs.engine.rating import (count_rating_slices, count_slice, count_volume, potter_grade,
                                        write_counts_csv)
from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.io import Volume


@pytest.mark.parametrize("count, grade", [(0, 0), (1, 1), (10, 1), (11, 2), (20, 2), (21, 3), (40, 3), (41, 4), (300, 4)])
def test_potter_grade(count, grade):
    assert potter_grade(count) == grade


def _blobs(mask, z, xs, ys):
    for x in xs:
        for y in ys:
            mask[z, y:y + 2, x:x + 2] = 1


def _ras_volume(mask, vs=(3.0, 0.5, 0.5)):
    # RAS affine centred so that world x = 0 at the middle of the x axis
    nz, ny, nx = mask.shape
    aff = np.diag([vs[2], vs[1], vs[0], 1.0])
    aff[:3, 3] = [-(nx - 1) / 2 * vs[2], -(ny - 1) / 2 * vs[1], 0]
    return Volume(mask, aff)


def test_counts_per_hemisphere_ras_and_lps():
    mask = np.zeros((10, 60, 80), np.uint8)
    _blobs(mask, 3, xs=[5, 15, 25], ys=[10, 20, 30, 40])          # 12 blobs at low x
    _blobs(mask, 3, xs=[60, 70], ys=[10, 20])                        # 4 blobs at high x
    _blobs(mask, 7, xs=[50, 55, 60, 65, 70, 75], ys=[5, 10, 15, 20, 25, 30, 35, 40])  # 48 at high x
    vol = _ras_volume(mask)
    c = count_rating_slices(vol, bg_slice=3, cso_slice=7)
    # RAS: +x is the subject's right, so low x = left
    assert (c.bg.left, c.bg.right, c.bg.total, c.bg.grade) == (12, 4, 16, 2)
    assert (c.cso.left, c.cso.right, c.cso.total, c.cso.grade) == (0, 48, 48, 4)
    assert c.bg.area_mm2 == pytest.approx(16 * 4 * 0.25)
    assert c.volume.n_components == 64
    assert c.volume.volume_mm3 == pytest.approx(64 * 4 * 0.25 * 3.0)
    # the same mask stored LPS (x axis flipped in the affine): hemispheres swap
    lps = vol.affine.copy()
    lps[0, 0] *= -1
    lps[0, 3] *= -1
    c2 = count_slice(Volume(mask, lps), 3, "BG")
    assert (c2.left, c2.right) == (4, 12)


def test_diagonal_touching_pixels_are_one_pvs_and_3d_merges_slices():
    mask = np.zeros((3, 10, 10), np.uint8)
    mask[1, 2, 2] = mask[1, 3, 3] = 1          # diagonal neighbours: one component (8-connectivity)
    mask[0, 2, 2] = 1                          # continues through slices: one 3D PVS
    mask[1, 7, 7] = 1
    vol = _ras_volume(mask, vs=(1, 1, 1))
    assert count_slice(vol, 1).total == 2
    assert count_volume(vol).n_components == 2


def test_slice_outside_volume_is_rejected():
    vol = _ras_volume(np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(PVSInputError, match="BG slice 5 is outside the volume"):
        count_rating_slices(vol, 5, 1)


def test_csv(tmp_path):
    mask = np.zeros((4, 20, 20), np.uint8)
    mask[1, 5, 5] = 1
    c = count_rating_slices(_ras_volume(mask), 1, 2)
    p = write_counts_csv(c, tmp_path / "c.csv")
    lines = p.read_text().splitlines()
    assert lines[0].startswith("region,slice_index,left,right,total,grade,area_mm2")
    assert lines[1].startswith("BG,1,")
    assert len(lines) == 4


def test_slab_range_in_mm():
    from napari_pvs.engine.rating import slab_range

    thin = _ras_volume(np.zeros((10, 4, 4), np.uint8), vs=(1.0, 1.0, 1.0))
    thick = _ras_volume(np.zeros((10, 4, 4), np.uint8), vs=(3.3, 0.6, 0.6))
    assert list(slab_range(thin, 5, None)) == [5] and list(slab_range(thin, 5, 0)) == [5]
    assert list(slab_range(thin, 5, 3.0)) == [4, 5, 6]          # centres within 1.5 mm
    assert list(slab_range(thin, 5, 5.0)) == [3, 4, 5, 6, 7]
    assert list(slab_range(thin, 0, 5.0)) == [0, 1, 2]          # clipped at the volume's edge
    assert list(slab_range(thick, 5, 3.0)) == [5]               # 3.3 mm apart: the slice alone
    assert list(slab_range(thick, 5, 6.6)) == [4, 5, 6]
    with pytest.raises(ValueError, match="slab_mm must be >= 0"):
        slab_range(thin, 5, -1.0)


def test_slab_counts_pvs_ending_next_to_the_rating_slice_once():
    """On a 1 mm scan a PVS that stops one slice short of the rating slice counts with a
    3 mm slab; a tube crossing the slab (on three slices) counts once; one two slices away
    does not count."""
    mask = np.zeros((12, 40, 40), np.uint8)
    mask[3:6, 10, 10] = 1         # vertical tube through slices 3-5: on the rating slice 5
    mask[6, 20, 20] = 1           # stops one slice above the rating slice
    mask[4, 30, 30:32] = 1        # one slice below
    mask[4, 30, 33] = 1           # ... and, 2 voxels away on slice 6, a shifted dot that
    mask[6, 30, 32] = 1           #     joins the slice-4 dot in the union: one PVS
    mask[7, 5, 35] = 1            # two slices away: outside a 3 mm slab
    vol = _ras_volume(mask, vs=(1.0, 1.0, 1.0))
    assert count_slice(vol, 5).total == 1
    c = count_slice(vol, 5, slab_mm=3.0)
    assert (c.total, c.slab_slices, c.on_slice) == (3, 3, 3)
    assert c.area_mm2 == pytest.approx(1 + 1 + 4)     # union pixels: tube, dot, the joined PVS
    assert count_slice(vol, 5, slab_mm=5.0).total == 4
    # the counting area is tested at the centroid on the rating slice's area
    area = np.zeros(mask.shape, bool)
    area[5, :25, :25] = True
    assert count_slice(vol, 5, area=area, slab_mm=3.0).total == 2
    rc = count_rating_slices(vol, 5, 8, slab_mm=3.0)
    assert (rc.bg.total, rc.cso.total, rc.cso.slab_slices) == (3, 1, 3)
    assert rc.volume.n_components == 6      # the 3D count ignores the slab: the joined PVS is 3 there


def test_component_table_rows_per_pvs():
    from napari_pvs.engine.rating import component_table

    lab = np.zeros((4, 20, 30), np.uint8)
    lab[1, 2:5, 3] = 1           # a 3-voxel line
    lab[2:4, 10, 20:22] = 1      # a 2x2 block spanning two slices
    aff = np.diag([0.5, 0.5, 3.0, 1.0])
    rows = component_table(Volume(lab, aff))
    assert [r["n_voxels"] for r in rows] == [3, 4]
    assert rows[0]["volume_mm3"] == pytest.approx(3 * 0.75)
    assert (rows[0]["centroid_z"], rows[0]["centroid_y"], rows[0]["centroid_x"]) == (1.0, 3.0, 3.0)
    assert (rows[1]["extent_z"], rows[1]["extent_y"], rows[1]["extent_x"]) == (2, 1, 2)
    assert rows[1]["z_mm"] == pytest.approx(3.0 * 2.5) and rows[1]["x_mm"] == pytest.approx(0.5 * 20.5)
    assert component_table(Volume(np.zeros((2, 3, 3), np.uint8), aff)) == []


def test_counting_area_keeps_only_pvs_centred_inside():
    mask = np.zeros((10, 60, 80), np.uint8)
    _blobs(mask, 3, xs=[5, 15, 25], ys=[10, 20, 30, 40])          # 12 blobs at low x
    _blobs(mask, 3, xs=[60, 70], ys=[10, 20])                        # 4 blobs at high x
    vol = _ras_volume(mask)
    area = np.zeros(mask.shape, bool)
    area[3, :, :30] = True                                           # takes the 12 low-x blobs only
    area[3, 25:, 59:] = True                                         # no high-x blob is centred here
    area[3, 9:12, 69] = True      # reaches a blob at x 70-71 but misses its centroid (10.5, 70.5)
    c = count_slice(vol, 3, "BG", area=area, area_name="atlas BG")
    assert (c.total, c.left, c.right, c.on_slice, c.within) == (12, 12, 0, 16, "atlas BG")
    assert c.area_mm2 == pytest.approx(12 * 4 * 0.25)                # only the counted PVS
    full = count_rating_slices(vol, 3, 7, bg_area=area, cso_area=np.ones(mask.shape, bool), area_source="atlas")
    assert (full.bg.total, full.cso.within, full.bg.within) == (12, "atlas WM", "atlas BG")
    assert count_slice(vol, 3).within == "slice" and count_slice(vol, 3).on_slice == 16
    with pytest.raises(ValueError, match="mask's shape"):
        count_slice(vol, 3, area=area[:5])


def test_rating_areas_margins_in_mm_and_no_ventricle():
    from napari_pvs.engine.registration.atlas import REGION_CODES, rating_areas

    regions = np.zeros((9, 40, 40), np.uint8)
    regions[4, 20, 10] = REGION_CODES["BG"]
    regions[:, 30:, :] = REGION_CODES["WM"]
    regions[4, 20, 12] = REGION_CODES["LV"]
    bg, wm = rating_areas(regions, (4.0, 1.0, 1.0), bg_margin_mm=3.0, wm_margin_mm=1.0)
    # 3 mm in-plane = 3 voxels, but not one 4 mm slice up or down
    assert bg[4, 20, 7] and bg[4, 20, 13] and not bg[4, 20, 14] and bg[4, 23, 10] and not bg[4, 24, 10]
    assert not bg[3, 20, 10] and not bg[5, 20, 10]
    assert not bg[4, 20, 12]                                         # the ventricle is left out
    assert wm[:, 29, :].all() and not wm[:, 28, :].any() and wm[:, 30:, :].all()
    with pytest.raises(ValueError, match="3D region map"):
        rating_areas(regions[0], (1, 1, 1))
