"""``mfnsde``: densely nested attention U-Net with multi-scale deep supervision.

This is the network ("MfNS_De") of the seed paper of napari-pvs:

    "Deep-learning-based segmentation of perivascular spaces on T2-weighted 3T MR
    images", Frontiers in Aging Neuroscience (2024).

It is built from:

* the nested, dense skip pathways of UNet++ -- Zhou Z., Rahman Siddiquee M. M.,
  Tajbakhsh N., Liang J., "UNet++: A Nested U-Net Architecture for Medical Image
  Segmentation", DLMIA 2018 (arXiv:1807.10165), and "UNet++: Redesigning Skip
  Connections to Exploit Multiscale Features in Image Segmentation", IEEE TMI 39(6),
  2020 (arXiv:1912.05074);
* the additive attention gates of Oktay O. et al., "Attention U-Net: Learning Where to
  Look for the Pancreas", MIDL 2018 (arXiv:1804.03999), on every skip input;
* multi-scale deep supervision, every supervised output being compared with the label
  down-sampled by max-pooling (see :func:`~napari_pvs.engine.models.losses.deep_supervision_loss`);
* MONAI blocks (``TwoConv``, ``Down`` from ``monai.networks.nets.basic_unet``,
  ``UpSample``, ``AttentionBlock`` from ``monai.networks.nets.attentionunet``) --
  MONAI Consortium, arXiv:2211.02701 (2022).

Node notation (UNet++): ``X^{i,j}`` is the node at level ``i`` (resolution ``1 / 2**i``,
``features[i]`` channels) and column ``j``. With ``L = len(features) - 1``::

    X^{i,0} = encoder block i                      (i = 0..L)
    X^{i,j} = TwoConv(cat(A(X^{i,0}, u), ..., A(X^{i,j-1}, u), u)),
              u = Up(X^{i+1,j-1})                  (j >= 1, i + j <= L)

where ``A(x, g)`` is an attention gate on the skip input ``x`` driven by the up-sampled
gating signal ``g = u``, and ``Up`` a stride-2 transposed convolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.blocks import UpSample
from monai.networks.nets.attentionunet import AttentionBlock
from monai.networks.nets.basic_unet import Down, TwoConv
from torch import nn

from .base import SegmentationNet, SegmentationNetConfig
from .registry import register_model

__all__ = ["MfNSDeConfig", "MfNSDe"]


@dataclass(frozen=True)
class MfNSDeConfig(SegmentationNetConfig):
    """Config of ``mfnsde`` (fields of :class:`SegmentationNetConfig`, plus):

    Parameters
    ----------
    deep_supervision : bool
        In train mode return the list of deeply supervised outputs (default True, as in
        the paper). The 1x1 heads always exist, so weights load whatever this setting.
    """

    deep_supervision: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "deep_supervision", bool(self.deep_supervision))


_ACT = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})
_NORM = ("instance", {"affine": True})


def attention_gate(chns: int) -> AttentionBlock:
    """MONAI's additive attention gate (Oktay et al. 2018) with its BatchNorm layers
    replaced: instance norm after the 1x1 projections and none before the sigmoid.

    With BatchNorm, the gate behaves differently in eval mode (running statistics
    gathered on small PVS-centred training patches) than in training (batch statistics),
    and a model that fits its training patches predicted almost nothing on whole slices.
    Instance norm, as in the rest of the network, acts the same in both modes.
    """
    f_int = max(chns // 2, 1)
    gate = AttentionBlock(2, f_int=f_int, f_g=chns, f_l=chns)
    gate.W_g[1] = nn.InstanceNorm2d(f_int, affine=True)
    gate.W_x[1] = nn.InstanceNorm2d(f_int, affine=True)
    gate.psi[1] = nn.Identity()
    return gate


class _NestedNode(nn.Module):
    """Decoder node ``X^{i,j}`` (j >= 1) with ``j`` attention-gated dense skips."""

    def __init__(self, n_skips: int, chns: int, below_chns: int, dropout: float):
        super().__init__()
        self.up = UpSample(2, below_chns, chns, scale_factor=2, mode="deconv")
        self.gates = nn.ModuleList(attention_gate(chns) for _ in range(n_skips))
        self.conv = TwoConv(2, (n_skips + 1) * chns, chns, _ACT, _NORM, True, dropout)

    def forward(self, skips: list[torch.Tensor], below: torch.Tensor) -> torch.Tensor:
        g = self.up(below)
        gated = [gate(g=g, x=s) for gate, s in zip(self.gates, skips, strict=True)]
        return self.conv(torch.cat([*gated, g], dim=1))


@register_model(
    "mfnsde",
    "MfNS_De: densely nested attention U-Net with multi-scale deep supervision "
    "(Frontiers in Aging Neuroscience 2024 PVS paper)",
    MfNSDeConfig,
)
class MfNSDe(SegmentationNet):
    """Densely nested attention U-Net (UNet++ with attention-gated skips) for 2D slices.

    Parameters
    ----------
    config : MfNSDeConfig
        ``features`` gives the channels per level (``L = len(features) - 1``
        down-samplings); ``deep_supervision`` selects the train-mode output. The 1x1
        heads of all supervised outputs always exist, so a state_dict loads whatever
        the ``deep_supervision`` setting.

    Input
    -----
    ``{"image": (B, in_channels, H, W)}`` float tensor (or the tensor alone), H and W multiples of :attr:`divisor`
    (``2 ** L``; 8 for the default ``features=(16, 32, 64, 128)``).

    Output
    ------
    * eval mode, or train mode with ``deep_supervision=False``: one
      ``(B, out_channels, H, W)`` tensor of logits, from the final node ``X^{0,L}``;
    * train mode with ``deep_supervision=True``: a list of ``2L - 1`` logit tensors,
      ``[X^{0,L}, X^{0,1}, ..., X^{0,L-1}, X^{1,L-1}, X^{2,L-2}, ..., X^{L-1,1}]``, i.e.
      first the final full-resolution output, then the intermediate full-resolution
      UNet++ outputs, then the last decoder node of each deeper level at ``1/2``,
      ``1/4``, ..., ``1/2**(L-1)`` resolution. :attr:`output_scales` lists the
      down-sampling factor of each entry (``[1, 1, 1, 2, 4]`` by default).

    Raises
    ------
    ValueError
        In ``forward``, for a wrongly shaped, non-float input or H/W not multiples of
        :attr:`divisor`.
    """

    name = "mfnsde"

    def __init__(self, config: MfNSDeConfig | None = None):
        super().__init__(config if config is not None else MfNSDeConfig())
        cfg = self.config
        self.deep_supervision = cfg.deep_supervision
        fea = cfg.features
        L = len(fea) - 1
        self.depth = L

        self.encoder = nn.ModuleList(
            [TwoConv(2, cfg.input_channels, fea[0], _ACT, _NORM, True, cfg.dropout)]
            + [
                Down(2, fea[i - 1], fea[i], _ACT, _NORM, True, cfg.dropout)
                for i in range(1, L + 1)
            ]
        )
        self.nodes = nn.ModuleDict()
        for j in range(1, L + 1):
            for i in range(0, L - j + 1):
                self.nodes[f"x{i}_{j}"] = _NestedNode(j, fea[i], fea[i + 1], cfg.dropout)

        # supervised nodes (level, column), the final output first
        self._supervised = (
            [(0, L)] + [(0, j) for j in range(1, L)] + [(i, L - i) for i in range(1, L)]
        )
        self.heads = nn.ModuleDict(
            {
                f"x{i}_{j}": nn.Conv2d(fea[i], cfg.out_channels, kernel_size=1)
                for i, j in self._supervised
            }
        )
        self.output_scales = [2**i for i, _ in self._supervised]

    def forward_image(self, image: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x = image
        L = self.depth
        X: dict[tuple[int, int], torch.Tensor] = {}
        h = x
        for i, block in enumerate(self.encoder):
            h = block(h)
            X[i, 0] = h
        # column by column, as in UNet++: X^{i,j} needs X^{i,0..j-1} and X^{i+1,j-1}
        for j in range(1, L + 1):
            for i in range(0, L - j + 1):
                X[i, j] = self.nodes[f"x{i}_{j}"]([X[i, k] for k in range(j)], X[i + 1, j - 1])

        if not (self.training and self.deep_supervision):
            return self.heads[f"x0_{L}"](X[0, L])
        return [self.heads[f"x{i}_{j}"](X[i, j]) for i, j in self._supervised]

