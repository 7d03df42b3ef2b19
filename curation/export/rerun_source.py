"""What the Rerun export shows of one episode, read from a release or from a recording.

Both inputs come down to one :class:`EpisodeView`: the episode's numeric streams (joint
states and commands, IMU, poses, TF) with their native clocks, its camera frames as the
stored bytes, its events, its facts, and the robot description. A release episode is read
with the loader (``ReleaseReader``); an episode MCAP with curation's ingest (the same
decoder ``demofab curate`` uses), so the two show the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from recorder.contract import EPISODE_METADATA, ROBOT_DESCRIPTION

from ..decode import Blobs
from ..inputs import InputFile
from ..loader import ReleaseReader
from ..writer import stream_name
from .errors import ExportError

JOINT_STATE = "sensor_msgs/msg/JointState"
TF_TYPES = ("tf2_msgs/msg/TFMessage",)
URDF_SUFFIXES = (".urdf", ".xml")


@dataclass
class NumericStream:
    """One numeric stream of the episode: rows sorted by ``time_ns`` (header stamp)."""

    name: str                      # release stream name (``joint_states``, ``imu``, ...)
    type: str
    time_ns: np.ndarray
    fields: dict[str, np.ndarray]  # field -> [N, ...]
    names: dict[str, list[str]] = field(default_factory=dict)  # field -> element names
    joint_names: list[str] = field(default_factory=list)       # JointState only
    frames: tuple[list[str], list[str]] | None = None          # TF: (parents, children)
    role: str = "unknown"


@dataclass
class CameraStream:
    """A camera's frames: the stored bytes (JPEG or PNG, as recorded) and their stamps.
    ``read(a, b)`` gives frames ``a..b`` (a release's are read when asked, so a long
    episode is never in memory whole)."""

    name: str
    time_ns: np.ndarray
    read: Callable[[int, int], list[bytes]]
    media_type: str | None         # "image/jpeg", "image/png", or None (Rerun guesses)

    def __len__(self) -> int:
        return len(self.time_ns)


@dataclass
class Event:
    time_ns: int
    kind: str                      # start, stop, subtask, intervention, note, ...
    text: str


@dataclass
class EpisodeView:
    """Everything the export writes for one episode."""

    name: str                      # the .rrd file stem
    source: str                    # where it was read (for messages and the facts)
    episode_id: str
    start_ns: int
    end_ns: int
    facts: dict[str, Any]
    numeric: list[NumericStream] = field(default_factory=list)
    cameras: list[CameraStream] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: (where it came from, URDF text); None when the episode has none
    robot: tuple[str, str] | None = None
    notes: list[str] = field(default_factory=list)


def media_type(fmt: str) -> str | None:
    """The media type of a ``CompressedImage.format`` (``"jpeg"``, ``"rgb8; png compressed
    bgr8"``, ...); None when it names neither JPEG nor PNG."""
    f = fmt.lower()
    if "png" in f:
        return "image/png"
    if "jpeg" in f or "jpg" in f:
        return "image/jpeg"
    return None


# -- releases ---------------------------------------------------------------------------
def release_episode(rel: ReleaseReader, e: int, robot: tuple[str, str] | None) -> EpisodeView:
    """Episode ``e`` of the release (its rows of every stream, its table row)."""
    row = rel.episodes[e]
    view = EpisodeView(
        name=f"{rel.name}-v{rel.version}_ep{e:04d}", source=f"{rel.path} episode {e}",
        episode_id=str(row.get("episode_id", "")), start_ns=int(row["start_ns"]),
        end_ns=int(row["end_ns"]), facts=_release_facts(rel, e, row), robot=robot)
    for name, info in rel.streams.items():
        b0, b1 = (int(b) for b in rel.bounds(name)[e])
        if b0 == b1:
            continue
        times = np.asarray(rel.times(name)[b0:b1])
        attrs = info.attributes
        if info.is_camera and "data" in info.ragged:
            fmt = str((attrs.get("camera") or {}).get("format")
                      or (attrs.get("constants") or {}).get("format", ""))
            view.cameras.append(CameraStream(name, times, partial(_release_frames, rel, name, b0),
                                             media_type(fmt)))
            continue
        fields: dict[str, np.ndarray] = {}
        names: dict[str, list[str]] = {}
        for f in info.fields:
            if f.endswith("_ns"):
                continue  # clocks (TF's per-transform stamps), not values to plot
            reader = rel.field(name, f)
            if reader.dtype is None or reader.dtype.kind not in "fiub":
                continue
            fields[f] = np.asarray(reader.read(b0, b1))
            elem = reader.attributes.get("fields")
            if elem:
                names[f] = [str(x) for x in elem]
        if not fields:
            continue
        frames_attr = None
        if info.attributes.get("type") in TF_TYPES and attrs.get("child_frame_ids"):
            frames_attr = ([str(x) for x in attrs.get("frame_ids") or []],
                           [str(x) for x in attrs["child_frame_ids"]])
        view.numeric.append(NumericStream(
            name, str(attrs.get("type", "")), times, fields, names,
            [str(j) for j in attrs.get("joint_names") or []], frames_attr,
            str(attrs.get("role", "unknown"))))
    view.events = _release_events(row)
    return view


def _release_frames(rel: ReleaseReader, stream: str, b0: int, a: int, b: int) -> list[bytes]:
    """Frames ``a..b`` of an episode whose first row is ``b0``: one read of their bytes."""
    offsets = rel.offsets(stream)[b0 + a:b0 + b + 1]
    data = rel.array(f"streams/{stream}/data/values").read_bytes(int(offsets[0]),
                                                                 int(offsets[-1]))
    rel_off = offsets - offsets[0]
    return [data[int(rel_off[i]):int(rel_off[i + 1])] for i in range(b - a)]


def _release_facts(rel: ReleaseReader, e: int, row: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {"release": f"{rel.name} v{rel.version}", "release_index": e}
    for key in ("episode_id", "task", "operator", "session", "robot", "success", "outcome",
                "split", "quality_score", "flag_names", "interventions", "duration_s"):
        if key in row:
            facts[key] = row[key]
    facts["flag_reasons"] = [f"{r.get('flag')}: {r.get('detail')}"
                             for r in row.get("flag_reasons") or []]
    facts["notes"] = list(row.get("notes") or [])
    prov = row.get("provenance") or {}
    facts["source"] = prov.get("source_file") or prov.get("kind", "")
    return facts


def _release_events(row: dict[str, Any]) -> list[Event]:
    """The release keeps no event topic: start and stop are the episode's span, the
    outcome is the stop's, and subtasks, interventions and notes are its annotations."""
    out = [Event(int(row["start_ns"]), "start", f"start: {row.get('task', '')}".rstrip(": "))]
    for a in row.get("annotations") or []:
        label = f"{a.get('kind')}: {a.get('label', '')}".rstrip(": ")
        if a.get("source") == "auto":
            label += " (detected)"
        out.append(Event(int(a["time_ns"]), str(a.get("kind", "")), label))
    out.append(Event(int(row["end_ns"]), "stop", f"stop: {row.get('outcome', 'unknown')}"))
    out.sort(key=lambda ev: ev.time_ns)
    return out


def release_robot(rel: ReleaseReader, e: int) -> tuple[str, str] | None:
    """The robot description of a release episode. A release keeps none itself, so: the
    attachment of the recording it came from when that file is still where provenance
    says (and of the recorded size), else the kinematic URDF of its recording profile
    (what the recorder attaches for a rig with no description); None when neither."""
    prov = rel.episodes[e].get("provenance") or {}
    src = prov.get("source_file")
    if src and Path(src).is_file() and (not prov.get("source_size")
                                        or Path(src).stat().st_size == prov["source_size"]):
        found = mcap_robot(Path(src))
        if found is not None:
            return found
    profile = prov.get("profile") or (prov.get("sim") or {}).get("profile")
    if profile:
        from recorder.errors import RecorderError
        from recorder.profile import load_profile
        from recorder.urdf import urdf_from_profile

        try:
            text = urdf_from_profile(load_profile(str(profile))).decode()
        except RecorderError:
            return None
        return f"kinematic URDF of profile {profile!r} (no meshes)", text
    return None


def mcap_robot(path: Path) -> tuple[str, str] | None:
    """The robot description attached to an MCAP file, read through its summary."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    try:
        with open(path, "rb") as f:
            found = {a.name: a.data for a in make_reader(f).iter_attachments()}
    except (McapError, OSError, ValueError):
        return None
    return _pick_urdf(found, path)


def _pick_urdf(attachments: dict[str, bytes] | dict[str, str], path: Path
               ) -> tuple[str, str] | None:
    names = sorted(n for n in attachments if n.endswith(URDF_SUFFIXES))
    if ROBOT_DESCRIPTION in attachments:
        names.insert(0, ROBOT_DESCRIPTION)
    for n in names:
        blob = attachments[n]
        text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
        if "<robot" in text:
            return f"attachment {n} of {path}", text
    return None


# -- recordings -------------------------------------------------------------------------
def recording_inputs(path: Path) -> tuple[list[InputFile], list[str]]:
    """The episode files of a session (or bag, or folder), or the one MCAP named; and
    what was left out, with why (unfinished ``.part`` files, discarded episodes)."""
    from ..errors import InputError
    from ..inputs import find_inputs

    try:
        files, skipped = find_inputs([path])
    except InputError as exc:
        raise ExportError(str(exc)) from exc
    left_out = [f"{s.path}: left out: {s.reason}" for s in skipped]
    if not files:
        raise ExportError(f"{path}: no finished episode file to export (.mcap); "
                          + ("; ".join(left_out) or "none found"))
    return files, left_out


def recording_episode(inp: InputFile) -> EpisodeView:
    """One episode file, decoded as ``demofab curate`` decodes it. A file that holds no
    readable message raises ``ExportError`` naming it; damage that costs part of the file
    is kept as notes (shown in the recording's facts)."""
    from ..ingest import ingest_file

    path = Path(inp.path)
    try:
        rec = ingest_file(inp)
    except OSError as exc:
        raise ExportError(f"{path}: cannot read: {exc}") from exc
    if not rec.streams and not rec.events:
        why = rec.damage or "no message on any channel"
        raise ExportError(f"{path}: nothing to export: {why}")
    md = rec.metadata.get(EPISODE_METADATA, {})
    starts = [e["time_ns"] for e in rec.events if e["kind"] == "start"]
    stops = [e["time_ns"] for e in rec.events if e["kind"] == "stop"]
    span = [int(s.time_ns.min()) for s in rec.streams.values() if len(s)]
    ends = [int(s.time_ns.max()) for s in rec.streams.values() if len(s)]
    start = int(md.get("start_ns") or (starts[0] if starts else min(span, default=0)))
    end = int(md.get("end_ns") or (stops[-1] if stops else max(ends, default=start)))
    stem = path.name.removesuffix(".part").removesuffix(".mcap")
    facts: dict[str, Any] = {"file": str(path)}
    for key in ("episode_id", "task", "operator", "session", "robot", "profile", "outcome",
                "ended_by"):
        if md.get(key):
            facts[key] = md[key]
    if "outcome" in facts:
        facts["success"] = {"success": True, "failure": False}.get(facts["outcome"])
    health = rec.metadata.get("demofab.health", {})
    if health.get("flags"):
        facts["flag_names"] = [f for f in health["flags"].split(",") if f]
    view = EpisodeView(
        name=f"{inp.session}_{stem}" if inp.session else stem, source=str(path),
        episode_id=str(md.get("episode_id", "")), start_ns=start, end_ns=end, facts=facts,
        robot=_pick_urdf(rec.attachments, path))
    view.notes = [detail for _flag, detail in rec.problems]
    for topic, sd in rec.streams.items():
        if not len(sd):
            continue
        name = stream_name(topic)
        if "camera" in sd.attrs and "data" in sd.ragged:
            values, offsets = sd.ragged["data"]
            fmt = str(sd.attrs["camera"].get("format") or sd.constants.get("format", ""))
            view.cameras.append(CameraStream(name, np.asarray(sd.time_ns),
                                             _slicer(list(_rows(values, offsets))),
                                             media_type(fmt)))
            continue
        fields = {f: np.asarray(v) for f, v in sd.fields.items()
                  if np.asarray(v).dtype.kind in "fiub" and not f.endswith("_ns")}
        if not fields:
            continue
        frames = None
        if sd.type in TF_TYPES and sd.attrs.get("child_frame_ids"):
            frames = ([str(x) for x in sd.attrs.get("frame_ids") or []],
                      [str(x) for x in sd.attrs["child_frame_ids"]])
        view.numeric.append(NumericStream(
            name, sd.type, np.asarray(sd.time_ns), fields,
            {f: list(n) for f, n in (sd.attrs.get("field_names") or {}).items()},
            [str(j) for j in sd.attrs.get("joint_names") or []], frames))
    for ev in rec.events:
        view.events.append(Event(int(ev["time_ns"]), str(ev["kind"]), _event_text(ev)))
    return view


def _event_text(ev: dict[str, Any]) -> str:
    kind = str(ev["kind"])
    parts = [p for p in (ev.get("label"), ev.get("task") if kind == "start" else "",
                         ev.get("outcome")) if p]
    return f"{kind}: {' / '.join(str(p) for p in parts)}" if parts else kind


def _slicer(frames: list[bytes]) -> Callable[[int, int], list[bytes]]:
    return lambda a, b: frames[a:b]


def _rows(values: np.ndarray | Blobs, offsets: np.ndarray) -> Iterator[bytes]:
    if isinstance(values, Blobs):
        for part in values.parts:
            yield bytes(part)
        return
    arr = np.asarray(values)
    for i in range(len(offsets) - 1):
        yield arr[int(offsets[i]):int(offsets[i + 1])].tobytes()
