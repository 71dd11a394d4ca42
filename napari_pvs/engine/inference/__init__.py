"""Whole-volume PVS segmentation with a checkpoint (:mod:`.sliding`) and the device and
mixed-precision choice shared with training (:mod:`.device`)."""

from ..device import amp_dtype, autocast, pick_device
from .sliding import (BACKGROUND_LEVEL, BRAIN_MARGIN_MM, WINDOWS_PER_PASS, InferenceProgress, Prediction,
                      head_box, predict_stack, predict_volume, segment_iter, whole_slice_box)

__all__ = ["Prediction", "InferenceProgress", "segment_iter", "predict_volume", "predict_stack", "head_box", "whole_slice_box",
           "BACKGROUND_LEVEL", "BRAIN_MARGIN_MM", "WINDOWS_PER_PASS", "pick_device", "autocast",
           "amp_dtype"]
