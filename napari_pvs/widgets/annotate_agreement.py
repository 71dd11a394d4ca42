"""The agreement panel of the Annotate PVS widget: compare with another rater (DSC, detection
F1, count on the slice on screen), step through the disagreements, accept or reject each,
save the consensus (:mod:`napari_pvs.engine.project.agreement`)."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..engine.errors import PVSInputError
from ._job import color_key, notify_info, show_canvas_key
from .annotation_state import CANDIDATE_FIELD_MM

#: colours of the disagreement layer: what only this rater marked, what only the other did
RATER_COLORS = ("#ff9900", "#00ccff")

__all__ = ["AgreementPanel"]


class AgreementPanel(QWidget):
    """Two raters on the open subject, and their consensus.

    Attributes
    ----------
    agreement : RaterAgreement or None
        The last comparison.
    accepted : set of int
        Disagreements accepted into the consensus.
    cursor : int
        The disagreement on screen (-1: none yet).
    """

    def __init__(self, state, guard):
        super().__init__()
        self.state = state
        self.agreement = None
        self.accepted: set[int] = set()
        self.cursor = -1
        self.other_rater = ComboBox(label="compare with rater", choices=[])
        names = ("Compare", "Next disagreement", "Accept disagreement", "Reject disagreement", "Save consensus")
        self.buttons = {n: PushButton(text=n) for n in names}
        actions = (self.compare, self.next_disagreement, lambda: self.decide_disagreement(True),
                   lambda: self.decide_disagreement(False), self.save_consensus)
        for n, fn in zip(names, actions, strict=True):
            self.buttons[n].changed.connect(guard(fn))
        b = self.buttons
        form = Container(widgets=[self.other_rater, b["Compare"],
                                  Container(widgets=[b["Next disagreement"], b["Accept disagreement"],
                                                     b["Reject disagreement"]], layout="horizontal", labels=False),
                                  b["Save consensus"]])
        self.label = QLabel("")
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(form.native)
        layout.addWidget(self.label)
        self.key = QLabel("")
        layout.addWidget(self.key)
        state.project_changed.connect(self.refresh_raters)
        state.session_changed.connect(self.refresh_raters)
        state.versions_changed.connect(self.refresh_raters)

    def refresh_raters(self) -> None:
        """The other raters of the project (not the session's)."""
        st = self.state
        raters = st.project.raters() if st.project is not None else []
        me = st.session.rater if st.session is not None else None
        self.other_rater.choices = [r for r in raters if r != me]

    def compare(self) -> None:
        from ..engine.project import rater_agreement

        st = self.state
        s = st.need_session()
        other = self.other_rater.value
        if not other:
            raise PVSInputError("no other rater has annotated this project")
        vb = st.project.latest_version(s.image, other)
        if vb is None:
            raise PVSInputError(f"rater {other} has no version of {s.image.subject}")
        image = st.project.load_image(s.image.id)
        k = st.current_slice()
        self.agreement = ag = rater_agreement(s.mask, st.project.load_version(vb.id), rater_a=s.rater,
                                              rater_b=other, image=image, rating_slices={"slice on screen": k})
        self.accepted, self.cursor = set(), -1
        dis = np.zeros(s.mask.shape, np.uint8)
        for d in ag.disagreements:
            lab = ag.labels_a if d.rater == "A" else ag.labels_b
            dis[lab == d.label] = 1 if d.rater == "A" else 2
        from napari.utils.colormaps import DirectLabelColormap

        colors = {0: "transparent", 1: RATER_COLORS[0], 2: RATER_COLORS[1], None: "transparent"}
        st.put_layer(f"disagreements {s.rater} (1) / {other} (2)", dis, opacity=0.8,
                     colormap=DirectLabelColormap(color_dict=colors), **st.overlay_geometry())
        self.key.setText(color_key([(RATER_COLORS[0], f"only {s.rater}"), (RATER_COLORS[1], f"only {other}")]))
        show_canvas_key(st.viewer, f"orange: only {s.rater} · cyan: only {other}")
        c = ag.counts["slice on screen"]
        self.label.setText(
            f"{s.rater} vs {other} (v{vb.id}): DSC {ag.dsc:.2f}, detection F1 {ag.detection_f1:.2f} "
            f"({len(ag.matched)} matched, {ag.n_a - len(ag.matched)} only {s.rater}, "
            f"{ag.n_b - len(ag.matched)} only {other}); slice {k}: {c[s.rater]} vs {c[other]} PVS")

    def next_disagreement(self) -> None:
        ag = self.agreement
        if ag is None or not ag.disagreements:
            raise PVSInputError("no disagreements: press Compare first")
        self.cursor = (self.cursor + 1) % len(ag.disagreements)
        d = ag.disagreements[self.cursor]
        self.state.go_to(d.centre, field_mm=CANDIDATE_FIELD_MM)
        who = ag.rater_a if d.rater == "A" else ag.rater_b
        state = "accepted" if d.index in self.accepted else "not accepted"
        self.label.setText(self.label.text().split("\n")[0] + (
            f"\ndisagreement {d.index + 1}/{len(ag.disagreements)}: only {who}, {d.n_voxels} voxels ({state})"))

    def decide_disagreement(self, accept: bool) -> None:
        ag = self.agreement
        if ag is None or self.cursor < 0:
            raise PVSInputError("go to a disagreement first (Next disagreement)")
        idx = ag.disagreements[self.cursor].index
        cursor, was = self.cursor, idx in self.accepted
        (self.accepted.add if accept else self.accepted.discard)(idx)
        self.next_disagreement()

        def revert():
            if self.agreement is ag:
                (self.accepted.add if was else self.accepted.discard)(idx)
                self.cursor = cursor - 1
                self.next_disagreement()            # back on the disagreement just decided

        self.state.push_undo(f"{'accept' if accept else 'reject'} disagreement {idx + 1}", revert)

    def save_consensus(self) -> None:
        from ..engine.project import common_labelled_slices, consensus_mask

        st = self.state
        s = st.need_session()
        if self.agreement is None:
            raise PVSInputError("press Compare first")
        cons = consensus_mask(self.agreement, self.accepted)
        mine = st.save(note="saved for the consensus") or s.base      # the rater's side, as compared
        vb = st.project.latest_version(s.image, self.agreement.rater_b)
        v = st.project.save_annotation(s.image, "consensus", cons, kind="consensus",
                                       slice_status=common_labelled_slices([mine, vb]) if mine else {},
                                       note=f"consensus of {self.agreement.rater_a} and {self.agreement.rater_b}; "
                                            f"{len(self.accepted)} disagreements accepted")
        st.versions_changed.emit()
        notify_info(f"saved consensus version {v.id}: {v.n_components} PVS")
