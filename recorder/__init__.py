"""DemoFab recorder: ROS 2 recordings to crash-safe, per-episode MCAP files."""

from demofab import __version__

from .control import Command, Plan, Recorder  # noqa: E402
from .errors import (  # noqa: E402
    CorruptFileError,
    DiskFullError,
    ProfileError,
    RecorderError,
    SessionError,
    SourceError,
)
from .health import HealthMonitor, HealthReport, TopicHealth  # noqa: E402
from .inspect import inspect_path  # noqa: E402
from .profile import Profile, Qos, TopicSpec, load_profile, parse_profile  # noqa: E402
from .recover import recover_file, recover_session  # noqa: E402
from .session import EpisodeInfo, EventKind, Session  # noqa: E402
from .sources import RawMessage, Source, make_source, register_source  # noqa: E402
from .writer import EpisodeWriter, WriterOptions  # noqa: E402

__all__ = [
    "__version__",
    "Command", "Plan", "Recorder",
    "CorruptFileError", "DiskFullError", "ProfileError", "RecorderError", "SessionError",
    "SourceError",
    "HealthMonitor", "HealthReport", "TopicHealth",
    "inspect_path",
    "Profile", "Qos", "TopicSpec", "load_profile", "parse_profile",
    "recover_file", "recover_session",
    "EpisodeInfo", "EventKind", "Session",
    "RawMessage", "Source", "make_source", "register_source",
    "EpisodeWriter", "WriterOptions",
]
