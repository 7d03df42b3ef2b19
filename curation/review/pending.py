"""Recordings not yet in a release, for review beside it: curated once into a scratch
release under the review cache (same segmentation and quality checks as ``demofab
curate``), so their episodes have the ``key`` they will have in the next version, and a
decision taken on one now applies when it is curated into the release."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..config import CurateConfig
from ..errors import CurationError


def curate_pending(sessions: list[str | Path], cache_root: Path,
                   config: CurateConfig | None = None) -> Path:
    """The scratch release (a version directory) of ``sessions``; curated again only when
    the recordings changed (``curate`` keeps the version when nothing did)."""
    from ..pipeline import curate

    paths = [Path(s).resolve() for s in sessions]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CurationError(f"review: session {', '.join(missing)} does not exist")
    digest = hashlib.sha256("\n".join(sorted(map(str, paths))).encode()).hexdigest()[:16]
    out = cache_root / "pending" / digest
    result = curate(list(paths), out, "sessions", config=config)
    if result.episodes == 0:
        raise CurationError(f"review: no episodes in {', '.join(map(str, paths))}")
    return result.release
