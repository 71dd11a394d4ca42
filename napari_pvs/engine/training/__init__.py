"""Training: the task-neutral loop (:mod:`.loop`) and the segmentation task (:mod:`.segmentation`)."""

from .loop import LoopConfig, TrainEvent, TrainingTask, TrainResult, run_training
from .segmentation import SegmentationTask, TrainConfig, split_by_volume, train, train_config_to_dict

__all__ = ["LoopConfig", "TrainEvent", "TrainResult", "TrainingTask", "run_training", "TrainConfig",
           "SegmentationTask", "train", "train_config_to_dict", "split_by_volume"]
