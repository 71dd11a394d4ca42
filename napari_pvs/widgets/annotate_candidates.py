"""Candidate proposals in the Annotate PVS widget: *Suggest* (a worker through the shared
job lifecycle) and accept / reject / skip with the camera on each candidate.

The proposals come from :func:`napari_pvs.engine.candidates.propose_candidates`; the
decisions are kept by :class:`napari_pvs.engine.project.AnnotationSession`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, FileEdit

from ..engine.errors import PVSInputError
from ._job import JobWidget

if TYPE_CHECKING:
    from .annotate import AnnotateWidget

__all__ = ["SuggestJob", "CandidatesMixin", "CANDIDATE_FIELD_MM"]

#: field of view (mm across the canvas) when the camera jumps to a candidate or a disagreement
CANDIDATE_FIELD_MM = 70.0


class SuggestJob(JobWidget):
    """Candidate proposals in a worker (the shared job lifecycle)."""

    start_text = "Suggest"
    job_name = "suggestion"

    def __init__(self, owner: "AnnotateWidget"):
        super().__init__(owner.viewer)
        self.owner = owner
        self.method = ComboBox(label="proposals from", choices=["vesselness", "model"], value="vesselness")
        self.scope = ComboBox(label="on", choices=["slice on screen", "whole volume"], value="slice on screen")
        self.checkpoint = FileEdit(label="model", mode="r", filter="*.pt")
        self.checkpoint.tooltip = "for proposals from a model; empty: the shipped default model"
        self._build(Container(widgets=[self.method, self.scope, self.checkpoint]))

    def prepare(self):
        s = self.owner.session
        if s is None:
            raise PVSInputError("open a project and a subject first")
        image = self.owner.project.load_image(s.image.id)
        method = self.method.value
        slices = [self.owner.current_slice()] if self.scope.value == "slice on screen" else None
        ckpt = self.checkpoint.value
        ckpt = None if ckpt is None or str(ckpt) in ("", ".") else Path(ckpt)
        loaded = None
        if method == "model":
            from ..engine.models.checkpoint import load_model
            from ..engine.data import default_checkpoint

            loaded = load_model(ckpt or default_checkpoint())

        def gen():
            from ..engine.candidates import propose_candidates

            prob = None
            if loaded is not None:
                from ..engine.inference import segment_iter

                pred = yield from segment_iter(loaded, image)
                prob = pred.prob
            return propose_candidates(image, method=method, probability=prob, slices=slices)

        where = f"slice {slices[0]}" if slices else "the whole volume"
        return gen, f"suggesting candidates ({method}) on {where} ..."

    def on_result(self, result) -> None:
        where = (f"slice {result.table[0]['slice']}" if result.n and self.scope.value == "slice on screen"
                 else "the volume")
        self.status.setText(f"{result.n} candidates ({result.method}) on {where} in "
                            f"{result.info.get('seconds', 0):.1f} s")
        self.owner.show_proposals(result)



class CandidatesMixin:
    """The candidate part of :class:`~napari_pvs.widgets.annotate.AnnotateWidget`."""

    def show_proposals(self, proposals) -> None:
        s = self._need_session()
        geom = self._overlay_geometry()
        self.candidates_layer = self._layer("PVS candidates", proposals.labels, opacity=0.6, **geom)
        self.viewer.layers.selection.active = self.labels_layer
        s.set_proposals(proposals)
        self._show_candidate(s.next_candidate())

    def _show_candidate(self, cand) -> None:
        s = self.session
        if cand is None:
            self.candidate_label.setText(f"no candidate left ({len(s.decisions)} decisions to save)")
            return
        self.candidates_layer.selected_label = cand["id"]
        self.go_to(cand["centre"], field_mm=CANDIDATE_FIELD_MM)
        self.candidate_label.setText(
            f"candidate {cand['id']} on slice {cand['slice']}: {cand['n_voxels']} voxels, "
            f"{cand['width_mm']:.1f} mm wide, score {cand['score']:.2f}; {s.remaining} more")

    def decide(self, decision: str) -> None:
        s = self._need_session()
        if s.proposals is None:
            raise PVSInputError("no candidates: press Suggest first")
        nxt = s.decide(decision)
        self.labels_layer.refresh()
        self._show_candidate(nxt)
        self._update_progress()

