"""Training: the task-neutral loop (:mod:`.loop`), the segmentation task (:mod:`.segmentation`)
and the training-data recipe for real scans (:mod:`.recipe`)."""

from .loop import LoopConfig, TrainEvent, TrainingTask, TrainResult, run_training
from .recipe import (PseudoLabelConfig, RecipeConfig, TrainingExample, pseudo_label_example, recipe_to_dict,
                     synthetic_examples, thick_slice_volume)
from .segmentation import SegmentationTask, TrainConfig, split_by_volume, train, train_config_to_dict

__all__ = ["LoopConfig", "TrainEvent", "TrainResult", "TrainingTask", "run_training", "TrainConfig",
           "SegmentationTask", "train", "train_config_to_dict", "split_by_volume",
           "RecipeConfig", "PseudoLabelConfig", "TrainingExample", "synthetic_examples", "thick_slice_volume",
           "pseudo_label_example", "recipe_to_dict"]
