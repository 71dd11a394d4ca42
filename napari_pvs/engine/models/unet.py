"""``unet``: the MONAI residual U-Net baseline on 2D slices.

Refer to: MONAI Consortium, "MONAI: An open-source framework for deep learning in
healthcare", arXiv:2211.02701 (2022); ``monai.networks.nets.UNet`` (residual U-Net after
Kerfoot et al., "Left-ventricle quantification using residual U-Net", STACOM 2018,
DOI 10.1007/978-3-030-12029-0_40).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.nets import UNet

from .base import SegmentationNet, SegmentationNetConfig
from .registry import register_model

__all__ = ["UNetConfig", "UNet2D"]


@dataclass(frozen=True)
class UNetConfig(SegmentationNetConfig):
    """Config of ``unet`` (fields of :class:`SegmentationNetConfig`, plus):

    Parameters
    ----------
    num_res_units : int
        Residual units per level (MONAI ``UNet(num_res_units=...)``), default 2.
    """

    num_res_units: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.num_res_units) < 0:
            raise ValueError(f"num_res_units must be >= 0, got {self.num_res_units!r}")


@register_model("unet", "MONAI residual U-Net baseline (2D axial slices)", UNetConfig)
class UNet2D(SegmentationNet):
    """2D MONAI U-Net: ``UNet(spatial_dims=2, channels=features, strides=(2,) * L,
    num_res_units, dropout)``.

    Input: ``{"image": (B, in_channels, H, W)}`` float32, H and W multiples of
    :attr:`divisor`. Output, in train and eval mode alike: ``(B, out_channels, H, W)``
    logits (no sigmoid).
    """

    name = "unet"

    def __init__(self, config: UNetConfig | None = None):
        super().__init__(config if config is not None else UNetConfig())
        cfg = self.config
        self.net = UNet(spatial_dims=2, in_channels=cfg.input_channels, out_channels=cfg.out_channels,
                        channels=cfg.features, strides=(2,) * (len(cfg.features) - 1),
                        num_res_units=cfg.num_res_units, dropout=cfg.dropout)

    def forward_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)
