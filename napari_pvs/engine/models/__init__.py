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
* ``liteunet``: a small 2.5D U-Net without normalisation layers for fast CPU inference on
  whole slices, the default student (:mod:`.liteunet`);
* ``mfnsde``: MfNS_De, the densely nested attention U-Net with multi-scale deep
  supervision of "Deep-learning-based segmentation of perivascular spaces on
  T2-weighted 3T MR images", Frontiers in Aging Neuroscience (2024) (:mod:`.mfnsde`);
* ``gloms``: GLoMS-Net, global-local interactive multi-scale transformer U-Net (Xu et
  al., ICDIP 2024) (:mod:`.gloms`);
* ``cmgraph``: the cross-modal graph model with PVS-description text nodes (MICCAI 2025)
  (:mod:`.cmgraph`);
* ``dynunet``: nnU-Net-like MONAI ``DynUNet`` (:mod:`.dynunet`);
* ``frangi``: the classical Frangi vesselness baseline, no learned weights, a threshold
  fitted on training data (:mod:`.frangi`).

Every 2D network takes 2.5D input (``context_slices`` neighbouring slices on each side as
channels) as a config option.

``ensemble`` (:mod:`.ensemble`) averages the probabilities of several trained networks of
one family (``task="ensemble"``: built from checkpoints, not trained, so it is left out of
the training menus).

One 3D registration network shares the registry (``task="registration"``, left out of
``available_models()``' default list): ``acsgreg``, ACSGRegNet (:mod:`.acsgreg`).
"""

from ..lazy import lazy_exports

from .base import SegmentationNet, SegmentationNetConfig, as_batch
from .registry import (
    MODEL_REGISTRY,
    ModelSpec,
    available_models,
    build_model,
    config_from_dict,
    model_spec,
    register_model,
)

#: public name -> submodule, imported on first use (PEP 562): most families import MONAI
_WHERE = {
    **dict.fromkeys(("MaxPoolDeepSupervisionLoss", "DiceBCELoss", "deep_supervision_loss", "default_dice_loss",
                     "downsample_label_max"), "losses"),
    **dict.fromkeys(("UNet2D", "UNetConfig"), "unet"),
    **dict.fromkeys(("LiteUNet", "LiteUNetConfig"), "liteunet"),
    **dict.fromkeys(("MfNSDe", "MfNSDeConfig"), "mfnsde"),
    **dict.fromkeys(("DynUNet2D", "DynUNetConfig", "nnunet_plan", "nnunet_train_settings"), "dynunet"),
    **dict.fromkeys(("GLoMSConfig", "GLoMSNet"), "gloms"),
    **dict.fromkeys(("CMGraphConfig", "CMGraphNet", "PVS_TEXTS", "embed_texts"), "cmgraph"),
    **dict.fromkeys(("FrangiConfig", "FrangiBaseline"), "frangi"),
    **dict.fromkeys(("ACSGRegConfig", "ACSGRegNet"), "acsgreg"),
    **dict.fromkeys(("EnsembleConfig", "EnsembleNet"), "ensemble"),
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())


__all__ = [
    "MODEL_REGISTRY",
    "ModelSpec",
    "SegmentationNet",
    "SegmentationNetConfig",
    "as_batch",
    "available_models",
    "build_model",
    "config_from_dict",
    "model_spec",
    "register_model",
    "MaxPoolDeepSupervisionLoss",
    "deep_supervision_loss",
    "default_dice_loss",
    "downsample_label_max",
    "UNet2D",
    "UNetConfig",
    "LiteUNet",
    "LiteUNetConfig",
    "MfNSDe",
    "MfNSDeConfig",
    "DynUNet2D",
    "DynUNetConfig",
    "nnunet_plan",
    "nnunet_train_settings",
    "GLoMSNet",
    "GLoMSConfig",
    "CMGraphNet",
    "CMGraphConfig",
    "PVS_TEXTS",
    "embed_texts",
    "FrangiBaseline",
    "FrangiConfig",
    "ACSGRegNet",
    "ACSGRegConfig",
    "EnsembleNet",
    "EnsembleConfig",
]
