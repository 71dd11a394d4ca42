"""``frangi``: the classical, non-learned baseline, Frangi vesselness behind the network interface.

Refer to: Frangi A. F., Niessen W. J., Vincken K. L., Viergever M. A., "Multiscale vessel
enhancement filtering", MICCAI 1998, doi:10.1007/BFb0056195; scikit-image
``skimage.filters.frangi`` (van der Walt S. et al., PeerJ 2:e453, 2014).

The "network" computes the 2D vesselness of each axial slice (bright ridges on T2, dark on
T1) and turns it into a logit ``(v - threshold) * logit_scale``, so a probability of 0.5 is
the fitted threshold. It has no weights: the threshold is a buffer, fitted on training
data by :func:`~napari_pvs.engine.training.baseline.fit_frangi` (the threshold of the best
training DSC inside the brain), and the checkpoint, sliding-window inference, brain
masking and every comparison treat it like the learned models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import SegmentationNet, SegmentationNetConfig
from .registry import register_model

__all__ = ["FrangiConfig", "FrangiBaseline", "frangi_vesselness"]


@dataclass(frozen=True)
class FrangiConfig(SegmentationNetConfig):
    """Config of ``frangi`` (``features`` and ``dropout`` are unused; plus):

    Parameters
    ----------
    sigmas : tuple of float
        Gaussian scales in pixels at the checkpoint's working spacing (PVS 0.5-3 mm wide).
    beta : float
        Frangi's blob-versus-line sensitivity; 1.0 rather than Frangi's 0.5 because a PVS
        cut across is a dot on an axial slice, which 0.5 suppresses.
    gamma : float
        Frangi's structure sensitivity, fixed (scikit-image's default depends on each
        window's own Hessian maximum, which would make windows disagree); in units of
        the normalised intensity's Hessian norm.
    modality : str
        ``"T2"`` (PVS bright: bright ridges) or ``"T1"`` (PVS dark: dark ridges).
    logit_scale : float
        Slope of the logit around the threshold, relative to the threshold.

    Raises
    ------
    ValueError
        No or non-positive sigmas, an unknown modality, non-positive beta/gamma/scale.
    """

    features: tuple[int, ...] = (1, 1)
    sigmas: tuple[float, ...] = (1.0, 1.5, 2.0)
    beta: float = 1.0
    gamma: float = 0.05
    modality: str = "T2"
    logit_scale: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        if not self.sigmas or min(self.sigmas) <= 0:
            raise ValueError(f"frangi: sigmas must be positive, got {self.sigmas}")
        if self.modality not in ("T2", "T1"):
            raise ValueError(f"frangi: modality must be 'T2' or 'T1', got {self.modality!r}")
        for name in ("beta", "gamma", "logit_scale"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"frangi: {name} must be > 0, got {getattr(self, name)!r}")

    @property
    def divisor(self) -> int:
        """Any size works: 1."""
        return 1


def frangi_vesselness(slices: np.ndarray, config: FrangiConfig = FrangiConfig()) -> np.ndarray:
    """2D Frangi vesselness of each slice.

    Parameters
    ----------
    slices : np.ndarray
        ``(B, H, W)`` normalised intensities.
    config : FrangiConfig

    Returns
    -------
    np.ndarray
        float32 ``(B, H, W)``, ``>= 0``.
    """
    from scipy.ndimage import gaussian_laplace
    from skimage.filters import frangi

    dark = config.modality == "T1"
    out = np.empty(slices.shape, dtype=np.float32)
    for i, s in enumerate(np.asarray(slices, dtype=np.float64)):
        v = frangi(s, sigmas=config.sigmas, beta=config.beta, gamma=config.gamma, black_ridges=dark, mode="reflect")
        # Frangi's sign condition (a bright ridge curves down across it): scikit-image
        # 0.26 answers dark and bright lines alike, so keep only the ridges of the
        # wanted polarity, by the sign of the Laplacian of Gaussian at the middle scale
        log = gaussian_laplace(s, sigma=float(np.median(config.sigmas)), mode="reflect")
        v[(log <= 0) if dark else (log >= 0)] = 0.0
        out[i] = v
    return out


@register_model("frangi", "Frangi vesselness baseline (scikit-image; threshold fitted on training data)",
                FrangiConfig)
class FrangiBaseline(SegmentationNet):
    """Frangi vesselness as a 2D "network" (no trainable parameters).

    Input: ``{"image": (B, input_channels, H, W)}`` float32, any H and W; a 2.5D input uses
    its centre slice. Output: ``(B, 1, H, W)`` logits ``(v - threshold) * logit_scale /
    threshold``, computed on the CPU with scikit-image and returned on the input's device.
    """

    name = "frangi"

    def __init__(self, config: FrangiConfig | None = None):
        super().__init__(config if config is not None else FrangiConfig())
        self.register_buffer("threshold", torch.tensor(0.05))

    def forward_image(self, image: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        centre = cfg.context_slices * cfg.in_channels
        x = image[:, centre].detach().float().cpu().numpy()
        v = torch.from_numpy(frangi_vesselness(x, cfg)).to(image.device)
        thr = self.threshold.to(image.device).clamp_min(1e-8)
        logits = (v - thr) * (cfg.logit_scale / thr)
        return logits[:, None].expand(-1, cfg.out_channels, -1, -1).to(image.dtype)
