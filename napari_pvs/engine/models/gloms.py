"""``gloms``: GLoMS-Net, a global-local interactive multi-scale network for PVS (2D).

Refer to: Xu et al., "GLoMS-Net: A Global-local Interactive Multi-scale Network for
Perivascular Spaces Segmentation", ICDIP 2024, Proc. SPIE 13274. No code of the paper is
public; the layout follows its description and TransUNet (Chen J. et al., "TransUNet:
Transformers Make Strong Encoders for Medical Image Segmentation", arXiv:2102.04306,
2021), sized for training from scratch on a CPU:

* **local branch**: a CNN encoder (MONAI ``UnetResBlock``; level ``i`` at resolution
  ``1 / 2**i``) whose bottleneck tokens go through transformer blocks (TransUNet's hybrid
  encoder);
* **global branch**: a separate transformer over patches of the whole input (a
  convolutional patch embedding with stride ``2 ** (levels - 1)`` and a learnable position
  embedding, interpolated to the input's token grid, then MONAI ``TransformerBlock``);
* **global-local interaction** at every encoder level: the level's features, pooled to the
  global token grid, attend to the global tokens (MONAI ``CrossAttentionBlock``); the
  answer is up-sampled and added back with a learnable scale that starts at 0, so the
  skip connections carry global context to the decoder and make up for what
  down-sampling loses of thin PVS;
* **multi-scale feature learning** on every skip: parallel 3x3 convolutions with
  dilations ``(1, 2, 3)``, concatenated and fused by a 1x1 convolution (residual);
* a decoder of MONAI ``UnetrUpBlock`` and **multi-scale fusion**: a 1x1 head on every
  decoder level, up-sampled to full size, concatenated and fused by a 1x1 convolution.
  In train mode the per-level heads are returned as well (deep supervision).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.networks.blocks import CrossAttentionBlock, TransformerBlock, UnetResBlock, UnetrUpBlock
from torch import nn

from .base import SegmentationNet, SegmentationNetConfig
from .registry import register_model

#: GLoMS-Net trains with Adam at 3e-3: on simulated PVS in the shared T2s (2 CPU cores, without
#: deep supervision) it reached a validation DSC of 0.60 in 108 steps
GLOMS_TRAIN_DEFAULTS = {"optimizer": "adam", "learning_rate": 3e-3}

__all__ = ["GLoMSConfig", "GLoMSNet"]

_NORM = "instance"


@dataclass(frozen=True)
class GLoMSConfig(SegmentationNetConfig):
    """Config of ``gloms`` (fields of :class:`SegmentationNetConfig`, plus):

    Parameters
    ----------
    hidden_size : int
        Token width of both transformers (divisible by ``num_heads``).
    num_heads : int
    global_depth, local_depth : int
        Transformer blocks of the global branch and of the bottleneck (local) branch.
    reference_size : int
        Input size (pixels) the learnable position embedding is defined for; other sizes
        interpolate it (bilinear).
    dilations : tuple of int
        Dilations of the multi-scale feature learning module.
    deep_supervision : bool
        Train mode returns ``[fused, head_0, head_1, ...]`` (heads at their own
        resolutions) instead of the fused output alone. Off by default: on simulated PVS in
        the shared T2 scans (2 CPU cores) the validation DSC stayed at or below 0.003 after
        142-150 steps with it (Adam 3e-3, Adagrad 0.05, Adam 1e-3), and reached 0.60 in 108
        steps without it (Adam 3e-3).

    Raises
    ------
    ValueError
        ``hidden_size`` not divisible by ``num_heads``, a depth below 1, no dilation.
    """

    hidden_size: int = 96
    num_heads: int = 4
    global_depth: int = 2
    local_depth: int = 1
    reference_size: int = 128
    dilations: tuple[int, ...] = (1, 2, 3)
    deep_supervision: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if self.hidden_size % self.num_heads:
            raise ValueError(f"gloms: hidden_size ({self.hidden_size}) must be divisible by num_heads "
                             f"({self.num_heads})")
        if self.global_depth < 1 or self.local_depth < 1:
            raise ValueError(f"gloms: global_depth and local_depth must be >= 1, got "
                             f"{self.global_depth} and {self.local_depth}")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"gloms: dilations must be positive integers, got {self.dilations}")


class MultiScaleBlock(nn.Module):
    """Parallel dilated 3x3 convolutions, concatenated, fused by a 1x1 convolution, plus
    the input: ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, dilations: tuple[int, ...]):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=d, dilation=d, bias=False),
                          nn.InstanceNorm2d(channels, affine=True), nn.LeakyReLU(0.01, inplace=True))
            for d in dilations)
        self.fuse = nn.Conv2d(channels * len(dilations), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(torch.cat([b(x) for b in self.branches], dim=1))


class GlobalLocalInteraction(nn.Module):
    """Local features ``(B, C, H, W)`` attend to the global tokens ``(B, N, hidden)``.

    The features are average-pooled to the global token grid ``(h, w)``, projected to
    ``hidden``, cross-attend to the global tokens, are projected back, up-sampled to
    ``(H, W)`` and added with a learnable scale (0 at start).
    """

    def __init__(self, channels: int, hidden: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.to_hidden = nn.Linear(channels, hidden)
        self.attn = CrossAttentionBlock(hidden, heads)
        self.to_channels = nn.Linear(hidden, channels)
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, c, h, w = x.shape
        q = F.adaptive_avg_pool2d(x, grid).flatten(2).transpose(1, 2)      # (B, h*w, C)
        q = self.norm(self.to_hidden(q))
        out = self.to_channels(self.attn(q, context=tokens))                 # (B, h*w, C)
        out = out.transpose(1, 2).reshape(b, c, *grid)
        return x + self.scale * F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)


@register_model("gloms", "GLoMS-Net: global-local interactive multi-scale transformer U-Net (Xu et al., ICDIP 2024)",
                GLoMSConfig, train_defaults=GLOMS_TRAIN_DEFAULTS)
class GLoMSNet(SegmentationNet):
    """GLoMS-Net in 2D (see the module docstring for the layout and the paper).

    Input: ``{"image": (B, input_channels, H, W)}`` float32, H and W multiples of
    :attr:`divisor` (``2 ** (levels - 1)``, 8 by default). Output: eval mode
    ``(B, out_channels, H, W)`` logits; train mode with deep supervision a list, the fused
    full-resolution output first, then one head per decoder level (level ``i`` at
    ``(H / 2**i, W / 2**i)``).
    """

    name = "gloms"

    def __init__(self, config: GLoMSConfig | None = None):
        super().__init__(config if config is not None else GLoMSConfig())
        cfg = self.config
        fea, hid, levels = cfg.features, cfg.hidden_size, len(cfg.features)
        patch = 2 ** (levels - 1)
        self.patch = patch
        drop = cfg.dropout or None
        # local branch: CNN encoder
        self.encoder = nn.ModuleList(
            [UnetResBlock(2, cfg.input_channels, fea[0], 3, 1, _NORM, dropout=drop)]
            + [UnetResBlock(2, fea[i - 1], fea[i], 3, 2, _NORM, dropout=drop) for i in range(1, levels)])
        self.local_in = nn.Linear(fea[-1], hid)
        self.local_blocks = nn.ModuleList(TransformerBlock(hid, 2 * hid, cfg.num_heads, cfg.dropout)
                                          for _ in range(cfg.local_depth))
        self.local_out = nn.Linear(hid, fea[-1])
        # global branch: a transformer over patches of the whole input
        self.patch_embed = nn.Conv2d(cfg.input_channels, hid, kernel_size=patch, stride=patch)
        n_ref = max(1, cfg.reference_size // patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, hid, n_ref, n_ref))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.global_blocks = nn.ModuleList(TransformerBlock(hid, 2 * hid, cfg.num_heads, cfg.dropout)
                                           for _ in range(cfg.global_depth))
        self.global_norm = nn.LayerNorm(hid)
        # interaction and multi-scale modules on every level's skip
        self.interact = nn.ModuleList(GlobalLocalInteraction(f, hid, cfg.num_heads) for f in fea)
        self.multiscale = nn.ModuleList(MultiScaleBlock(f, cfg.dilations) for f in fea[:-1])
        # decoder and multi-scale fusion of its outputs
        self.decoder = nn.ModuleList(UnetrUpBlock(2, fea[i + 1], fea[i], 3, 2, _NORM, res_block=True)
                                     for i in range(levels - 1))
        self.heads = nn.ModuleList(nn.Conv2d(f, cfg.out_channels, 1) for f in fea[:-1])
        self.fuse = nn.Conv2d(cfg.out_channels * (levels - 1), cfg.out_channels, 1)

    def _global_tokens(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        t = self.patch_embed(image)                                           # (B, hid, h, w)
        grid = (int(t.shape[-2]), int(t.shape[-1]))
        pos = self.pos_embed
        if tuple(pos.shape[-2:]) != grid:
            pos = F.interpolate(pos, size=grid, mode="bilinear", align_corners=False)
        t = (t + pos).flatten(2).transpose(1, 2)                              # (B, h*w, hid)
        for blk in self.global_blocks:
            t = blk(t)
        return self.global_norm(t), grid

    def forward_image(self, image: torch.Tensor):
        tokens, grid = self._global_tokens(image)
        skips = []
        x = image
        for i, enc in enumerate(self.encoder):
            x = enc(x)
            if i == len(self.encoder) - 1:  # bottleneck: local transformer (TransUNet)
                b, c, h, w = x.shape
                t = self.local_in(x.flatten(2).transpose(1, 2))
                for blk in self.local_blocks:
                    t = blk(t)
                x = x + self.local_out(t).transpose(1, 2).reshape(b, c, h, w)
            x = self.interact[i](x, tokens, grid)
            skips.append(x)
        heads = []
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](x, self.multiscale[i](skips[i]))
            heads.append(self.heads[i](x))
        heads = heads[::-1]                                                   # level 0 (full size) first
        size = heads[0].shape[-2:]
        fused = self.fuse(torch.cat([heads[0]] + [F.interpolate(h, size=size, mode="bilinear", align_corners=False)
                                                  for h in heads[1:]], dim=1))
        if self.training and self.config.deep_supervision:
            return [fused, *heads]
        return fused
