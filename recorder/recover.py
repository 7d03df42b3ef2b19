"""Recovery: turn an episode cut short (crash, kill -9, power loss, full disk) into a valid,
indexed MCAP holding every intact chunk.

File-level salvage lives in :mod:`recorder.salvage`; a session's recovery is the explicit
step ``Session.recover()``. This module keeps the public import paths of both."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from .contract import CRASHED_SUFFIX
from .salvage import RecoveryResult, recover_file, salvage


class _Recoverable(Protocol):
    def recover(self) -> list[RecoveryResult]: ...


def recover_session(directory: Path, *, session: _Recoverable) -> list[RecoveryResult]:
    """Recover every episode of ``session`` that was being written when it stopped
    (the public path of ``Session.recover``; ``directory`` is the session's own)."""
    return session.recover()


__all__ = ["CRASHED_SUFFIX", "RecoveryResult", "recover_file", "recover_session", "salvage"]
