"""Small live plots for the dock widgets: a matplotlib figure in Qt that follows napari's theme
(background, text and grid colours of ``viewer.theme``) and redraws at most twice a second, so
a plot fed by every training step never stalls the viewer.

Used by Train (loss and validation DSC while training), Count (PVS per rating slice and
hemisphere) and Active learning (validation DSC per round).
"""

from __future__ import annotations

import time

from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

__all__ = ["ThemedPlot", "TrainingPlot", "CountsChart"]


def _theme_colors(viewer) -> dict:
    """``background``, ``text``, ``grid``, ``accent`` colours of the viewer's napari theme
    (dark defaults without a viewer)."""
    colors = {"background": "#262930", "text": "#f0f1f2", "grid": "#5a626c", "accent": "#00b4ff"}
    if viewer is None:
        return colors
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        colors.update(background=theme.canvas.as_hex(), text=theme.text.as_hex(),
                      grid=theme.secondary.as_hex(), accent=theme.current.as_hex())
    except (AttributeError, KeyError, ValueError, ImportError):
        pass
    return colors


class ThemedPlot(QWidget):
    """One matplotlib axes in a Qt widget, themed like ``viewer`` (see the module docstring).

    Subclasses implement :meth:`draw` (called with fresh axes); :meth:`request` asks for a
    redraw, done at once or within ``min_interval_s``.
    """

    min_interval_s = 0.5

    def __init__(self, viewer=None, *, height: int = 170):
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = viewer
        self.figure = Figure(figsize=(3.2, height / 100), dpi=100, tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(height)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._last = 0.0
        self._pending = False
        self.n_draws = 0
        if viewer is not None:
            viewer.events.theme.connect(lambda *_: self.request(force=True))

    def request(self, force: bool = False) -> None:
        """Redraw now, or at most ``min_interval_s`` after the last redraw."""
        from qtpy.QtCore import QTimer

        wait = self.min_interval_s - (time.perf_counter() - self._last)
        if force or wait <= 0:
            self._redraw()
        elif not self._pending:
            self._pending = True
            QTimer.singleShot(int(wait * 1000) + 1, self._redraw)

    def _redraw(self) -> None:
        self._pending = False
        self._last = time.perf_counter()
        c = _theme_colors(self.viewer)
        self.figure.clear()
        self.figure.set_facecolor(c["background"])
        ax = self.figure.add_subplot(111)
        ax.set_facecolor(c["background"])
        self.draw(ax, c)
        for axis in self.figure.axes:
            axis.tick_params(colors=c["text"], labelsize=7)
            for spine in axis.spines.values():
                spine.set_color(c["grid"])
            axis.xaxis.label.set_color(c["text"])
            axis.yaxis.label.set_color(c["text"])
            axis.title.set_color(c["text"])
        self.canvas.draw_idle()
        self.n_draws += 1

    def draw(self, ax, colors: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class TrainingPlot(ThemedPlot):
    """Training loss per step and validation DSC per epoch, live (fed with
    :class:`~napari_pvs.engine.training.TrainEvent`)."""

    def __init__(self, viewer=None):
        super().__init__(viewer)
        self.clear()

    def clear(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.epochs: list[tuple[int, float]] = []        # (step, validation metric)
        self.metric = "DSC"
        self.request(force=True)

    def add(self, event) -> None:
        kind = getattr(event, "kind", None)
        if kind == "start":
            self.clear()
            return
        if kind == "step" and event.loss is not None:
            self.steps.append(int(event.step))
            self.losses.append(float(event.loss))
        elif kind == "epoch" and event.val_metric is not None:
            self.epochs.append((int(event.step), float(event.val_metric)))
            self.metric = getattr(event, "metric_name", None) or "DSC"
        else:
            return
        self.request(force=kind == "epoch")

    def draw(self, ax, c) -> None:
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
        ax.grid(alpha=0.3, color=c["grid"])
        if self.steps:
            ax.plot(self.steps, self.losses, color=c["text"], lw=0.8, alpha=0.8, label="loss")
            ax.set_xlim(0, max(self.steps) + 1)
        ax2 = ax.twinx()
        ax2.set_ylabel(f"validation {self.metric}", fontsize=8)
        ax2.set_ylim(0, 1)
        if self.epochs:
            x, y = zip(*self.epochs, strict=True)
            ax2.plot(x, y, marker="o", ms=3, color=c["accent"], label=f"validation {self.metric}")
        ax2.yaxis.label.set_color(c["accent"])


class CountsChart(ThemedPlot):
    """PVS counted on the BG and CSO rating slices, left and right hemisphere (stacked bars),
    with the Potter grade of each slice."""

    def __init__(self, viewer=None):
        super().__init__(viewer, height=180)
        self.rows: list[tuple[str, int, int, str]] = []   # (label, left, right, grade)
        self.request(force=True)

    def set_counts(self, rows) -> None:
        """``rows``: ``(label, left, right, grade)`` per rating slice, e.g. ``("BG 20", 3, 5, "2")``."""
        self.rows = [(str(a), int(b), int(c), str(d)) for a, b, c, d in rows]
        self.request(force=True)

    def draw(self, ax, c) -> None:
        ax.set_ylabel("PVS", fontsize=8)
        ax.grid(alpha=0.3, axis="y", color=c["grid"])
        if not self.rows:
            ax.set_title("press Count", fontsize=8)
            return
        labels = [r[0] for r in self.rows]
        left = [r[1] for r in self.rows]
        right = [r[2] for r in self.rows]
        ax.bar(labels, left, color="#ffaa00", label="left")
        ax.bar(labels, right, bottom=left, color="#00b4ff", label="right")
        for i, r in enumerate(self.rows):
            ax.text(i, r[1] + r[2], f"{r[1] + r[2]} (grade {r[3]})", ha="center", va="bottom", fontsize=7,
                    color=c["text"])
        ax.set_ylim(0, max(1, max(a + b for a, b in zip(left, right, strict=True))) * 1.6)
        legend = ax.legend(fontsize=7, frameon=False, loc="upper right", ncol=2)
        for text in legend.get_texts():
            text.set_color(c["text"])
