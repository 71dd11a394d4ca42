"""*Place slices by atlas*, the part of the Count widget (:mod:`.count`) that places the rating
slices.

*Place by atlas* fills both slice numbers by registering the MNI template with the Allen
atlas to a chosen Image layer (the T2 the mask belongs to), in a worker with progress
(:func:`napari_pvs.engine.usecases.place_rating_slices_job`). It adds the atlas
regions (BG, white matter, lateral ventricles, anterior commissure) as a Labels layer and
the landmarks (anterior commissure, top of the lateral ventricles, the CSO point 10 mm
above) as points, and moves the viewer to the BG slice, so the placement can be checked
before counting; the slice boxes stay editable. The regions layer becomes the widget's
*atlas regions*: then the BG slice counts only PVS whose centroid lies in the basal ganglia
(grown 3 mm, which takes in the internal capsule) and the CSO slice only those in the
white matter (:func:`napari_pvs.engine.registration.atlas.rating_areas`); the *on slice*
column keeps every PVS on the slice. Clear *atlas regions* to count whole slices.
"""

from __future__ import annotations

import numpy as np

from ..engine.errors import PVSInputError
from ..plugin.layers import geometry_metadata, layer_to_volume
from ..plugin.viewer import add_labels, put_layer, source_geometry
from ._job import notify_info

__all__ = ["AtlasPlacementMixin"]


class AtlasPlacementMixin:
    """The *Place slices by atlas* job of :class:`~napari_pvs.widgets.count.CountWidget`: its
    ``prepare`` and its result (slice boxes, atlas regions, landmarks). Uses the widget's
    ``viewer``, ``place`` (JobPanel), ``place_image``, ``bg_slice``, ``cso_slice``, ``labels``,
    ``regions``; sets ``placement`` and ``_areas`` (the counting areas, keyed by the regions'
    data)."""

    def _forget_areas(self, *_) -> None:
        self._areas = None

    def _prepare_placement(self):
        from ..engine.registration.atlas import load_atlas, rating_areas
        from ..engine.usecases import place_rating_slices_job

        layer = self.place_image.value
        if layer is None:
            raise PVSInputError("choose the Image layer (T2) to place the rating slices on")
        image = layer_to_volume(layer)
        self._placed_on = (layer, image)

        def job():   # the counting areas (3D growth of the regions) in the worker too, not at Count
            import skimage.color  # noqa: F401 - napari's Labels colours need it: imported here, not at the result
            atlas = load_atlas()      # read here: 0.2 s of file reading on the main thread froze the viewer
            placement = yield from place_rating_slices_job(image, atlas=atlas)
            areas = None if placement.regions is None else rating_areas(placement.regions, image.voxel_size)
            return placement, areas
        return job, f"registering the atlas to '{layer.name}' ..."

    def _show_placement(self, result):
        """Fill the slice boxes, show the atlas regions and the landmarks, go to the BG slice
        (a generator: one layer per event-loop turn, see :meth:`JobWidget.on_result`)."""
        placement, areas = result if isinstance(result, tuple) else (result, None)
        self.placement = placement
        rs = placement.slices
        layer, image = self._placed_on
        for box, value in ((self.bg_slice, rs.bg), (self.cso_slice, rs.cso)):
            box.max = max(box.max, image.shape[rs.axial_axis] - 1)
            box.value = value
        meta = {**geometry_metadata(layer), "rating_slices": rs.as_dict()}
        chosen = self.labels.value
        regions = put_layer(self.viewer, f"{layer.name} atlas regions", placement.regions, source_geometry(layer),
                            meta, lambda d, **kw: add_labels(self.viewer, d, opacity=0.35, **kw))
        yield
        self.reset_choices()
        if chosen is not None and chosen in self.viewer.layers:
            self.labels.value = chosen          # the PVS mask stays the one to count, not the regions
        self.regions.value = regions
        # keyed by the data array: the layer napari hands a plugin is a proxy, not the list's object
        self._areas = None if areas is None else (regions.data, areas)
        regions.events.paint.connect(self._forget_areas)      # edited regions: grow them again at Count
        regions.events.data.connect(self._forget_areas)
        yield
        # landmarks: RAS mm -> the image's voxels -> the layer's own world (any storage order)
        ras = np.array([rs.ac_mm, rs.lv_top_mm, rs.cso_mm])
        pts = np.array([np.asarray(layer.data_to_world(image.world_to_voxel(p)), float) for p in ras])
        names = ["anterior commissure (BG)", "top of lateral ventricles", "CSO (+10 mm)"]
        name = f"{layer.name} rating-slice landmarks"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.viewer.add_points(pts, name=name, size=4, face_color="yellow", features={"landmark": names},
                               units=tuple(layer.units),
                               text={"string": "{landmark}", "color": "yellow", "size": 9,
                                     "anchor": "upper_left"}, out_of_slice_display=True)
        yield
        if self.viewer.dims.ndim == 3:
            self.viewer.dims.set_point(range(3), tuple(pts[0]))
            yield
        msg = (f"BG slice {rs.bg}, CSO slice {rs.cso} on '{layer.name}' ({rs.method} atlas registration, "
               f"{rs.seconds:.0f} s); check them on the atlas regions layer")
        self.place.status.setText(msg)
        notify_info(msg)
