"""Dock widget "Cohort": a whole study from napari, on the local Dask cluster.

Choose the input (a BIDS root, a folder of scans, or a text file of paths), the output
folder and, optionally, a checkpoint; *Run cohort* runs the *run a cohort* use case
(:func:`napari_pvs.engine.cohort.run_cohort_job`: every scan segmented, its rating slices
placed by atlas, counted and QC'd, resumable) through the job runner, and the table fills
as scans finish (status, BG and CSO counts with grades, QC flags, error). Clicking a row
opens that scan with its PVS mask and the atlas regions, and shows its QC figure. *Open
report* opens ``report.html`` in the browser.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import Container, FileEdit, FloatSpinBox, LineEdit, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtGui import QPixmap
from qtpy.QtWidgets import QAbstractItemView, QLabel, QPushButton, QTableWidget, QTableWidgetItem

from ..engine.errors import PVSInputError
from ._job import JobWidget, notify_info, optional_path

if TYPE_CHECKING:
    import napari

__all__ = ["CohortWidget", "COLUMNS"]

log = logging.getLogger(__name__)

#: (row key or callable, header) of the table
COLUMNS = (("scan_id", "scan"), ("status", "status"),
           (lambda r: _pair(r, "bg"), "BG L/R (grade)"), (lambda r: _pair(r, "cso"), "CSO L/R (grade)"),
           ("n_pvs", "PVS"), ("qc_flags", "QC flags"), ("error", "error"))


def _pair(row: dict, region: str) -> str:
    if row.get(f"{region}_left") is None:
        return ""
    return f"{row[f'{region}_left']}/{row[f'{region}_right']} ({row[f'{region}_grade']})"


class CohortWidget(JobWidget):
    """Run a cohort and look at its scans (see the module docstring).

    Attributes
    ----------
    rows : dict
        scan id -> the ``cohort.tsv`` row of each finished scan.
    order : list of str
        Scan ids in input order (the table's rows).
    """

    start_text = "Run cohort"
    job_name = "cohort run"

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__(napari_viewer)
        self.rows: dict[str, dict] = {}
        self.order: list[str] = []
        self.scans: dict = {}
        self.out: Path | None = None
        self.input = LineEdit(label="input", tooltip="a BIDS root, a folder of scans, or a text file of paths")
        self.input_folder = FileEdit(label="or pick a folder", mode="d")
        self.input_folder.changed.connect(lambda v: setattr(self.input, "value", str(v)) if optional_path(v) else None)
        self.output = FileEdit(label="output folder", mode="d")
        self.checkpoint = FileEdit(label="checkpoint (optional)", mode="r", filter="*.pt",
                                   tooltip="empty: the shipped default model")
        self.workers = SpinBox(label="workers (0 = auto)", value=0, min=0, max=256)
        self.grid_mm = FloatSpinBox(label="registration grid (mm)", value=2.0, min=1.0, max=8.0, step=0.5)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([h for _, h in COLUMNS])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setMinimumHeight(240)
        self.table.cellClicked.connect(lambda row, _col: self.open_row(row))
        self.report_button = QPushButton("Open report")
        self.report_button.setEnabled(False)
        self.report_button.clicked.connect(self._open_report)
        self.qc = QLabel("click a finished scan to open it")
        self.qc.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.qc.setWordWrap(True)
        self._build(Container(widgets=[self.input, self.input_folder, self.output, self.checkpoint, self.workers,
                                       self.grid_mm]), extra=[self.table, self.report_button, self.qc])

    # ------------------------------------------------------------------ job
    def prepare(self):
        from ..engine.cohort import CohortConfig, discover_scans, run_cohort_job

        src = str(self.input.value).strip()
        if not src:
            raise PVSInputError("choose the input: a BIDS root, a folder of scans or a list file")
        out = optional_path(self.output.value)
        if out is None:
            raise PVSInputError("choose an output folder")
        ckpt = optional_path(self.checkpoint.value)
        config = CohortConfig(checkpoint=str(ckpt) if ckpt else None, registration_grid_mm=float(self.grid_mm.value))
        scans = discover_scans(src)                     # bad input refused here, on the main thread
        self.out, self.rows, self.order = out, {}, [s.scan_id for s in scans]
        self.scans = {s.scan_id: s for s in scans}
        self.table.setRowCount(len(scans))
        for i, s in enumerate(scans):
            self._fill(i, {"scan_id": s.scan_id, "status": "queued"})
        workers = int(self.workers.value) or None
        source = src if Path(src).is_dir() else scans
        return (lambda: run_cohort_job(source, out, config, workers=workers),
                f"cohort of {len(scans)} scans into {out} ...")

    def on_event(self, event) -> None:
        row = getattr(event, "row", None)
        if row is not None and row.get("scan_id") in self.order:
            self.rows[row["scan_id"]] = row
            self._fill(self.order.index(row["scan_id"]), row)

    def on_result(self, result) -> None:
        for r in result.rows:
            self.rows[r["scan_id"]] = r
            self._fill(self.order.index(r["scan_id"]), r)
        self.report_button.setEnabled(True)
        msg = (f"cohort done: {len(result.rows)} scans in {result.seconds:.0f} s, {result.n_failed} failed, "
               f"{result.n_skipped} unchanged; {result.table}")
        self.status.setText(msg)
        notify_info(msg)

    def _fill(self, i: int, row: dict) -> None:
        for j, (key, _) in enumerate(COLUMNS):
            value = key(row) if callable(key) else row.get(key)
            item = QTableWidgetItem("" if value is None else str(value))
            if row.get("error"):
                item.setToolTip(str(row["error"]))
            self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()

    # ------------------------------------------------------------------ a row
    def open_row(self, i: int) -> None:
        """Open scan ``i`` with its PVS mask and atlas regions, and show its QC figure."""
        from ..engine.io import load_volume
        from ..engine.io.bids import derivative_path
        from ..plugin.layers import layer_geometry, volume_metadata
        from ..plugin.viewer import add_labels

        if not 0 <= i < len(self.order) or self.out is None:
            return
        row = self.rows.get(self.order[i])
        if row is None or row.get("status") not in ("ok", "skipped"):
            self.qc.setMinimumHeight(0)
            self.qc.setWordWrap(True)
            self.qc.setText(f"{self.order[i]}: {row.get('error') if row else 'not finished'}")
            return
        scan = self.scans[self.order[i]]
        image = load_volume(row["file"])
        geom = layer_geometry(image)
        name = scan.scan_id
        for layer in [ly for ly in self.viewer.layers if ly.name.startswith(f"{name} ")]:
            self.viewer.layers.remove(layer)
        self.viewer.add_image(image.data, name=f"{name} T2", colormap="gray", metadata=volume_metadata(image), **geom)
        regions = derivative_path(self.out, scan.entities, "regions")
        if regions.is_file():
            add_labels(self.viewer, load_volume(regions).data.astype("uint8"), name=f"{name} atlas regions",
                       opacity=0.25, metadata=volume_metadata(image), **geom)
        mask = derivative_path(self.out, scan.entities, "mask")
        if mask.is_file():
            add_labels(self.viewer, load_volume(mask).data.astype("uint8"), name=f"{name} PVS mask", opacity=0.8,
                       metadata=volume_metadata(image), **geom)
        if self.viewer.dims.ndim == 3 and row.get("bg_slice") is not None:
            centre = [(n - 1) / 2 for n in image.shape]
            centre[image.axial_axis] = float(row["bg_slice"])
            self.viewer.dims.set_point(range(3), tuple(self.viewer.layers[f"{name} T2"].data_to_world(centre)))
        png = self.out / row["qc_figure"] if row.get("qc_figure") else None
        if png is not None and png.is_file():
            pix = QPixmap(str(png)).scaledToWidth(max(200, self.table.width() - 10),
                                                  Qt.TransformationMode.SmoothTransformation)
            self.qc.setWordWrap(False)          # a word-wrapped QLabel lays a pixmap out 0 px high
            self.qc.setMinimumHeight(pix.height())
            self.qc.setPixmap(pix)
        self.status.setText(f"{name}: BG {row.get('bg_total')} (grade {row.get('bg_grade')}), CSO "
                            f"{row.get('cso_total')} (grade {row.get('cso_grade')}); QC: {row.get('qc_flags') or 'no flag'}")

    def _open_report(self) -> None:
        from qtpy.QtCore import QUrl
        from qtpy.QtGui import QDesktopServices

        if self.out is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.out / "report.html")))
