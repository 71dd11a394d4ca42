"""The candidates panel of the Annotate PVS widget: *Suggest* (in a worker, through the job
runner) and accept / reject / skip, with the camera on each candidate.

The proposals come from :func:`napari_pvs.engine.candidates.propose_candidates`; the
decisions are kept by the session (:class:`~napari_pvs.widgets.annotation_state.AnnotationState`).
"""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, FileEdit, PushButton
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..engine.errors import PVSInputError
from ._job import JobPanel, optional_path
from .annotation_state import key_label

__all__ = ["CandidatesPanel"]


class CandidatesPanel(QWidget):
    """Suggest candidates and decide them one by one.

    Parameters
    ----------
    state : AnnotationState
    guard : callable
        Wraps a button action so that bad input becomes one notification.

    Attributes
    ----------
    suggest : JobPanel
        The *Suggest* job (``method``, ``scope`` and ``checkpoint`` are its form's pickers).
    """

    def __init__(self, state, guard):
        super().__init__()
        self.state = state
        self.method = ComboBox(label="proposals from", choices=["vesselness", "model"], value="vesselness")
        self.scope = ComboBox(label="on", choices=["slice on screen", "whole volume"], value="slice on screen")
        self.checkpoint = FileEdit(label="model", mode="r", filter="*.pt")
        self.checkpoint.tooltip = "for proposals from a model; empty: the shipped default model"
        self.suggest = JobPanel("suggestion", "Suggest", prepare=self._prepare, on_result=self._on_result,
                                form=Container(widgets=[self.method, self.scope, self.checkpoint]))
        self.suggest.scope = self.scope       # the scope picker, reachable from the job (scripts, tests)
        self.buttons = {name: PushButton(text=f"{name} ({key_label(name.lower())})")
                        for name in ("Accept", "Reject", "Skip")}
        self.buttons["Undo"] = PushButton(text=f"Undo ({key_label('undo')})",
                                          tooltip="undo the newest decision, paint stroke or version load")
        for name, decision in (("Accept", "accept"), ("Reject", "reject"), ("Skip", "skip")):
            self.buttons[name].changed.connect(guard(lambda d=decision: state.decide(d)))
        self.buttons["Undo"].changed.connect(guard(state.undo))
        self.label = QLabel("no candidates")
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.suggest)
        layout.addWidget(Container(widgets=list(self.buttons.values()), layout="horizontal", labels=False).native)
        layout.addWidget(self.label)
        state.candidate_changed.connect(self._on_candidate)

    def _prepare(self):
        st = self.state
        s = st.session
        if s is None:
            raise PVSInputError("open a project and a subject first")
        image = st.project.load_image(s.image.id)
        method = self.method.value
        slices = [st.current_slice()] if self.scope.value == "slice on screen" else None
        loaded = None
        if method == "model":
            from ..engine.usecases import load_segmenter

            loaded = load_segmenter(optional_path(self.checkpoint.value))

        def gen():
            from ..engine.candidates import propose_candidates

            prob = None
            if loaded is not None:
                from ..engine.usecases import segment_job

                prob = (yield from segment_job(image, loaded, members=False)).prediction.prob
            return propose_candidates(image, method=method, probability=prob, slices=slices)

        where = f"slice {slices[0]}" if slices else "the whole volume"
        return gen, f"suggesting candidates ({method}) on {where} ..."

    def _on_result(self, result) -> None:
        where = (f"slice {result.table[0]['slice']}" if result.n and self.scope.value == "slice on screen"
                 else "the volume")
        self.suggest.status.setText(f"{result.n} candidates ({result.method}) on {where} in "
                                    f"{result.info.get('seconds', 0):.1f} s")
        self.state.show_proposals(result)

    def _on_candidate(self, cand) -> None:
        s = self.state.session
        if s is None:
            self.label.setText("no candidates")
        elif cand is None:
            self.label.setText(f"no candidate left ({len(s.decisions)} decisions to save)")
        else:
            self.label.setText(f"candidate {cand['id']} on slice {cand['slice']}: {cand['n_voxels']} voxels, "
                               f"{cand['width_mm']:.1f} mm wide, score {cand['score']:.2f}; {s.remaining} more")
