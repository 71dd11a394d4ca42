"""Model configuration and the name -> factory registry.

A model is looked up by a short name (``"unet"``, ``"mfnsde"``) and built from a
:class:`ModelConfig`. The config is a frozen dataclass that survives a JSON round trip
(``dataclasses.asdict`` -> JSON -> :func:`model_config_from_dict`), so that a checkpoint
can store ``{"model": name, "config": asdict(config), "state_dict": ...}`` and the
network can be rebuilt exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

__all__ = [
    "ModelConfig",
    "ModelSpec",
    "MODEL_REGISTRY",
    "register_model",
    "available_models",
    "build_model",
    "model_config_from_dict",
    "required_divisor",
]


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters shared by every registered 2D segmentation network.

    Parameters
    ----------
    in_channels : int
        Channels of the input slice (1 for a single T2-weighted image).
    out_channels : int
        Logit channels of the output. The default, 1, is one PVS-vs-background logit
        to be passed through a sigmoid.
    features : tuple of int
        Feature channels per encoder level, from full resolution down to the bottleneck.
        ``len(features) - 1`` is the number of 2x down-samplings, so the input height and
        width must be multiples of ``2 ** (len(features) - 1)`` (see
        :func:`required_divisor`). A list is accepted and stored as a tuple.
    dropout : float
        Dropout probability in the convolution blocks, in ``[0, 1)``.
    deep_supervision : bool
        ``mfnsde`` only: in train mode return the list of deeply supervised outputs.
        Ignored by ``unet``.

    Raises
    ------
    ValueError
        If a value is out of range (e.g. fewer than two levels, non-positive channels).
    """

    in_channels: int = 1
    out_channels: int = 1
    features: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.0
    deep_supervision: bool = True

    def __post_init__(self) -> None:
        # Normalise (frozen dataclass, hence object.__setattr__) then validate, so that
        # ModelConfig(features=[16, 32]) == ModelConfig(features=(16, 32)).
        try:
            features = tuple(int(f) for f in self.features)
        except TypeError:
            raise ValueError(
                f"features must be a sequence of integers, got {self.features!r}"
            ) from None
        object.__setattr__(self, "features", features)
        if len(features) < 2:
            raise ValueError(
                f"features needs at least 2 levels (one down-sampling), got {features}"
            )
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
        object.__setattr__(self, "deep_supervision", bool(self.deep_supervision))


def required_divisor(config: ModelConfig) -> int:
    """Multiple that the input height and width must be for models built from ``config``.

    Equal to ``2 ** (len(config.features) - 1)``: 8 for the default four levels.
    """
    return 2 ** (len(config.features) - 1)


def model_config_from_dict(d: Mapping) -> ModelConfig:
    """Rebuild a :class:`ModelConfig` from ``dataclasses.asdict(config)`` (or its JSON).

    Lists (as JSON turns tuples into) are turned back into tuples. Missing keys take
    their defaults, so configs saved by older versions still load.

    Raises
    ------
    ValueError
        If ``d`` has keys that are not ModelConfig fields, or a value is invalid.
    """
    if isinstance(d, ModelConfig):
        return d
    if not isinstance(d, Mapping):
        raise ValueError(f"model config must be a dict, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(
            f"unknown model config key(s) {', '.join(map(str, unknown))}; "
            f"valid keys: {', '.join(sorted(known))}"
        )
    kwargs = dict(d)
    if "features" in kwargs and not isinstance(kwargs["features"], (str, bytes)):
        try:
            kwargs["features"] = tuple(kwargs["features"])
        except TypeError:
            pass  # __post_init__ raises a clear ValueError
    return ModelConfig(**kwargs)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its name, a one-line description and its factory."""

    name: str
    description: str
    factory: Callable[[ModelConfig], torch.nn.Module] = field(repr=False)

    def build(self, config: ModelConfig | Mapping | None = None) -> torch.nn.Module:
        """Build a fresh, randomly initialised network from ``config`` (defaults if None)."""
        if config is None:
            config = ModelConfig()
        elif not isinstance(config, ModelConfig):
            config = model_config_from_dict(config)
        return self.factory(config)


MODEL_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str) -> Callable:
    """Decorator registering ``factory(config: ModelConfig) -> nn.Module`` under ``name``.

    Names are case-insensitive (stored lower-case).

    Raises
    ------
    ValueError
        If ``name`` is empty or already registered.
    """
    key = str(name).strip().lower()
    if not key:
        raise ValueError("model name must not be empty")

    def decorator(factory: Callable[[ModelConfig], torch.nn.Module]):
        if key in MODEL_REGISTRY:
            raise ValueError(f"model '{key}' is already registered")
        MODEL_REGISTRY[key] = ModelSpec(key, description, factory)
        return factory

    return decorator


def available_models() -> list[str]:
    """Sorted names of the registered models."""
    return sorted(MODEL_REGISTRY)


def build_model(
    name: str, config: ModelConfig | Mapping | None = None
) -> torch.nn.Module:
    """Build the registered model ``name`` from ``config``.

    Parameters
    ----------
    name : str
        A name from :func:`available_models` (case-insensitive).
    config : ModelConfig, dict or None
        The configuration; a dict is read with :func:`model_config_from_dict`; None
        means ``ModelConfig()``.

    Returns
    -------
    torch.nn.Module
        A freshly initialised network (in train mode) whose ``divisor`` attribute is the
        required multiple of input height and width and whose ``config`` attribute is the
        :class:`ModelConfig` it was built from.

    Raises
    ------
    ValueError
        ``"unknown model 'x'; available: mfnsde, unet"`` for an unknown name, or for an
        invalid config.
    """
    key = str(name).strip().lower()
    spec = MODEL_REGISTRY.get(key)
    if spec is None:
        raise ValueError(
            f"unknown model '{name}'; available: {', '.join(available_models())}"
        )
    return spec.build(config)
