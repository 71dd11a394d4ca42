"""The settings of a cohort run, recorded in every scan's sidecar (a scan is redone only
when its input, its model or these settings change)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["CohortConfig"]


@dataclass(frozen=True)
class CohortConfig:
    """Settings of a cohort run.

    Attributes
    ----------
    checkpoint : str or None
        Model checkpoint; None: the shipped default model.
    threshold : float
        Probability threshold of the PVS mask.
    agreement : bool
        With an ensemble checkpoint, also write the members' agreement map.
    slab_mm : float
        Rating slab thickness (mm) for thin-slice scans (0: the rating slice alone).
    registration : str
        ``"affine"`` or ``"classical"`` atlas registration.
    registration_grid_mm : float
        Working grid of the atlas registration (mm; 2 by default, coarser is faster).
    qc_min_similarity : float
        Flag the placement when the registration's final Mattes mutual information is
        above this (it is negative; -0.52 on patient04 of open_ms). Default -0.25.
    qc_scale_range : tuple of float
        Flag the placement when the template-to-subject scale (cube root of the affine's
        determinant) lies outside this range.
    brain_ml_range : tuple of float
        A scan whose brain mask is outside this volume (mL) is not taken for a brain: the
        scan fails (a phantom, another organ, noise, a partial scan).
    lacune_width_mm : float
        Objects at least this wide are flagged as possible lacunes (STRIVE: 3 mm).
    torch_threads : int
        Threads of torch per task (so that workers x threads does not oversubscribe the cores).
    """

    checkpoint: str | None = None
    threshold: float = 0.5
    agreement: bool = False
    slab_mm: float = 0.0
    registration: str = "affine"
    registration_grid_mm: float = 2.0
    qc_min_similarity: float = -0.25
    qc_scale_range: tuple[float, float] = (0.75, 1.5)
    brain_ml_range: tuple[float, float] = (500.0, 2500.0)
    lacune_width_mm: float = 3.0
    torch_threads: int = 2

    def __post_init__(self):
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be within (0, 1), got {self.threshold}")
        if self.registration not in ("affine", "classical"):
            raise ValueError(f"registration must be affine or classical, got {self.registration!r}")
        if self.slab_mm < 0 or self.torch_threads < 1:
            raise ValueError("slab_mm must be >= 0 and torch_threads >= 1")
        object.__setattr__(self, "qc_scale_range", tuple(float(v) for v in self.qc_scale_range))
        object.__setattr__(self, "brain_ml_range", tuple(float(v) for v in self.brain_ml_range))

    def settings(self) -> dict:
        """What decides the outputs (the thread count does not)."""
        d = dataclasses.asdict(self)
        d.pop("torch_threads")
        d["qc_scale_range"] = list(d["qc_scale_range"])
        d["brain_ml_range"] = list(d["brain_ml_range"])
        return d
