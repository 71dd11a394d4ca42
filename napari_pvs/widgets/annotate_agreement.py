"""Two raters in the Annotate PVS widget: compare with another rater (DSC, detection F1,
count on the slice on screen), step through the disagreements, accept or reject each, save
the consensus (:mod:`napari_pvs.engine.project.agreement`)."""

from __future__ import annotations

import numpy as np

from ..engine.errors import PVSInputError
from ._job import notify_info
from .annotate_candidates import CANDIDATE_FIELD_MM

__all__ = ["AgreementMixin"]


class AgreementMixin:
    """The agreement part of :class:`~napari_pvs.widgets.annotate.AnnotateWidget`."""

    def compare(self) -> None:
        from ..engine.project import rater_agreement

        s = self._need_session()
        self._refresh_versions()
        other = self.other_rater.value
        if not other:
            raise PVSInputError("no other rater has annotated this project")
        vb = self.project.latest_version(s.image, other)
        if vb is None:
            raise PVSInputError(f"rater {other} has no version of {s.image.subject}")
        image = self.project.load_image(s.image.id)
        k = self.current_slice()
        self.agreement = rater_agreement(s.mask, self.project.load_version(vb.id), rater_a=s.rater, rater_b=other,
                                         image=image, rating_slices={"slice on screen": k})
        self._accepted = set()
        self._dis_cursor = -1
        ag = self.agreement
        geom = self._overlay_geometry()
        dis = np.zeros(s.mask.shape, np.uint8)
        for d in ag.disagreements:
            lab = ag.labels_a if d.rater == "A" else ag.labels_b
            dis[lab == d.label] = 1 if d.rater == "A" else 2
        self._layer(f"disagreements {s.rater} (1) / {other} (2)", dis, opacity=0.8, **geom)
        self.viewer.layers.selection.active = self.labels_layer
        c = ag.counts["slice on screen"]
        self.agreement_label.setText(
            f"{s.rater} vs {other} (v{vb.id}): DSC {ag.dsc:.2f}, detection F1 {ag.detection_f1:.2f} "
            f"({len(ag.matched)} matched, {ag.n_a - len(ag.matched)} only {s.rater}, "
            f"{ag.n_b - len(ag.matched)} only {other}); slice {k}: {c[s.rater]} vs {c[other]} PVS")

    def next_disagreement(self) -> None:
        ag = self.agreement
        if ag is None or not ag.disagreements:
            raise PVSInputError("no disagreements: press Compare first")
        self._dis_cursor = (self._dis_cursor + 1) % len(ag.disagreements)
        d = ag.disagreements[self._dis_cursor]
        self.go_to(d.centre, field_mm=CANDIDATE_FIELD_MM)
        who = ag.rater_a if d.rater == "A" else ag.rater_b
        state = "accepted" if d.index in self._accepted else "not accepted"
        self.agreement_label.setText(self.agreement_label.text().split("\n")[0] + (
            f"\ndisagreement {d.index + 1}/{len(ag.disagreements)}: only {who}, {d.n_voxels} voxels ({state})"))

    def decide_disagreement(self, accept: bool) -> None:
        ag = self.agreement
        if ag is None or self._dis_cursor < 0:
            raise PVSInputError("go to a disagreement first (Next disagreement)")
        idx = ag.disagreements[self._dis_cursor].index
        (self._accepted.add if accept else self._accepted.discard)(idx)
        self.next_disagreement()

    def save_consensus(self) -> None:
        from ..engine.project import common_labelled_slices, consensus_mask

        s = self._need_session()
        if self.agreement is None:
            raise PVSInputError("press Compare first")
        cons = consensus_mask(self.agreement, self._accepted)
        mine = s.save(note="saved for the consensus") or s.base      # the rater's side, as compared
        vb = self.project.latest_version(s.image, self.agreement.rater_b)
        v = self.project.save_annotation(s.image, "consensus", cons, kind="consensus",
                                         slice_status=common_labelled_slices([mine, vb]) if mine else {},
                                         note=f"consensus of {self.agreement.rater_a} and {self.agreement.rater_b}; "
                                              f"{len(self._accepted)} disagreements accepted")
        self._refresh_versions()
        notify_info(f"saved consensus version {v.id}: {v.n_components} PVS")

