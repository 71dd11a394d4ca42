"""Dock widget "Count PVS (BG/CSO)": rating-slice PVS counts of a mask.

Pick a PVS Labels layer and the two axial rating slices (basal ganglia, BG, through the
anterior commissure; centrum semiovale, CSO, about 1 cm above the lateral ventricles;
both default to the viewer's current slice), then *Count*. The table shows, per slice,
the PVS (2D connected components) in the subject's left and right hemisphere, the total,
the Potter grade (0 none, 1: 1-10, 2: 11-20, 3: 21-40, 4: >40, of the hemisphere with
more) and the PVS area in mm^2, plus the whole-volume count (3D components) and volume
in mm^3 (the *rate a scan* use case, :func:`napari_pvs.engine.usecases.count_rating`).
Left/right splits at the atlas midline once the slices were placed by atlas, else at the
centre of the field of view; *Save CSV* writes the table.
Slice numbers run along the volume's axial axis (from its affine), whatever the order of
napari's dims; "= current slice" reads the viewer's world position through the layer.

*Place slices by atlas* (:mod:`.count_placement`) fills both slice numbers from an atlas
registration and gives the counts the atlas regions to count within.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from magicgui.widgets import Container, FloatSpinBox, SpinBox, create_widget
from qtpy.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QPushButton, QTableWidget,
                            QTableWidgetItem, QWidget)

from typing import TYPE_CHECKING

from ..engine.errors import PVSInputError
from ..plugin.layers import layer_to_volume
from ..plugin.viewer import prepare_viewer, shown_index
from ..plugin.jobs import JobRunner
from ._job import JobPanel, notify_error, notify_info, scroll_column
from .count_placement import AtlasPlacementMixin
from .plots import CountsChart

if TYPE_CHECKING:
    import napari

__all__ = ["CountWidget", "COLUMNS"]

log = logging.getLogger(__name__)

#: (row key, header) of the table columns
COLUMNS = (
    ("region", "region"),
    ("slice_index", "slice"),
    ("left", "left"),
    ("right", "right"),
    ("total", "total"),
    ("on_slice", "on slice"),
    ("grade", "grade"),
    ("within", "counted within"),
    ("slab_slices", "slices"),
    ("split_at", "L/R split at"),
    ("area_mm2", "area mm²"),
    ("volume_mm3", "volume mm³"),
)


class CountWidget(AtlasPlacementMixin, QWidget):
    """Count PVS on the BG and CSO rating slices of a Labels layer.

    Attributes
    ----------
    table : QTableWidget
        Rows BG, CSO, volume; columns :data:`COLUMNS`.
    last_counts : RatingCounts or None
        Result of the last *Count*.
    placement : AtlasPlacement or None
        The last atlas placement (slices, midline, regions).
    place : JobPanel
        *Place slices by atlas* (its image picker is :attr:`place_image`).
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        prepare_viewer(napari_viewer)
        self.last_counts = None
        self.placement = None
        self._placed_on = None
        self._areas = None          # (regions data, (bg_area, cso_area)) grown in the placement worker

        self.labels = create_widget(annotation="napari.layers.Labels", label="PVS mask")
        self.labels.changed.connect(self._on_layer_changed)
        self.bg_slice = SpinBox(label="BG slice", value=0, min=0, max=10000,
                                tooltip="axial slice through the basal ganglia (anterior commissure)")
        self.cso_slice = SpinBox(label="CSO slice", value=0, min=0, max=10000,
                                 tooltip="axial slice ~1 cm above the lateral ventricles")
        self.regions = create_widget(annotation="napari.layers.Labels", label="atlas regions",
                                     options={"nullable": True, "value": None,
                                              "tooltip": "atlas regions layer from 'Place slices by atlas': "
                                                         "count the BG slice within the basal ganglia and the "
                                                         "CSO slice within the white matter (empty: whole "
                                                         "slices)"})
        self.slab_mm = FloatSpinBox(label="rating slab (mm)", value=0.0, min=0.0, max=20.0, step=0.5,
                                    tooltip="thin-slice scans: count on the union of the slices within half "
                                            "this thickness of each rating slice (e.g. 3 mm: three slices of "
                                            "a 1 mm scan, as one clinical slice shows); 0: the slice alone")
        self._form = Container(widgets=[self.labels, self.bg_slice, self.cso_slice, self.slab_mm, self.regions])
        self.place_image = create_widget(annotation="napari.layers.Image", label="image (T2)")
        self.place = JobPanel("rating-slice placement", "Place slices by atlas", prepare=self._prepare_placement,
                              on_result=self._show_placement, form=Container(widgets=[self.place_image]))
        self.bg_here = QPushButton("BG = current slice")
        self.cso_here = QPushButton("CSO = current slice")
        self.bg_here.clicked.connect(lambda *_: self._set_to_current(self.bg_slice))
        self.cso_here.clicked.connect(lambda *_: self._set_to_current(self.cso_slice))

        self.count_button = QPushButton("Count")
        self.count_button.clicked.connect(self.count_in_background)
        self._count_runner = JobRunner("PVS count", self)
        self._count_runner.returned.connect(lambda counts: self._show_counts(counts, *self._count_for))
        self._count_runner.finished.connect(lambda: self.count_button.setEnabled(True))
        self._count_for = (None, None)
        self.save_button = QPushButton("Save CSV")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self._save_dialog)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([h for _, h in COLUMNS])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setMinimumHeight(150)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        here, buttons = QWidget(), QWidget()
        row = QHBoxLayout(here)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bg_here)
        row.addWidget(self.cso_here)
        row = QHBoxLayout(buttons)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.count_button)
        row.addWidget(self.save_button)
        self.chart = CountsChart(napari_viewer)
        scroll_column(self, (self._form.native, here, self.place, buttons, self.table, self.chart, self.status))
        self._on_layer_changed(self.labels.value)

    def reset_choices(self, *_):
        """Refresh the layer pickers (napari calls this when layers change)."""
        self._form.reset_choices()
        self.place.reset_choices()

    def current_slice(self, layer=None) -> int | None:
        """Index along the volume's axial axis of the viewer's current position, for
        ``layer`` (default the chosen mask); None without a 3D layer."""
        layer = layer if layer is not None else self.labels.value
        if layer is None or np.ndim(layer.data) != 3:
            return None
        try:
            axial = layer_to_volume(layer).axial_axis
        except PVSInputError:
            return None
        # the slice napari draws (on an oblique scan not world_to_data of the full point)
        data_pos = shown_index(self.viewer, layer, axial)
        n = layer.data.shape[axial]
        return int(np.clip(np.round(data_pos), 0, n - 1))

    def _set_to_current(self, box: SpinBox) -> None:
        current = self.current_slice()
        if current is not None:
            box.value = min(max(current, box.min), box.max)

    def _on_layer_changed(self, layer=None) -> None:
        if layer is None or np.ndim(layer.data) != 3:
            return
        try:
            n = int(layer.data.shape[layer_to_volume(layer).axial_axis])
        except PVSInputError:
            return
        for box in (self.bg_slice, self.cso_slice):
            box.max = max(0, n - 1)
        current = self.current_slice(layer)
        for box in (self.bg_slice, self.cso_slice):
            if current is not None and box.value == 0:
                box.value = current

    # ------------------------------------------------------------------ counting
    def count(self, *_):
        """Count PVS on the two slices and fill the table (Python and scripts: at once, on the
        calling thread; the *Count* button counts in a worker thread, :meth:`count_in_background`).

        Returns the :class:`~napari_pvs.engine.rating.RatingCounts` (None on error)."""
        from ..engine.usecases import count_rating

        inputs = self._count_inputs()
        if inputs is None:
            return None
        layer, reg, kwargs = inputs
        try:
            counts = count_rating(**kwargs)
        except PVSInputError as exc:
            notify_error(str(exc))
            return None
        self._show_counts(counts, layer, reg)
        return counts

    def count_in_background(self, *_) -> bool:
        """The *Count* button: the same count in the job runner's worker thread (the event loop
        stays free; the table and chart are filled when it returns, a bad input is one
        notification). Returns whether it started."""
        from ..engine.usecases import count_rating

        if self._count_runner.running:
            return False
        inputs = self._count_inputs()
        if inputs is None:
            return False
        layer, reg, kwargs = inputs

        def job():
            yield from ()                      # no progress events: a count takes a fraction of a second
            return count_rating(**kwargs)

        self._count_for = (layer, reg)
        self.count_button.setEnabled(False)
        return self._count_runner.start(job, "counting PVS ...")

    @property
    def counting(self) -> bool:
        """Whether a *Count* started by the button is still running."""
        return self._count_runner.running

    def _count_inputs(self):
        """``(layer, regions_layer, count_rating kwargs)`` from the form, or None (notified)."""
        layer = self.labels.value
        if layer is None:
            notify_error("choose a PVS Labels layer to count")
            return None
        if layer is self.regions.value or "rating_slices" in (layer.metadata or {}):
            notify_error(f"'{layer.name}' holds the atlas regions, not PVS: choose a PVS mask to count")
            return None
        reg = self.regions.value
        try:
            mask = layer_to_volume(layer)
            if reg is not None and tuple(np.shape(reg.data)) != tuple(mask.shape):
                raise PVSInputError(f"atlas regions '{reg.name}' {tuple(np.shape(reg.data))} are not on the PVS "
                                    f"mask's grid {tuple(mask.shape)}: place the slices on the mask's image, or "
                                    f"clear 'atlas regions'")
        except PVSInputError as exc:
            notify_error(str(exc))
            return None
        cached = (self._areas[1] if self._areas is not None and reg is not None and self._areas[0] is reg.data
                  else None)
        kwargs = dict(mask=mask, bg_slice=int(self.bg_slice.value), cso_slice=int(self.cso_slice.value),
                      regions=None if reg is None else np.asarray(reg.data), midline=self._midline(reg),
                      slab_mm=float(self.slab_mm.value), areas=cached)
        return layer, reg, kwargs

    def _show_counts(self, counts, layer, reg) -> None:
        """Fill the table, the chart and the status line with ``counts``."""
        self.last_counts = counts
        self._fill(counts.rows())
        self.chart.set_counts([(f"BG {counts.bg.slice_index}", counts.bg.left, counts.bg.right, counts.bg.grade),
                               (f"CSO {counts.cso.slice_index}", counts.cso.left, counts.cso.right,
                                counts.cso.grade)])
        self.save_button.setEnabled(True)
        geometry = "file affine" if (layer.metadata or {}).get("affine") is not None else \
            "layer scale (no NIfTI geometry: left/right assumes +x = subject's right)"
        within = (f"; counted within the atlas BG / white matter of '{reg.name}'" if reg is not None
                  else "; whole slices")
        slab = (f"; {self.slab_mm.value:g} mm slab: BG over {counts.bg.slab_slices}, CSO over "
                f"{counts.cso.slab_slices} slices" if self.slab_mm.value else "")
        self.status.setText(f"'{layer.name}': BG grade {counts.bg.grade}, CSO grade {counts.cso.grade}; "
                            f"left/right split at the {counts.bg.split_at} midline, hemispheres from the "
                            f"{geometry}{within}{slab}")

    @staticmethod
    def _midline(regions_layer):
        """The registered midline kept with an atlas regions layer (None: the field of view's centre)."""
        from ..engine.rating import MidsagittalPlane

        placed = (regions_layer.metadata or {}).get("rating_slices") if regions_layer is not None else None
        plane = (placed or {}).get("midline")
        return MidsagittalPlane(**plane) if plane else None

    def _fill(self, rows: list[dict]) -> None:
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, (key, _) in enumerate(COLUMNS):
                value = row.get(key, "")
                text = f"{value:.2f}" if isinstance(value, float) else str(value)
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def table_values(self) -> list[list[str]]:
        """The table's text, row by row (for tests and scripting)."""
        return [[self.table.item(r, c).text() if self.table.item(r, c) else ""
                 for c in range(self.table.columnCount())] for r in range(self.table.rowCount())]

    def save_csv(self, path) -> Path | None:
        """Write the last counts as CSV (atomically)."""
        from ..engine.rating import write_counts_csv

        if self.last_counts is None:
            notify_error("nothing to save: press Count first")
            return None
        path = Path(path)
        if path.suffix.lower() != ".csv":
            path = path.with_name(path.name + ".csv")
        try:
            out = write_counts_csv(self.last_counts, path)
        except OSError as exc:
            notify_error(f"{path}: cannot write ({exc.strerror or exc})")
            return None
        notify_info(f"PVS counts written to {out}")
        return out

    def _save_dialog(self, *_):
        layer = self.labels.value
        default = f"{layer.name if layer is not None else 'pvs'}_counts.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Save PVS counts", default, "CSV (*.csv)")
        if path:
            self.save_csv(path)
