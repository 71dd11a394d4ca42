"""The model-history plot of the Active learning widget: validation DSC against the number
of annotated slices, one point per round, in napari's theme (a :class:`ThemedPlot`)."""

from __future__ import annotations

from qtpy.QtWidgets import QLabel

from .plots import ThemedPlot

__all__ = ["HistoryPlot"]


class HistoryPlot(ThemedPlot):
    """Validation DSC against the number of annotated slices, one point per round, with a line
    of text under it (rounds so far, the last round's slices and DSC).

    Attributes
    ----------
    points : list of (int, float)
        ``(annotated slices, validation DSC)`` of each round that has a DSC.
    label : QLabel
    """

    def __init__(self, viewer=None):
        super().__init__(viewer, height=160)
        self.label = QLabel("no round yet")
        self.label.setWordWrap(True)
        self.layout().addWidget(self.label)
        self.points: list[tuple[int, float]] = []
        self.request(force=True)

    def refresh(self, rounds: list[dict]) -> None:
        """Show ``rounds`` (dicts with ``n_slices`` and ``val_dsc``, as
        ``Project.al_rounds()`` gives them)."""
        self.points = [(int(r["n_slices"]), float(r["val_dsc"])) for r in rounds if r["val_dsc"] is not None]
        if rounds:
            last = rounds[-1]
            dsc = "n/a" if last["val_dsc"] is None else f"{last['val_dsc']:.3f}"
            self.label.setText(f"{len(rounds)} rounds; last: {last['n_slices']} annotated slices, "
                               f"validation DSC {dsc}")
        else:
            self.label.setText("no round yet")
        self.request(force=True)

    def snapshot(self):
        return list(self.points)

    def draw(self, ax, c, points) -> None:
        ax.set_xlabel("annotated slices", fontsize=8)
        ax.set_ylabel("validation DSC", fontsize=8)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3, color=c["grid"])
        if not points:
            ax.set_title("no round yet", fontsize=8)
            return
        x, y = zip(*points, strict=True)
        ax.plot(x, y, marker="o", color=c["accent"])
        ax.set_xlim(0, max(x) + 1)
