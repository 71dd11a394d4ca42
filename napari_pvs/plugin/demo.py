"""``make demo``: open napari with napari-pvs docked and a real T2 loaded.

The Segment tab is in front with the shipped default model selected: one click on
*Segment* gives the PVS overlay, then *Count PVS* gives the BG/CSO counts.

The T2 is visit 1 of open_ms patient01 (Lesjak et al., Neuroinformatics 2016, CC-BY),
read from the data directory (``$NAPARI_PVS_DATA`` or ``../shared/data``) or downloaded
into the per-user cache.
"""

from __future__ import annotations

import sys

DEMO_T2 = "open_ms/longitudinal/patient01/study1_T2W.nii.gz"


def main(argv: list[str] | None = None) -> int:
    import napari

    from ..engine.data import fetch
    from ..engine.errors import PVSInputError

    argv = sys.argv[1:] if argv is None else argv
    try:
        path = argv[0] if argv else str(fetch(DEMO_T2))
    except PVSInputError as exc:
        print(f"napari-pvs demo: error: {exc}", file=sys.stderr)
        return 2
    viewer = napari.Viewer(title="napari-pvs demo")
    viewer.open(path, plugin="napari-pvs")
    docks = {name: viewer.window.add_plugin_dock_widget("napari-pvs", name, tabify=True)[0]
             for name in ("Train PVS model", "Segment PVS", "Count PVS (BG/CSO)")}
    docks["Segment PVS"].raise_()
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
