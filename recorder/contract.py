"""The recording contract: every name and layout that a reader of a DemoFab recording
relies on, defined once. ``inspect``, ``replay``, the sources, ``curation`` and ``sim``
import these; none of them types a name again.

A session directory::

    SESSION/
      metadata.yaml          rosbag2 metadata (version 9): the finished episodes as splits
      demofab_session.yaml   DemoFab's state: profile, episodes, discarded, the open episode
      episode_0000.mcap      a finished episode (complete summary and indexes)
      episode_0003.mcap.part the episode being written (``recover`` turns it into .mcap)
      discarded/             episodes the operator discarded or re-recorded

In each episode file: the Metadata records ``demofab.episode`` (the episode's facts) and
``demofab.health``, and the episode events on ``/demofab/episode_events``. A simulated
episode also carries ``demofab.sim``: its provenance (task, seed, randomization draw,
source episodes and transforms, simulator and DemoFab versions).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from demofab.yamlutil import safe_load

from .errors import RecorderError

# -- episode files ---------------------------------------------------------------------
EPISODE_METADATA = "demofab.episode"     # Metadata record: the episode's facts
HEALTH_METADATA = "demofab.health"       # Metadata record: the recorder's health report
RECOVERY_METADATA = "demofab.recovery"   # Metadata record of a loose file that was recovered
SIM_METADATA = "demofab.sim"             # Metadata record of a simulated episode: its provenance
EVENTS_TOPIC = "/demofab/episode_events"
EPISODE_EVENT_TYPE = "demofab_msgs/msg/EpisodeEvent"
OUTCOMES = ("success", "failure", "unknown")
ROBOT_DESCRIPTION = "robot_description.urdf"  # Attachment name of the robot description


class EventKind(int, Enum):
    """``EpisodeEvent.kind``: what the operator (or the recorder) marked."""

    START = 0
    STOP = 1
    DISCARD = 2
    SUBTASK = 3
    INTERVENTION = 4
    NOTE = 5
    RESET_START = 6  # the reset phase between episodes (EpisodeEvent.msg defines 6 and 7)
    RESET_END = 7


# -- the session directory -------------------------------------------------------------
SESSION_FORMAT_VERSION = 1
STATE_FILE = "demofab_session.yaml"
BAG_METADATA = "metadata.yaml"
BAG_INFO_KEY = "rosbag2_bagfile_information"
DISCARDED_DIR = "discarded"
MCAP_SUFFIX = ".mcap"
PART_SUFFIX = ".part"          # episode_NNNN.mcap.part: being written (or cut short)
CRASHED_SUFFIX = ".crashed"    # episode_NNNN.mcap.crashed: a .part that recovery is copying
SESSION_KEY = "demofab.session"  # custom_data keys in metadata.yaml
PROFILE_KEY = "demofab.profile"
#: libyaml's safe dumper where PyYAML has it (the same text, ~5x faster: the state file is
#: rewritten twice per episode), else PyYAML's own
SAFE_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_EPISODE_FILE = re.compile(r"episode_(\d{4,})\.mcap")


def episode_file(index: int) -> str:
    """The file name of episode ``index`` in its session."""
    return f"episode_{index:04d}{MCAP_SUFFIX}"


def episode_index_of(name: str) -> int | None:
    """The index in an episode file name (``episode_0007.mcap`` -> 7), else None."""
    m = _EPISODE_FILE.fullmatch(name)
    return int(m.group(1)) if m else None


def is_session(directory: Path) -> bool:
    """Whether ``directory`` is a DemoFab session (it has the state file)."""
    return (directory / STATE_FILE).is_file()


@dataclass(slots=True)
class EpisodeInfo:
    """One episode as the session state file lists it."""

    index: int
    episode_id: str
    file: str
    task: str
    operator: str
    start_ns: int
    end_ns: int = 0
    outcome: str = "unknown"
    ended_by: str = "stop"
    messages: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    flagged: bool = False
    flags: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> EpisodeInfo:
        known = {f.name for f in fields(cls)}
        if not isinstance(raw, dict):
            raise RecorderError(f"{where}: an episode entry is {type(raw).__name__}, not a mapping")
        unknown = sorted(set(raw) - known)
        if unknown:
            raise RecorderError(f"{where}: episode entry has unknown keys {', '.join(unknown)}")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise RecorderError(f"{where}: episode entry {raw!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class SessionState:
    """``demofab_session.yaml``, as read back."""

    path: Path
    session: str
    robot: str
    profile: dict[str, Any]
    episodes: tuple[EpisodeInfo, ...]
    discarded: tuple[EpisodeInfo, ...]
    open_episode: EpisodeInfo | None
    #: episodes a write failure (or a crash) ended; their ``.part`` awaits ``recover``
    damaged: tuple[EpisodeInfo, ...] = ()

    @property
    def profile_name(self) -> str:
        return str(self.profile.get("name", ""))

    def episode_indices(self) -> dict[str, int]:
        """File name -> episode index, for the finished episodes."""
        return {e.file: e.index for e in self.episodes}


def session_state_yaml(state: SessionState) -> str:
    """The text of ``demofab_session.yaml`` for ``state`` (what ``read_session_state``
    reads back); ``state.path`` is not stored."""
    return yaml.dump({
        "format_version": SESSION_FORMAT_VERSION,
        "session": state.session,
        "robot": state.robot,
        "profile": state.profile,
        "episodes": [asdict(e) for e in state.episodes],
        "discarded": [asdict(e) for e in state.discarded],
        "open_episode": asdict(state.open_episode) if state.open_episode else None,
        "damaged": [asdict(e) for e in state.damaged],
    }, Dumper=SAFE_DUMPER, sort_keys=False)


def read_session_state(directory: Path | str) -> SessionState | None:
    """The session state of ``directory``; None when it is not a DemoFab session.
    Raises ``RecorderError`` naming the file when the state is malformed or of a format
    version this DemoFab does not read."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return None
    try:
        raw = safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecorderError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RecorderError(f"{path}: session state is {type(raw).__name__}, not a mapping")
    version = raw.get("format_version")
    if version != SESSION_FORMAT_VERSION:
        raise RecorderError(f"{path}: session format_version {version} is not supported "
                            f"(this DemoFab reads {SESSION_FORMAT_VERSION})")
    profile = raw.get("profile") or {}
    if not isinstance(profile, dict):
        raise RecorderError(f"{path}: 'profile' is {type(profile).__name__}, not a mapping")
    where = str(path)
    opened = raw.get("open_episode")
    return SessionState(
        path=path, session=str(raw.get("session", "")), robot=str(raw.get("robot", "")),
        profile=profile,
        episodes=tuple(EpisodeInfo.from_dict(e, where) for e in raw.get("episodes") or []),
        discarded=tuple(EpisodeInfo.from_dict(e, where) for e in raw.get("discarded") or []),
        open_episode=EpisodeInfo.from_dict(opened, where) if opened else None,
        damaged=tuple(EpisodeInfo.from_dict(e, where) for e in raw.get("damaged") or []),
    )


