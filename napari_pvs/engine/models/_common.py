"""Helpers shared by the model implementations."""

from __future__ import annotations

import torch

from .registry import ModelConfig, required_divisor


def check_input(x: torch.Tensor, config: ModelConfig, model_name: str) -> None:
    """Raise ValueError unless ``x`` is a (B, in_channels, H, W) float tensor with H, W
    multiples of the model's divisor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{model_name}: input must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"{model_name}: input must have shape (B, C, H, W), got {tuple(x.shape)}"
        )
    if x.shape[1] != config.in_channels:
        raise ValueError(
            f"{model_name}: input has {x.shape[1]} channel(s), "
            f"model expects in_channels={config.in_channels}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{model_name}: input must be a floating-point tensor, got {x.dtype}")
    div = required_divisor(config)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % div or w % div:
        raise ValueError(
            f"{model_name}: input height and width must be multiples of {div} "
            f"(2**{len(config.features) - 1} for {len(config.features)} feature levels), "
            f"got {h}x{w}; pad the slice first"
        )
