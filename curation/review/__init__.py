"""The curation review page: browse a release's episodes, watch them, and label them into
a labels file that ``demofab curate --labels`` takes (``demofab review``).

The HTTP app needs FastAPI (the ``view`` extra); everything else here does not, so
``create_app`` imports it when called and says how to install it when it is missing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CurationError
from .catalog import BadQuery, Catalog, NotFound, default_cache_dir, open_version
from .decisions import DecisionsFile
from .metrics import Motion, outliers, robust_z

if TYPE_CHECKING:
    from fastapi import FastAPI

INSTALL_HINT = "pip install 'demofab[view]'"


def create_app(release_dir: str | Path, labels_path: str | Path | None = None,
               version: int | None = None, cache_dir: str | Path | None = None,
               sessions: list[str | Path] | None = None) -> FastAPI:
    """The review app (see ``curation.review.app.create_app``); a CurationError naming
    the ``view`` extra when FastAPI is not installed."""
    try:
        from . import app
    except ImportError as exc:
        raise CurationError(f"the review page needs FastAPI and uvicorn: {INSTALL_HINT} "
                            f"({exc})") from exc
    return app.create_app(release_dir, labels_path, version, cache_dir, sessions)


__all__ = ["INSTALL_HINT", "BadQuery", "Catalog", "DecisionsFile", "Motion", "NotFound",
           "create_app", "default_cache_dir", "open_version", "outliers", "robust_z"]
