"""napari-pvs: annotate, train, segment and count perivascular spaces (PVS) on brain MRI.

The GUI-free engine lives in :mod:`napari_pvs.engine`; the napari widgets in
:mod:`napari_pvs.widgets`; the command line in :mod:`napari_pvs.cli`.
"""

__version__ = "0.1.0"
