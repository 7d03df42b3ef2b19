"""The replay error."""

from __future__ import annotations

from ..errors import RecorderError

__all__ = ["ReplayError"]


class ReplayError(RecorderError):
    """A selection cannot be played (missing file, unknown topic or episode, bad option)."""
