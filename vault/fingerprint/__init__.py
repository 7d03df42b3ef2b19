"""Fingerprinted exports: a copy of a release for one lab whose camera frames carry a keyed
pattern that names the lab from a leaked copy (docs/provider-guide.md, "Fingerprinted
exports")."""

from __future__ import annotations

from .errors import FingerprintError, NotExportable
from .mark import AMPLITUDE, Code, FrameChange, code, embed_frame, frame_change
from .release import fingerprint_release
from .service import (
    MAX_FALSE_POSITIVE,
    ExportInfo,
    Fingerprints,
    Identification,
    Match,
    Policy,
    default_key_file,
)
from .suspect import Suspect, read_suspects

__all__ = ["AMPLITUDE", "MAX_FALSE_POSITIVE", "Code", "ExportInfo", "FingerprintError",
           "Fingerprints", "FrameChange", "Identification", "Match", "NotExportable", "Policy",
           "Suspect", "code", "default_key_file", "embed_frame", "fingerprint_release",
           "frame_change", "read_suspects"]
