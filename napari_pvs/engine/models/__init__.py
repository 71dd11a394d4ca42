"""2D PVS segmentation networks, looked up by name.

``build_model(name, config)`` returns an ``nn.Module`` that takes a batch dict
``{"image": (B, in_channels, H, W)}`` (float32 axial slices; H and W multiples of
``model.divisor``) and returns logits: in ``eval()`` mode always one
``(B, out_channels, H, W)`` tensor; in ``train()`` mode ``mfnsde`` with deep supervision
returns a list (final full-resolution output first), which
:class:`MaxPoolDeepSupervisionLoss` takes as it is.

Each family has one file with its network class and its own frozen config dataclass,
registered together (:mod:`.registry`):

* ``unet``: MONAI's residual U-Net baseline (:mod:`.unet`);
* ``mfnsde``: MfNS_De, the densely nested attention U-Net with multi-scale deep
  supervision of "Deep-learning-based segmentation of perivascular spaces on
  T2-weighted 3T MR images", Frontiers in Aging Neuroscience (2024) (:mod:`.mfnsde`).

One 3D registration network shares the registry (``task="registration"``, left out of
``available_models()``' default list): ``acsgreg``, ACSGRegNet (:mod:`.acsgreg`).
"""

from .base import SegmentationNet, SegmentationNetConfig, as_batch
from .registry import (
    MODEL_REGISTRY,
    ModelSpec,
    available_models,
    build_model,
    config_from_dict,
    default_config,
    model_spec,
    register_model,
)
from .losses import (MaxPoolDeepSupervisionLoss, deep_supervision_loss, default_dice_loss,
                     downsample_label_max)
from .unet import UNet2D, UNetConfig
from .mfnsde import MfNSDe, MfNSDeConfig
from .acsgreg import ACSGRegConfig, ACSGRegNet

__all__ = [
    "MODEL_REGISTRY",
    "ModelSpec",
    "SegmentationNet",
    "SegmentationNetConfig",
    "as_batch",
    "available_models",
    "build_model",
    "config_from_dict",
    "default_config",
    "model_spec",
    "register_model",
    "MaxPoolDeepSupervisionLoss",
    "deep_supervision_loss",
    "default_dice_loss",
    "downsample_label_max",
    "UNet2D",
    "UNetConfig",
    "MfNSDe",
    "MfNSDeConfig",
    "ACSGRegNet",
    "ACSGRegConfig",
]
