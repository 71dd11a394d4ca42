"""Which slices to annotate next: ranking with a diversity term.

Uncertainty alone picks runs of neighbouring slices of one scan (neighbours look alike and
are uncertain together). :func:`select_slices` is greedy: it takes the best remaining
slice, then discounts every remaining slice of the same scan by

``(1 - exp(-dz^2 / (2 * diversity_mm^2)))``  (``dz``: distance in mm to the picked slice)

and by ``subject_decay`` per slice already picked in that scan, so a batch spreads over
slices and scans. ``random`` draws uniformly (seeded) without the discount.
MONAI Label and napari-activelearning rank whole volumes or superpixels; this ranks axial
slices, which is what a rater annotates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .scoring import STRATEGIES

__all__ = ["SliceChoice", "select_slices", "SelectionConfig"]


@dataclass(frozen=True)
class SelectionConfig:
    """Settings of :func:`select_slices`.

    Attributes
    ----------
    diversity_mm : float
        Scale (mm, along the axial axis) of the discount around a picked slice; 0 turns
        the distance term off.
    subject_decay : float
        Factor per slice already picked in the same scan (1: no spreading over scans).
    seed : int
        Seed of ``random``.

    Raises
    ------
    ValueError
        Negative ``diversity_mm``, ``subject_decay`` outside ``(0, 1]``.
    """

    diversity_mm: float = 10.0
    subject_decay: float = 0.7
    seed: int = 0

    def __post_init__(self):
        if self.diversity_mm < 0:
            raise ValueError(f"diversity_mm must be >= 0, got {self.diversity_mm}")
        if not 0 < self.subject_decay <= 1:
            raise ValueError(f"subject_decay must be within (0, 1], got {self.subject_decay}")


@dataclass(frozen=True)
class SliceChoice:
    """One proposed slice: ``subject``, ``image_id``, axial ``slice``, its ``score`` under
    ``strategy`` (before the diversity discount), ``rank`` (1 = first) and all per-slice
    scores (``entropy``, ``bald`` in bits, ``load_mm2``; NaN when not computed)."""

    subject: str
    image_id: int
    slice: int
    score: float
    strategy: str
    rank: int
    entropy: float = float("nan")
    bald: float = float("nan")
    load_mm2: float = float("nan")

    def as_dict(self) -> dict:
        """JSON-able dict (scores not computed are None)."""
        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return {"subject": self.subject, "image_id": self.image_id, "slice": self.slice, "score": num(self.score),
                "strategy": self.strategy, "rank": self.rank, "entropy": num(self.entropy), "bald": num(self.bald),
                "load_mm2": num(self.load_mm2)}


def select_slices(candidates: Mapping[tuple[str, int], Mapping[str, np.ndarray]], strategy: str, n: int, *,
                  slice_mm: Mapping[tuple[str, int], float] | None = None,
                  config: SelectionConfig = SelectionConfig()) -> list[SliceChoice]:
    """Rank the candidate slices of several scans and return the next ``n`` to annotate.

    Parameters
    ----------
    candidates : mapping
        ``(subject, image_id) -> {"slices": int (K,), "entropy": (K,), "bald": (K,),
        "load_mm2": (K,)}``: the slices that may be proposed (not annotated yet) and
        their scores; score arrays may be missing for ``random``. NaN scores are never
        proposed.
    strategy : str
        ``"bald"``, ``"entropy"``, ``"load"`` or ``"random"``.
    n : int
        Batch size.
    slice_mm : mapping, optional
        Axial slice distance (mm) per scan, for the diversity term (default 1 mm).
    config : SelectionConfig

    Returns
    -------
    list of SliceChoice
        At most ``n``, best first.

    Raises
    ------
    ValueError
        Unknown strategy, ``n < 1``, or a score array missing for a score-based strategy.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rows = []  # (key, slice, score, extras)
    for key, c in candidates.items():
        sl = np.asarray(c["slices"], dtype=int)
        extras = {k: np.asarray(c[k], float) if k in c else np.full(sl.size, np.nan)
                  for k in ("entropy", "bald", "load_mm2")}
        if strategy == "random":
            score = np.zeros(sl.size)
        else:
            name = "load_mm2" if strategy == "load" else strategy
            if name not in c:
                raise ValueError(f"strategy {strategy!r} needs the {name!r} scores of {key[0]}")
            score = extras[name]
        for i, k in enumerate(sl):
            if np.isfinite(score[i]):
                rows.append((key, int(k), float(score[i]), {e: float(v[i]) for e, v in extras.items()}))
    if not rows:
        return []
    if strategy == "random":
        order = np.random.default_rng(config.seed).permutation(len(rows))[:n]
        return [SliceChoice(rows[j][0][0], int(rows[j][0][1]), rows[j][1], rows[j][2], strategy, r + 1, **rows[j][3])
                for r, j in enumerate(order)]
    base = np.array([r[2] for r in rows])
    base = base - min(0.0, float(base.min()))  # the discounts assume non-negative scores
    keys = [r[0] for r in rows]
    z = np.array([r[1] for r in rows], float)
    mm = np.array([(slice_mm or {}).get(k, 1.0) for k in keys])
    adjusted = base.copy()
    taken = np.zeros(len(rows), bool)
    picked: list[SliceChoice] = []
    for rank in range(1, min(n, len(rows)) + 1):
        cand = np.where(taken, -np.inf, adjusted)
        j = int(np.argmax(cand))
        taken[j] = True
        key, k, s, extras = rows[j]
        picked.append(SliceChoice(key[0], int(key[1]), k, s, strategy, rank, **extras))
        same = np.array([kk == key for kk in keys])
        factor = np.ones(len(rows))
        if config.diversity_mm > 0:
            dz = (z - k) * mm
            factor *= 1.0 - np.exp(-(dz ** 2) / (2.0 * config.diversity_mm ** 2))
        factor *= config.subject_decay
        adjusted = np.where(same, adjusted * factor, adjusted)
    return picked
