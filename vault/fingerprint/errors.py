"""The fingerprint package's error type."""

from __future__ import annotations

from ..db import Forbidden
from ..errors import VaultError

__all__ = ["FingerprintError", "NotExportable"]


class FingerprintError(VaultError):
    """A fingerprinting step that cannot be done: a frame that does not decode, a suspect
    file that is not an image, a release, video or directory of them, a missing key."""


class NotExportable(FingerprintError, Forbidden):
    """An export of a dataset its provider has not marked exportable (a
    :class:`~vault.db.Forbidden`: the API answers 403)."""
