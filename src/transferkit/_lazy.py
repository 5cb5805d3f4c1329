"""Packages whose public names are imported on first use, so that importing them costs nothing.

`import transferkit` (and with it the CLI, for ``--help``) would otherwise pull in torch, timm,
torchvision and scikit-learn, seconds before anything is asked of them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable

__all__ = ["lazy_names"]


def lazy_names(package: str, exports: dict[str, Iterable[str]]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """Module ``__getattr__`` and ``__dir__`` for `package`, whose names live in the modules of `exports`.

    Args:
        package: The package's ``__name__``.
        exports: Module path (absolute) -> the public names it defines.

    Returns:
        The package's ``__getattr__`` (imports the owning module on first access and keeps the value) and
        ``__dir__``.
    """
    owner = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = owner.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(owner))

    return __getattr__, __dir__
