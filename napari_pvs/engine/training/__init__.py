"""Training: the task-neutral loop (:mod:`.loop`), the segmentation task and its config
(:mod:`.segmentation`), the Frangi baseline's threshold fit (:mod:`.baseline`), the
dispatch over every model family (:mod:`.run`), training on an annotation project's
labelled slices (:mod:`.project`) and the training-data recipe for real scans
(:mod:`.recipe`)."""

from .loop import LoopConfig, TrainEvent, TrainingTask, TrainResult, run_training
from .project import (ProjectTrainingData, project_training_data, record_project_run, train_from_project,
                      training_metadata)
from .recipe import (PseudoLabelConfig, RecipeConfig, TrainingExample, pseudo_label_example, recipe_to_dict,
                     synthetic_examples, thick_slice_volume)
from .run import train
from .segmentation import SegmentationTask, TrainConfig, split_by_volume, train_config_to_dict

__all__ = ["LoopConfig", "TrainEvent", "TrainResult", "TrainingTask", "run_training", "TrainConfig",
           "SegmentationTask", "train", "train_config_to_dict", "split_by_volume",
           "RecipeConfig", "PseudoLabelConfig", "TrainingExample", "synthetic_examples", "thick_slice_volume",
           "pseudo_label_example", "recipe_to_dict", "ProjectTrainingData", "project_training_data",
           "train_from_project", "record_project_run", "training_metadata"]
