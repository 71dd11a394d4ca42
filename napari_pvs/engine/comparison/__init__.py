"""Side-by-side comparison of PVS models on one image (:mod:`.compare`)."""

from .compare import (FN, FP, FRANGI_DEFAULT_THRESHOLD, METRIC_COLUMNS, TP, Comparison, CompareProgress,
                      ErrorComponent, ModelPrediction, compare_iter, error_components, error_map, frangi_baseline,
                      mask_metrics, model_label, write_metrics_csv)

__all__ = ["FN", "FP", "TP", "FRANGI_DEFAULT_THRESHOLD", "METRIC_COLUMNS", "Comparison", "CompareProgress",
           "ErrorComponent", "ModelPrediction", "compare_iter", "error_components", "error_map", "frangi_baseline",
           "mask_metrics", "model_label", "write_metrics_csv"]
