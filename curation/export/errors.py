"""Errors of the exports."""

from __future__ import annotations

from ..errors import CurationError


class ExportError(CurationError):
    """An export could not be written: unknown format, bad option, existing output."""
