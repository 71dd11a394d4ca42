"""``unet``: the MONAI U-Net baseline on 2D slices.

Reference: MONAI Consortium, "MONAI: An open-source framework for deep learning in
healthcare", arXiv:2211.02701 (2022); ``monai.networks.nets.UNet`` (residual U-Net after
Kerfoot et al., 2018).
"""

from __future__ import annotations

import torch
from monai.networks.nets import UNet
from torch import nn

from ._common import check_input
from .registry import ModelConfig, register_model, required_divisor

__all__ = ["UNet2D", "build_unet"]


class UNet2D(nn.Module):
    """2D MONAI U-Net with two residual units per level.

    Wraps ``monai.networks.nets.UNet(spatial_dims=2, channels=config.features,
    strides=(2,) * (len(features) - 1), num_res_units=2, dropout=config.dropout)``.

    Input: ``(B, in_channels, H, W)`` float32, H and W multiples of :attr:`divisor`
    (``2 ** (len(features) - 1)``, 8 by default). Output, in train and eval mode alike:
    one ``(B, out_channels, H, W)`` tensor of logits (no sigmoid applied).

    Raises
    ------
    ValueError
        In ``forward``, for a wrongly shaped, non-float input or H/W not multiples of
        :attr:`divisor`.
    """

    #: required multiple of H and W for the default config; the instance attribute
    #: (set from the config) is authoritative.
    divisor: int = required_divisor(ModelConfig())

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config if config is not None else ModelConfig()
        self.divisor = required_divisor(self.config)
        n = len(self.config.features)
        self.net = UNet(
            spatial_dims=2,
            in_channels=self.config.in_channels,
            out_channels=self.config.out_channels,
            channels=self.config.features,
            strides=(2,) * (n - 1),
            num_res_units=2,
            dropout=self.config.dropout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.config, "unet")
        return self.net(x)


@register_model("unet", "MONAI residual U-Net baseline (2D axial slices)")
def build_unet(config: ModelConfig) -> UNet2D:
    return UNet2D(config)
