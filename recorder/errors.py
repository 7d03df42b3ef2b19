"""Errors of the recorder package: one root, messages that say what and where."""

from __future__ import annotations

from pathlib import Path


class RecorderError(Exception):
    """Root of every error the recorder raises on purpose."""


class ProfileError(RecorderError, ValueError):
    """A recording profile is missing, malformed or names an unknown type."""


class SessionError(RecorderError):
    """An episode-control call does not fit the session's state."""


class DiskFullError(RecorderError, OSError):
    """The disk (or the file-size limit) ran out while an episode was written."""


class CorruptFileError(RecorderError):
    """A recording is truncated or damaged; names the file and the byte offset."""

    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"{self.path}: {reason} at byte offset {offset}")


class SourceError(RecorderError):
    """A message source could not be opened or read."""
