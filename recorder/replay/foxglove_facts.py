"""What a Foxglove replay needs from a selection's files beyond its messages: the recorded
schemas (``ros2msg`` text by type), the attachments (the robot description, any meshes),
the episodes' facts (task, operator, outcome), the text of episode events for the Log
panel, and the map between recorded time and the playback timeline.

Read once, from the files' summaries and metadata records, before the server starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..contract import EPISODE_EVENT_TYPE, EPISODE_METADATA, ROBOT_DESCRIPTION, EventKind
from .errors import ReplayError
from .timeline import Timeline

__all__ = ["ROBOT_DESCRIPTION_TOPIC", "ROBOT_DESCRIPTION_URI", "Asset", "SelectionFacts",
           "event_text", "no_delay"]

#: where the robot description is served: a latched ``std_msgs/msg/String`` topic (the 3D
#: panel's URDF layer, source "topic"), and an asset URI (source "URL", fetched over the
#: protocol's ``fetchAsset``)
ROBOT_DESCRIPTION_TOPIC = "/robot_description"
ROBOT_DESCRIPTION_URI = f"package://demofab/{ROBOT_DESCRIPTION}"
_ASSET_PREFIX = "package://demofab/"


@dataclass(frozen=True, slots=True)
class Asset:
    """An MCAP attachment, served to the app by name."""

    name: str
    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SelectionFacts:
    """Schemas, attachments and episode facts of a selection (see the module docstring)."""

    schemas: Mapping[str, tuple[str, bytes]]   # type name -> (schema encoding, schema data)
    assets: Mapping[str, Asset]                # attachment name -> attachment
    robot_description: Asset | None            # the URDF, if a file carries one
    episodes: Mapping[int, Mapping[str, str]]  # episode position -> its demofab.episode record

    @staticmethod
    def read(timeline: Timeline) -> SelectionFacts:
        from mcap.reader import make_reader

        schemas: dict[str, tuple[str, bytes]] = {}
        assets: dict[str, Asset] = {}
        episodes: dict[int, Mapping[str, str]] = {}
        for pos, ep in enumerate(timeline.episodes):
            try:
                with open(ep.path, "rb") as f:
                    reader = make_reader(f)
                    summary = reader.get_summary()
                    if summary is not None:
                        for schema in summary.schemas.values():
                            schemas.setdefault(schema.name, (schema.encoding, bytes(schema.data)))
                    for att in reader.iter_attachments():
                        assets.setdefault(att.name, Asset(att.name, att.media_type, bytes(att.data)))
                    for md in reader.iter_metadata():
                        if md.name == EPISODE_METADATA:
                            episodes[pos] = dict(md.metadata)
            except ReplayError:
                raise
            except Exception as exc:
                raise ReplayError(f"{ep.path}: cannot read its schemas, attachments and metadata: "
                                  f"{exc}") from exc
        return SelectionFacts(schemas, assets, _robot_description(assets), episodes)

    def asset(self, uri: str) -> bytes | None:
        """The bytes behind ``uri`` (what the app's ``fetchAsset`` asks for): the robot
        description at :data:`ROBOT_DESCRIPTION_URI`; an attachment by its name under
        ``package://demofab/``, or, for a URDF's ``package://pkg/path`` mesh references, by
        its path or file name; None when no attachment matches."""
        if uri == ROBOT_DESCRIPTION_URI and self.robot_description is not None:
            return self.robot_description.data
        path = uri.removeprefix(_ASSET_PREFIX)
        if path != uri and path in self.assets:
            return self.assets[path].data
        if uri.startswith("package://"):
            rest = PurePosixPath(uri.removeprefix("package://"))
            within = PurePosixPath(*rest.parts[1:]) if len(rest.parts) > 1 else rest
            for key in (str(within), rest.name):
                if key in self.assets:
                    return self.assets[key].data
        return None


def _robot_description(assets: Mapping[str, Asset]) -> Asset | None:
    """The URDF among the attachments: the contract's name first, else a ``.urdf`` file,
    else an XML attachment whose root is ``<robot>`` (an MJCF is not a URDF: not served)."""
    if ROBOT_DESCRIPTION in assets:
        return assets[ROBOT_DESCRIPTION]
    for a in assets.values():
        if Path(a.name).suffix.lower() == ".urdf":
            return a
    for a in assets.values():
        if "xml" in a.media_type and b"<robot" in a.data[:4096]:
            return a
    return None


def position_of(timeline: Timeline, recorded_ns: int) -> int:
    """The playback position (ns into the selection) of recorded time ``recorded_ns``:
    inside an episode, its place there; between episodes (a reset, or a gap the playback
    leaves out), the start of the next; clamped to the selection."""
    for ep in timeline.episodes:
        if recorded_ns < ep.start_ns:
            return ep.offset_ns
        if recorded_ns <= ep.end_ns:
            return ep.offset_ns + (recorded_ns - ep.start_ns)
    return timeline.duration_ns


def recorded_at(timeline: Timeline, p_ns: int) -> int:
    """The recorded time at playback position ``p_ns``, kept within the recorded span of
    the episode playing there (a gap the playback adds between episodes maps to the end
    of the episode before it)."""
    ep = timeline.episodes[timeline.episode_at(p_ns)]
    return min(max(ep.start_ns + (p_ns - ep.offset_ns), ep.start_ns), ep.end_ns)


def time_range(timeline: Timeline) -> tuple[int, int]:
    """The recorded time range of the selection (what the server advertises)."""
    return (min(e.start_ns for e in timeline.episodes), max(e.end_ns for e in timeline.episodes))


def episode_text(facts: SelectionFacts, timeline: Timeline, pos: int, what: str) -> str:
    """``episode 3 start (episode_0003.mcap): task 'stack cups', operator op7``."""
    ep = timeline.episodes[pos]
    md = facts.episodes.get(pos, {})
    parts = [f"task {md['task']!r}" if md.get("task") else "",
             f"operator {md['operator']}" if md.get("operator") else "",
             f"outcome {md['outcome']}" if what == "end" and md.get("outcome") else ""]
    detail = ", ".join(p for p in parts if p)
    return f"episode {ep.index} {what} ({ep.path.name})" + (f": {detail}" if detail else "")


def event_text(data: bytes) -> str:
    """A recorded ``EpisodeEvent`` (CDR) as one line for the Log panel:
    ``episode 2 STOP: success``, ``episode 2 SUBTASK: grasp``."""
    from ..types import deserialize

    try:
        ev: Any = deserialize(data, EPISODE_EVENT_TYPE)
    except Exception as exc:  # noqa: BLE001 - a damaged event still shows, as such
        return f"episode event (undecodable: {exc})"
    try:
        kind = EventKind(int(ev.kind)).name
    except ValueError:
        kind = f"kind {ev.kind}"
    extra = [str(x) for x in (ev.outcome, ev.label) if x]
    if int(ev.kind) == EventKind.START:
        extra += [f"task {ev.task!r}" if ev.task else "",
                  f"operator {ev.operator_id}" if ev.operator_id else ""]
    detail = ", ".join(x for x in extra if x)
    return f"episode {ev.episode_index} {kind}" + (f": {detail}" if detail else "")


def no_delay(port: int) -> int:
    """Turn Nagle's algorithm off (TCP_NODELAY) on this process's TCP connections served
    from local ``port``; how many were set now. foxglove-sdk leaves it on, and then a
    small message written behind a camera frame waits for the client's delayed ACK (up to
    ~40 ms on Linux: measured, the p99 of arrival went from ~27 ms to ~3 ms without it).
    Linux only (``/proc/self/fd``); elsewhere nothing is done."""
    import os
    import socket

    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        return 0
    done = 0
    for name in os.listdir(fd_dir):
        try:
            if not os.readlink(f"{fd_dir}/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if (sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6)
                    and sock.getsockname()[1] == port
                    and not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)):
                sock.getpeername()          # a connection, not the listening socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                done += 1
        except OSError:
            continue                        # not connected, or gone meanwhile: leave it
        finally:
            sock.close()
    return done
