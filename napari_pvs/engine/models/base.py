"""What every 2D segmentation network shares: the config fields and the batch-dict input.

Networks take a *batch dict* ``{"image": (B, C, H, W) float tensor, ...}``: a model that
needs more inputs (a second modality, a text embedding) lists them in
:attr:`SegmentationNet.input_keys`, and training and inference pass whatever the batch
holds, with no special case. A bare tensor is accepted as ``{"image": tensor}`` (this is
what MONAI's ``sliding_window_inference`` hands its predictor).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["SegmentationNetConfig", "SegmentationNet", "as_batch"]


@dataclass(frozen=True)
class SegmentationNetConfig:
    """Fields shared by the configs of the 2D segmentation networks.

    Parameters
    ----------
    in_channels : int
        Channels per axial slice (1 for a single T2-weighted or T1-weighted slice).
    out_channels : int
        Logit channels of the output (1: one PVS-vs-background logit for a sigmoid).
    features : tuple of int
        Feature channels per encoder level, full resolution first. ``len(features) - 1``
        2x down-samplings, so H and W must be multiples of :attr:`divisor`. A list is
        stored as a tuple.
    dropout : float
        Dropout probability in the convolution blocks, in ``[0, 1)``.
    context_slices : int
        2.5D input: ``k`` neighbouring axial slices on each side of the predicted slice
        are stacked as extra channels, slices ``z-k .. z+k`` in order (edge slices
        repeated at the ends of the volume); 0 (default) is plain 2D. The network then
        takes :attr:`input_channels` ``= in_channels * (2k + 1)`` channels; training and
        inference build the stack from the checkpoint's config.

    Raises
    ------
    ValueError
        A value out of range (fewer than two levels, non-positive channels, ...).
    """

    in_channels: int = 1
    out_channels: int = 1
    features: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.0
    context_slices: int = 0

    def __post_init__(self) -> None:
        # frozen dataclass: normalise with object.__setattr__, then validate, so that
        # Config(features=[16, 32]) == Config(features=(16, 32)) after a JSON round trip
        try:
            features = tuple(int(f) for f in self.features)
        except TypeError:
            raise ValueError(f"features must be a sequence of integers, got {self.features!r}") from None
        object.__setattr__(self, "features", features)
        if len(features) < 2:
            raise ValueError(f"features needs at least 2 levels (one down-sampling), got {features}")
        if any(f < 1 for f in features):
            raise ValueError(f"features must all be positive, got {features}")
        for name in ("in_channels", "out_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        dropout = float(self.dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", dropout)
        k = self.context_slices
        if isinstance(k, bool) or int(k) != k or not 0 <= k <= 8:
            raise ValueError(f"context_slices must be an integer within [0, 8], got {k!r}")
        object.__setattr__(self, "context_slices", int(k))

    @property
    def input_channels(self) -> int:
        """Channels the network takes: ``in_channels * (2 * context_slices + 1)``."""
        return self.in_channels * (2 * self.context_slices + 1)

    @property
    def divisor(self) -> int:
        """Multiple that H and W must be: ``2 ** (len(features) - 1)`` (8 by default)."""
        return 2 ** (len(self.features) - 1)


def as_batch(batch: Mapping[str, torch.Tensor] | torch.Tensor) -> Mapping[str, torch.Tensor]:
    """``{"image": batch}`` for a bare tensor, the mapping itself otherwise."""
    return {"image": batch} if isinstance(batch, torch.Tensor) else batch


class SegmentationNet(nn.Module):
    """Base class of the 2D PVS segmentation networks.

    Subclasses set :attr:`name`, build their layers from ``config`` and implement
    :meth:`forward_image`; :meth:`forward` takes the batch dict, checks the inputs named
    in :attr:`input_keys` and calls ``forward_image(**inputs)``.

    Input
    -----
    ``{"image": (B, input_channels, H, W)}`` float tensor (or the tensor alone), H and W
    multiples of :attr:`divisor`; ``input_channels = in_channels * (2 * context_slices + 1)``.

    Raises
    ------
    ValueError
        In ``forward``: a missing input key, a wrongly shaped or non-float image, or H/W
        not multiples of :attr:`divisor`.
    """

    name: str = "segmentation-net"
    #: batch-dict keys the network reads
    input_keys: tuple[str, ...] = ("image",)

    def __init__(self, config: SegmentationNetConfig):
        super().__init__()
        self.config = config
        self.divisor = config.divisor

    def forward(self, batch: Mapping[str, torch.Tensor] | torch.Tensor):
        batch = as_batch(batch)
        missing = [k for k in self.input_keys if k not in batch]
        if missing:
            raise ValueError(f"{self.name}: batch has no {', '.join(missing)} entry; "
                             f"expected keys {self.input_keys}, got {tuple(batch)}")
        self.check_image(batch["image"])
        return self.forward_image(**{k: batch[k] for k in self.input_keys})

    def forward_image(self, image: torch.Tensor, **inputs):  # pragma: no cover - abstract
        raise NotImplementedError

    def check_image(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is a ``(B, input_channels, H, W)`` float tensor with
        H, W multiples of :attr:`divisor`."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{self.name}: image must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"{self.name}: image must have shape (B, C, H, W), got {tuple(x.shape)}")
        if x.shape[1] != self.config.input_channels:
            raise ValueError(f"{self.name}: image has {x.shape[1]} channel(s), model expects "
                             f"{self.config.input_channels} (in_channels={self.config.in_channels}, "
                             f"context_slices={self.config.context_slices})")
        if not x.is_floating_point():
            raise ValueError(f"{self.name}: image must be a floating-point tensor, got {x.dtype}")
        div = self.divisor
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if h % div or w % div:
            raise ValueError(f"{self.name}: image height and width must be multiples of {div} "
                             f"(2**{len(self.config.features) - 1} for {len(self.config.features)} "
                             f"feature levels), got {h}x{w}; pad the slice first")
