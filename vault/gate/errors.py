"""Errors of the output gate: :class:`GateError`, in the vault's family.

The gate reports what it finds in an output as findings, never as exceptions; a
:class:`GateError` means the gate itself could not work: an index file that is damaged or of
an unknown format version, a release it cannot read, a policy with an unknown key."""

from __future__ import annotations

from ..errors import VaultError

__all__ = ["GateError"]


class GateError(VaultError):
    """The gate could not do its work (bad index file, unreadable release, bad policy)."""
