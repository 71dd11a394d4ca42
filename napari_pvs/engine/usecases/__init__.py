"""The use cases every front end calls: the CLI, the napari widgets and the Python API.

Each is a generator of typed progress events (``fraction``, ``summary()``) that returns its
result, with a one-call wrapper taking an ``on_event`` callback:

==================  ==========================================  ===========================
use case            generator (and steps)                       one call
==================  ==========================================  ===========================
train               :func:`train_job` (:func:`plan_training`,   :func:`train`
                    :func:`run_training_plan`,
                    :func:`record_training`)
segment             :func:`segment_job` (:func:`load_segmenter`)  :func:`segment`
rate a scan         :func:`rate_scan_job`                       :func:`rate_scan`
                    (:func:`place_rating_slices_job`,
                    :func:`count_rating`)
compare             :func:`compare_job`                         :func:`compare`
                    (:func:`comparison_models`)
==================  ==========================================  ===========================

No front end re-assembles these from lower engine parts. Long jobs are closed (stopped) by
``gen.close()``; results are written atomically.
"""

from __future__ import annotations

from ..lazy import lazy_exports

#: public name -> submodule; imported on first use (PEP 562), so that a command that only
#: segments does not import the training stack (MONAI alone takes 3-6 s to import)
_WHERE = {
    **dict.fromkeys(("compare", "compare_job", "comparison_models"), "comparison"),
    **dict.fromkeys(("AtlasPlacement", "ScanRating", "count_rating", "place_rating_slices_job", "rate_scan",
                     "rate_scan_job"), "rating"),
    **dict.fromkeys(("Segmentation", "load_segmenter", "segment", "segment_job"), "segmentation"),
    **dict.fromkeys(("TrainOutcome", "TrainPlan", "TrainRequest", "plan_training", "record_training",
                     "run_training_plan", "train", "train_job"), "training"),
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())


__all__ = ["TrainRequest", "TrainPlan", "TrainOutcome", "plan_training", "run_training_plan", "record_training",
           "train_job", "train", "Segmentation", "load_segmenter", "segment_job", "segment", "AtlasPlacement",
           "ScanRating", "place_rating_slices_job", "count_rating", "rate_scan_job", "rate_scan",
           "comparison_models", "compare_job", "compare"]