@dataclass(frozen=True, slots=True)
class BagListing:
    """What ``metadata.yaml`` of a session or rosbag2 bag says about its files."""

    path: Path
    files: tuple[str, ...]      # relative_file_paths, in order
    session: str                # custom_data demofab.session, "" for a foreign bag
    profile: str                # custom_data demofab.profile, "" for a foreign bag
    storage: str                # storage_identifier ("mcap", "sqlite3", ...)


def read_bag_listing(directory: Path | str) -> BagListing | None:
    """The rosbag2 metadata of ``directory``; None when it has none. Raises
    ``RecorderError`` naming the file when it is not rosbag2 metadata."""
    path = Path(directory) / BAG_METADATA
    if not path.is_file():
        return None
    try:
        info = (safe_load(path.read_text()) or {})[BAG_INFO_KEY]
        files = tuple(str(p) for p in info.get("relative_file_paths") or [])
        custom = info.get("custom_data") or {}
        return BagListing(path, files, str(custom.get(SESSION_KEY, "")),
                          str(custom.get(PROFILE_KEY, "")),
                          str(info.get("storage_identifier", "")))
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise RecorderError(f"{path}: not rosbag2 metadata: {exc}") from None


__all__ = [
    "BAG_INFO_KEY", "BAG_METADATA", "BagListing", "CRASHED_SUFFIX", "DISCARDED_DIR",
    "EPISODE_EVENT_TYPE", "EPISODE_METADATA", "SIM_METADATA", "EVENTS_TOPIC", "EpisodeInfo", "EventKind",
    "HEALTH_METADATA", "MCAP_SUFFIX", "OUTCOMES", "PART_SUFFIX", "PROFILE_KEY",
    "RECOVERY_METADATA", "ROBOT_DESCRIPTION", "SESSION_FORMAT_VERSION", "SESSION_KEY",
    "STATE_FILE", "SessionState", "episode_file", "episode_index_of", "is_session",
    "read_bag_listing", "read_session_state", "session_state_yaml",
]
