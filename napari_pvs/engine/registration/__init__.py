"""Registration: atlas to subject (rating slices, BG / white-matter regions), T1/FLAIR to
T2, visit to visit. Every method returns a :class:`SpatialTransform` (fixed world ->
moving world, mm)."""

from .classical import ClassicalConfig, RegistrationEvent, register_classical
from .metrics import dice_per_label, folding_fraction, hd95_mm, jacobian_determinant, sdlogj
from .run import METHODS, RegistrationResult, deformation_grid, jacobian_map, register
from .transform import SpatialTransform, resample_grid, warp_array, warp_volume

__all__ = ["SpatialTransform", "warp_volume", "warp_array", "resample_grid",
           "ClassicalConfig", "RegistrationEvent", "register_classical",
           "METHODS", "RegistrationResult", "register", "deformation_grid", "jacobian_map",
           "dice_per_label", "hd95_mm", "jacobian_determinant", "sdlogj", "folding_fraction"]
