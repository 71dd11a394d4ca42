"""The segmentation task: train a 2D PVS network on (T2, PVS mask) volume pairs.

:func:`~napari_pvs.engine.training.run.train` yields
:class:`~napari_pvs.engine.training.loop.TrainEvent` (see
:func:`~napari_pvs.engine.training.loop.run_training`). What is specific to segmentation
lives in :class:`SegmentationTask`:

* every volume is cut into axial slices ``(S, H, W)``, normalised (per-volume
  percentiles) and resampled in-plane to one working spacing, which the checkpoint keeps;
* training patches are drawn with MONAI ``RandCropByPosNegLabeld`` (a share
  ``foreground_ratio`` centred on PVS voxels, the rest on head voxels) after
  ``SpatialPadd``, with the foreground/background voxel lists computed once per volume
  (``FgBgToIndicesd``); MONAI random augmentation follows;
* the loss is soft Dice with multi-scale deep supervision on max-pooled labels
  (:class:`~napari_pvs.engine.models.MaxPoolDeepSupervisionLoss`);
* validation is the DSC over a fixed sample of ``val_patches`` patches of the validation
  volumes (drawn once, half centred on PVS), so that it costs seconds, not the minutes a
  whole-volume sliding-window pass took, and the budget goes to training.

Defaults follow the seed paper ("Deep-learning-based segmentation of perivascular spaces
on T2-weighted 3T MR images", Frontiers in Aging Neuroscience, 2024): Adagrad, learning
rate 0.05, mini-batch 4, soft Dice. The split into training and validation is by volume
(subject/visit), never by slice.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.checkpoint import DEFAULT_PATCH_SIZE, save_checkpoint
from ..data import sha256_file
from ..errors import PVSInputError
from ..io import Volume, check_same_grid
from ..models import DiceBCELoss, MaxPoolDeepSupervisionLoss, available_models, model_spec
from ..preprocess import axial_stack, inplane_spacing, normalize_percentile, resample_stack, resampled_hw
from .loop import LoopConfig

__all__ = ["TrainConfig", "SegmentationTask", "train_config_to_dict", "split_by_volume"]

log = logging.getLogger(__name__)

#: normalised intensity above which a voxel counts as head (background patches are centred there)
HEAD_LEVEL = 0.1


#: the loop's settings, which a TrainConfig takes (and gives) flat as well
LOOP_SETTINGS = tuple(f.name for f in dataclasses.fields(LoopConfig))


@dataclass(frozen=True, init=False)
class TrainConfig:
    """Settings of segmentation training; saved inside every checkpoint.

    Attributes
    ----------
    model : str
        Registry name: ``"mfnsde"`` (default), ``"unet"``, ``"gloms"``, ``"cmgraph"``,
        ``"dynunet"`` or ``"frangi"`` (no weights: :func:`train` fits its threshold,
        :func:`~napari_pvs.engine.training.baseline.fit_frangi`).
    model_config : frozen dataclass, dict or None
        The model family's config (``MfNSDeConfig``, ``UNetConfig``); a dict is read with
        the family's config class; None gives its defaults.
    loop : LoopConfig
        The task-neutral settings: ``optimizer`` (``"adagrad"``, the paper's default;
        ``"adam"``; ``"sgd"``, nnU-Net's), ``learning_rate`` (0.05, the paper's, for
        Adagrad), ``lr_schedule``, ``epochs`` and ``steps_per_epoch`` (validation and
        checkpointing after every epoch), ``max_minutes`` (wall-clock budget), ``seed``,
        ``device``, ``amp`` (mixed precision on CUDA) and ``validate_start`` (fine-tuning).
        Each can also be given (and read) flat: ``TrainConfig(epochs=3).epochs``.
    batch_size : int
        Patches per step (paper: mini-batch 4).
    patch_size : tuple of int
        2D patch ``(H, W)`` in pixels at ``spacing_mm``; rounded up to a multiple of the
        model's divisor.
    spacing_mm : float or None
        In-plane pixel spacing (mm) to train and infer at; None: the median in-plane
        spacing of the training images.
    percentiles : tuple of float
        Per-volume intensity normalisation percentiles.
    foreground_ratio : float
        Share of patches centred on a PVS voxel (the rest on random head voxels).
    augment : bool
        MONAI random flips, small affine (rotation, +-10 % scale), blur, gamma,
        intensity scale/shift and noise (for other scanners and voxel sizes).
    domain_randomisation : bool
        SynthSeg-style widening of the augmentation (Billot B. et al., "SynthSeg:
        Segmentation of brain MRI scans of any contrast and resolution without
        retraining", Medical Image Analysis 2023, doi:10.1016/j.media.2023.102789): a
        smooth multiplicative bias field, gamma 0.5-2, stronger noise and blur, and a
        simulated lower in-plane resolution (down- then up-sampling), so that only
        shape and relative brightness mark a PVS. Through-plane (slice thickness)
        randomisation is done on whole volumes, see
        :func:`~napari_pvs.engine.training.recipe.thick_slice_volume`.
    val_fraction : float
        Share of volumes held out for validation (at least one when there are two or
        more volumes; with a single volume, validation uses the training volume).
    val_patches : int
        Size of the fixed validation sample (patches).
    bce_weight : float
        Weight of a binary cross-entropy term added to the soft Dice loss
        (:class:`~napari_pvs.engine.models.losses.DiceBCELoss`); default 0 (Dice alone, the
        paper's loss).
    loader_workers : int
        Worker processes that crop and augment the training patches (a torch
        ``DataLoader``), so that a GPU is not kept waiting by the CPU-side sampling; 0
        (default): patches are made in the training thread. Each worker has its own seeded
        sampler, so a run with workers draws other patches than one without.

    Raises
    ------
    ValueError
        Unknown model, invalid model config, or a value out of range.
    TypeError
        An unknown setting.

    Example
    -------
    >>> cfg = TrainConfig(model="unet", epochs=2, steps_per_epoch=10)
    >>> cfg.loop.epochs, cfg.epochs, cfg.optimizer
    (2, 2, 'adagrad')
    """

    model: str = "mfnsde"
    model_config: object | None = None
    loop: LoopConfig = LoopConfig()
    batch_size: int = 4
    patch_size: tuple[int, int] = DEFAULT_PATCH_SIZE
    spacing_mm: float | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    foreground_ratio: float = 0.67
    augment: bool = True
    domain_randomisation: bool = False
    val_fraction: float = 0.25
    val_patches: int = 64
    bce_weight: float = 0.0
    loader_workers: int = 0

    def __init__(self, **settings):
        loop_settings = {k: settings.pop(k) for k in list(settings) if k in LOOP_SETTINGS}
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(settings) - set(fields))
        if unknown:
            raise TypeError(f"unknown training settings: {', '.join(unknown)}")
        for name, f in fields.items():
            object.__setattr__(self, name, settings.get(name, f.default))
        loop = self.loop if isinstance(self.loop, LoopConfig) else LoopConfig(**dict(self.loop))
        object.__setattr__(self, "loop", dataclasses.replace(loop, **loop_settings) if loop_settings else loop)
        self.__post_init__()

    def __post_init__(self):
        if str(self.model).lower() not in available_models():
            raise ValueError(f"unknown model {self.model!r}; available: {', '.join(available_models())}")
        object.__setattr__(self, "model", str(self.model).lower())
        object.__setattr__(self, "model_config", model_spec(self.model).config_from_dict(self.model_config))
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))
        if self.batch_size < 1 or self.val_patches < 1:
            raise ValueError(f"batch_size and val_patches must be >= 1, got {self.batch_size} and "
                             f"{self.val_patches}")
        if not 0.0 <= self.foreground_ratio <= 1.0:
            raise ValueError(f"foreground_ratio must be within [0, 1], got {self.foreground_ratio}")
        object.__setattr__(self, "bce_weight", float(self.bce_weight))
        if self.bce_weight < 0:
            raise ValueError(f"bce_weight must be >= 0, got {self.bce_weight}")
        object.__setattr__(self, "loader_workers", int(self.loader_workers))
        if self.loader_workers < 0:
            raise ValueError(f"loader_workers must be >= 0, got {self.loader_workers}")

    @classmethod
    def for_model(cls, model: str, **overrides) -> TrainConfig:
        """A config for ``model`` with the family's own training settings
        (``ModelSpec.train_defaults``: nnU-Net's SGD and poly schedule for ``dynunet``, Adam
        for the transformer models), then ``overrides``; None values in ``overrides`` are
        dropped (keep the default).

        Raises
        ------
        ValueError
            Unknown model or invalid values.
        """
        spec = model_spec(model)
        kwargs = {**spec.train_defaults, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(model=spec.name, **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainConfig:
        """A config from its dict (:func:`train_config_to_dict`, as checkpoints keep it);
        the flat dicts of older checkpoints (loop settings beside the others) and unknown
        keys are accepted (the latter dropped).

        Raises
        ------
        ValueError
            Unknown model or invalid values.
        """
        names = {f.name for f in dataclasses.fields(cls)} | set(LOOP_SETTINGS)
        d = {k: v for k, v in dict(d).items() if k in names}
        if isinstance(d.get("loop"), Mapping):
            d["loop"] = LoopConfig(**{k: v for k, v in d["loop"].items() if k in LOOP_SETTINGS})
        return cls(**d)

    def loop_config(self) -> LoopConfig:
        """The task-neutral part, for :func:`~napari_pvs.engine.training.loop.run_training`."""
        return self.loop


for _name in LOOP_SETTINGS:   # flat read access: cfg.epochs is cfg.loop.epochs
    setattr(TrainConfig, _name, property(lambda self, _n=_name: getattr(self.loop, _n),
                                         doc=f"``loop.{_name}``"))


def train_config_to_dict(cfg: TrainConfig) -> dict:
    """JSON-able dict of a :class:`TrainConfig` (nested model config included)."""
    return dataclasses.asdict(cfg)


def split_by_volume(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split volume indices ``0..n-1`` into training and validation sets.

    Whole volumes go to one side or the other. With one volume, it is used for both
    (and validation then measures fit, not generalisation).

    Raises
    ------
    ValueError
        ``n < 1``.
    """
    if n < 1:
        raise ValueError("need at least one volume")
    if n == 1:
        return [0], [0]
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    return sorted(order[n_val:]), sorted(order[:n_val])


def _augmenter(seed: int, domain_randomisation: bool = False):
    """MONAI augmentation of a ``{"image", "label", "ignore"}`` patch dict (each ``(1, H, W)``)."""
    from monai.transforms import (Compose, RandAdjustContrastd, RandAffined, RandBiasFieldd, RandFlipd,
                                  RandGaussianNoised, RandGaussianSmoothd, RandScaleIntensityd,
                                  RandShiftIntensityd, RandSimulateLowResolutiond)

    keys = ("image", "label", "ignore")
    spatial = [
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandAffined(keys, prob=0.3, rotate_range=(math.pi / 12,), scale_range=(0.1, 0.1),
                    mode=("bilinear", "nearest", "nearest"), padding_mode="zeros"),
    ]
    if not domain_randomisation:
        intensity = [
            RandGaussianSmoothd("image", sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), prob=0.2),
            RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.3),
            RandScaleIntensityd("image", factors=0.15, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
            RandGaussianNoised("image", prob=0.2, std=0.03),
        ]
    else:
        intensity = [
            RandSimulateLowResolutiond("image", prob=0.25, downsample_mode="area",
                                       upsample_mode="bilinear", zoom_range=(0.5, 0.9)),
            RandGaussianSmoothd("image", sigma_x=(0.25, 1.2), sigma_y=(0.25, 1.2), prob=0.3),
            RandBiasFieldd("image", degree=3, coeff_range=(0.0, 0.3), prob=0.5),
            RandAdjustContrastd("image", gamma=(0.5, 2.0), prob=0.5),
            RandScaleIntensityd("image", factors=0.25, prob=0.5),
            RandShiftIntensityd("image", offsets=0.15, prob=0.5),
            RandGaussianNoised("image", prob=0.4, std=0.06),
        ]
    aug = Compose(spatial + intensity)
    aug.set_random_state(seed=seed)
    return aug


def _as_mask_array(mask, image: Volume) -> np.ndarray:
    """The mask's array, checked to be on ``image``'s grid (shape and, for a Volume, affine)."""
    if isinstance(mask, Volume):
        check_same_grid(image, mask)
        return np.asarray(mask.data)
    arr = np.asarray(mask)
    if arr.shape != image.shape:
        raise PVSInputError(f"mask shape {arr.shape} differs from the image grid {image.shape}", image.path)
    return arr


def _source_info(image: Volume, mask, role: str) -> dict:
    return {
        "image": str(image.path) if image.path else None,
        "image_sha256": sha256_file(image.path) if image.path and image.path.is_file() else None,
        "mask": str(mask.path) if isinstance(mask, Volume) and mask.path else None,
        "shape_zyx": list(image.shape),
        "voxel_size_mm_zyx": [round(v, 4) for v in image.voxel_size],
        "role": role,
        **{k: v for k, v in image.meta.items() if isinstance(v, (str, int, float))},
    }


def _make_cropper(context: int, patch: tuple[int, int], pos: float, seed: int):
    """MONAI crop of one ``(2k + 1, ph, pw)`` patch, centred on a PVS voxel with probability ``pos``."""
    from monai.transforms import RandCropByPosNegLabeld

    crop = RandCropByPosNegLabeld(("image", "label", "ignore"), "label", spatial_size=(2 * context + 1, *patch),
                                  pos=pos, neg=1.0 - pos, num_samples=1,
                                  fg_indices_key="label_fg_indices", bg_indices_key="label_bg_indices")
    crop.set_random_state(seed=seed)
    return crop


def _crop_patch(crop, vol: dict, context: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One patch: image ``(2k + 1, ph, pw)`` (the slice and its neighbours as channels),
    label and ignore ``(1, ph, pw)`` of the centre slice."""
    d = crop(vol)[0]
    return (torch.as_tensor(d["image"])[0], torch.as_tensor(d["label"])[:, context],
            torch.as_tensor(d["ignore"])[:, context])


def _sample_patch(crop, aug, vol: dict, context: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training patch of ``vol``, augmented when ``aug`` is given (label and ignore re-binarised)."""
    x, y, ig = _crop_patch(crop, vol, context)
    if aug is not None:
        d = aug({"image": x, "label": y, "ignore": ig})
        x, y = torch.as_tensor(d["image"]), (torch.as_tensor(d["label"]) > 0.5).float()
        ig = (torch.as_tensor(d["ignore"]) > 0.5).float()
    return x, y, ig


class _PatchStream(torch.utils.data.IterableDataset):
    """Endless training patches ``(image, label, ignore)`` for ``DataLoader`` workers; each worker
    draws volumes, crops and augmentations from its own generator, seeded from ``seed`` and
    its worker id."""

    def __init__(self, vols: list[dict], context: int, patch: tuple[int, int], pos: float, seed: int,
                 augment: bool, domain_randomisation: bool):
        self.vols, self.context, self.patch, self.pos, self.seed = vols, context, patch, pos, seed
        self.augment, self.domain_randomisation = augment, domain_randomisation

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        seed = self.seed + 1000 * (1 + (info.id if info is not None else 0))
        rng = np.random.default_rng(seed)
        crop = _make_cropper(self.context, self.patch, self.pos, seed)
        aug = _augmenter(seed, self.domain_randomisation) if self.augment else None
        while True:
            yield _sample_patch(crop, aug, self.vols[int(rng.integers(len(self.vols)))], self.context)


class SegmentationTask:
    """2D PVS segmentation on axial patches (the :class:`~.loop.TrainingTask` of :func:`train`).

    Parameters
    ----------
    images : sequence of Volume
        T2-weighted volumes, data ``(Z, Y, X)``, any voxel size and orientation.
    masks : sequence of Volume or np.ndarray
        Binary PVS masks on the same grids (nonzero = PVS).
    config : TrainConfig
    ignore_masks : sequence of (np.ndarray or None), optional
        Per volume, voxels (nonzero) left out of the loss and of the validation DSC:
        "unknown", e.g. unlabelled real PVS-like objects of a scan with synthetic PVS
        (:func:`~napari_pvs.engine.candidates.find_pvs_candidates`), or the slices of a
        partly annotated volume that are not marked done
        (:func:`~napari_pvs.engine.training.project.project_training_data`). PVS voxels of
        the mask are never ignored, and no patch is centred on an ignored voxel (patches
        are axial slices, so a volume with one labelled slice trains on that slice only).
    val_indices : sequence of int, optional
        Volumes to validate on (the rest train); default :func:`split_by_volume`.
    metadata : dict, optional
        JSON-able record saved in the checkpoint under ``"recipe"`` (how the training
        data were made).

    Raises
    ------
    PVSInputError
        No volumes, different numbers of images and masks, a mask or ignore mask on
        another grid, masks without any PVS voxel, or validation indices out of range.
    """

    metric_name = "DSC"

    def __init__(self, images: Sequence[Volume], masks: Sequence[Volume | np.ndarray], config: TrainConfig,
                 *, ignore_masks: Sequence[np.ndarray | None] | None = None,
                 val_indices: Sequence[int] | None = None, metadata: dict | None = None):
        if len(images) == 0:
            raise PVSInputError("no training images given")
        if len(images) != len(masks):
            raise PVSInputError(f"{len(images)} images but {len(masks)} masks; expected one mask per image")
        self.mask_arrays = [_as_mask_array(m, im) for im, m in zip(images, masks, strict=True)]
        if not any(np.any(m > 0) for m in self.mask_arrays):
            raise PVSInputError("the training masks contain no PVS voxel", images[0].path)
        if ignore_masks is not None and len(ignore_masks) != len(images):
            raise PVSInputError(f"{len(images)} images but {len(ignore_masks)} ignore masks")
        self.ignore_arrays = [None if ig is None else _as_mask_array(ig, im)
                              for im, ig in zip(images, ignore_masks or [None] * len(images), strict=True)]
        self.images, self.masks, self.config = list(images), list(masks), config
        self.metadata = metadata or {}
        self.model_name, self.model_config = config.model, config.model_config
        if val_indices is not None:
            val = sorted({int(i) for i in val_indices})
            if not val or val[0] < 0 or val[-1] >= len(images):
                raise PVSInputError(f"validation indices {list(val_indices)} out of range for {len(images)} volumes")
            rest = [i for i in range(len(images)) if i not in val]
            self.train_idx, self.val_idx = (rest or val), val
        else:
            self.train_idx, self.val_idx = split_by_volume(len(images), config.val_fraction, config.seed)
        self.spacing = config.spacing_mm or float(np.median([min(inplane_spacing(images[i]))
                                                             for i in self.train_idx]))
        div = self.model_config.divisor
        self.patch = tuple(int(math.ceil(p / div) * div) for p in config.patch_size)
        self.context = int(getattr(self.model_config, "context_slices", 0))
        if config.bce_weight > 0:
            dice_bce = DiceBCELoss(config.bce_weight)
            self.loss_fn = MaxPoolDeepSupervisionLoss(dice_bce, masked_loss=dice_bce)
        else:
            self.loss_fn = MaxPoolDeepSupervisionLoss()
        self.rng = np.random.default_rng(config.seed)
        self._batches = None        # the patch workers' batches (loader_workers > 0), started at the first step

    # ------------------------------------------------------------------ TrainingTask
    def build_model(self) -> torch.nn.Module:
        return model_spec(self.model_name).build(self.model_config)

    def prepare_volume(self, i: int) -> dict:
        """Slices of volume ``i``, normalised and resampled: ``{"image", "label"}`` of shape
        ``(1, S, H', W')`` padded in-plane to the patch size, with the foreground and
        background voxel lists of ``FgBgToIndicesd``."""
        from monai.transforms import FgBgToIndicesd, SpatialPadd

        image = self.images[i]
        stack = axial_stack(image, normalize_percentile(image.data, self.config.percentiles))
        pvs = self.mask_arrays[i] > 0
        lab = axial_stack(image, pvs.astype(np.float32))
        hw = resampled_hw(stack.shape[1:], inplane_spacing(image), self.spacing)
        label = (resample_stack(lab, hw) >= 0.5).float()[None]
        d = {"image": resample_stack(stack, hw)[None], "label": label}
        if self.ignore_arrays[i] is not None:
            ig = axial_stack(image, ((self.ignore_arrays[i] > 0) & ~pvs).astype(np.float32))
            d["ignore"] = ((resample_stack(ig, hw) > 0.25).float()[None]) * (1.0 - label)
        else:
            d["ignore"] = torch.zeros_like(label)
        d = SpatialPadd(("image", "label", "ignore"), spatial_size=(-1, *self.patch), method="end")(d)
        d = {k: torch.as_tensor(v) for k, v in d.items()}
        k = self.context
        if k:
            # 2.5D: k edge slices repeated at each end, so that every slice has its k
            # neighbours inside the crop; the padded slices are ignored (never a centre)
            reps = [0] * k + list(range(d["image"].shape[1])) + [d["image"].shape[1] - 1] * k
            d["image"] = d["image"][:, reps]
            d["label"] = torch.nn.functional.pad(d["label"], (0, 0, 0, 0, k, k))
            d["ignore"] = torch.nn.functional.pad(d["ignore"], (0, 0, 0, 0, k, k), value=1.0)
        d = FgBgToIndicesd("label", image_key="image", image_threshold=HEAD_LEVEL)(d)
        if d["ignore"].any():
            # no patch is centred on an ignored voxel: a partly annotated volume (slices not
            # marked done) gives patches of its labelled slices only
            bg = torch.as_tensor(d["label_bg_indices"])
            d["label_bg_indices"] = bg[d["ignore"].reshape(-1)[bg] == 0]
        return d

    def setup(self, device: torch.device) -> str:
        cfg = self.config
        prepared = {i: self.prepare_volume(i) for i in sorted(set(self.train_idx) | set(self.val_idx))}
        self.train_vols = [prepared[i] for i in self.train_idx
                           if prepared[i]["label_fg_indices"].numel() or prepared[i]["label_bg_indices"].numel()]
        if not self.train_vols:
            raise PVSInputError("no training volume has head or PVS voxels", self.images[0].path)
        self.crop = _make_cropper(self.context, self.patch, cfg.foreground_ratio, cfg.seed)
        self.aug = _augmenter(cfg.seed, cfg.domain_randomisation) if cfg.augment else None
        # the fixed validation sample: half the patches centred on PVS, half on head voxels
        val_crop = _make_cropper(self.context, self.patch, 0.5, cfg.seed + 1)
        vols = [prepared[i] for i in self.val_idx]
        xs, ys, igs = zip(*(_crop_patch(val_crop, vols[k % len(vols)], self.context) for k in range(cfg.val_patches)),
                          strict=True)
        self.val_x, self.val_y = torch.stack(xs).to(device), torch.stack(ys).to(device)
        self.val_ignore = torch.stack(igs).to(device) > 0
        self.sources = self.source_records()
        note = (f"{len(self.train_idx)} training / {len(self.val_idx)} validation volume(s), "
                f"spacing {self.spacing:.3f} mm, patch {self.patch[0]}x{self.patch[1]}, "
                f"validation on {cfg.val_patches} fixed patches")
        n_ign = sum(int(a is not None and (a > 0).any()) for a in self.ignore_arrays)
        if n_ign:
            note += f"; ignore masks on {n_ign} volume(s)"
        if self.val_idx == self.train_idx:
            for s in self.sources:
                s["role"] = "train+validation"
            note += "; only one volume: validation DSC is measured on the training volume"
        return note

    def source_records(self) -> list[dict]:
        """Where each volume came from and its role (train / validation), for the checkpoint."""
        return [_source_info(self.images[i], self.masks[i], "train" if i in self.train_idx else "validation")
                for i in range(len(self.images))]

    def sample_batch(self, device: torch.device) -> dict[str, torch.Tensor]:
        if self.config.loader_workers:
            if self._batches is None:
                self._batches = iter(self._loader(device))
            x, y, ig = next(self._batches)
        else:
            patches = [_sample_patch(self.crop, self.aug, self.train_vols[int(self.rng.integers(len(self.train_vols)))],
                                     self.context) for _ in range(self.config.batch_size)]
            x, y, ig = (torch.stack(t) for t in zip(*patches, strict=True))
        pinned = device.type == "cuda"        # copies from pinned memory overlap the GPU's work
        batch = {"image": x.float().to(device, non_blocking=pinned), "label": y.float().to(device, non_blocking=pinned)}
        ignore = ig.float()
        if ignore.any():
            batch["ignore"] = ignore.to(device, non_blocking=pinned)
        return batch

    def _loader(self, device: torch.device):
        """The ``DataLoader`` of :attr:`TrainConfig.loader_workers` patch workers."""
        cfg = self.config
        stream = _PatchStream(self.train_vols, self.context, self.patch, cfg.foreground_ratio, cfg.seed,
                              cfg.augment, cfg.domain_randomisation)
        return torch.utils.data.DataLoader(stream, batch_size=cfg.batch_size, num_workers=cfg.loader_workers,
                                           pin_memory=device.type == "cuda", prefetch_factor=4)

    def teardown(self) -> None:
        """Stop the patch workers (if any); called by the training loop when it ends."""
        batches, self._batches = self._batches, None
        if batches is not None and hasattr(batches, "_shutdown_workers"):
            batches._shutdown_workers()

    def loss(self, outputs, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_fn(outputs, batch["label"], batch.get("ignore"))

    def validate(self, model: torch.nn.Module, device: torch.device) -> float:
        """DSC over the fixed validation patches (all voxels pooled; ignored voxels left out)."""
        tp = fp = fn = 0
        for start in range(0, self.val_x.shape[0], 16):
            keep = ~self.val_ignore[start:start + 16]
            pred = (model({"image": self.val_x[start:start + 16]}) > 0) & keep  # logit > 0: p > 0.5
            truth = (self.val_y[start:start + 16] > 0) & keep
            tp += int((pred & truth).sum())
            fp += int((pred & ~truth).sum())
            fn += int((~pred & truth).sum())
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0

    def save_checkpoint(self, path: Path, model: torch.nn.Module, metrics: dict) -> Path:
        return save_checkpoint(path, model=model, model_name=self.model_name, model_config=self.model_config,
                               spacing_mm=self.spacing, percentiles=self.config.percentiles,
                               patch_size=self.patch, train_config=train_config_to_dict(self.config),
                               training_data=self.sources, metrics={**metrics, "best_val_dice": metrics["best_val_metric"]},
                               recipe=self.metadata)
