"""Small helpers shared by the napari-pvs dock widgets (layer pickers, notifications)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from magicgui.widgets import ComboBox

__all__ = ["LayerPicker", "Failed", "notify_error", "notify_info", "format_seconds"]

log = logging.getLogger(__name__)


def _layer_type(kind: str):
    import napari.layers

    return {"image": napari.layers.Image, "labels": napari.layers.Labels}[kind]


class LayerPicker:
    """A magicgui ``ComboBox`` listing the viewer's layers of one type (``"image"`` or
    ``"labels"``), kept up to date when layers are added, removed, reordered or renamed.

    Attributes
    ----------
    combo : magicgui.widgets.ComboBox
        ``combo.value`` is the selected layer (or None).
    """

    def __init__(self, viewer, kind: str, label: str, *, ndim: int | None = 3,
                 on_change: Callable | None = None):
        self.viewer = viewer
        self.kind = kind
        self.ndim = ndim
        self.combo = ComboBox(label=label, choices=self._choices, nullable=False)
        if on_change is not None:
            self.combo.changed.connect(on_change)
        events = viewer.layers.events
        events.inserted.connect(self._on_inserted)
        events.removed.connect(self.refresh)
        events.reordered.connect(self.refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)

    def _choices(self, _widget=None):
        cls = _layer_type(self.kind)
        out = []
        for layer in reversed(list(self.viewer.layers)):  # top layer first, like napari
            if isinstance(layer, cls) and (self.ndim is None or layer.ndim == self.ndim):
                if self.kind == "image" and getattr(layer, "rgb", False):
                    continue
                out.append((layer.name, layer))
        return out

    def _on_inserted(self, event=None):
        layer = getattr(event, "value", None)
        if layer is not None:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def refresh(self, _event=None) -> None:
        """Re-read the layer list, keeping the selection when it still exists."""
        try:
            current = self.combo.value
            self.combo.reset_choices()
            layers = [v for _, v in self._choices()]
            if current is not None and any(current is v for v in layers):
                self.combo.value = current
        except RuntimeError:  # the Qt widget is gone (dock closed)
            pass

    @property
    def value(self):
        """Selected layer, or None when there is none of this type."""
        return self.combo.value

    @value.setter
    def value(self, layer) -> None:
        self.refresh()
        self.combo.value = layer


class Failed:
    """A user error (:class:`~napari_pvs.engine.errors.PVSInputError`) caught in a worker
    and *returned* as its result, so that the widget shows it as one line (an exception
    raised in a napari worker is shown with a traceback, and superqt re-raises an
    exception object returned as is)."""

    def __init__(self, error: Exception):
        self.error = error

    def __str__(self) -> str:
        return str(self.error)


def notify_error(message: str) -> None:
    """Show a one-line error in napari (and log it)."""
    from napari.utils.notifications import show_error

    log.error(message)
    show_error(message)


def notify_info(message: str) -> None:
    """Show an information message in napari (and log it)."""
    from napari.utils.notifications import show_info

    log.info(message)
    show_info(message)


def format_seconds(s: float) -> str:
    """``'42.0 s'`` or ``'3 min 05 s'``."""
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec:02d} s"


class RunControls:
    """The start/Cancel buttons, progress bar and status line shared by the widgets that
    run a background job, laid out under a magicgui form in ``parent``.

    Attributes: ``start_button``, ``cancel_button`` (disabled until a job runs),
    ``progress`` (QProgressBar), ``status`` (QLabel).
    """

    def __init__(self, parent, form, start_text: str, on_start, on_cancel):
        from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout

        self.start_button = QPushButton(start_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.start_button.clicked.connect(on_start)
        self.cancel_button.clicked.connect(on_cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(parent)
        layout.addWidget(form.native)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)
