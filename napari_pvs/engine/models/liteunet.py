"""``liteunet``: a small 2.5D U-Net sized for CPU inference on whole slices (the default student).

Plain PyTorch (no MONAI import, so a command that only segments with it starts in a
fraction of the time), and no normalisation layer: a convolution's output at a pixel does
not depend on the size of the crop it is run on, so inference runs on whole slices (the
brain's bounding box) instead of overlapping windows, with the same result as the training
patches would give in the same place.

Architecture: the U-Net of Ronneberger O., Fischer P., Brox T., "U-Net: Convolutional
Networks for Biomedical Image Segmentation", MICCAI 2015 (arXiv:1505.04597), with two 3x3
convolutions + LeakyReLU per level, max-pooling down, stride-2 transposed convolutions up,
concatenated skips and a 1x1 head. Trained by distillation from the shipped ensemble
(Hinton G., Vinyals O., Dean J., "Distilling the Knowledge in a Neural Network",
arXiv:1503.02531, 2015) on confident teacher detections plus synthetic PVS, see
``scripts/make_student_model.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import SegmentationNet, SegmentationNetConfig
from .registry import register_model

__all__ = ["LiteUNetConfig", "LiteUNet"]


@dataclass(frozen=True)
class LiteUNetConfig(SegmentationNetConfig):
    """Config of ``liteunet`` (fields of :class:`SegmentationNetConfig`; smaller defaults).

    Parameters
    ----------
    features : tuple of int
        Channels per level, full resolution first; default ``(8, 16, 32, 64, 128)``
        (0.49 M weights, about 0.3 s per million pixels on 2 CPU cores with ONNX Runtime).
    context_slices : int
        Default 1 (2.5D: one neighbouring slice on each side).
    whole_slice : bool
        Inference on whole slices (the brain's bounding box) instead of sliding windows;
        default True. Valid because the network has no normalisation layer.
    """

    features: tuple[int, ...] = (8, 16, 32, 64, 128)
    context_slices: int = 1
    whole_slice: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "whole_slice", bool(self.whole_slice))


def _block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
              nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True)]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


@register_model("liteunet", "small 2.5D U-Net for fast CPU inference on whole slices (the default student)",
                LiteUNetConfig, train_defaults={"optimizer": "adam", "learning_rate": 1e-3})
class LiteUNet(SegmentationNet):
    """Small 2D U-Net without normalisation layers.

    Input: ``{"image": (B, input_channels, H, W)}`` float32 normalised slices, H and W
    multiples of :attr:`divisor` (16 by default). Output, in train and eval mode alike:
    ``(B, out_channels, H, W)`` logits (no sigmoid).

    Example
    -------
    >>> net = LiteUNet(LiteUNetConfig()).eval()
    >>> net(torch.zeros(2, 3, 64, 48)).shape
    torch.Size([2, 1, 64, 48])
    """

    name = "liteunet"

    def __init__(self, config: LiteUNetConfig | None = None):
        super().__init__(config if config is not None else LiteUNetConfig())
        f = self.config.features
        drop = self.config.dropout
        self.encoder = nn.ModuleList(
            [_block(self.config.input_channels if i == 0 else f[i - 1], f[i], drop) for i in range(len(f))])
        self.up = nn.ModuleList([nn.ConvTranspose2d(f[i + 1], f[i], 2, stride=2) for i in range(len(f) - 1)])
        self.decoder = nn.ModuleList([_block(2 * f[i], f[i], drop) for i in range(len(f) - 1)])
        self.head = nn.Conv2d(f[0], self.config.out_channels, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        # start from a small PVS prior (sigmoid(-3) = 0.05) and small logits, so that the first
        # steps of a Dice loss on a rare class do not saturate (Lin et al., ICCV 2017, focal-loss init)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.constant_(self.head.bias, -3.0)

    def forward_image(self, image: torch.Tensor) -> torch.Tensor:
        x, skips = image, []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i < len(self.encoder) - 1:
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
        for i in reversed(range(len(self.up))):
            x = self.decoder[i](torch.cat([skips[i], self.up[i](x)], dim=1))
        return self.head(x)
