"""ACSGRegNet in 3D: joint affine and diffeomorphic registration with cross- and
self-attention fusion, for brain MRI on a coarse grid (3 mm by default: 48 x 64 x 48 voxels hold a brain, and
one training step costs about 1-2 s on two CPU cores).

Refer to: Gao and Zheng, "ACSGRegNet: A Deep Learning-based Framework for Unsupervised
Joint Affine and Diffeomorphic Registration of Lumbar Spine CT via Cross- and
Self-Attention Fusion", ICIMH 2022, arXiv:2208.02642. No code of the paper is public;
this follows its description with MONAI blocks, and borrows from the nearest public
designs: TransMorph's diffeomorphic head and 7 integration steps (Chen et al., Med Image
Anal 2022, arXiv:2111.10480), XMorpher's cross-attention between the two images (Shi et
al., MICCAI 2022, arXiv:2206.07349), voxelmorph's scaling and squaring (Dalca et al.,
MICCAI 2018, arXiv:1805.04605).

Data flow for a fixed ``F`` and a moving ``M``, both ``(B, 1, D, H, W)`` on one grid:

1. affine sub-network: a CNN on ``[F, M]`` -> 12 parameters (identity at start) ->
   ``A`` (voxel coordinates about the grid centre); ``M_a = M o A``;
2. a shared CNN encoder (4 levels) of ``F`` and of ``M_a``; the deepest features (1/8 of
   the grid) become tokens with a learned position embedding;
3. a self-attention transformer (MONAI ``TransformerBlock``, within each image) and a
   cross-attention transformer (``with_cross_attention=True``: ``F`` attends to ``M_a``
   and ``M_a`` to ``F``); each feeds its own U-Net decoder (skips: both images' encoder
   features) that outputs a stationary velocity field;
4. gated fusion: a learned voxel-wise gate ``g = sigmoid(conv[decoder features])`` gives
   ``v = g v_self + (1 - g) v_cross``;
5. scaling and squaring (MONAI ``DVF2DDF``, 7 steps) integrates ``v`` into the
   diffeomorphic displacement ``u``; the total map is ``x -> A(x + u(x))`` and MONAI
   ``Warp`` applies it to ``M`` in one interpolation.

All displacements are in voxels of the network grid, channels in ``(D, H, W)`` order
(MONAI's convention: channel 0 moves along D).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from monai.networks.blocks import Convolution, DVF2DDF, TransformerBlock, Warp
from torch import nn
from torch.nn import functional as F  # noqa: N812

from .registry import register_model

__all__ = ["ACSGRegConfig", "ACSGRegNet"]


@dataclass(frozen=True)
class ACSGRegConfig:
    """Constructor config of :class:`ACSGRegNet` (saved inside its checkpoints).

    Attributes
    ----------
    shape : tuple of int
        Network grid ``(D, H, W)`` = ``(Z, Y, X)`` in voxels; each divisible by 8.
    grid_mm : float
        Its isotropic voxel size in mm (the images are resampled to it).
    features : tuple of int
        Channels of the 4 encoder levels (full, 1/2, 1/4, 1/8 resolution).
    heads : int
        Attention heads (must divide ``features[-1]``).
    int_steps : int
        Scaling-and-squaring steps.
    affine : bool
        Include the affine sub-network (else ``A`` is the identity).
    """

    shape: tuple[int, int, int] = (48, 64, 48)
    grid_mm: float = 3.0
    features: tuple[int, int, int, int] = (8, 16, 32, 32)
    heads: int = 4
    int_steps: int = 7
    affine: bool = True

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))      # JSON lists -> tuples
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        if len(self.shape) != 3 or any(s % 8 or s < 16 for s in self.shape):
            raise ValueError(f"shape must be 3 sizes, each a multiple of 8 and >= 16; got {self.shape}")
        if len(self.features) != 4:
            raise ValueError(f"features must have 4 levels, got {self.features}")
        if self.features[-1] % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide the token width {self.features[-1]}")


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Module:
    return Convolution(3, cin, cout, strides=stride, kernel_size=3, act=("leakyrelu", {"negative_slope": 0.2}),
                       norm="instance")


class _Decoder(nn.Module):
    """U-Net decoder from the 1/8 bottleneck (two images' tokens) to full resolution."""

    def __init__(self, feats: tuple[int, ...]):
        super().__init__()
        f0, f1, f2, f3 = feats
        self.up = nn.ModuleList([_conv(2 * f3 + 2 * f2, f2), _conv(f2 + 2 * f1, f1), _conv(f1 + 2 * f0, f0)])
        self.flow = nn.Conv3d(f0, 3, 3, padding=1)
        nn.init.normal_(self.flow.weight, 0, 1e-5)
        nn.init.zeros_(self.flow.bias)

    def forward(self, bottleneck: torch.Tensor, skips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = bottleneck
        for block, skip in zip(self.up, skips, strict=True):
            x = F.interpolate(x, size=skip.shape[2:], mode="trilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.flow(x), x


@register_model("acsgreg", "ACSGRegNet: joint affine + diffeomorphic 3D registration with cross- and "
                "self-attention fusion (Gao and Zheng, ICIMH 2022)", ACSGRegConfig, task="registration")
class ACSGRegNet(nn.Module):
    """ACSGRegNet (see the module docstring).

    ``forward(fixed, moving)`` (or ``forward({"fixed": ..., "moving": ...})``, the batch
    dict of the training loop) takes two ``(B, 1, D, H, W)`` float tensors on the grid
    ``config.shape`` (intensities about [0, 1]) and returns a dict:

    * ``warped``: ``(B, 1, D, H, W)`` moving image through ``x -> A(x + u(x))``;
    * ``ddf``: ``(B, 3, D, H, W)`` total displacement (voxels) of that map;
    * ``ddf_local``: ``(B, 3, D, H, W)`` the diffeomorphic part ``u`` (voxels);
    * ``velocity``: the fused stationary velocity field (voxels);
    * ``affine``: ``(B, 4, 4)`` ``A`` in voxel index coordinates ``(d, h, w, 1)``;
    * ``warped_affine``, ``ddf_affine``: the moving image through ``A`` only, and its
      displacement (voxels);
    * ``gate``: ``(B, 1, D, H, W)`` the fusion gate (weight of the self-attention branch).

    Raises
    ------
    ValueError
        Input not ``(B, 1) + config.shape``.
    """

    def __init__(self, config: ACSGRegConfig | None = None):
        super().__init__()
        self.config = cfg = config or ACSGRegConfig()
        f = cfg.features
        self.affine_net = nn.Sequential(_conv(2, f[0], 2), _conv(f[0], f[1], 2), _conv(f[1], f[2], 2),
                                        _conv(f[2], f[3], 2), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                                        nn.Linear(f[3], 12)) if cfg.affine else None
        if self.affine_net is not None:
            nn.init.zeros_(self.affine_net[-1].weight)
            nn.init.zeros_(self.affine_net[-1].bias)
        self.encoder = nn.ModuleList([_conv(1, f[0]), _conv(f[0], f[1], 2), _conv(f[1], f[2], 2), _conv(f[2], f[3], 2)])
        n_tokens = (cfg.shape[0] // 8) * (cfg.shape[1] // 8) * (cfg.shape[2] // 8)
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, f[3]))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.self_attn = TransformerBlock(f[3], 2 * f[3], cfg.heads)
        self.cross_attn = TransformerBlock(f[3], 2 * f[3], cfg.heads, with_cross_attention=True)
        self.dec_self, self.dec_cross = _Decoder(f), _Decoder(f)
        self.gate = nn.Conv3d(2 * f[0], 1, 3, padding=1)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.integrate = DVF2DDF(num_steps=cfg.int_steps, mode="bilinear", padding_mode="zeros")
        self.warp = Warp(mode="bilinear", padding_mode="zeros")
        grid = torch.stack(torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in cfg.shape),
                                          indexing="ij"))
        self.register_buffer("grid", grid[None], persistent=False)               # (1, 3, D, H, W)
        self.register_buffer("centre", (torch.tensor(cfg.shape, dtype=torch.float32) - 1) / 2, persistent=False)

    # ------------------------------------------------------------------ parts
    def affine_matrix(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """``(B, 4, 4)`` affine ``A`` in voxel coordinates (identity without the sub-network)."""
        b = fixed.shape[0]
        eye = torch.eye(4, device=fixed.device, dtype=fixed.dtype).expand(b, 4, 4).clone()
        if self.affine_net is None:
            return eye
        p = self.affine_net(torch.cat([fixed, moving], 1))
        lin = torch.eye(3, device=p.device, dtype=p.dtype) + 0.1 * p[:, :9].view(b, 3, 3)
        trans = 4.0 * p[:, 9:]                                     # voxels
        c = self.centre.to(p.dtype)
        eye[:, :3, :3] = lin
        eye[:, :3, 3] = trans + c - (lin @ c)
        return eye

    def _apply_affine(self, a: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """``A`` applied to ``(B, 3, D, H, W)`` voxel coordinates."""
        return torch.einsum("bij,bj...->bi...", a[:, :3, :3], points) + a[:, :3, 3, None, None, None]

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.encoder:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, fixed: torch.Tensor | Mapping, moving: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if isinstance(fixed, Mapping):
            fixed, moving = fixed["fixed"], fixed["moving"]
        want = (1, *self.config.shape)
        for name, t in (("fixed", fixed), ("moving", moving)):
            if t.ndim != 5 or tuple(t.shape[1:]) != want:
                raise ValueError(f"{name} must be (B, {', '.join(map(str, want))}), got {tuple(t.shape)}")
        a = self.affine_matrix(fixed, moving)
        grid = self.grid.expand(fixed.shape[0], -1, -1, -1, -1)
        ddf_aff = self._apply_affine(a, grid) - grid
        m_a = self.warp(moving, ddf_aff)
        ff, fm = self._encode(fixed), self._encode(m_a)
        b, c, d, h, w = ff[-1].shape
        tf = ff[-1].flatten(2).transpose(1, 2) + self.pos
        tm = fm[-1].flatten(2).transpose(1, 2) + self.pos

        def volume(tokens):
            return tokens.transpose(1, 2).reshape(b, c, d, h, w)

        s_f, s_m = self.self_attn(tf), self.self_attn(tm)
        c_f, c_m = self.cross_attn(tf, context=tm), self.cross_attn(tm, context=tf)
        skips = [torch.cat([ff[i], fm[i]], 1) for i in (2, 1, 0)]
        v_s, feat_s = self.dec_self(torch.cat([volume(s_f), volume(s_m)], 1), skips)
        v_c, feat_c = self.dec_cross(torch.cat([volume(c_f), volume(c_m)], 1), skips)
        g = torch.sigmoid(self.gate(torch.cat([feat_s, feat_c], 1)))
        v = g * v_s + (1 - g) * v_c
        u = self.integrate(v)
        ddf = self._apply_affine(a, grid + u) - grid
        return {"warped": self.warp(moving, ddf), "ddf": ddf, "ddf_local": u, "velocity": v, "affine": a,
                "warped_affine": m_a, "ddf_affine": ddf_aff, "gate": g}
