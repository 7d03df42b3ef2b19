"""DemoFab curation: recordings -> episodes -> quality checks -> labels -> Zarr v3 releases."""

from __future__ import annotations

from .config import CurateConfig, QualityConfig, SegmentConfig, load_config
from .errors import ConfigError, CurationError, InputError, LabelError, ReleaseError
from .export import ExportError, export_release
from .flags import FLAG_BITS, flag_names
from .labels import Labels, load_labels
from .loader import LoaderError, ReleaseDataset, ReleaseReader
from .pipeline import CurateResult, curate
from .release import list_releases, open_release, release_summary, release_versions
from .writer import FORMAT_VERSION

__all__ = [
    "CurateConfig", "QualityConfig", "SegmentConfig", "load_config",
    "CurationError", "ConfigError", "InputError", "LabelError", "ReleaseError",
    "FLAG_BITS", "flag_names", "Labels", "load_labels", "CurateResult", "curate",
    "FORMAT_VERSION", "list_releases", "open_release", "release_summary", "release_versions",
    "LoaderError", "ReleaseDataset", "ReleaseReader", "ExportError", "export_release",
]
