"""Stochastic predictions of a volume and the per-slice informativeness they give.

:func:`score_volume` runs a trained model ``T`` times over the axial slices of a volume
(the same sliding-window inference as :func:`~napari_pvs.engine.inference.segment_iter`,
on the model's in-plane grid) with one of two samplers:

* ``mc_dropout``: the network's dropout layers stay active; each pass is one Monte-Carlo
  sample of the weights (Gal and Ghahramani, ICML 2016, arXiv:1506.02142). Needs a model
  trained with dropout (``model_config.dropout > 0``).
* ``tta``: a small test-time augmentation ensemble (identity, in-plane flips, gamma 0.8
  and 1.25), for models without dropout such as the shipped default; the members'
  disagreement stands in for the model's (Wang G. et al., "Aleatoric uncertainty
  estimation with test-time augmentation for medical image segmentation with
  convolutional neural networks", Neurocomputing 2019, doi:10.1016/j.neucom.2019.01.103).

``auto`` takes ``mc_dropout`` when the model has dropout, else ``tta``. As in inference,
the probability is 0 outside the brain and in CSF spaces wider than 4 mm, and slices are
scored over the brain minus those spaces (:mod:`.scoring`).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..anatomy.regions import parenchyma_mask
from ..models.checkpoint import LoadedModel
from ..io import Volume
from ..progress import map_events
from ..preprocess import axial_stack, inplane_spacing, normalize_percentile, resample_stack, resampled_hw
from .scoring import bald, predictive_entropy, slice_load_mm2, slice_means

__all__ = ["UncertaintyConfig", "VolumeScores", "ScoreProgress", "score_volume", "has_dropout", 
           "scorable_slices", "SAMPLERS", "TTA_MEMBERS"]

SAMPLERS = ("auto", "mc_dropout", "tta")
#: test-time augmentation members, in the order they are used: (flip H, flip W, gamma)
TTA_MEMBERS = ((False, False, 1.0), (False, True, 1.0), (True, False, 1.0), (True, True, 1.0),
               (False, False, 0.8), (False, False, 1.25), (False, True, 0.8), (True, False, 1.25))


@dataclass(frozen=True)
class UncertaintyConfig:
    """How stochastic predictions are made and slices scored.

    Attributes
    ----------
    sampler : str
        ``"auto"``, ``"mc_dropout"`` or ``"tta"`` (see the module docstring).
    n_samples : int
        Stochastic passes ``T`` (at most 8 for ``tta``; MONAI Label uses 5 dropout runs;
        1 gives one deterministic pass: entropy of that pass, BALD 0).
    seed : int
        Seeds the dropout masks (pass ``t`` uses ``seed + t``).
    min_brain_fraction : float
        Slices whose brain area is below this share of the largest slice's are not scored
        (the vertex and the skull base, where a few edge pixels would dominate the mean).
    batch_size : int
        Slices per forward pass.

    Raises
    ------
    ValueError
        Unknown sampler, ``n_samples`` out of range.
    """

    sampler: str = "auto"
    n_samples: int = 4
    seed: int = 0
    min_brain_fraction: float = 0.3
    batch_size: int = 8

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if not 0 <= self.min_brain_fraction < 1:
            raise ValueError(f"min_brain_fraction must be within [0, 1), got {self.min_brain_fraction}")
        top = len(TTA_MEMBERS) if self.sampler == "tta" else 64
        if not 1 <= self.n_samples <= top:
            raise ValueError(f"n_samples must be within [1, {top}] for sampler {self.sampler!r}, got {self.n_samples}")


@dataclass(frozen=True)
class ScoreProgress:
    """Progress of :func:`score_volume`: pass ``sample`` of ``n_samples``, ``done`` of
    ``total`` slices in it."""

    name: str
    sample: int
    n_samples: int
    done: int
    total: int
    elapsed_s: float

    @property
    def fraction(self) -> float | None:
        if not self.n_samples or not self.total:
            return None
        return min(1.0, ((self.sample - 1) + self.done / self.total) / self.n_samples)

    def summary(self) -> str:
        return (f"scoring {self.name}: pass {self.sample}/{self.n_samples}, slices {self.done}/{self.total} | "
                f"{self.elapsed_s:.1f} s")


@dataclass
class VolumeScores:
    """Per-slice informativeness of one volume and the maps it comes from.

    Slice arrays are float64 ``(S,)`` over the axial slices (index = axial slice of the
    volume), NaN for slices not scored. Maps are float16 ``(S, h, w)`` (half the memory of a
    project's worth of them; 3 significant digits) on the model's
    in-plane grid (axial slices first); :meth:`source_map` brings one to the volume's
    ``(Z, Y, X)`` grid.

    Attributes
    ----------
    entropy, bald : np.ndarray
        Mean predictive entropy and BALD (bits) over each slice's brain pixels.
    load_mm2 : np.ndarray
        Expected PVS area on each slice (mm^2).
    scored : np.ndarray
        int indices of the scored slices.
    mean_prob, entropy_map, bald_map : np.ndarray
        ``(S, h, w)`` maps (0 on slices not scored).
    sampler : str
        The sampler used (``"mc_dropout"`` or ``"tta"``).
    n_samples : int
    seconds : float
    """

    entropy: np.ndarray
    bald: np.ndarray
    load_mm2: np.ndarray
    scored: np.ndarray
    mean_prob: np.ndarray
    entropy_map: np.ndarray
    bald_map: np.ndarray
    sampler: str
    n_samples: int
    seconds: float
    _source_hw: tuple[int, int] = (0, 0)
    _axial_axis: int = 0
    info: dict = field(default_factory=dict)

    def score(self, strategy: str) -> np.ndarray:
        """The ``(S,)`` slice score of ``"bald"``, ``"entropy"`` or ``"load"``."""
        table = {"bald": self.bald, "entropy": self.entropy, "load": self.load_mm2}
        if strategy not in table:
            raise ValueError(f"no per-slice score for strategy {strategy!r}; expected one of {tuple(table)}")
        return table[strategy]

    def source_map(self, name: str) -> np.ndarray:
        """``"mean_prob"``, ``"entropy_map"`` or ``"bald_map"`` on the volume's grid,
        float32 ``(Z, Y, X)``."""
        work = getattr(self, name)
        work = np.ascontiguousarray(work, dtype=np.float32)
        stack = resample_stack(torch.from_numpy(work), self._source_hw).clamp_(0, 1).numpy()
        return np.ascontiguousarray(np.moveaxis(stack, 0, self._axial_axis)).astype(np.float32)


def has_dropout(model: torch.nn.Module) -> bool:
    """True when ``model`` holds a dropout layer with ``p > 0``."""
    return any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


def _resolve_sampler(loaded: LoadedModel, sampler: str) -> str:
    if sampler == "auto":
        return "mc_dropout" if has_dropout(loaded.model) else "tta"
    if sampler == "mc_dropout" and not has_dropout(loaded.model):
        raise ValueError(f"the model {loaded.name!r} has no dropout (model_config.dropout = "
                         f"{getattr(loaded.config, 'dropout', None)}): Monte-Carlo dropout cannot sample it; "
                         "use sampler 'tta' or 'auto'")
    return sampler


def scorable_slices(area: np.ndarray, min_fraction: float) -> np.ndarray:
    """Indices of the slices whose scoring-region ``area`` (``(S,)``, any unit) is positive
    and at least ``min_fraction`` of the largest."""
    area = np.asarray(area, float)
    if area.size == 0 or area.max() <= 0:
        return np.arange(0)
    return np.flatnonzero((area > 0) & (area >= min_fraction * area.max()))


def score_volume(loaded: LoadedModel, image: Volume, config: UncertaintyConfig = UncertaintyConfig(), *,
                 slices: Sequence[int] | None = None, name: str = "volume",
                 device: str | torch.device | None = None) -> Generator[ScoreProgress, None, VolumeScores]:
    """Score the axial slices of ``image`` by the model's uncertainty and PVS load.

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`~napari_pvs.engine.checkpoint.load_model`.
    image : Volume
        T2-weighted volume, data ``(Z, Y, X)``, any voxel size and orientation.
    config : UncertaintyConfig
    slices : sequence of int, optional
        Axial slices to score (default all); the others get NaN.
    name : str
        For progress messages.
    device : str or torch.device, optional
        Default: where the model is.

    Yields
    ------
    ScoreProgress

    Returns
    -------
    VolumeScores

    Raises
    ------
    ValueError
        ``mc_dropout`` for a model without dropout; slices out of range.
    """
    from ..device import pick_device
    from ..inference.sliding import predict_stack

    t0 = time.perf_counter()
    sampler = _resolve_sampler(loaded, config.sampler)
    dev = pick_device(device) if device is not None else None
    norm = axial_stack(image, normalize_percentile(image.data, loaded.percentiles))
    hw = tuple(norm.shape[1:])
    work_hw = resampled_hw(hw, inplane_spacing(image), loaded.spacing_mm)
    x = resample_stack(np.ascontiguousarray(norm), work_hw)
    n_slices = int(x.shape[0])
    region_src = parenchyma_mask(image)
    if region_src is None:                       # no brain: the head, as inference does
        from ..inference.sliding import BACKGROUND_LEVEL

        region = x.numpy() > BACKGROUND_LEVEL
    else:
        region = resample_stack(np.ascontiguousarray(axial_stack(image, region_src), dtype=np.float32),
                                work_hw).numpy() > 0.5
    px_mm2 = float(np.prod(inplane_spacing(image))) * (hw[0] * hw[1]) / (work_hw[0] * work_hw[1])
    todo = np.arange(n_slices) if slices is None else np.unique(np.asarray(list(slices), dtype=int))
    if todo.size and (todo.min() < 0 or todo.max() >= n_slices):
        raise ValueError(f"slices must be within [0, {n_slices - 1}], got {todo.min()}..{todo.max()}")
    todo = np.intersect1d(todo, scorable_slices(region.sum(axis=(1, 2)), config.min_brain_fraction))
    samples = np.zeros((config.n_samples, todo.size, *work_hw), np.float32)
    sub = x[torch.as_tensor(todo, dtype=torch.long)] if todo.size else x[:0]
    roi = torch.from_numpy(region[todo]) if todo.size else None
    for t in range(config.n_samples):
        yield ScoreProgress(name, t + 1, config.n_samples, 0, int(todo.size), time.perf_counter() - t0)
        if not todo.size:
            continue
        if sampler == "mc_dropout":
            torch.manual_seed(config.seed + t)
            inp, flips = sub, ()
        else:
            flip_h, flip_w, gamma = TTA_MEMBERS[t]
            flips = tuple(d for d, f in ((1, flip_h), (2, flip_w)) if f)
            inp = sub.clamp(min=0) ** gamma if gamma != 1.0 else sub
            inp = torch.flip(inp, flips) if flips else inp
        mask = torch.flip(roi, flips) if flips else roi
        gen = predict_stack(loaded, inp.contiguous(), batch_size=config.batch_size, device=dev, roi_mask=mask,
                            mc_dropout=sampler == "mc_dropout")
        prob = yield from map_events(gen, lambda done, t=t: ScoreProgress(
            name, t + 1, config.n_samples, int(done), int(todo.size), time.perf_counter() - t0))
        if flips:
            prob = torch.flip(prob, flips)
        samples[t] = prob.numpy() * region[todo]
    # per-slice scores from the float32 maps; the maps are kept as float16
    mean = samples.mean(axis=0)
    maps = {"mean_prob": mean, "entropy_map": predictive_entropy(samples) * region[todo],
            "bald_map": bald(samples) * region[todo]}
    per_slice = {k: np.full(n_slices, np.nan) for k in ("entropy", "bald", "load")}
    if todo.size:
        per_slice["entropy"][todo] = slice_means(maps["entropy_map"], region[todo])
        if config.n_samples > 1:  # one pass: no disagreement to measure
            per_slice["bald"][todo] = slice_means(maps["bald_map"], region[todo])
        per_slice["load"][todo] = slice_load_mm2(mean, px_mm2, region[todo])
    full = {}
    for k, m in maps.items():
        full[k] = np.zeros((n_slices, *work_hw), np.float16)
        full[k][todo] = m
    load = per_slice["load"]
    return VolumeScores(entropy=per_slice["entropy"], bald=per_slice["bald"], load_mm2=load, scored=todo,
                        sampler=sampler, n_samples=config.n_samples, seconds=time.perf_counter() - t0,
                        _source_hw=hw, _axial_axis=image.axial_axis,
                        info={"pixel_area_mm2": px_mm2, "work_hw": tuple(work_hw)}, **full)
