"""The model-history plot of the Active learning widget: validation DSC against the number
of annotated slices, one point per round (matplotlib in Qt)."""

from __future__ import annotations

from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

__all__ = ["HistoryPlot"]


class HistoryPlot(QWidget):
    """Validation DSC against the number of annotated slices, one point per round."""

    def __init__(self):
        super().__init__()
        self.label = QLabel("no round yet")
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        self.canvas = None
        try:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure

            self.figure = Figure(figsize=(3.2, 1.8), dpi=100, tight_layout=True)
            self.canvas = FigureCanvasQTAgg(self.figure)
            self.canvas.setMinimumHeight(160)
            layout.addWidget(self.canvas)
        except ImportError:  # pragma: no cover - matplotlib is a dependency
            pass
        layout.addWidget(self.label)
        self.points: list[tuple[int, float]] = []

    def refresh(self, rounds: list[dict]) -> None:
        self.points = [(r["n_slices"], r["val_dsc"]) for r in rounds if r["val_dsc"] is not None]
        if rounds:
            last = rounds[-1]
            dsc = "n/a" if last["val_dsc"] is None else f"{last['val_dsc']:.3f}"
            self.label.setText(f"{len(rounds)} rounds; last: {last['n_slices']} annotated slices, "
                               f"validation DSC {dsc}")
        else:
            self.label.setText("no round yet")
        if self.canvas is None:
            return
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        if self.points:
            x, y = zip(*self.points, strict=True)
            ax.plot(x, y, marker="o")
            ax.set_xlim(0, max(x) + 1)
        ax.set_xlabel("annotated slices", fontsize=8)
        ax.set_ylabel("validation DSC", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        self.canvas.draw_idle()
