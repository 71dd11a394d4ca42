"""Version history in the Annotate PVS widget: list the versions of the subject, load one,
show what changed since it (components added / removed) as a layer."""

from __future__ import annotations

from ..engine.errors import PVSInputError
from ..engine.project.records import format_slices
from ._job import notify_info

__all__ = ["VersionsMixin"]


class VersionsMixin:
    """The versions part of :class:`~napari_pvs.widgets.annotate.AnnotateWidget`."""

    def _refresh_versions(self) -> None:
        self.versions_list.clear()
        s = self.session
        if s is None:
            return
        self._versions = self.project.versions(s.image)
        latest = {}
        for v in self._versions:                       # oldest first: the last one per rater wins
            if v.kind != "autosave":
                latest[v.rater] = v
        self._others = [f"{r}: {format_slices(v.labelled_slices)}" for r, v in latest.items()
                        if r != s.rater and v.labelled_slices]
        for v in reversed(self._versions):
            done = len(v.labelled_slices)
            self.versions_list.addItem(f"v{v.id} {v.rater} {v.kind} {v.created[:19]}: {v.n_components} PVS, "
                                       f"{done} slices done/reviewed {v.note}".strip())

    def _selected_version(self):
        row = self.versions_list.currentRow()
        if row < 0:
            raise PVSInputError("select a version in the list")
        return list(reversed(self._versions))[row]

    def load_selected_version(self) -> None:
        from ..engine.project import AnnotationSession

        s = self._need_session()
        v = self._selected_version()
        if s.changed:
            self.autosave(force=True)
        new = AnnotationSession.start(self.project, s.image.subject, s.rater, version=v.id,
                                      autosave_s=s.autosave_s)
        self.labels_layer.data = new.mask
        new.mask = self.labels_layer.data
        self.session = new
        notify_info(f"loaded version {v.id} ({v.rater}, {v.created[:19]})")
        self._update_progress()

    def show_changes(self) -> None:
        from ..engine.project import version_diff

        s = self._need_session()
        v = self._selected_version()
        diff = version_diff(self.project.load_version(v.id), s.mask)
        geom = self._overlay_geometry()
        self._layer(f"changes v{v.id} -> now", diff.labels, opacity=0.8, **geom)
        self.viewer.layers.selection.active = self.labels_layer
        notify_info(f"since v{v.id}: {diff.added} PVS added (1), {diff.removed} removed (2)")

