"""The clean room's errors (a :class:`~vault.errors.VaultError` family)."""

from __future__ import annotations

from ..errors import VaultError

__all__ = ["JobError", "SandboxError"]


class JobError(VaultError, ValueError):
    """A job that cannot be accepted or run as given (what and where in the message)."""


class SandboxError(JobError):
    """The sandbox could not be set up (no bwrap, no tmpfs, a bad argument)."""
