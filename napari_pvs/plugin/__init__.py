"""The napari-facing modules of napari-pvs (no widget lives here, and none imports
:mod:`napari_pvs.widgets`):

========================  =================================================================
``reader``, ``writer``    npe2 reader (NIfTI) and Labels writer (NIfTI on the source grid)
``sample_data``           the real T2 with simulated PVS (*File > Open Sample*)
``demo``                  ``make demo``: napari with napari-pvs docked and a real T2
``layers``                layer <-> :class:`~napari_pvs.engine.io.Volume` (no napari import)
``viewer``                viewer helpers: the slice napari draws, layers on a source grid
``jobs``                  the one job runner: engine generators in a napari worker, with
                          napari's progress (activity dock) and notifications
========================  =================================================================

Nothing here imports torch at module level, so napari starts fast with the plugin.
"""
