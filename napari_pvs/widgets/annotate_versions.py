"""The versions panel of the Annotate PVS widget: the subject's versions (rater, time, kind,
note), load one, show what changed since it (components added / removed) as a layer."""

from __future__ import annotations

from magicgui.widgets import Container, PushButton
from qtpy.QtWidgets import QListWidget, QVBoxLayout, QWidget

from ..engine.errors import PVSInputError
from ._job import notify_info

__all__ = ["VersionsPanel"]


class VersionsPanel(QWidget):
    """Version history of the open subject (refreshed on the state's signals).

    Attributes
    ----------
    versions_list : QListWidget
        Newest first.
    versions : list of VersionRecord
        Oldest first.
    """

    def __init__(self, state, guard):
        super().__init__()
        self.state = state
        self.versions: list = []
        self.versions_list = QListWidget()
        self.versions_list.setMaximumHeight(140)
        load, changes = PushButton(text="Load version"), PushButton(text="Show changes")
        load.changed.connect(guard(self.load_selected_version))
        changes.changed.connect(guard(self.show_changes))
        self.buttons = {"Load version": load, "Show changes": changes}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.versions_list)
        layout.addWidget(Container(widgets=[load, changes], layout="horizontal", labels=False).native)
        state.session_changed.connect(self.refresh)
        state.versions_changed.connect(self.refresh)

    def refresh(self) -> None:
        """List the open subject's versions, newest first."""
        self.versions_list.clear()
        s = self.state.session
        self.versions = [] if s is None else self.state.project.versions(s.image)
        for v in reversed(self.versions):
            done = len(v.labelled_slices)
            self.versions_list.addItem(f"v{v.id} {v.rater} {v.kind} {v.created[:19]}: {v.n_components} PVS, "
                                       f"{done} slices done/reviewed {v.note}".strip())

    def selected(self):
        """The version selected in the list."""
        row = self.versions_list.currentRow()
        if row < 0:
            raise PVSInputError("select a version in the list")
        return list(reversed(self.versions))[row]

    def load_selected_version(self) -> None:
        v = self.selected()
        self.state.load_version(v.id)
        notify_info(f"loaded version {v.id} ({v.rater}, {v.created[:19]})")

    def show_changes(self) -> None:
        from ..engine.project import version_diff

        st = self.state
        s = st.need_session()
        v = self.selected()
        diff = version_diff(st.project.load_version(v.id), s.mask)
        st.put_layer(f"changes v{v.id} -> now", diff.labels, opacity=0.8, **st.overlay_geometry())
        notify_info(f"since v{v.id}: {diff.added} PVS added (1), {diff.removed} removed (2)")
