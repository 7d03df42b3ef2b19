"""A recording session: a directory of per-episode MCAP files that is also a rosbag2 bag.

Its layout (the state file, the rosbag2 metadata, one ``.mcap`` per finished episode, the
``.part`` of the one being written, ``discarded/``) is the recording contract's, in
``recorder.contract``.

Episode control (start, stop with an outcome, discard, re-record, marks) is the Python
API that ``recorder.control`` drives for the terminal and the ROS 2 node.

A write failure (full disk, an I/O error, a failed background fsync) ends the open episode:
its ``.part`` stays on disk with what was written, the state file lists it under
``damaged``, and the session stays usable. Opening a session never touches its episode
files (an episode left open by a process that stopped is listed as damaged, flagged
``interrupted``): ``Session.recover()`` is the explicit step that turns ``.part`` files
into episodes; until then new episodes take indices past them, so nothing is overwritten.
"""

from __future__ import annotations

import os
import platform
import time
import uuid
from collections import Counter
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from demofab.durable import atomic_write

from .contract import (
    BAG_INFO_KEY,
    BAG_METADATA,
    CRASHED_SUFFIX,
    DISCARDED_DIR,
    EPISODE_METADATA,
    EVENTS_TOPIC,
    HEALTH_METADATA,
    MCAP_SUFFIX,
    OUTCOMES,
    PART_SUFFIX,
    PROFILE_KEY,
    SAFE_DUMPER,
    SESSION_FORMAT_VERSION,
    SESSION_KEY,
    STATE_FILE,
    EpisodeInfo,
    EventKind,
    SessionState,
    episode_file,
    episode_index_of,
    read_session_state,
    session_state_yaml,
)
from .errors import SessionError
from .health import HealthMonitor, HealthReport
from .profile import Profile
from .salvage import RecoveryResult, recovery_facts, salvage
from .types import EPISODE_EVENT_TYPE, message_type, serialize, typestore
from .writer import WRITE_ERRORS, EpisodeWriter, WriterOptions

DAMAGED_FLAG = "write_failed"      # flag of an episode that a write failure ended
INTERRUPTED_FLAG = "interrupted"   # flag of an episode left open by a process that stopped
RECOVERED_FLAG = "recovered"


class State(StrEnum):
    IDLE = "idle"
    RECORDING = "recording"
    RESET = "reset"


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"demofab": __version__, "python": platform.python_version()}
    for pkg in ("mcap", "rosbags", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def episode_metadata(info: EpisodeInfo, session: str, profile: Profile,
                     robot: str) -> dict[str, str]:
    md = {
        "format_version": str(SESSION_FORMAT_VERSION),
        "session": session,
        "episode_index": str(info.index),
        "episode_id": info.episode_id,
        "task": info.task,
        "operator": info.operator,
        "robot": robot,
        "profile": profile.name,
        "outcome": info.outcome,
        "ended_by": info.ended_by,
        "start_ns": str(info.start_ns),
        "end_ns": str(info.end_ns),
        "messages": str(info.messages),
    }
    md.update({f"software.{k}": v for k, v in software_versions().items()})
    return md


def make_event(kind: EventKind, stamp_ns: int, info: EpisodeInfo, *, outcome: str = "",
               label: str = "") -> bytes:
    store = typestore()
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    Event = store.types[EPISODE_EVENT_TYPE]
    msg = Event(
        header=Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                      frame_id=""),
        kind=int(kind), episode_index=info.index, episode_id=info.episode_id, task=info.task,
        operator_id=info.operator, outcome=outcome, label=label,
    )
    return serialize(msg, EPISODE_EVENT_TYPE)


