"""The error raised when an export, an exported file or a parity check is not right."""

from __future__ import annotations

__all__ = ["ExportError"]


class ExportError(ValueError):
    """An export that failed, a model file that cannot be used, or parity outside tolerance."""
