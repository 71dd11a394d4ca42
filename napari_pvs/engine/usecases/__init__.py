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

from .comparison import compare, compare_job, comparison_models
from .rating import (AtlasPlacement, ScanRating, count_rating, place_rating_slices_job, rate_scan,
                     rate_scan_job)
from .segmentation import Segmentation, load_segmenter, segment, segment_job
from .training import (TrainOutcome, TrainPlan, TrainRequest, plan_training, record_training, run_training_plan,
                       train, train_job)

__all__ = ["TrainRequest", "TrainPlan", "TrainOutcome", "plan_training", "run_training_plan", "record_training",
           "train_job", "train", "Segmentation", "load_segmenter", "segment_job", "segment", "AtlasPlacement",
           "ScanRating", "place_rating_slices_job", "count_rating", "rate_scan_job", "rate_scan",
           "comparison_models", "compare_job", "compare"]
