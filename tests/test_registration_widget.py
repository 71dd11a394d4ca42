"""The Register images widget and the Count widget's atlas placement, on the phantom of
test_registration (no real data, a few seconds each)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from test_registration import A_TRUE, phantom_atlas, subject_from  # noqa: E402

from napari_pvs.engine.registration import SpatialTransform, warp_volume  # noqa: E402
from napari_pvs.plugin.layers import layer_geometry, volume_metadata  # noqa: E402


@pytest.fixture(scope="module")
def atlas():
    return phantom_atlas()


@pytest.fixture(scope="module")
def subject(atlas):
    return subject_from(atlas, A_TRUE)


def add_volume(viewer, volume, name, labels=False):
    add = viewer.add_labels if labels else viewer.add_image
    return add(np.asarray(volume.data), name=name, metadata=volume_metadata(volume), **layer_geometry(volume))


def test_register_widget_shows_the_warped_image_grid_and_jacobian(make_napari_viewer, qtbot, atlas, subject):
    from napari_pvs.widgets.registration import RegistrationWidget

    viewer = make_napari_viewer()
    add_volume(viewer, subject, "t2")
    add_volume(viewer, atlas.template, "template")
    lv = atlas.labels.with_data((np.asarray(atlas.labels.data) == 58).astype(np.uint8))
    add_volume(viewer, lv, "ventricles", labels=True)
    widget = RegistrationWidget(viewer)
    widget.reset_choices()
    widget.fixed.value = viewer.layers["t2"]
    widget.moving.value = viewer.layers["template"]
    widget.method.value = "classical"
    widget.grid_mm.value = 3.0
    assert not widget.warp_button.isEnabled()
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=180_000)
    assert widget.last is not None, widget.status.text()
    warped = viewer.layers["template on t2"]
    assert warped.data.shape == subject.shape
    np.testing.assert_allclose(warped.scale, viewer.layers["t2"].scale)
    for name in ("deformation grid", "Jacobian determinant"):
        assert viewer.layers[name].data.shape == subject.shape
    jac = viewer.layers["Jacobian determinant"].data
    assert 0.5 < float(np.median(jac)) < 1.5 and (jac > 0).all()
    assert "SDlogJ" in widget.status.text()
    # the phantom's ventricles carried onto the subject sit on its bright ventricles
    widget.labels.value = viewer.layers["ventricles"]
    out = widget.warp_labels()
    assert out is not None and out.data.shape == subject.shape
    truth = warp_volume(atlas.labels, subject, SpatialTransform(A_TRUE), order=0).data == 58
    on = out.data > 0
    assert 2 * (on & truth).sum() / (on.sum() + truth.sum()) > 0.6


def test_register_widget_refuses_one_layer_twice(make_napari_viewer, subject):
    from napari_pvs.widgets.registration import RegistrationWidget

    viewer = make_napari_viewer()
    add_volume(viewer, subject, "t2")
    widget = RegistrationWidget(viewer)
    widget.reset_choices()
    widget.fixed.value = widget.moving.value = viewer.layers["t2"]
    widget.start()
    assert widget.worker is None and "same layer" in widget.status.text()


def test_count_widget_places_rating_slices_by_atlas(make_napari_viewer, qtbot, monkeypatch, atlas, subject):
    import napari_pvs.engine.registration.atlas as atlas_mod
    from napari_pvs.widgets.count import CountWidget

    monkeypatch.setattr(atlas_mod, "load_atlas", lambda root=None: atlas)
    viewer = make_napari_viewer()
    add_volume(viewer, subject, "t2")
    pvs = np.zeros(subject.shape, np.uint8)
    add_volume(viewer, subject.with_data(pvs), "pvs", labels=True)
    widget = CountWidget(viewer)
    widget.reset_choices()
    widget.labels.value = viewer.layers["pvs"]
    widget.place_image.value = viewer.layers["t2"]
    widget.place.start()
    qtbot.waitUntil(lambda: widget.place.worker is None, timeout=120_000)
    assert widget.placement is not None, widget.place.status.text()
    rs = widget.placement.slices
    assert (widget.bg_slice.value, widget.cso_slice.value) == (rs.bg, rs.cso)
    regions = viewer.layers["t2 atlas regions"].data
    assert regions.shape == subject.shape and set(np.unique(regions)) >= {0, 2, 3, 4}
    # the counting areas were grown in the worker and are used at Count (not grown on the main thread)
    assert widget._areas is not None and widget._areas[0] is widget.regions.value.data
    from napari_pvs.engine.registration.atlas import rating_areas

    for cached, fresh in zip(widget._areas[1], rating_areas(regions, widget._placed_on[1].voxel_size), strict=True):
        np.testing.assert_array_equal(cached, fresh)
    points = viewer.layers["t2 rating-slice landmarks"]
    assert len(points.data) == 3
    # the viewer sits on the BG slice: the AC landmark's S coordinate
    assert viewer.dims.point[0] == pytest.approx(rs.ac_mm[2], abs=subject.voxel_size[0])
    assert widget.labels.value is viewer.layers["pvs"]     # still the PVS mask, not the regions
    # the regions layer is the counting area: a PVS by the anterior commissure counts on the BG
    # slice, one outside the brain on the same slice does not (but stays "on slice")
    assert widget.regions.value is viewer.layers["t2 atlas regions"]
    ac = np.argwhere(regions[rs.bg] == 4)
    assert len(ac), "no anterior commissure on the BG slice"
    y, x = ac[len(ac) // 2]
    pvs[rs.bg, y, x] = 1
    pvs[rs.bg, 1, 1] = 1
    viewer.layers["pvs"].data = pvs
    counts = widget.count()
    assert counts.bg.slice_index == rs.bg and counts.cso.slice_index == rs.cso
    assert (counts.bg.total, counts.bg.on_slice, counts.bg.within) == (1, 2, "atlas BG")
    assert counts.bg.split_at == "atlas"                          # left/right at the registered midline
    assert "atlas BG" in widget.table_values()[0]
    widget.regions.value = None                                  # whole slices again
    assert widget.count().bg.total == 2 and widget.last_counts.bg.split_at == "field of view"
    widget.labels.value = viewer.layers["t2 atlas regions"]      # the regions are no PVS mask
    assert widget.count() is None and widget.last_counts.bg.total == 2
