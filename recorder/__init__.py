"""DemoFab recorder: ROS 2 recordings to crash-safe, per-episode MCAP files."""

from demofab import __version__

from .contract import EpisodeInfo, EventKind
from .control import Command, Controller, Plan, Recorder
from .errors import (
    CorruptFileError,
    DiskFullError,
    ProfileError,
    RecorderError,
    SessionError,
    SourceError,
)
from .health import HealthMonitor, HealthReport, TopicHealth
from .inspect import inspect_path
from .profile import Profile, Qos, TopicSpec, load_profile, parse_profile
from .recover import recover_file, recover_session
from .session import Session
from .sources import RawMessage, Source, make_source, register_source
from .writer import EpisodeWriter, WriterOptions

__all__ = [
    "__version__",
    "Command", "Controller", "Plan", "Recorder",
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
