"""The model registry: name -> (network class, config class).

Every network family registers its ``nn.Module`` class together with its own frozen
config dataclass. A checkpoint stores the name and ``dataclasses.asdict(config)`` (see
:mod:`napari_pvs.engine.checkpoint`), so :func:`build_model` rebuilds the exact network
from the checkpoint alone, whatever extra settings a family needs (a ViT depth, a second
input modality, ...).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

__all__ = [
    "ModelSpec",
    "MODEL_REGISTRY",
    "register_model",
    "available_models",
    "model_spec",
    "build_model",
    "config_from_dict",
]


@dataclass(frozen=True)
class ModelSpec:
    """A registered network family.

    Attributes
    ----------
    name : str
        Registry name (lower case), e.g. ``"mfnsde"``.
    description : str
        One line for menus and ``--help``.
    network : type
        The ``nn.Module`` class; built as ``network(config)``.
    config_class : type
        Its frozen config dataclass.
    task : str
        ``"segmentation"`` (2D PVS networks) or ``"registration"``.
    train_defaults : dict
        Training settings the family is meant to train with (optimiser, learning rate,
        schedule), applied by ``TrainConfig.for_model``; empty: the paper defaults of
        ``TrainConfig`` (Adagrad 0.05).
    """

    name: str
    description: str
    network: type
    config_class: type
    task: str = "segmentation"
    train_defaults: Mapping = dataclasses.field(default_factory=dict)

    def config_from_dict(self, d: Mapping | None, *, ignore: tuple[str, ...] = ()) -> object:
        """Rebuild this family's config from ``dataclasses.asdict(config)`` (or its JSON).

        Lists (JSON turns tuples into lists) are handed to the config, which turns them
        back into tuples; missing keys take their defaults.

        Parameters
        ----------
        d : dict or config or None
            None gives the default config; an instance of :attr:`config_class` is returned
            as is.
        ignore : tuple of str
            Keys dropped silently (used for checkpoints written before each family had
            its own config class).

        Raises
        ------
        ValueError
            ``d`` has keys that are not fields of the config, or a value is invalid.
        """
        if d is None:
            return self.config_class()
        if isinstance(d, self.config_class):
            return d
        if not isinstance(d, Mapping):
            raise ValueError(f"{self.name}: model config must be a dict or "
                             f"{self.config_class.__name__}, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(self.config_class)}
        kwargs = {k: v for k, v in d.items() if k not in ignore}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"{self.name}: unknown model config key(s) {', '.join(map(str, unknown))}; "
                             f"valid keys: {', '.join(sorted(known))}")
        return self.config_class(**kwargs)

    def build(self, config: object | Mapping | None = None) -> nn.Module:
        """A freshly initialised network (train mode) from ``config`` (defaults if None)."""
        return self.network(self.config_from_dict(config))


#: family name -> module of :mod:`napari_pvs.engine.models` that registers it. Families are
#: imported when first asked for, so that loading a ``liteunet`` checkpoint does not import
#: MONAI (3-6 s) through the other families.
FAMILY_MODULES = {"unet": "unet", "liteunet": "liteunet", "mfnsde": "mfnsde", "dynunet": "dynunet",
                  "gloms": "gloms", "cmgraph": "cmgraph", "frangi": "frangi", "acsgreg": "acsgreg",
                  "ensemble": "ensemble"}


def _import_family(key: str) -> None:
    module = FAMILY_MODULES.get(key)
    if module is not None and not dict.__contains__(MODEL_REGISTRY, key):
        importlib.import_module(f"{__package__}.{module}")


def _import_all() -> None:
    for key in FAMILY_MODULES:
        _import_family(key)


class _Registry(dict):
    """``name -> ModelSpec``; looking a name up imports its family's module first, and
    listing the registry imports every family (see :data:`FAMILY_MODULES`)."""

    def __getitem__(self, key):
        _import_family(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        _import_family(key)
        return dict.get(self, key, default)

    def __contains__(self, key) -> bool:
        _import_family(key)
        return dict.__contains__(self, key)

    def __iter__(self):
        _import_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        _import_all()
        return dict.__len__(self)

    def keys(self):
        _import_all()
        return dict.keys(self)

    def values(self):
        _import_all()
        return dict.values(self)

    def items(self):
        _import_all()
        return dict.items(self)


MODEL_REGISTRY: dict[str, ModelSpec] = _Registry()


def register_model(name: str, description: str, config_class: type, *,
                   task: str = "segmentation", train_defaults: Mapping | None = None) -> Callable[[type], type]:
    """Class decorator registering a network class and its config class under ``name``.

    Names are case-insensitive (stored lower-case).

    Raises
    ------
    ValueError
        ``name`` is empty or already registered, or ``config_class`` is not a frozen
        dataclass.
    """
    key = str(name).strip().lower()
    if not key:
        raise ValueError("model name must not be empty")
    params = getattr(config_class, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise ValueError(f"config class of model '{key}' must be a frozen dataclass, "
                         f"got {config_class!r}")

    def decorator(network: type) -> type:
        if dict.__contains__(MODEL_REGISTRY, key):
            raise ValueError(f"model '{key}' is already registered")
        dict.__setitem__(MODEL_REGISTRY, key, ModelSpec(key, description, network, config_class, task,
                                                          dict(train_defaults or {})))
        return network

    return decorator


def available_models(task: str | None = "segmentation") -> list[str]:
    """Sorted names of the registered models of ``task`` (None: every task)."""
    return sorted(k for k, s in MODEL_REGISTRY.items() if task is None or s.task == task)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name`` (case-insensitive).

    Raises
    ------
    ValueError
        ``"unknown model 'x'; available: cmgraph, dynunet, ..."``.
    """
    spec = MODEL_REGISTRY.get(str(name).strip().lower())
    if spec is None:
        raise ValueError(f"unknown model '{name}'; available: {', '.join(available_models())}")
    return spec


def config_from_dict(name: str, d: Mapping | object | None) -> object:
    """Model ``name``'s config rebuilt from a dict (see :meth:`ModelSpec.config_from_dict`)."""
    return model_spec(name).config_from_dict(d)


def build_model(name: str, config: object | Mapping | None = None) -> nn.Module:
    """Build the registered model ``name`` from ``config``.

    Parameters
    ----------
    name : str
        A name from :func:`available_models` (case-insensitive).
    config : config dataclass, dict or None
        The family's config (a dict is read with :meth:`ModelSpec.config_from_dict`);
        None means its defaults.

    Returns
    -------
    torch.nn.Module
        A freshly initialised network (train mode); its ``config`` attribute is the
        config it was built from.

    Raises
    ------
    ValueError
        Unknown name, or an invalid config.
    """
    return model_spec(name).build(config)
