"""Errors of the loader."""

from __future__ import annotations

from ..errors import CurationError


class LoaderError(CurationError, ValueError):
    """A loader argument is invalid (unknown key, bad delta, empty selection...)."""
