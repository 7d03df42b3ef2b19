"""Errors of the vault package: one root, :class:`VaultError`, with messages that say what
was wrong and where (the file, the dataset, the object and chunk, the audit entry)."""

from __future__ import annotations

__all__ = ["ChunkError", "FormatError", "KeyFileError", "LogTamperError", "ProofError",
           "TamperError", "VaultError"]


class VaultError(Exception):
    """Root of every error the vault raises on purpose."""


class FormatError(VaultError, ValueError):
    """A file, record or note is malformed, or of a format version this vault cannot read."""


class KeyFileError(VaultError, PermissionError):
    """A key file is missing, readable by others, inside the vault root, or malformed."""


class TamperError(VaultError):
    """Stored data failed its authentication: it was altered, moved, replayed or truncated,
    or the key is wrong."""


class ChunkError(TamperError):
    """One chunk of an encrypted object failed authentication.

    ``object`` names the object (``dataset/version/name``) and ``chunk`` its index."""

    def __init__(self, message: str, *, object: str, chunk: int) -> None:  # noqa: A002 - the field's name
        super().__init__(message)
        self.object = object
        self.chunk = chunk


class LogTamperError(TamperError):
    """The audit log is not what its checkpoints signed; ``entry`` is the first bad entry
    (None when the fault is in a checkpoint, not in an entry)."""

    def __init__(self, message: str, *, entry: int | None) -> None:
        super().__init__(message)
        self.entry = entry


class ProofError(VaultError):
    """An inclusion or consistency proof, or a signature on a note, does not verify."""
