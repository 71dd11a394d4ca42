"""``ensemble``: several trained networks of one family, their probabilities averaged.

A deep ensemble (Lakshminarayanan B., Pritzel A., Blundell C., "Simple and Scalable
Predictive Uncertainty Estimation using Deep Ensembles", NeurIPS 2017, arXiv:1612.01474):
members trained alike but from different seeds disagree on the uncertain objects, and the
mean of their probabilities is the consensus. On the shared real T2s one recipe trained with
seeds 0 and 1 gave a conservative and a liberal model, and the mean of four such models had
a better reference F1 than any of them on the three clinical scans (README, "The default
model").

The network is built from its config alone (so a checkpoint reloads with nothing else):
``n_members`` networks of family ``member`` with config ``member_config``. It is not
trained as such; :func:`~napari_pvs.engine.checkpoint.ensemble_checkpoint` fills it with
the weights of trained checkpoints.

Input and output as every segmentation network: ``{"image": (B, C, H, W)}`` ->
``(B, out_channels, H, W)`` logits, here ``logit(mean_k sigmoid(logits_k))`` (clamped to
``[1e-6, 1 - 1e-6]`` before the logit). The mean is taken per sliding window; MONAI then
blends the overlapping windows' logits, so where windows overlap the result differs a little
from the mean of the members' whole-volume probabilities (on patient01 visit 2: 35 against
40 detections, the same rating-slice counts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .base import as_batch
from .registry import MODEL_REGISTRY, register_model

__all__ = ["EnsembleConfig", "EnsembleNet"]

_EPS = 1e-6


@dataclass(frozen=True)
class EnsembleConfig:
    """Config of ``ensemble``.

    Parameters
    ----------
    member : str
        Registry name of the members' family (a segmentation network, e.g. ``"mfnsde"``).
    member_config : dict
        ``dataclasses.asdict`` of the members' config (one config for all members).
    n_members : int
        Number of members (>= 2).

    Raises
    ------
    ValueError
        An unknown or non-segmentation family, a nested ensemble, fewer than 2 members, or
        a member config the family rejects.
    """

    member: str = "mfnsde"
    member_config: Mapping = field(default_factory=dict)
    n_members: int = 2

    def __post_init__(self) -> None:
        name = str(self.member).strip().lower()
        if name == "ensemble" or name not in MODEL_REGISTRY or MODEL_REGISTRY[name].task != "segmentation":
            raise ValueError(f"ensemble member must be a segmentation network, got {self.member!r}")
        if int(self.n_members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got n_members={self.n_members}")
        cfg = self.member_config
        d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg or {})
        built = MODEL_REGISTRY[name].config_from_dict(d)  # validated now, not at build time
        object.__setattr__(self, "member", name)
        object.__setattr__(self, "member_config", d)
        object.__setattr__(self, "n_members", int(self.n_members))
        object.__setattr__(self, "_member_config", built)  # not a field: not saved, not compared

    def member_spec_config(self) -> object:
        """The members' config dataclass (e.g. ``MfNSDeConfig``)."""
        return self._member_config

    # what inference reads from a segmentation config
    @property
    def out_channels(self) -> int:
        return self._member_config.out_channels

    @property
    def context_slices(self) -> int:
        return int(getattr(self._member_config, "context_slices", 0))


@register_model("ensemble", "mean probability of several trained networks of one family (deep ensemble)",
                EnsembleConfig, task="ensemble")
class EnsembleNet(nn.Module):
    """``n_members`` networks of one family; the output is the logit of their mean probability.

    Attributes
    ----------
    members : nn.ModuleList
        The member networks (state-dict keys ``members.<k>.<member key>``).
    divisor : int
        H and W must be multiples of it (the members').
    input_keys : tuple of str
        The members' batch-dict keys.
    """

    name = "ensemble"

    def __init__(self, config: EnsembleConfig):
        super().__init__()
        self.config = config
        spec = MODEL_REGISTRY[config.member]
        member_config = config.member_spec_config()
        self.members = nn.ModuleList(spec.build(member_config) for _ in range(config.n_members))
        self.divisor = int(getattr(self.members[0], "divisor", 1))
        self.input_keys = tuple(getattr(self.members[0], "input_keys", ("image",)))

    def forward(self, batch: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        return self.forward_members(batch)[:, :self.config.out_channels]

    def forward_members(self, batch: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """The ensemble's logits followed by each member's: ``(B, (1 + n_members) * C, H, W)``.

        Channels ``[0, C)`` are ``logit(mean_k sigmoid(logits_k))`` (what :meth:`forward`
        returns), channels ``[(1 + k) * C, (2 + k) * C)`` member ``k``'s own logits (float32).
        Inference blends both over the sliding windows in one pass, so the members'
        probabilities (where they disagree: the uncertain objects) cost no extra network run.
        """
        batch = as_batch(batch)
        probs, logits = None, []
        for m in self.members:
            out = m(batch)
            out = (out[0] if isinstance(out, (list, tuple)) else out).float()
            logits.append(out)
            p = torch.sigmoid(out)
            probs = p if probs is None else probs + p
        mean = (probs / len(self.members)).clamp(_EPS, 1 - _EPS)
        return torch.cat([torch.logit(mean), *logits], dim=1)
