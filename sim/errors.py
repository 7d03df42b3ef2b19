"""The simulation stage's one error type."""

from __future__ import annotations


class SimError(Exception):
    """Bad simulation input or a failed run: the message says what and where (task, file,
    episode, topic)."""


__all__ = ["SimError"]
