"""``dynunet``: an nnU-Net-like 2D baseline, MONAI's ``DynUNet`` with nnU-Net's 2D defaults.

Refer to: Isensee F., Jaeger P. F., Kohl S. A. A., Petersen J., Maier-Hein K. H.,
"nnU-Net: a self-configuring method for deep learning-based biomedical image
segmentation", Nature Methods 18, 203-211 (2021), doi:10.1038/s41592-020-01008-z; MONAI
``monai.networks.nets.DynUNet`` (MONAI Consortium, arXiv:2211.02701).

What is taken from nnU-Net: instance normalisation, leaky ReLU (slope 0.01), deep
supervision, transposed-convolution up-sampling, and the kernel/stride plan derived from
the patch size and the pixel spacing (:func:`nnunet_plan`). Training it the nnU-Net way is
a :class:`~napari_pvs.engine.training.TrainConfig` choice: ``optimizer="sgd"`` (Nesterov,
momentum 0.99), ``learning_rate=0.01``, ``lr_schedule="poly"``
(:func:`nnunet_train_settings`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.networks.nets import DynUNet

from .base import SegmentationNet, SegmentationNetConfig
from .registry import register_model

__all__ = ["DynUNetConfig", "DynUNet2D", "nnunet_plan", "nnunet_train_settings"]

#: nnU-Net stops down-sampling an axis once the feature map would fall below this size
_MIN_FEATURE_MAP = 4
#: and caps the number of down-samplings
_MAX_POOLINGS = 6


def nnunet_plan(patch_size: Sequence[int], spacing_mm: Sequence[float]
                ) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """nnU-Net's kernel and stride plan for a 2D patch.

    An axis is down-sampled (stride 2) while its feature map is at least 8 pixels (so it
    stays at least 4 after) and its spacing is no more than twice the finest one; an axis
    with a spacing over twice the finest gets 1-pixel kernels and no down-sampling until
    the others catch up (nnU-Net's anisotropy rule). At most 6 down-samplings.

    Parameters
    ----------
    patch_size : (int, int)
        Training patch ``(H, W)`` in pixels.
    spacing_mm : (float, float)
        Pixel spacing ``(H, W)`` in mm.

    Returns
    -------
    (kernels, strides)
        Tuples of ``(kh, kw)`` per level, level 0 (full resolution, stride 1) first; one
        entry per level, so ``len(kernels) == number of down-samplings + 1``.

    Raises
    ------
    ValueError
        Not two sizes and two spacings, or non-positive values.
    """
    sizes = [float(s) for s in patch_size]
    spacing = [float(s) for s in spacing_mm]
    if len(sizes) != 2 or len(spacing) != 2 or min(sizes) <= 0 or min(spacing) <= 0:
        raise ValueError(f"expected a 2D patch size and spacing (positive), got {patch_size} and {spacing_mm}")
    kernels: list[tuple[int, int]] = []
    strides: list[tuple[int, int]] = [(1, 1)]
    while len(strides) - 1 < _MAX_POOLINGS:
        ratio = [s / min(spacing) for s in spacing]
        stride = tuple(2 if r <= 2 and size >= 2 * _MIN_FEATURE_MAP else 1 for r, size in zip(ratio, sizes, strict=True))
        if all(s == 1 for s in stride):
            break
        kernels.append(tuple(3 if r <= 2 else 1 for r in ratio))
        strides.append(stride)  # type: ignore[arg-type]
        sizes = [size / s for size, s in zip(sizes, stride, strict=True)]
        spacing = [sp * s for sp, s in zip(spacing, stride, strict=True)]
    kernels.append((3, 3))
    return tuple(kernels), tuple(strides)


def nnunet_train_settings() -> dict:
    """nnU-Net's optimiser settings as :class:`~napari_pvs.engine.training.TrainConfig`
    keyword arguments: SGD with Nesterov momentum 0.99, learning rate 0.01, poly schedule."""
    return {"optimizer": "sgd", "learning_rate": 0.01, "lr_schedule": "poly"}


@dataclass(frozen=True)
class DynUNetConfig(SegmentationNetConfig):
    """Config of ``dynunet`` (fields of :class:`SegmentationNetConfig`, plus):

    Parameters
    ----------
    features : tuple of int
        Filters per level; one per entry of ``strides`` (default 6 levels, for a
        128x128 patch at isotropic spacing: 128 -> 4 pixels).
    kernel_size, strides : tuple of (int, int), or None
        Per level, from :func:`nnunet_plan` (:meth:`for_patch`); None: the isotropic plan,
        3x3 kernels, stride 1 then 2 on every level (for the default 6 levels, the plan of
        a 128x128 patch at isotropic spacing).
    deep_supervision : bool
        Train mode returns the full-resolution output and ``deep_supr_num`` up-sampled
        lower-level outputs (MONAI ``DynUNet``), as a list.
    deep_supr_num : int or None
        Number of extra supervised outputs, within ``[1, levels - 2]``; None: 2, or fewer
        when the network has fewer levels.
    res_block : bool
        Residual blocks (nnU-Net ResEnc-like) instead of plain conv blocks.

    Raises
    ------
    ValueError
        ``features``, ``kernel_size`` and ``strides`` of different lengths, a first stride
        other than 1, or ``deep_supr_num`` out of ``[1, levels - 2]``.
    """

    features: tuple[int, ...] = (16, 32, 64, 128, 128, 128)
    kernel_size: tuple[tuple[int, int], ...] | None = None
    strides: tuple[tuple[int, int], ...] | None = None
    deep_supervision: bool = True
    deep_supr_num: int | None = None
    res_block: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        def pairs(v):
            return tuple(tuple(int(a) for a in (p if isinstance(p, Sequence) else (p, p))) for p in v)
        n = len(self.features)
        # None: 3x3 kernels, stride 1 then 2 on every level (the isotropic nnU-Net plan)
        object.__setattr__(self, "kernel_size", pairs(self.kernel_size or [(3, 3)] * n))
        object.__setattr__(self, "strides", pairs(self.strides or [(1, 1)] + [(2, 2)] * (n - 1)))
        n = len(self.features)
        if not len(self.kernel_size) == len(self.strides) == n:
            raise ValueError(f"dynunet: features, kernel_size and strides need one entry per level, got "
                             f"{n}, {len(self.kernel_size)} and {len(self.strides)}")
        if self.strides[0] != (1, 1):
            raise ValueError(f"dynunet: the first level's stride must be (1, 1), got {self.strides[0]}")
        if self.deep_supr_num is None:
            object.__setattr__(self, "deep_supr_num", min(2, max(1, n - 2)))
        if not 1 <= int(self.deep_supr_num) <= max(1, n - 2):
            raise ValueError(f"dynunet: deep_supr_num must be within [1, {max(1, n - 2)}], got {self.deep_supr_num}")

    @property
    def divisor(self) -> int:
        """Multiple that H and W must be: the largest product of the strides of an axis."""
        return max(math.prod(s[a] for s in self.strides) for a in (0, 1))

    @classmethod
    def for_patch(cls, patch_size: Sequence[int], spacing_mm: Sequence[float] = (1.0, 1.0),
                  base_features: int = 16, max_features: int = 128, **kw) -> DynUNetConfig:
        """The nnU-Net plan for ``patch_size`` at ``spacing_mm``: :func:`nnunet_plan`, filters
        doubling from ``base_features`` up to ``max_features`` (nnU-Net 2D: 32 and 512)."""
        kernels, strides = nnunet_plan(patch_size, spacing_mm)
        features = tuple(min(base_features * 2 ** i, max_features) for i in range(len(strides)))
        return cls(features=features, kernel_size=kernels, strides=strides, **kw)


@register_model("dynunet", "nnU-Net-like 2D DynUNet baseline (instance norm, leaky ReLU, deep supervision)",
                DynUNetConfig, train_defaults=nnunet_train_settings())
class DynUNet2D(SegmentationNet):
    """MONAI ``DynUNet`` in 2D with the nnU-Net defaults of :class:`DynUNetConfig`.

    Input: ``{"image": (B, input_channels, H, W)}`` float32, H and W multiples of
    :attr:`divisor` (32 by default). Output: eval mode ``(B, out_channels, H, W)`` logits;
    train mode with deep supervision a list of ``1 + deep_supr_num`` such tensors, the
    final output first (the lower-level outputs are up-sampled to full size by MONAI).
    """

    name = "dynunet"

    def __init__(self, config: DynUNetConfig | None = None):
        super().__init__(config if config is not None else DynUNetConfig())
        cfg = self.config
        self.net = DynUNet(spatial_dims=2, in_channels=cfg.input_channels, out_channels=cfg.out_channels,
                           kernel_size=cfg.kernel_size, strides=cfg.strides, upsample_kernel_size=cfg.strides[1:],
                           filters=cfg.features, dropout=cfg.dropout or None,
                           norm_name=("INSTANCE", {"affine": True}),
                           act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
                           deep_supervision=cfg.deep_supervision, deep_supr_num=cfg.deep_supr_num,
                           res_block=cfg.res_block)

    def forward_image(self, image: torch.Tensor):
        out = self.net(image)
        if self.training and self.config.deep_supervision:
            return list(torch.unbind(out, dim=1))  # (B, 1 + n, C, H, W) -> n + 1 tensors (B, C, H, W)
        return out
