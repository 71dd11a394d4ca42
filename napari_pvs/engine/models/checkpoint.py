"""Self-contained model checkpoints.

A checkpoint is one ``torch.save`` file holding everything needed to rebuild and apply
the model (the voxelmorph habit of saving the constructor config with the weights):

``format``, ``version``
    ``"napari-pvs-checkpoint"`` and the format version (2; version 1 files, written by
    napari-pvs 0.1.0, still load).
``task``
    What the network does: ``"segmentation"``.
``model_name``, ``model_config_class``, ``model_config``
    Registry name, the name of the family's config class (e.g. ``"MfNSDeConfig"``) and the
    config as a dict; :func:`load_model` rebuilds the network from these alone.
``state_dict``
    The weights.
``spacing_mm``
    In-plane pixel spacing (mm) the model works at.
``patch_size``
    Training patch ``(H, W)`` in pixels: the sliding-window size at inference.
``normalization``
    ``{"method": "percentile", "percentiles": [lo, hi]}``.
``train_config``
    The :class:`~napari_pvs.engine.training.TrainConfig` as a dict.
``training_data``
    Where the training data came from (paths, sha256, shapes, voxel sizes, roles).
``metrics``
    Best validation DSC, epoch and step of the saved weights.
``recipe``
    How the training data were made (recipe, data files with sha256, stages), and for the
    shipped model ``benchmark``: its real-scan benchmark numbers.

The shipped default model
(:func:`~napari_pvs.engine.data.default_checkpoint`) lives in ``napari_pvs/weights/`` and is
made by ``scripts/make_default_model.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import PVSInputError
from ..io import atomic_path
from .registry import MODEL_REGISTRY, available_models

__all__ = ["LoadedModel", "save_checkpoint", "load_model", "read_checkpoint", "check_checkpoint_file", "checkpoint_config",
           "update_checkpoint", "ensemble_checkpoint", "trainable_checkpoint", "CHECKPOINT_FORMAT",
           "CHECKPOINT_VERSION", "DEFAULT_PATCH_SIZE"]

CHECKPOINT_FORMAT = "napari-pvs-checkpoint"
CHECKPOINT_VERSION = 2
#: fields of the one config class all models shared in format version 1; a version-1
#: config may hold some that the model's own config class no longer has (``unet`` had
#: ``deep_supervision``), which are dropped when it is read
_V1_CONFIG_KEYS = ("in_channels", "out_channels", "features", "dropout", "deep_supervision")
#: training patch (H, W) in pixels, also the inference window for checkpoints without one
DEFAULT_PATCH_SIZE = (128, 128)


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, ready for inference (in eval mode).

    Attributes
    ----------
    model : torch.nn.Module
        Takes the batch dict ``{"image": (B, 1, H, W)}`` of float32 normalised slices at
        ``spacing_mm``, returns ``(B, 1, H, W)`` logits; inference feeds it windows of
        ``roi_size``.
    name : str
        Registry name (``"mfnsde"``, ``"unet"``).
    config : frozen dataclass
        The family's config (e.g. ``MfNSDeConfig``).
    spacing_mm : float
        In-plane pixel spacing the model works at (mm).
    percentiles : tuple of float
        Percentiles of the per-volume intensity normalisation.
    roi_size : tuple of int
        Sliding-window size ``(H, W)`` in pixels at ``spacing_mm`` (the training patch).
    overlap : float
        Sliding-window overlap (fraction of the window).
    path : Path, optional
        Checkpoint file.
    info : dict
        The rest of the checkpoint (train_config, training_data, metrics).
    """

    model: torch.nn.Module
    name: str
    config: object
    spacing_mm: float
    percentiles: tuple[float, float]
    roi_size: tuple[int, int] = DEFAULT_PATCH_SIZE
    overlap: float = 0.25
    path: Path | None = None
    info: dict = field(default_factory=dict)


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, model_name: str,
                    model_config: object, spacing_mm: float,
                    percentiles: tuple[float, float], patch_size: tuple[int, int] = DEFAULT_PATCH_SIZE,
                    train_config: dict | None = None,
                    training_data: list[dict] | None = None, metrics: dict | None = None,
                    task: str = "segmentation", recipe: dict | None = None) -> Path:
    """Write a self-contained checkpoint atomically (temporary file, fsync, rename).

    Parameters
    ----------
    path : str or Path
        Output file (``.pt``); parent folders are created.
    model : torch.nn.Module
        Its ``state_dict`` is saved (moved to the CPU).
    model_name : str
        Registry name.
    model_config : frozen dataclass
        The family's config (saved with ``dataclasses.asdict``, plus its class name).
    spacing_mm, percentiles, patch_size
        In-plane working spacing (mm), normalisation percentiles, training patch ``(H, W)``.
    train_config, training_data, metrics : optional
        Saved as they are (JSON-able values).
    task : str
        What the network does (``"segmentation"``).
    recipe : dict, optional
        How the training data were made (JSON-able), saved under ``"recipe"``.
    """
    from ... import __version__

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "napari_pvs_version": __version__,
        "task": task,
        "model_name": model_name,
        "model_config_class": type(model_config).__name__,
        "model_config": dataclasses.asdict(model_config),
        "state_dict": state,
        "spacing_mm": float(spacing_mm),
        "patch_size": [int(p) for p in patch_size],
        "normalization": {"method": "percentile", "percentiles": [float(p) for p in percentiles]},
        "train_config": train_config or {},
        "training_data": training_data or [],
        "metrics": metrics or {},
        "recipe": recipe or {},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def update_checkpoint(path: str | Path, **fields) -> Path:
    """Replace top-level metadata fields of a checkpoint (e.g. ``recipe``, ``benchmark``),
    atomically; the weights and the model fields cannot be changed this way.

    Raises
    ------
    ValueError
        A field that holds the model (``state_dict``, ``model_name``, ``model_config``...).
    PVSInputError
        Not a napari-pvs checkpoint.
    """
    protected = {"state_dict", "model_name", "model_config", "model_config_class", "format", "version", "task"}
    bad = sorted(set(fields) & protected)
    if bad:
        raise ValueError(f"cannot update the model fields {bad} of a checkpoint")
    path = Path(path)
    ckpt = read_checkpoint(path)
    ckpt.update(fields)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def check_checkpoint_file(path: str | Path) -> Path:
    """Cheap checks of a checkpoint file without loading it (no torch import, a few bytes
    read): it exists and is a ``torch.save`` archive (a zip file, as torch >= 1.6 writes).
    For front ends that want to refuse a wrong file at once and load it in a worker.

    Raises
    ------
    PVSInputError
        Missing, a folder, unreadable, or not a ``torch.save`` archive.
    """
    path = Path(path)
    if not path.is_file():
        raise PVSInputError("checkpoint not found", path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise PVSInputError(f"cannot read the checkpoint ({exc.strerror or exc})", path) from None
    if head != b"PK\x03\x04":
        raise PVSInputError("not a readable checkpoint (not a torch.save archive)", path)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The raw contents of a napari-pvs checkpoint (CPU tensors), after format checks.

    Raises
    ------
    PVSInputError
        Missing file, not a readable ``torch.save`` file, not a napari-pvs checkpoint, or
        written by a newer napari-pvs (format version above :data:`CHECKPOINT_VERSION`).
    """
    path = Path(path)
    if not path.is_file():
        raise PVSInputError("checkpoint not found", path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise PVSInputError(f"not a readable checkpoint ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})", path) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise PVSInputError("not a napari-pvs checkpoint (no 'format' entry)", path)
    version = int(ckpt.get("version", 1))
    if version > CHECKPOINT_VERSION:
        raise PVSInputError(f"checkpoint format version {version} is newer than this napari-pvs "
                            f"reads ({CHECKPOINT_VERSION}); update napari-pvs", path)
    return ckpt


def checkpoint_config(ckpt: dict, path: str | Path | None = None) -> tuple[str, object]:
    """``(model name, config dataclass)`` of a checkpoint read by :func:`read_checkpoint`.

    Raises
    ------
    PVSInputError
        Unknown model name or an invalid stored config.
    """
    name = ckpt.get("model_name")
    if name not in MODEL_REGISTRY:
        raise PVSInputError(f"checkpoint is for model {name!r}, which this version does not know "
                            f"(available: {', '.join(available_models(None))})", path)
    spec = MODEL_REGISTRY[name]
    ignore: tuple[str, ...] = ()
    if int(ckpt.get("version", 1)) == 1:
        fields = {f.name for f in dataclasses.fields(spec.config_class)}
        ignore = tuple(k for k in _V1_CONFIG_KEYS if k not in fields)
    try:
        config = spec.config_from_dict(ckpt.get("model_config"), ignore=ignore)
    except (TypeError, ValueError) as exc:
        raise PVSInputError(f"stored config of model {name!r} is invalid ({exc})", path) from None
    return name, config


def load_model(path: str | Path, *, expected_model: str | None = None,
               device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a model from a napari-pvs checkpoint; nothing else is needed.

    Parameters
    ----------
    path : str or Path
        Checkpoint written by :func:`save_checkpoint` (e.g. by ``napari-pvs train``), in
        format version 1 or 2.
    expected_model : str, optional
        If given, the checkpoint must hold this model (registry name).
    device : str or torch.device
        Where to put the model.

    Raises
    ------
    PVSInputError
        Missing file, not a napari-pvs checkpoint, unknown model name, another model than
        ``expected_model``, or weights that do not fit the stored config.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    name, config = checkpoint_config(ckpt, path)
    if expected_model is not None and name != expected_model:
        raise PVSInputError(f"checkpoint is for model {name!r}, expected {expected_model!r}", path)
    model = MODEL_REGISTRY[name].build(config)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise PVSInputError(f"weights do not fit model {name!r} "
                            f"({str(exc).splitlines()[0]})", path) from None
    model.to(device).eval()
    info = {k: v for k, v in ckpt.items() if k not in ("state_dict",)}
    return LoadedModel(model=model, name=name, config=config, spacing_mm=float(ckpt["spacing_mm"]),
                       percentiles=tuple(ckpt["normalization"]["percentiles"]),  # type: ignore[arg-type]
                       roi_size=tuple(int(p) for p in ckpt.get("patch_size", DEFAULT_PATCH_SIZE)),  # type: ignore[arg-type]
                       path=path, info=info)


def ensemble_checkpoint(paths, out: str | Path, *, recipe: dict | None = None) -> Path:
    """Write an ``ensemble`` checkpoint (:mod:`~napari_pvs.engine.models.ensemble`) holding
    the weights of several trained checkpoints of one family.

    The members must agree on everything inference uses: family and config, in-plane
    spacing, patch size and normalisation; the ensemble takes these over. Its
    ``training_data`` is the members' (each row gains ``"member"``), its ``metrics`` lists
    the members' metrics, its ``train_config`` is the first member's, and its ``recipe``
    is ``{"members": [each member's recipe with its file name], **recipe}``.

    Parameters
    ----------
    paths : sequence of str or Path
        At least two checkpoints.
    out : str or Path
        Output file (written atomically).
    recipe : dict, optional
        Extra JSON-able notes saved in the recipe (how the members were made).

    Raises
    ------
    PVSInputError
        A member that is not a napari-pvs checkpoint, or that differs from the first in
        family, config, spacing, patch size or normalisation.
    ValueError
        Fewer than two paths.
    """
    from .ensemble import EnsembleConfig

    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(f"an ensemble needs at least 2 checkpoints, got {len(paths)}")
    ckpts = [read_checkpoint(p) for p in paths]
    first, first_cfg = checkpoint_config(ckpts[0], paths[0])
    keys = ("spacing_mm", "patch_size", "normalization")
    for p, ck in zip(paths[1:], ckpts[1:], strict=True):
        name, cfg = checkpoint_config(ck, p)
        if name != first or cfg != first_cfg:
            raise PVSInputError(f"member is {name!r} {cfg}, the first member {first!r} {first_cfg}; "
                                f"ensemble members must share family and config", p)
        for k in keys:
            if ck.get(k) != ckpts[0].get(k):
                raise PVSInputError(f"member's {k} {ck.get(k)} differs from the first member's "
                                    f"{ckpts[0].get(k)}", p)
    config = EnsembleConfig(member=first, member_config=dataclasses.asdict(first_cfg), n_members=len(paths))
    model = MODEL_REGISTRY["ensemble"].build(config)
    for k, (p, ck) in enumerate(zip(paths, ckpts, strict=True)):
        try:
            model.members[k].load_state_dict(ck["state_dict"])
        except RuntimeError as exc:
            raise PVSInputError(f"weights do not fit model {first!r} ({str(exc).splitlines()[0]})", p) from None
    training_data = [{**row, "member": k} for k, ck in enumerate(ckpts) for row in ck.get("training_data", [])]
    metrics = {"members": [ck.get("metrics", {}) for ck in ckpts]}
    members = [{"file": p.name, **(ck.get("recipe") or {})} for p, ck in zip(paths, ckpts, strict=True)]
    return save_checkpoint(out, model=model, model_name="ensemble", model_config=config,
                           spacing_mm=float(ckpts[0]["spacing_mm"]),
                           percentiles=tuple(ckpts[0]["normalization"]["percentiles"]),
                           patch_size=tuple(ckpts[0].get("patch_size", DEFAULT_PATCH_SIZE)),
                           train_config=ckpts[0].get("train_config"), training_data=training_data,
                           metrics=metrics, recipe={"members": members, **(recipe or {})})


def trainable_checkpoint(ckpt: dict, index: int = 0) -> dict:
    """What fine-tuning starts from: an ``ensemble`` checkpoint's member ``index`` as a
    standalone checkpoint dict (its family, config and weights; the rest of the
    ensemble's fields kept); any other checkpoint dict as it is.

    Fine-tuning (``train --init-from``, active learning from the shipped default model)
    trains one network; an ensemble is made from trained networks, not trained itself.

    Raises
    ------
    IndexError
        ``index`` is not a member.
    """
    if ckpt.get("model_name") != "ensemble":
        return ckpt
    cfg = ckpt["model_config"]
    if not 0 <= index < int(cfg["n_members"]):
        raise IndexError(f"ensemble has {cfg['n_members']} members, no member {index}")
    prefix = f"members.{index}."
    member = MODEL_REGISTRY[cfg["member"]]
    return {**ckpt, "model_name": member.name, "model_config": dict(cfg["member_config"]),
            "model_config_class": member.config_class.__name__,
            "state_dict": {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}}
