"""Names of a package imported from its submodules on first use (PEP 562).

Refer to: PEP 562, "Module __getattr__ and __dir__" (Levkivskyi, 2017).

Example
-------
>>> ns = {}
>>> getattr_, dir_ = lazy_exports("napari_pvs.engine", {"PVSInputError": "errors"}, ns)
>>> getattr_("PVSInputError").__name__, "PVSInputError" in ns
('PVSInputError', True)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, str],
                 namespace: dict) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__``: name ``n`` in ``where`` is imported from
    submodule ``package.where[n]`` when first asked for, then kept in ``namespace`` (the
    package's ``globals()``).

    Raises
    ------
    AttributeError
        (from ``__getattr__``) a name neither in the package nor in ``where``.
    """
    def __getattr__(name: str):  # noqa: N807 - the PEP 562 hook
        if name in where:
            value = getattr(importlib.import_module(f".{where[name]}", package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
