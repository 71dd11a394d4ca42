"""``liteunet``: a small 2.5D U-Net sized for CPU inference on whole slices (the default student).

Plain PyTorch (no MONAI import, so a command that only segments with it starts in a
fraction of the time), and no layer whose output depends on the crop (batch normalisation
uses its running statistics at inference): a pixel's output does not depend on the size of
the crop it is run on, so inference runs on whole slices (the brain's bounding box) instead
of overlapping windows.

Architecture: the U-Net of Ronneberger O., Fischer P., Brox T., "U-Net: Convolutional
Networks for Biomedical Image Segmentation", MICCAI 2015 (arXiv:1505.04597), with two 3x3
convolutions + batch norm + LeakyReLU per level, max-pooling down, stride-2 transposed convolutions up,
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
        (0.49 M weights; 0.25 s per million pixels on 2 CPU cores with ONNX Runtime in a timing of
        this layout with batch norm, which ONNX Runtime folds into the convolutions).
    context_slices : int
        Default 1 (2.5D: one neighbouring slice on each side).
    whole_slice : bool
        Inference on whole slices (the brain's bounding box) instead of sliding windows;
        default True. Valid because no layer depends on the crop: batch normalisation uses
        its running statistics at inference (and folds into the convolutions in ONNX).
    norm : str
        ``"batch"`` (default; Ioffe S., Szegedy C., ICML 2015, arXiv:1502.03167) after each
        convolution, or ``"none"`` (a plain network without normalisation trained unstably:
        validation DSC stuck at 0.18, then 0, within 1800 steps).
    """

    features: tuple[int, ...] = (8, 16, 32, 64, 128)
    context_slices: int = 1
    whole_slice: bool = True
    norm: str = "batch"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "whole_slice", bool(self.whole_slice))
        if self.norm not in ("batch", "none"):
            raise ValueError(f"norm must be 'batch' or 'none', got {self.norm!r}")


def _block(cin: int, cout: int, dropout: float, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (cin, cout):
        layers.append(nn.Conv2d(c, cout, 3, padding=1, bias=norm == "none"))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.1, inplace=True))
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


@register_model("liteunet", "small 2.5D U-Net for fast CPU inference on whole slices (the default student)",
                LiteUNetConfig, train_defaults={"optimizer": "adam", "learning_rate": 1e-3})
class LiteUNet(SegmentationNet):
    """Small 2D U-Net (batch norm, or none), inferred on whole slices.

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
            [_block(self.config.input_channels if i == 0 else f[i - 1], f[i], drop, self.config.norm)
             for i in range(len(f))])
        self.up = nn.ModuleList([nn.ConvTranspose2d(f[i + 1], f[i], 2, stride=2) for i in range(len(f) - 1)])
        self.decoder = nn.ModuleList([_block(2 * f[i], f[i], drop, self.config.norm) for i in range(len(f) - 1)])
        self.head = nn.Conv2d(f[0], self.config.out_channels, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                if m.bias is not None:
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
