"""The installed package's version, from its metadata (pyproject.toml is the one place it is written)."""

from __future__ import annotations

from functools import cache

__all__ = ["package_version"]


@cache
def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transferkit")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