class Session:
    """Episodes of one recording session, and the control of the one being recorded."""

    def __init__(self, directory: Path | str, profile: Profile, *,
                 options: WriterOptions | None = None,
                 robot_description: tuple[str, str, bytes] | None = None,
                 robot: str | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = self.dir.resolve().name
        self.profile = profile
        self.options = options or WriterOptions()
        self.robot_description = robot_description
        self.robot = robot or profile.robot.name
        self.episodes: list[EpisodeInfo] = []
        self.discarded: list[EpisodeInfo] = []
        self.damaged: list[EpisodeInfo] = []  # ended by a failure; their .part awaits recover()
        self.state = State.IDLE
        self.current: EpisodeInfo | None = None
        self.writer: EpisodeWriter | None = None
        self.reset_until_ns = 0
        self.between_episodes: Counter[str] = Counter()
        self.last_report: HealthReport | None = None
        self._load_state()
        self._save_state()

    # -- state on disk -----------------------------------------------------------------
    def adopt_profile(self, profile: Profile) -> None:
        """Record with ``profile`` from now on: the session's own profile with topics added
        (a source that publishes more, such as the simulator's ground truth). A reopened
        session keeps the extended profile in its state file."""
        if self.writer is not None:
            raise SessionError("the profile cannot change while an episode is recording")
        if profile.name != self.profile.name:
            raise SessionError(f"source profile {profile.name!r} is not the session's "
                               f"{self.profile.name!r}")
        have = {t.topic: t for t in profile.topics}
        lost = [t.topic for t in self.profile.topics if have.get(t.topic) != t]
        if lost:
            raise SessionError(f"source profile drops or changes topics {', '.join(lost)}")
        self.profile = profile
        self._save_state()

    def _load_state(self) -> None:
        state = read_session_state(self.dir)
        if state is None:
            return
        if state.profile_name != self.profile.name:
            raise SessionError(f"{state.path}: session was recorded with profile "
                               f"{state.profile_name!r}, not {self.profile.name!r}")
        self.episodes = list(state.episodes)
        self.discarded = list(state.discarded)
        self.damaged = list(state.damaged)
        opened = state.open_episode
        if opened is not None:  # the process recording it stopped without closing it
            opened.flagged = True
            opened.flags = [*opened.flags, INTERRUPTED_FLAG]
            self.damaged.append(opened)

    def profile_dict(self) -> dict[str, Any]:
        p = self.profile
        return {
            "format_version": 1, "name": p.name, "description": p.description,
            "robot": {"name": p.robot.name,
                      "joints": [asdict(j) for j in p.robot.joints]},
            "health": asdict(p.health),
            "topics": [{"topic": t.topic, "type": t.type, "role": t.role, "rate_hz": t.rate_hz,
                        "qos": asdict(t.qos), **({"camera": t.camera} if t.camera else {})}
                       for t in p.topics],
        }

    def _save_state(self) -> None:
        state = SessionState(self.dir / STATE_FILE, self.name, self.robot, self.profile_dict(),
                             tuple(self.episodes), tuple(self.discarded), self.current,
                             tuple(self.damaged))
        atomic_write(state.path, session_state_yaml(state))
        atomic_write(self.dir / BAG_METADATA, self._bag_metadata())

    def _bag_metadata(self) -> str:
        eps = self.episodes
        counts: Counter[str] = Counter()
        for e in eps:
            counts.update(e.counts)
        start = min((e.start_ns for e in eps), default=0)
        end = max((e.end_ns for e in eps), default=0)
        topics = []
        for spec in self.profile.topics:
            mt = message_type(spec.type)
            topics.append({
                "topic_metadata": {
                    "name": spec.topic, "type": spec.type, "serialization_format": "cdr",
                    "offered_qos_profiles": [spec.qos.rosbag2_dict()],
                    "type_description_hash": mt.type_hash,
                },
                "message_count": counts.get(spec.topic, 0),
            })
        info = {
            BAG_INFO_KEY: {
                "version": 9,
                "storage_identifier": "mcap",
                "relative_file_paths": [e.file for e in eps],
                "duration": {"nanoseconds": max(0, end - start)},
                "starting_time": {"nanoseconds_since_epoch": start},
                "message_count": sum(e.messages for e in eps),
                "topics_with_message_count": topics,
                "compression_format": "",
                "compression_mode": "",
                "files": [{
                    "path": e.file,
                    "starting_time": {"nanoseconds_since_epoch": e.start_ns},
                    "duration": {"nanoseconds": max(0, e.end_ns - e.start_ns)},
                    "message_count": e.messages,
                } for e in eps],
                "custom_data": {SESSION_KEY: self.name, PROFILE_KEY: self.profile.name},
                "ros_distro": "jazzy",
            }
        }
        return yaml.dump(info, Dumper=SAFE_DUMPER, sort_keys=False)

    # -- episode control ---------------------------------------------------------------
    @property
    def next_index(self) -> int:
        """The index of the next episode: past every listed episode and every episode
        file on disk (a ``.part`` not yet recovered keeps its index)."""
        used = [e.index for e in self.episodes + self.discarded + self.damaged]
        if self.current is not None:
            used.append(self.current.index)
        for path in self.part_files():
            index = episode_index_of(_episode_name(path))
            if index is not None:
                used.append(index)
        return max(used, default=-1) + 1

    def start_episode(self, task: str = "", operator: str = "", *,
                      at_ns: int | None = None) -> EpisodeInfo:
        if self.state is State.RECORDING and self.current is not None:
            raise SessionError(f"episode {self.current.index} is still recording; "
                               "stop or discard it first")
        at_ns = time.time_ns() if at_ns is None else at_ns
        index = self.next_index
        info = EpisodeInfo(index=index, episode_id=uuid.uuid4().hex, file=episode_file(index),
                           task=task, operator=operator, start_ns=at_ns)
        writer = EpisodeWriter(self.dir / info.file, self.profile, self.options,
                               health=HealthMonitor(self.profile, self.dir))
        self.writer, self.current, self.state = writer, info, State.RECORDING
        self._save_state()
        try:
            if self.robot_description is not None:
                name, media_type, data = self.robot_description
                writer.add_attachment(name, media_type, data, at_ns)
            writer.write(EVENTS_TOPIC, make_event(EventKind.START, at_ns, info), at_ns)
        except WRITE_ERRORS:
            self._fail_current("start")
            raise
        return info

    def write(self, topic: str, data: bytes, log_time: int, publish_time: int | None = None,
              sequence: int | None = None) -> bool:
        """Record one message if an episode is open; returns whether it was recorded."""
        writer = self.writer
        if writer is None:
            self.between_episodes[topic] += 1
            return False
        try:
            writer.write(topic, data, log_time, publish_time, sequence)
        except WRITE_ERRORS:
            self._fail_current(DAMAGED_FLAG)
            raise
        return True

    def mark(self, kind: EventKind, label: str = "", *, at_ns: int | None = None) -> None:
        """Record a subtask boundary, an intervention or a note in the open episode."""
        if self.writer is None or self.current is None:
            raise SessionError("no episode is recording; marks go into an open episode")
        at_ns = time.time_ns() if at_ns is None else at_ns
        self.write(EVENTS_TOPIC, make_event(kind, at_ns, self.current, label=label), at_ns)

    def health(self, *, at_ns: int | None = None,
               window_s: float | None = None) -> HealthReport | None:
        """Live health of the open episode (over its last ``window_s`` seconds if given)."""
        if self.writer is None or self.current is None:
            return self.last_report
        end = time.time_ns() if at_ns is None else at_ns
        return self.writer.health.report(
            self.current.start_ns, end, self.writer.bytes_written,
            None if window_s is None else int(window_s * 1e9))

    def stop_episode(self, outcome: str = "success", *, at_ns: int | None = None,
                     ended_by: str = "stop", reset_s: float = 0.0,
                     metadata: dict[str, dict[str, str]] | None = None) -> EpisodeInfo:
        """Close the open episode with its outcome. ``metadata`` adds Metadata records
        (name -> string map) beside the episode's own, e.g. a sim episode's provenance."""
        if outcome not in OUTCOMES:
            raise SessionError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        reserved = {EPISODE_METADATA, HEALTH_METADATA} & set(metadata or ())
        if reserved:
            raise SessionError(f"metadata record {sorted(reserved)[0]!r} is the recorder's own")
        at_ns = time.time_ns() if at_ns is None else at_ns
        info, report = self._close_current(EventKind.STOP, at_ns, outcome, ended_by, metadata)
        self.last_report = report
        self.episodes.append(info)
        self._begin_reset(at_ns, reset_s)
        self._save_state()
        return info

    def discard_episode(self, *, at_ns: int | None = None, reset_s: float = 0.0) -> EpisodeInfo:
        """Close the open episode and move it to ``discarded/`` (kept, never listed).
        On a write failure the episode is kept as damaged, to be discarded by recover()."""
        at_ns = time.time_ns() if at_ns is None else at_ns
        info, _ = self._close_current(EventKind.DISCARD, at_ns, "unknown", "discard")
        self._move_to_discarded(info)
        self._begin_reset(at_ns, reset_s)
        self._save_state()
        return info

    def _close_current(self, kind: EventKind, at_ns: int, outcome: str, ended_by: str,
                       extra: dict[str, dict[str, str]] | None = None,
                       ) -> tuple[EpisodeInfo, HealthReport]:
        """Write the closing event and the episode's metadata; finish the file."""
        writer, info = self.writer, self.current
        if writer is None or info is None:
            raise SessionError("no episode is recording")
        try:
            writer.write(EVENTS_TOPIC, make_event(kind, at_ns, info,
                                                  outcome=outcome if kind is EventKind.STOP
                                                  else ""), at_ns)
            info.end_ns, info.outcome, info.ended_by = at_ns, outcome, ended_by
            report = writer.health.report(info.start_ns, at_ns, writer.bytes_written)
            info.counts = writer.counts()
            info.messages = sum(info.counts.values())
            if kind is EventKind.STOP:
                info.flagged, info.flags = report.flagged, list(report.flags)
            writer.close({**(extra or {}),
                          EPISODE_METADATA: episode_metadata(info, self.name, self.profile,
                                                             self.robot),
                          HEALTH_METADATA: report.metadata()})
        except WRITE_ERRORS:
            self._fail_current(ended_by)
            raise
        self.writer, self.current = None, None
        return info, report

    def rerecord(self, task: str | None = None, operator: str | None = None, *,
                 at_ns: int | None = None) -> EpisodeInfo:
        """Discard the open episode, or else the last finished one, and start it again."""
        if self.current is not None:
            last = self.current
            self.discard_episode(at_ns=at_ns)
        elif self.episodes:
            last = self.episodes.pop()
            last.ended_by = "rerecord"
            self._move_to_discarded(last)
        else:
            raise SessionError("nothing to re-record: no episode yet")
        self.state = State.IDLE
        return self.start_episode(last.task if task is None else task,
                                  last.operator if operator is None else operator, at_ns=at_ns)

    def reset_done(self, now_ns: int) -> bool:
        if self.state is State.RESET and now_ns >= self.reset_until_ns:
            self.state = State.IDLE
        return self.state is State.IDLE

    # -- recovery ----------------------------------------------------------------------
    def recover(self) -> list[RecoveryResult]:
        """Turn every ``.part`` of this session (a damaged episode, or one a crash cut
        short) into a finished, flagged episode holding everything up to its last
        complete chunk. An episode whose discard failed goes to ``discarded/``."""
        if self.writer is not None and self.current is not None:
            raise SessionError(f"episode {self.current.index} is recording; recover the "
                               "session when no episode is open")
        results = []
        pending = {e.file: e for e in self.damaged}
        names = {_episode_name(p) for p in self.part_files()}
        names |= {p.name.removesuffix(CRASHED_SUFFIX)
                  for p in self.dir.glob(f"*{MCAP_SUFFIX}{CRASHED_SUFFIX}")}
        for name in sorted(names):
            res = self._recover_one(name, pending.pop(name, None))
            results.append(res)
        self.damaged = list(pending.values())  # listed, but no file left: nothing to keep
        self._save_state()
        return results

    def _recover_one(self, name: str, known: EpisodeInfo | None) -> RecoveryResult:
        part = self.dir / (name + PART_SUFFIX)
        crashed = self.dir / (name + CRASHED_SUFFIX)
        if crashed.exists():
            part.unlink(missing_ok=True)  # an interrupted earlier recovery: start again
        else:
            os.replace(part, crashed)
        res = salvage(crashed, self.dir / name, self.profile, self.options)
        ev = res.start_event or {}
        if known is not None:
            info = known
        else:
            index = episode_index_of(name)
            info = EpisodeInfo(
                index=int(ev.get("index", self.next_index if index is None else index)),
                episode_id=str(ev.get("episode_id", "")), file=name,
                task=str(ev.get("task", "")), operator=str(ev.get("operator", "")),
                start_ns=int(ev.get("stamp_ns", res.first_ns)))
        discard = info.ended_by == "discard"
        info.end_ns = max(res.last_ns, info.start_ns)
        info.outcome = "unknown"
        info.ended_by = "discard" if discard else RECOVERED_FLAG
        writer = res.writer
        report = writer.health.report(info.start_ns, info.end_ns, writer.bytes_written)
        info.counts = writer.counts()
        info.messages = sum(info.counts.values())
        earlier = [f for f in info.flags if f in (DAMAGED_FLAG, INTERRUPTED_FLAG)]
        info.flags = [*report.flags, *earlier, RECOVERED_FLAG]
        info.flagged = True
        md = episode_metadata(info, self.name, self.profile, self.robot)
        md.update(recovery_facts(res))
        health = report.metadata()
        health["flagged"], health["flags"] = "true", ",".join(info.flags)
        writer.close({EPISODE_METADATA: md, HEALTH_METADATA: health})
        crashed.unlink()
        if discard:
            self._move_to_discarded(info)
        else:
            self.episodes.append(info)
            self.episodes.sort(key=lambda e: e.index)
        return res

    # -- helpers -----------------------------------------------------------------------
    def _begin_reset(self, at_ns: int, reset_s: float) -> None:
        if reset_s > 0:
            self.state, self.reset_until_ns = State.RESET, at_ns + int(reset_s * 1e9)
        else:
            self.state = State.IDLE

    def _move_to_discarded(self, info: EpisodeInfo) -> None:
        target = self.dir / DISCARDED_DIR
        target.mkdir(exist_ok=True)
        os.replace(self.dir / info.file, target / info.file)
        self.discarded.append(info)

    def _fail_current(self, ended_by: str) -> None:
        """After a write failure: the open episode is listed as damaged and its .part kept
        for recovery; finished episodes are untouched and the session stays usable."""
        if self.writer is not None:
            self.writer.abort(keep=True)
        info = self.current
        if info is not None:
            info.ended_by, info.flagged = ended_by, True
            if DAMAGED_FLAG not in info.flags:
                info.flags = [*info.flags, DAMAGED_FLAG]
            self.damaged.append(info)
        self.writer, self.current, self.state = None, None, State.IDLE
        self._save_state_quietly()

    def _save_state_quietly(self) -> None:
        try:
            self._save_state()
        except OSError:
            pass  # the disk is full; the old state files are intact (atomic writes)

    def part_files(self) -> list[Path]:
        return sorted(self.dir.glob(f"*{MCAP_SUFFIX}{PART_SUFFIX}"))


def _episode_name(part: Path) -> str:
    """``episode_0003.mcap.part`` -> ``episode_0003.mcap``."""
    return part.name.removesuffix(PART_SUFFIX)


__all__ = [  # the contract's names stay importable from here
    "BAG_METADATA", "EPISODE_METADATA", "HEALTH_METADATA", "OUTCOMES", "SESSION_FORMAT_VERSION",
    "STATE_FILE", "EpisodeInfo", "EventKind", "Session", "State", "episode_metadata",
    "make_event", "software_versions",
]
