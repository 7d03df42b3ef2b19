"""Errors of the curation package: one root, messages that say what and where."""

from __future__ import annotations


class CurationError(Exception):
    """Root of every error the curation stage raises on purpose."""


class InputError(CurationError, FileNotFoundError):
    """An input path is missing or holds no recording."""


class LabelError(CurationError, ValueError):
    """A labels file or a label given on the command line is malformed."""


class ReleaseError(CurationError):
    """A release is missing, malformed, or of a format version this DemoFab cannot read."""


class ConfigError(CurationError, ValueError):
    """A curation config is malformed."""
