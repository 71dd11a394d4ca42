"""2D PVS segmentation networks, looked up by name.

``build_model("unet" | "mfnsde", config)`` returns a ``torch.nn.Module`` that takes a
``(B, in_channels, H, W)`` float32 batch of axial slices, H and W multiples of
``model.divisor`` (``2 ** (len(config.features) - 1)``), and returns logits:

* in ``eval()`` mode, always one ``(B, out_channels, H, W)`` tensor;
* in ``train()`` mode, ``unet`` still returns one tensor, while ``mfnsde`` with
  ``deep_supervision=True`` returns a list (final full-resolution output first, then the
  other supervised outputs, some at 1/2, 1/4, ... resolution). Feed either to
  :func:`deep_supervision_loss`.

Models: ``unet`` -- MONAI's residual U-Net baseline; ``mfnsde`` -- the densely nested
attention U-Net with multi-scale deep supervision ("MfNS_De") of "Deep-learning-based
segmentation of perivascular spaces on T2-weighted 3T MR images", Frontiers in Aging
Neuroscience (2024), built on UNet++ (Zhou et al., DLMIA 2018 / IEEE TMI 2020), Attention
U-Net (Oktay et al., MIDL 2018) and MONAI blocks.
"""

from .registry import (
    MODEL_REGISTRY,
    ModelConfig,
    ModelSpec,
    available_models,
    build_model,
    model_config_from_dict,
    register_model,
    required_divisor,
)
from .losses import deep_supervision_loss, default_dice_loss, downsample_label_max
from .unet import UNet2D
from .mfnsde import MfNSDe

__all__ = [
    "MODEL_REGISTRY",
    "ModelConfig",
    "ModelSpec",
    "available_models",
    "build_model",
    "model_config_from_dict",
    "register_model",
    "required_divisor",
    "deep_supervision_loss",
    "default_dice_loss",
    "downsample_label_max",
    "UNet2D",
    "MfNSDe",
]
