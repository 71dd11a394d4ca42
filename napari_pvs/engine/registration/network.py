"""ACSGRegNet training from label maps, and registration with a trained network.

Training data (SynthMorph's recipe: Hoffmann et al., "SynthMorph: learning contrast-
invariant registration without acquired images", IEEE TMI 2022,
doi:10.1109/TMI.2021.3116879): the shared real label maps (SynthSeg subjects) are put on
the network grid, grouped into 14 brain structures; every training pair takes two maps
(or one twice), deforms each by a random affine and a smooth random field, and paints
each structure with a random intensity, blur, bias field and noise. The loss is the Dice
of the warped moving labels against the fixed labels (after the affine stage and at the
end) plus a bending-energy penalty on the diffeomorphic part; no image similarity, so
the network does not learn one contrast and registers T1 to T2 as well as T2 to T2.

Registration with a trained network (:func:`register_network`): both brains (masked,
scaled to their 99th percentile) are resampled onto the network grid, an RAS-aligned
``grid_mm`` grid centred on the fixed brain's centroid, the moving one after a
translation of centroid onto centroid; the network's voxel affine and DDF are turned into
a world-mm :class:`SpatialTransform`.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from ..anatomy.labels import LABEL_GROUPS, label_groups
from ..errors import PVSInputError
from ..io import Volume, load_volume
from ..models.acsgreg import ACSGRegConfig, ACSGRegNet
from .classical import RegistrationEvent, working_image
from .transform import SpatialTransform, warp_array

__all__ = ["LABEL_GROUPS", "ACSGRegTrainConfig", "RegistrationTask", "train_acsgreg", "register_network",
           "network_grid", "label_groups", "LABEL_MAPS"]

#: the shared real label maps used for training (relative to the data directory)
LABEL_MAPS = tuple(f"synthseg/training_seg_0{i}.nii.gz" for i in (1, 2, 3))


def network_grid(centre_mm: np.ndarray, config: ACSGRegConfig) -> np.ndarray:
    """``(4, 4)`` voxel ``(i, j, k)`` -> RAS mm of the network grid (axes along +x, +y, +z,
    ``config.grid_mm`` voxels, array ``config.shape`` = ``(Z, Y, X)``) centred on
    ``centre_mm``."""
    g = float(config.grid_mm)
    aff = np.diag([g, g, g, 1.0])
    n_ijk = np.asarray(config.shape[::-1], dtype=float)
    aff[:3, 3] = np.asarray(centre_mm, float) - g * (n_ijk - 1) / 2
    return aff


def _centroid_mm(volume: Volume, mask: np.ndarray) -> np.ndarray:
    zyx = np.argwhere(mask)
    if zyx.size == 0:
        raise PVSInputError("empty brain mask", volume.path)
    return volume.voxel_to_world(zyx.mean(0))


@dataclass(frozen=True)
class ACSGRegTrainConfig:
    """Training settings of :func:`train_acsgreg` (saved in the checkpoint).

    Attributes
    ----------
    rotation_deg, scale_range, shift_mm : float
        Random affine per image: rotation up to ``rotation_deg`` about each axis, scale
        in ``[1 - scale_range, 1 + scale_range]`` per axis, shift up to ``shift_mm``.
    warp_mm : float
        Amplitude (mm) of the smooth random deformation per image.
    bending_weight, affine_dice_weight : float
        Loss weights of the bending energy and of the Dice after the affine stage.
    n_val : int
        Fixed validation pairs (seeded).
    """

    rotation_deg: float = 10.0
    scale_range: float = 0.15
    shift_mm: float = 10.0
    warp_mm: float = 4.0
    bending_weight: float = 1.0
    affine_dice_weight: float = 0.5
    n_val: int = 4


class RegistrationTask:
    """The :class:`~napari_pvs.engine.training.loop.TrainingTask` of ACSGRegNet on
    synthetic pairs from label maps."""

    model_name = "acsgreg"
    metric_name = "Dice"

    def __init__(self, label_maps: list[Volume], model_config: ACSGRegConfig | None = None,
                 train_config: ACSGRegTrainConfig | None = None, seed: int = 0):
        if not label_maps:
            raise PVSInputError("no label maps to train the registration network on")
        self.model_config = model_config or ACSGRegConfig()
        self.train_config = train_config or ACSGRegTrainConfig()
        self.label_maps = label_maps
        self.seed = seed
        self.maps: list[torch.Tensor] = []
        self.val: list[dict] = []

    def build_model(self) -> ACSGRegNet:
        return ACSGRegNet(self.model_config)

    def setup(self, device: torch.device) -> str:
        cfg = self.model_config
        self.maps = []
        for vol in self.label_maps:
            groups = label_groups(np.asarray(vol.data))
            grid = network_grid(_centroid_mm(vol, groups > 0), cfg)
            on_grid = warp_array(groups, vol.affine, grid, cfg.shape, SpatialTransform.identity(), order=0)
            self.maps.append(torch.from_numpy(on_grid.astype(np.int64)).to(device))
        self.device = device
        self.rng = np.random.default_rng(self.seed)
        val_rng = np.random.default_rng(10_000 + self.seed)
        self.val = [self._pair(val_rng) for _ in range(self.train_config.n_val)]
        return (f"{len(self.maps)} label maps on a {'x'.join(map(str, cfg.shape))} grid of {cfg.grid_mm:g} mm, "
                f"{len(LABEL_GROUPS)} structures, synthetic contrasts")

    # ------------------------------------------------------------------ synthesis
    def _random_map(self, rng: np.random.Generator, labels: torch.Tensor) -> torch.Tensor:
        """``labels`` ``(D, H, W)`` through a random affine and smooth deformation (nearest)."""
        tc = self.train_config
        shape = labels.shape
        ang = np.deg2rad(rng.uniform(-tc.rotation_deg, tc.rotation_deg, 3))
        rot = np.eye(3)
        for ax, a in enumerate(ang):
            c, s = np.cos(a), np.sin(a)
            r = np.eye(3)
            i, j = [k for k in range(3) if k != ax]
            r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
            rot = rot @ r
        lin = rot @ np.diag(rng.uniform(1 - tc.scale_range, 1 + tc.scale_range, 3))
        size_mm = np.asarray(shape, float) * self.model_config.grid_mm
        shift = rng.uniform(-tc.shift_mm, tc.shift_mm, 3) / (size_mm / 2)       # normalised units
        theta = torch.tensor(np.concatenate([lin, shift[:, None]], 1)[None], dtype=torch.float32,
                             device=labels.device)
        # affine_grid works in (x, y, z) = (W, H, D) order
        perm = [2, 1, 0]
        theta = theta[:, perm][:, :, perm + [3]]
        grid = F.affine_grid(theta, (1, 1, *shape), align_corners=False)
        coarse = torch.from_numpy(rng.normal(0, 1, (1, 3, 4, 5, 4)).astype(np.float32)).to(labels.device)
        smooth = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)
        smooth = smooth * (tc.warp_mm / (size_mm.max() / 2))
        grid = grid + smooth.permute(0, 2, 3, 4, 1)
        out = F.grid_sample(labels[None, None].float(), grid, mode="nearest", padding_mode="zeros",
                            align_corners=False)
        return out[0, 0].long()

    def _paint(self, rng: np.random.Generator, labels: torch.Tensor) -> torch.Tensor:
        """A random-contrast image ``(1, D, H, W)`` in [0, 1] from group labels."""
        n = len(LABEL_GROUPS) + 1
        means = torch.from_numpy(rng.uniform(0.1, 1.0, n).astype(np.float32)).to(labels.device)
        means[0] = 0
        img = means[labels][None, None]
        img = img + float(rng.uniform(0, 0.05)) * torch.randn(img.shape, generator=None, device=img.device)
        sigma = float(rng.uniform(0.3, 1.0))
        k = torch.arange(-2, 3, dtype=torch.float32, device=img.device)
        k = torch.exp(-k ** 2 / (2 * sigma ** 2))
        k = k / k.sum()
        for dim in range(3):
            shape = [1, 1, 1, 1, 1]
            shape[2 + dim] = 5
            pad = [0, 0, 0, 0, 0, 0]
            pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = 2
            img = F.conv3d(F.pad(img, pad, mode="replicate"), k.view(shape))
        bias = torch.from_numpy(rng.normal(0, 0.2, (1, 1, 3, 4, 3)).astype(np.float32)).to(img.device)
        img = img * torch.exp(F.interpolate(bias, size=img.shape[2:], mode="trilinear", align_corners=False))
        img = img * (labels[None, None] > 0)
        img = img / img.amax().clamp_min(1e-6)
        return img[0].clamp(0, 1) ** float(np.exp(rng.normal(0, 0.2)))

    def _pair(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        i, j = rng.integers(len(self.maps)), rng.integers(len(self.maps))
        lf, lm = self._random_map(rng, self.maps[i]), self._random_map(rng, self.maps[j])
        n = len(LABEL_GROUPS) + 1
        return {"fixed": self._paint(rng, lf)[None], "moving": self._paint(rng, lm)[None],
                "fixed_labels": F.one_hot(lf, n).permute(3, 0, 1, 2)[None].float(),
                "moving_labels": F.one_hot(lm, n).permute(3, 0, 1, 2)[None].float()}

    # ------------------------------------------------------------------ TrainingTask
    def sample_batch(self, device: torch.device) -> Mapping[str, torch.Tensor]:
        return self._pair(self.rng)

    @staticmethod
    def _dice_loss(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        p, t = pred[:, 1:], truth[:, 1:]
        inter = (p * t).sum((2, 3, 4))
        den = p.sum((2, 3, 4)) + t.sum((2, 3, 4))
        present = t.sum((2, 3, 4)) > 0
        dice = (2 * inter + 1e-5) / (den + 1e-5)
        return 1 - dice[present].mean()

    def loss(self, outputs, batch) -> torch.Tensor:
        from monai.losses import BendingEnergyLoss
        from monai.networks.blocks import Warp

        tc = self.train_config
        warp = Warp(mode="bilinear", padding_mode="zeros")
        final = self._dice_loss(warp(batch["moving_labels"], outputs["ddf"]), batch["fixed_labels"])
        affine = self._dice_loss(warp(batch["moving_labels"], outputs["ddf_affine"]), batch["fixed_labels"])
        bending = BendingEnergyLoss()(outputs["ddf_local"])
        return final + tc.affine_dice_weight * affine + tc.bending_weight * bending

    def validate(self, model: ACSGRegNet, device: torch.device) -> float:
        from .metrics import dice_per_label

        scores = []
        for pair in self.val:
            out = model(pair)
            warped = model.warp(pair["moving_labels"], out["ddf"]).argmax(1).cpu().numpy()
            truth = pair["fixed_labels"].argmax(1).cpu().numpy()
            d = dice_per_label(warped, truth, range(1, len(LABEL_GROUPS) + 1))
            scores.append(float(np.nanmean(list(d.values()))))
        return float(np.mean(scores))

    def save_checkpoint(self, path: Path, model: ACSGRegNet, metrics: dict) -> Path:
        from ..models.checkpoint import save_checkpoint

        cfg = self.model_config
        return save_checkpoint(path, model=model, model_name=self.model_name, model_config=cfg,
                               spacing_mm=cfg.grid_mm, percentiles=(0.0, 99.0), patch_size=cfg.shape[1:],
                               train_config=asdict(self.train_config), task="registration",
                               training_data=[{"label_map": str(v.path) if v.path else None}
                                              for v in self.label_maps], metrics=metrics)


def train_acsgreg(checkpoint_path: str | Path, *, label_maps: list[Volume] | None = None,
                  model_config: ACSGRegConfig | None = None, train_config: ACSGRegTrainConfig | None = None,
                  loop_config=None):
    """Train ACSGRegNet on synthetic pairs (a generator of
    :class:`~napari_pvs.engine.training.TrainEvent` returning the ``TrainResult``).

    Parameters
    ----------
    checkpoint_path : str or Path
        Where the best checkpoint (highest validation Dice) goes.
    label_maps : list of Volume, optional
        FreeSurfer-numbered label maps; default :data:`LABEL_MAPS` from the data directory.
    loop_config : LoopConfig, optional
        Default: Adam, learning rate 1e-4, 20 epochs of 25 steps.

    Raises
    ------
    PVSInputError
        No label maps, or a missing data file.
    """
    from ..training.loop import LoopConfig, run_training

    if label_maps is None:
        from ..data import fetch

        label_maps = [load_volume(fetch(p)) for p in LABEL_MAPS]
    loop_config = loop_config or LoopConfig(epochs=20, steps_per_epoch=25, optimizer="adam", learning_rate=1e-4)
    task = RegistrationTask(label_maps, model_config, train_config, seed=loop_config.seed)
    return (yield from run_training(task, loop_config, checkpoint_path))


# --------------------------------------------------------------------------- inference
def _to_net(volume: Volume, mask: np.ndarray | None, grid: np.ndarray, shape, shift_mm: np.ndarray) -> np.ndarray:
    data, aff = working_image(volume, float(np.abs(grid[0, 0])), mask)
    moved = np.eye(4)
    moved[:3, 3] = shift_mm
    return warp_array(data, aff, grid, shape, SpatialTransform(moved), order=1)


def register_network(fixed: Volume, moving: Volume, model: ACSGRegNet, *, fixed_mask: np.ndarray | None = None,
                     moving_mask: np.ndarray | None = None, device: str = "cpu",
                     ) -> Generator[RegistrationEvent, None, SpatialTransform]:
    """Register ``moving`` to ``fixed`` with a trained ACSGRegNet (one forward pass).

    Returns a :class:`SpatialTransform` whose affine and DDF (mm, on the network grid)
    come from the network (see the module docstring for the grids).

    Raises
    ------
    PVSInputError
        An empty mask or image.
    """
    t0 = time.perf_counter()
    cfg = model.config
    yield RegistrationEvent("network input", 0.0)
    f_mask = fixed_mask if fixed_mask is not None else np.asarray(fixed.data) > 0
    m_mask = moving_mask if moving_mask is not None else np.asarray(moving.data) > 0
    cf, cm = _centroid_mm(fixed, f_mask), _centroid_mm(moving, m_mask)
    grid = network_grid(cf, cfg)
    f_net = _to_net(fixed, fixed_mask, grid, cfg.shape, np.zeros(3))
    m_net = _to_net(moving, moving_mask, grid, cfg.shape, cm - cf)
    yield RegistrationEvent("network", 0.3, elapsed=time.perf_counter() - t0)
    model = model.to(device).eval()
    with torch.inference_mode():
        out = model(torch.from_numpy(f_net)[None, None].to(device), torch.from_numpy(m_net)[None, None].to(device))
    a_v = out["affine"][0].double().cpu().numpy()                 # (d, h, w) index coordinates
    u_v = out["ddf_local"][0].float().cpu().numpy()               # (3: d, h, w, D, H, W) voxels
    # array index (d, h, w) = (k, j, i): world = grid @ perm @ index
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1
    w = grid @ perm
    shift = np.eye(4)
    shift[:3, 3] = cm - cf
    affine = shift @ w @ a_v @ np.linalg.inv(w)
    ddf_mm = np.einsum("ij,j...->i...", w[:3, :3], u_v).astype(np.float32)
    seconds = time.perf_counter() - t0
    yield RegistrationEvent("done", 1.0, elapsed=seconds)
    return SpatialTransform(affine=affine, ddf=ddf_mm, ddf_affine=grid, method="acsgreg",
                            info={"seconds": seconds, "grid_mm": cfg.grid_mm, "shape": list(cfg.shape)})
