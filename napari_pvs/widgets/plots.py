"""Small live plots for the dock widgets: a matplotlib figure in Qt that follows napari's theme
(background, text and grid colours of ``viewer.theme``) and redraws at most twice a second,
rasterised in a background thread, so a plot fed by every training step never stalls the
viewer.

Used by Train (loss and validation DSC while training), Count (PVS per rating slice and
hemisphere) and Active learning (validation DSC per round).
"""

from __future__ import annotations

import logging
import time

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

__all__ = ["ThemedPlot", "TrainingPlot", "CountsChart"]

log = logging.getLogger(__name__)


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


class _Rendered(QObject):
    """Carries a figure rendered in the plot thread back to the main thread."""

    done = Signal(int, object)


_RENDER_POOL = None


def _render_pool():
    """One background thread for every plot's rasterising (matplotlib's Agg: no Qt in it).
    It lives as long as the process, idle between plots; its name does not start with
    ``napari-pvs-``, the prefix of the engine's job threads (which must end with their job)."""
    global _RENDER_POOL
    if _RENDER_POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        from ..plugin.jobs import lower_thread_priority

        _RENDER_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plots (napari-pvs)",
                                          initializer=lower_thread_priority)
    return _RENDER_POOL


def _rasterise(figure) -> tuple[bytes, int, int]:
    """RGBA bytes, width and height of ``figure`` drawn by matplotlib's Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    buf = canvas.buffer_rgba()
    return bytes(buf), int(buf.shape[1]), int(buf.shape[0])


class ThemedPlot(QWidget):
    """One matplotlib axes in a Qt widget, themed like ``viewer`` (see the module docstring).

    Subclasses implement :meth:`snapshot` (a copy of the data, on the main thread) and
    :meth:`draw` (called with fresh axes and that copy); :meth:`request` asks for a redraw,
    done at once or within ``min_interval_s``. The figure is built and rasterised in a
    background thread (about 0.1 s of matplotlib on a slow core, which on the main thread
    froze the viewer); the image is shown when it is ready, and a render overtaken by a newer
    one is dropped.

    Attributes
    ----------
    figure : matplotlib.figure.Figure or None
        The figure of the last image shown (its axes hold the plotted data).
    n_draws, n_shown : int
        Redraws asked for, and rendered images shown.
    """

    min_interval_s = 0.5

    def __init__(self, viewer=None, *, height: int = 170):
        super().__init__()
        self.viewer = viewer
        self.height_px = int(height)
        self.figure = None
        self.image = QLabel()
        self.image.setMinimumHeight(height)
        self.image.setMinimumWidth(120)
        self.image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.image)
        self._last = 0.0
        self._pending = False
        self._token = 0
        self._width = None            # the width of the last image asked for (px)
        self._rendered = _Rendered(self)
        self._rendered.done.connect(self._show_image)
        self.n_draws = 0
        self.n_shown = 0
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

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._follow_width()

    def _follow_width(self) -> None:
        """Redraw when the widget is no longer as wide as the image asked for."""
        if self._width is not None and abs(max(self.image.width(), 160) - self._width) > 4:
            self.request()

    def _redraw(self) -> None:
        self._pending = False
        self._last = time.perf_counter()
        c = _theme_colors(self.viewer)
        ratio = max(1.0, float(self.devicePixelRatioF()))
        size = (max(self.image.width(), 160), self.height_px)
        self._width = size[0]
        data = self.snapshot()            # copies: the main thread goes on appending meanwhile
        self._token += 1
        token, rendered, build = self._token, self._rendered, self._build

        def render():
            try:
                figure = build(data, c, size, ratio)
                out = _rasterise(figure)
            except Exception:  # noqa: BLE001 - a plot that cannot be drawn leaves the last image
                log.debug("plot rendering failed", exc_info=True)
                return
            try:
                rendered.done.emit(token, (figure, out, ratio))
            except RuntimeError:   # the widget was closed meanwhile
                pass

        _render_pool().submit(render)
        self.n_draws += 1

    def _build(self, data, c: dict, size: tuple[int, int], ratio: float):
        """The figure for ``data`` (in the plot thread): fixed margins, no tight layout (which
        draws every text twice)."""
        from matplotlib.figure import Figure

        width, height = size
        figure = Figure(figsize=(width / 100, height / 100), dpi=100 * ratio)
        figure.subplots_adjust(left=48 / width, right=1 - 48 / width, bottom=34 / height, top=1 - 14 / height)
        figure.set_facecolor(c["background"])
        ax = figure.add_subplot(111)
        ax.set_facecolor(c["background"])
        self.draw(ax, c, data)
        for axis in figure.axes:
            axis.tick_params(colors=c["text"], labelsize=7)
            for spine in axis.spines.values():
                spine.set_color(c["grid"])
            axis.xaxis.label.set_color(c["text"])
            axis.yaxis.label.set_color(c["text"])
            axis.title.set_color(c["text"])
        return figure

    def snapshot(self):  # pragma: no cover - abstract
        """A copy of what :meth:`draw` plots (taken on the main thread)."""
        raise NotImplementedError

    def _show_image(self, token: int, payload) -> None:
        if token != self._token:       # a newer figure is on its way
            return
        from qtpy.QtGui import QImage, QPixmap

        figure, (data, w, h), ratio = payload
        self.figure = figure
        image = QImage(data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
        pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(ratio)
        self.image.setPixmap(pixmap)
        self.n_shown += 1
        self._follow_width()         # resized while it was being drawn

    def draw(self, ax, colors: dict, data) -> None:  # pragma: no cover - abstract
        """Plot ``data`` (from :meth:`snapshot`) on ``ax`` (in the plot thread)."""
        raise NotImplementedError


class TrainingPlot(ThemedPlot):
    """Training loss per step and validation DSC per epoch, live (fed with
    :class:`~napari_pvs.engine.training.TrainEvent`)."""

    min_interval_s = 1.0     # the curve grows each step: one redraw a second is enough

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

    def snapshot(self):
        return list(self.steps), list(self.losses), list(self.epochs), self.metric

    def draw(self, ax, c, data) -> None:
        steps, losses, epochs, metric = data
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
        ax.grid(alpha=0.3, color=c["grid"])
        if steps:
            ax.plot(steps, losses, color=c["text"], lw=0.8, alpha=0.8, label="loss")
            ax.set_xlim(0, max(steps) + 1)
        ax2 = ax.twinx()
        ax2.set_ylabel(f"validation {metric}", fontsize=8)
        ax2.set_ylim(0, 1)
        if epochs:
            x, y = zip(*epochs, strict=True)
            ax2.plot(x, y, marker="o", ms=3, color=c["accent"], label=f"validation {metric}")
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

    def snapshot(self):
        return list(self.rows)

    def draw(self, ax, c, rows) -> None:
        ax.set_ylabel("PVS", fontsize=8)
        ax.grid(alpha=0.3, axis="y", color=c["grid"])
        if not rows:
            ax.set_title("press Count", fontsize=8)
            return
        labels = [r[0] for r in rows]
        left = [r[1] for r in rows]
        right = [r[2] for r in rows]
        ax.bar(labels, left, color="#ffaa00", label="left")
        ax.bar(labels, right, bottom=left, color="#00b4ff", label="right")
        for i, r in enumerate(rows):
            ax.text(i, r[1] + r[2], f"{r[1] + r[2]} (grade {r[3]})", ha="center", va="bottom", fontsize=7,
                    color=c["text"])
        ax.set_ylim(0, max(1, max(a + b for a, b in zip(left, right, strict=True))) * 1.6)
        legend = ax.legend(fontsize=7, frameon=False, loc="upper right", ncol=2)
        for text in legend.get_texts():
            text.set_color(c["text"])
