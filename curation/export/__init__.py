"""Exports of a release to the formats training code reads: LeRobot v3 and robomimic HDF5;
and to Rerun recordings for looking at episodes (``"rerun"``: one ``.rrd`` per episode, of
a release or of recordings; see ``curation/export/rerun.py``).

``export_release(release, "lerobot", out_dir)`` writes ``out_dir/<name>-v<N>-lerobot/`` (a
LeRobot v3.0 dataset root); ``"robomimic"`` writes ``out_dir/<name>-v<N>.hdf5``. Both put
the release's native-rate streams on one fixed-fps grid per episode (default 30 fps, the
camera rate): each frame takes, for every stream, the latest sample at or before the frame
time, the sync-index semantics of the release and of ``ReleaseDataset(clock=fps)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ExportError
from .grid import ExportFeature, default_features
from .lerobot import export_lerobot
from .rerun import RerunExport, export_rerun, write_rerun
from .robomimic import export_robomimic

__all__ = [
    "EXPORTERS",
    "ExportError",
    "ExportFeature",
    "RerunExport",
    "default_features",
    "export_lerobot",
    "export_release",
    "export_rerun",
    "export_robomimic",
    "write_rerun",
]

EXPORTERS: dict[str, Callable[..., Path]] = {
    "lerobot": export_lerobot,
    "robomimic": export_robomimic,
    "rerun": export_rerun,
}


def export_release(
    release_path: str | Path, format: str, out_dir: str | Path, **options: Any  # noqa: A002
) -> Path:
    """Export the release at ``release_path`` (``NAME/vN`` or ``NAME`` for the newest
    version) as ``format`` under ``out_dir``; returns what was written (a dataset root or
    a file). ``options`` go to the exporter (``fps``, ``features``, ``episodes``, ...)."""
    try:
        exporter = EXPORTERS[format]
    except KeyError:
        raise ExportError(
            f"unknown export format {format!r}; formats: {', '.join(sorted(EXPORTERS))}"
        ) from None
    return exporter(release_path, out_dir, **options)
