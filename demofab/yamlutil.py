"""YAML parsing through libyaml's C loader when PyYAML has it (about 10x faster than the
pure-Python one on rosbag2 metadata and session files)."""

from __future__ import annotations

from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str | bytes) -> Any:
    """``yaml.safe_load`` with the C loader: the same documents, the same errors."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
