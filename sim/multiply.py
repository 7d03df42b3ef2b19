"""Multiplication of recorded demonstrations, MimicGen-style.

A source demonstration is an episode MCAP file, simulated or real teleoperation: the palm
(end-effector) poses and the task's object poses come from ``/tf`` (the tree is composed
up to the robot's pelvis, or to its root when it has no pelvis), the hand closure from the
hand joints of ``/joint_commands`` (else ``/joint_states``), and the subtask boundaries
from the operator's SUBTASK marks on the events topic, or else from curation's
segmentation (the hand closing or opening). Nothing else is needed: no ground-truth topic,
no simulator state.

For each new scene, the source's object-centric segments (``Task.subtasks``: a name, the
object the segment is relative to, the arms that move) are replayed one after another:
the palm poses of the segment are carried over to the new scene by

    T_eef_new(t) = T_obj_new · T_obj_src⁻¹ · T_eef_src(t)

where ``T_obj_src`` is the object's pose in the source at the segment's start and
``T_obj_new`` the object's pose in the new scene when the segment starts (so a segment
relative to an object that the robot carries, or that an earlier segment moved, uses
where it actually is). The arm is bridged from where it is to the segment's first
waypoint (MimicGen's interpolation steps) and, by default, the carry-over itself is blended
from the previous segment's transform into this one's along the approach, so that the arm
leaves by the source's own path and is on the object's before the hand closes or opens.
The segment is executed through IK and the position controllers in physics
(``sim.expert.Executor``), the hands closing as they closed in the source. Bimanual
segments take both arms from the same source demonstration (DexMimicGen), so the two
hands stay coordinated. The task's predicates decide success; a failed attempt names the
subtask and the predicate.

Conventions: poses are (position, quaternion w, x, y, z) or 4x4 homogeneous matrices;
a SUBTASK mark labelled with a subtask's name ends that subtask (MimicGen's subtask
termination signal); the last subtask runs to the end of the episode.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curation.config import SegmentConfig
from curation.decode import JOINT_STATE, TF_MESSAGE, StreamData, decode_channel
from curation.ingest import FileRecord, event_name
from curation.mcapread import McapContent, read_mcap
from curation.segment import Segment, detect_marks
from recorder.contract import EPISODE_EVENT_TYPE, EVENTS_TOPIC, EventKind
from recorder.errors import RecorderError
from recorder.types import schema_store

from .errors import SimError
from .expert import GRIPS, Executor
from .ik import HandIK, Unreachable
from .scenes import PALM_OFFSET, SIDES, Layout, Scene
from .se3 import (
    interpolate_poses,
    invert,
    mat_to_quat,
    matrix_pose,
    object_transform,
    pose_matrix,
    quat_to_mat,
    rotation_angle,
    slerp,
    transform_segment,
)
from .tasks import Outcome, Subtask, Task, get_task
from .trace import Trace

# -- source demonstrations --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoseTrack:
    """A frame's pose over time: ``times_ns`` (n,) sorted, ``pos`` (n, 3), ``quat`` (n, 4)
    w, x, y, z, in the demonstration's reference frame."""

    times_ns: np.ndarray
    pos: np.ndarray
    quat: np.ndarray

    def __len__(self) -> int:
        return len(self.times_ns)

    def at(self, times_ns: np.ndarray | int) -> np.ndarray:
        """Poses (k, 4, 4) at the given times (linear in position, normalised-linear in
        orientation between neighbouring samples; held outside the track's span)."""
        return pose_matrix(*_sample(self.times_ns, self.pos, self.quat,
                                    np.atleast_1d(np.asarray(times_ns, dtype=np.int64))))


@dataclass(frozen=True, slots=True)
class SourceSegment:
    """One object-centric segment of a source: the subtask, its object and arms, and where
    it lies in the recording (episode clock, ns). ``boundary`` says where its end came from:
    ``event`` (an operator's SUBTASK mark), ``segmentation`` (the hand closing or opening,
    found by curation's segmentation) or ``episode_end``."""

    subtask: str
    object: str
    arms: tuple[str, ...]
    start_ns: int
    end_ns: int
    boundary: str

    @property
    def duration_s(self) -> float:
        """The segment's length in seconds."""
        return (self.end_ns - self.start_ns) / 1e9


@dataclass(frozen=True, slots=True)
class SourceDemo:
    """What multiplication needs from one source episode.

    ``frame`` is the reference frame of every pose: ``pelvis`` when the ``/tf`` tree holds
    the robot's pelvis (the usual case: poses are relative to the robot, whatever the
    motion-capture origin), else the tree's root, taken as the simulator's world.
    ``closure`` holds, per side, the hand closure (0 open .. 1 closed) over time.
    """

    path: str
    sha256: str
    task: str
    frame: str
    start_ns: int
    end_ns: int
    palms: dict[str, PoseTrack]
    objects: dict[str, PoseTrack]
    closure: dict[str, tuple[np.ndarray, np.ndarray]]
    segments: tuple[SourceSegment, ...]
    frames: dict[str, str] = field(default_factory=dict)  # role (side / object) -> TF frame
    #: the operator's palm targets (``/teleop/{side}_hand/pose``) where the recording has them
    targets: dict[str, PoseTrack] = field(default_factory=dict)

    def eef(self, side: str, use: str = "palms") -> PoseTrack:
        """The end-effector track of ``side``: the measured palm (``palms``), the operator's
        targets (``targets``), or the targets where recorded, else the palm (``auto``)."""
        if use == "targets" and side not in self.targets:
            raise SimError(f"{self.path}: no /teleop/{side}_hand/pose targets in the source")
        if use in ("targets", "auto") and side in self.targets:
            return self.targets[side]
        return self.palms[side]

    def closure_at(self, side: str, times_ns: np.ndarray) -> np.ndarray:
        """The hand closure of ``side`` at the given times (0 where the recording has no
        hand joints)."""
        t, c = self.closure.get(side, (np.zeros(0, np.int64), np.zeros(0)))
        if not len(t):
            return np.zeros(len(times_ns))
        out: np.ndarray = np.interp(np.asarray(times_ns, dtype=float), t.astype(float), c)
        return out

    def segment(self, subtask: str) -> SourceSegment:
        """The segment of ``subtask``; SimError naming the file when there is none."""
        for s in self.segments:
            if s.subtask == subtask:
                return s
        raise SimError(f"{self.path}: source has no segment for subtask {subtask!r}")


def _resolve_task(task: str | Task) -> Task:
    return get_task(task) if isinstance(task, str) else task


#: palm frames on /tf, in order of preference; the wrist-yaw link is used with the palm
#: site's offset when no palm frame is published
PALM_FRAMES = ("{side}_hand_palm_link", "{side}_palm", "{side}_palm_link")
WRIST_FRAME = "{side}_wrist_yaw_link"
OBJECT_FRAMES = ("{name}", "{name}_link", "{name}_frame")
PELVIS_FRAME = "pelvis"
TF_TOPICS = ("/tf", "/tf_static")
FINGER_JOINTS = r"^{side}_hand_(index|middle)_\d_joint$"


@dataclass
class _Link:
    parent: str
    times: list[int] = field(default_factory=list)
    pos: list[tuple[float, float, float]] = field(default_factory=list)
    quat: list[tuple[float, float, float, float]] = field(default_factory=list)
    static: bool = False


def _sample(times: np.ndarray, pos: np.ndarray, quat: np.ndarray,
            at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(times) == 1:
        return np.repeat(pos, len(at), axis=0), np.repeat(quat, len(at), axis=0)
    hi = np.clip(np.searchsorted(times, at, "right"), 1, len(times) - 1)
    lo = hi - 1
    span = (times[hi] - times[lo]).astype(float)
    a = np.clip(np.where(span > 0, (at - times[lo]) / np.where(span > 0, span, 1.0), 0.0),
                0.0, 1.0)[:, None]
    p = pos[lo] + a * (pos[hi] - pos[lo])
    q0, q1 = quat[lo], quat[hi]
    q1 = np.where((np.sum(q0 * q1, axis=1) < 0)[:, None], -q1, q1)
    q = q0 + a * (q1 - q0)
    return p, q / np.linalg.norm(q, axis=1, keepdims=True)


class _TfTree:
    """Every transform of the recording's TF topics, per child frame."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.links: dict[str, _Link] = {}
        self.arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def add(self, msg: Any, static: bool) -> None:
        for tr in msg.transforms:
            child = str(tr.child_frame_id).lstrip("/")
            parent = str(tr.header.frame_id).lstrip("/")
            link = self.links.get(child)
            if link is None:
                link = self.links[child] = _Link(parent, static=static)
            elif link.parent != parent:
                raise SimError(f"{self.path}: /tf frame {child!r} has two parents, "
                               f"{link.parent!r} and {parent!r}")
            st = tr.header.stamp
            t, r = tr.transform.translation, tr.transform.rotation
            link.times.append(int(st.sec) * 1_000_000_000 + int(st.nanosec))
            link.pos.append((float(t.x), float(t.y), float(t.z)))
            link.quat.append((float(r.w), float(r.x), float(r.y), float(r.z)))

    def finish(self) -> None:
        for name, link in self.links.items():
            t = np.array(link.times, dtype=np.int64)
            order = np.argsort(t, kind="stable")
            q = np.array(link.quat)[order]
            norm = np.linalg.norm(q, axis=1)
            if (norm < 1e-9).any():
                raise SimError(f"{self.path}: /tf frame {name!r} has a zero quaternion")
            self.arrays[name] = (t[order], np.array(link.pos)[order], q / norm[:, None])

    def chain(self, frame: str) -> list[str]:
        """``frame`` and its ancestors up to (not including) the root."""
        out = [frame]
        while out[-1] in self.links:
            parent = self.links[out[-1]].parent
            if parent in out:
                raise SimError(f"{self.path}: /tf has a loop through {parent!r}")
            out.append(parent)
        return out

    def root(self, frame: str) -> str:
        return self.chain(frame)[-1]

    def known(self, frame: str) -> bool:
        return frame in self.links

    def track(self, frame: str, reference: str) -> PoseTrack:
        """The pose of ``frame`` relative to ``reference`` (an ancestor of ``frame``, or a
        frame in the same tree), sampled at the times ``frame`` itself was published."""
        times = self.arrays[frame][0] if not self.links[frame].static else None
        if times is None:  # a static frame: sample at its ancestors' times, else once
            times = next((self.arrays[f][0] for f in self.chain(frame)[1:-1]
                          if not self.links[f].static), self.arrays[frame][0][:1])
        pos, quat = matrix_pose(self.relative(frame, reference, times))
        return PoseTrack(times, pos, quat)

    def relative(self, frame: str, reference: str, times: np.ndarray) -> np.ndarray:
        """Transforms (k, 4, 4) from ``frame`` to ``reference`` at ``times``."""
        if frame == reference:
            return np.broadcast_to(np.eye(4), (len(times), 4, 4)).copy()
        if self.root(reference) != self.root(frame):
            raise SimError(f"{self.path}: /tf frames {frame!r} and {reference!r} are not "
                           f"connected (roots {self.root(frame)!r} and "
                           f"{self.root(reference)!r})")
        out = self._to_root(frame, times)
        if reference != self.root(frame):
            out = invert(self._to_root(reference, times)) @ out
        return out

    def _to_root(self, frame: str, times: np.ndarray) -> np.ndarray:
        out = np.broadcast_to(np.eye(4), (len(times), 4, 4)).copy()
        for f in self.chain(frame)[:-1]:
            t, p, q = self.arrays[f]
            sp, sq = _sample(t, p, q, times)
            out = pose_matrix(sp, sq) @ out
        return out


def _hand_limits() -> dict[str, tuple[float, float]]:
    from recorder.profile import load_profile

    return {j.name: (j.lower, j.upper) for j in load_profile("humanoid").robot.joints}


def grip_limits(grip: str) -> dict[str, tuple[float, float]]:
    """The finger joints' (low, high) ends of travel in one of ``sim.expert.GRIPS``, both
    hands: open (0 rad) at one end, closed at the other. Measuring a recorded hand's
    closure against these gives the closure that makes the executor's hand (in the task's
    grip) close as far as the recorded one did."""
    try:
        shape = GRIPS[grip]
    except KeyError:
        raise SimError(f"unknown grip {grip!r}; grips: {', '.join(GRIPS)}") from None
    out: dict[str, tuple[float, float]] = {}
    for side, sign in (("left", -1.0), ("right", 1.0)):
        for joint, (o, c) in shape.items():
            name = f"{side}_hand_{joint}_joint"
            if re.match(FINGER_JOINTS.format(side=side), name) and abs(c - o) > 1e-9:
                ends = sorted((sign * o, sign * c))
                out[name] = (ends[0], ends[1])
    return out


def hand_closure(names: Sequence[str], positions: np.ndarray, side: str,
                 limits: dict[str, tuple[float, float]] | None = None) -> np.ndarray | None:
    """The closure (0 open .. 1 closed) of one hand over time: the mean, over its index and
    middle finger joints, of how far each is from its open end (0 rad) toward its closed
    limit (the limit farther from 0, from ``limits`` or the humanoid profile). None when
    ``names`` has no finger joint of that side."""
    limits = _hand_limits() if limits is None else limits
    pat = re.compile(FINGER_JOINTS.format(side=side))
    cols = [i for i, n in enumerate(names) if pat.match(n)]
    if not cols:
        return None
    q = np.asarray(positions, dtype=float)[:, cols]
    closed: list[float] = []
    for j, i in enumerate(cols):
        lo, hi = limits.get(names[i], (np.nan, np.nan))
        if not np.isfinite([lo, hi]).all():
            col = q[:, j]
            lo, hi = float(np.nanmin(col)), float(np.nanmax(col))
        closed.append(lo if abs(lo) > abs(hi) else hi)
    far = np.array(closed)
    far[np.abs(far) < 1e-9] = 1.0
    out: np.ndarray = np.clip(np.nanmean(q / far[None], axis=1), 0.0, 1.0)
    return out


def _read(path: Path) -> tuple[bytes, McapContent]:
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise SimError(f"{path}: cannot read the source episode: {exc}") from None
    content = read_mcap(buf)
    costly = [lost for lost in content.lost if lost.chunks != 0]
    if costly:
        first = costly[0]
        raise SimError(f"{path}: corrupt MCAP: {first.reason} at byte offset {first.start}; "
                       f"run `demofab recover` or give an intact episode")
    return buf, content


def _channels(content: McapContent, typename: str) -> list[Any]:
    return [c for c in content.channels.values() if c.type == typename and c.data]


def _decode_all(path: Path, ch: Any) -> list[Any]:
    try:
        store = schema_store(ch.type, ch.schema_encoding, ch.schema)
    except RecorderError as exc:
        raise SimError(f"{path}: topic {ch.topic}: {exc}") from None
    out = []
    for i, data in enumerate(ch.data):
        try:
            out.append(store.deserialize(bytes(data)))
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types; named here
            raise SimError(f"{path}: topic {ch.topic}: message {i} (log time "
                           f"{ch.log_times[i]}) does not decode as {ch.type}: {exc}") from None
    return out


def _events(path: Path, content: McapContent) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ch in content.channels.values():
        if ch.topic != EVENTS_TOPIC or ch.type != EPISODE_EVENT_TYPE:
            continue
        for m in _decode_all(path, ch):
            st = m.header.stamp
            kind = int(m.kind)
            known = kind in {int(k) for k in EventKind}
            out.append({"kind": event_name(EventKind(kind)) if known else f"kind_{kind}",
                        "label": str(m.label),
                        "time_ns": int(st.sec) * 1_000_000_000 + int(st.nanosec)})
    out.sort(key=lambda e: e["time_ns"])
    return out


def _joint_streams(path: Path, content: McapContent) -> list[StreamData]:
    """JointState streams, commands first (the operator's intent), then measured states."""
    out = []
    for ch in _channels(content, JOINT_STATE):
        sd = decode_channel(ch.topic, ch.type, ch.message_encoding, ch.schema_encoding,
                            ch.schema, [bytes(d) for d in ch.data],
                            np.array(ch.log_times, dtype=np.int64))
        if "position" in sd.fields and len(sd):
            order = np.argsort(sd.time_ns, kind="stable")
            sd.time_ns = sd.time_ns[order]
            sd.fields = {k: v[order] for k, v in sd.fields.items()}
            out.append(sd)
    out.sort(key=lambda s: 0 if re.search("command|action|target", s.topic) else 1)
    return out


POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
TELEOP_TOPIC = re.compile(r"/teleop/(left|right)_hand/pose$")


def _teleop_targets(path: Path, content: McapContent, tree: _TfTree, reference: str,
                    arms: Sequence[str]) -> dict[str, PoseTrack]:
    """The operator's palm targets, in the demonstration's reference frame; a side whose
    targets are in a frame the /tf tree does not connect is left out."""
    out: dict[str, PoseTrack] = {}
    for ch in _channels(content, POSE_STAMPED):
        m = TELEOP_TOPIC.search(ch.topic)
        if m is None or m.group(1) not in arms:
            continue
        msgs = _decode_all(path, ch)
        frame = str(msgs[0].header.frame_id).lstrip("/") or reference
        times = np.array([int(x.header.stamp.sec) * 1_000_000_000 + int(x.header.stamp.nanosec)
                          for x in msgs], dtype=np.int64)
        pos = np.array([(x.pose.position.x, x.pose.position.y, x.pose.position.z) for x in msgs])
        quat = np.array([(x.pose.orientation.w, x.pose.orientation.x, x.pose.orientation.y,
                          x.pose.orientation.z) for x in msgs])
        order = np.argsort(times, kind="stable")
        times, pos, quat = times[order], pos[order], quat[order]
        try:
            poses = tree.relative(frame, reference, times) @ pose_matrix(pos, quat)
        except SimError:
            continue
        p, q = matrix_pose(poses)
        out[m.group(1)] = PoseTrack(times, p, q)
    return out


def _find_frame(tree: _TfTree, patterns: Sequence[str], **names: str) -> str | None:
    for p in patterns:
        f = p.format(**names)
        if tree.known(f):
            return f
    return None


def load_source(path: str | Path, task: str | Task) -> SourceDemo:
    """Read one source episode (an MCAP file from the simulator or from a real rig) for
    ``task`` (a name or a ``sim.tasks.Task``).

    Needs, on ``/tf`` (and ``/tf_static``): the palm of every arm the task moves
    (``{side}_hand_palm_link``, ``{side}_palm``, or ``{side}_wrist_yaw_link``) and every
    object its subtasks are relative to (a frame named after the object); the tree is
    composed up to the pelvis. Subtask ends come from SUBTASK marks labelled with the
    subtask names, else from the hand closing or opening (curation's segmentation of the
    hand joints on ``/joint_commands`` or ``/joint_states``); the closure is measured
    against the task's grip (``grip_limits``). Raises ``SimError`` naming
    the file and what is missing."""
    p = Path(path)
    t = _resolve_task(task)
    buf, content = _read(p)
    sha = hashlib.sha256(buf).hexdigest()
    del buf
    tree = _TfTree(str(p))
    # /tf and /tf_static only: a ground-truth topic of the same type is not what a rig has
    tf_channels = [c for c in _channels(content, TF_MESSAGE) if c.topic in TF_TOPICS]
    if not tf_channels:
        raise SimError(f"{p}: no /tf messages (tf2_msgs/msg/TFMessage): the palm and object "
                       f"poses multiplication needs are missing")
    for ch in tf_channels:
        for msg in _decode_all(p, ch):
            tree.add(msg, static="static" in ch.topic)
    tree.finish()

    arms = sorted({a for s in t.subtasks for a in s.arms}, key=SIDES.index)
    objects = list(dict.fromkeys(s.object for s in t.subtasks))
    frames: dict[str, str] = {}
    for side in arms:
        f = _find_frame(tree, PALM_FRAMES, side=side)
        if f is None and tree.known(WRIST_FRAME.format(side=side)):
            f = WRIST_FRAME.format(side=side)
        if f is None:
            raise SimError(f"{p}: no pose of the {side} palm on /tf (looked for "
                           f"{', '.join(x.format(side=side) for x in (*PALM_FRAMES, WRIST_FRAME))}"
                           f"); task {t.name} moves the {side} arm")
        frames[side] = f
    for name in objects:
        f = _find_frame(tree, OBJECT_FRAMES, name=name)
        if f is None:
            have = ", ".join(sorted(tree.links)) or "none"
            raise SimError(f"{p}: no object poses for object {name!r} on /tf (task {t.name} "
                           f"needs it; frames on /tf: {have})")
        frames[name] = f
    first = frames[arms[0]] if arms else frames[objects[0]]
    reference = PELVIS_FRAME if PELVIS_FRAME in tree.chain(first) or (
        tree.known(PELVIS_FRAME) and tree.root(PELVIS_FRAME) == tree.root(first)) \
        else tree.root(first)
    palms = {}
    for side in arms:
        track = tree.track(frames[side], reference)
        if frames[side] == WRIST_FRAME.format(side=side):
            offset = pose_matrix(np.array(PALM_OFFSET), np.array([1.0, 0, 0, 0]))
            pos, quat = matrix_pose(pose_matrix(track.pos, track.quat) @ offset)
            track = PoseTrack(track.times_ns, pos, quat)
        palms[side] = track
    tracks = {name: tree.track(frames[name], reference) for name in objects}
    targets = _teleop_targets(p, content, tree, reference, arms)

    events = _events(p, content)
    streams = _joint_streams(p, content)
    limits = grip_limits(t.grip)
    closure: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ref_stream = streams[0] if streams else None
    if ref_stream is not None:
        names = ref_stream.attrs.get("joint_names") or []
        for side in SIDES:
            c = hand_closure(names, ref_stream.fields["position"], side, limits)
            if c is not None:
                closure[side] = (ref_stream.time_ns.copy(), c)

    starts = [e["time_ns"] for e in events if e["kind"] == event_name(EventKind.START)]
    stops = [e["time_ns"] for e in events if e["kind"] == event_name(EventKind.STOP)]
    moving = list(palms.values()) or list(tracks.values())
    lo = min(int(tr.times_ns[0]) for tr in moving)
    hi = max(int(tr.times_ns[-1]) for tr in moving)
    start_ns = max(starts[0], lo) if starts else lo
    end_ns = min(stops[-1], hi) if stops else hi
    if end_ns <= start_ns:
        raise SimError(f"{p}: the episode's /tf poses span no time between its start and "
                       f"stop events")
    segments = _segments(p, t, events, streams, start_ns, end_ns, limits)
    return SourceDemo(str(p), sha, t.name, reference, start_ns, end_ns, palms, tracks,
                      closure, segments, frames, targets)


def _segments(path: Path, task: Task, events: list[dict[str, Any]], streams: list[StreamData],
              start_ns: int, end_ns: int, limits: dict[str, tuple[float, float]]
              ) -> tuple[SourceSegment, ...]:
    subtasks = list(task.subtasks)
    marks = [e for e in events if e["kind"] == event_name(EventKind.SUBTASK)
             and start_ns <= e["time_ns"] <= end_ns]
    by_label: dict[str, list[int]] = {}
    for m in marks:
        by_label.setdefault(m["label"], []).append(m["time_ns"])
    names = [s.name for s in subtasks]
    ends: list[tuple[int, str]] = []
    if all(n in by_label for n in names[:-1]):
        # a subtask ends at the last mark of its name before the next subtask's mark (an
        # operator who regrasped marked "grasp" twice: the second one counts)
        cur = start_ns
        for i, n in enumerate(names[:-1]):
            nxt = [x for x in by_label.get(names[i + 1], []) if x > cur]
            bound = nxt[0] if nxt else end_ns + 1
            later = [x for x in by_label[n] if x > cur]
            if not later:
                ends = []
                break
            before = [x for x in later if x < bound]
            cur = before[-1] if before else later[0]
            ends.append((cur, "event"))
    if len(ends) != len(names) - 1:
        ends = _segment_by_hands(path, subtasks, streams, start_ns, end_ns, limits)
    if len(ends) != len(names) - 1:
        labels = ", ".join(sorted(by_label)) or "none"
        raise SimError(
            f"{path}: no subtask marks for task {task.name} (SUBTASK marks labelled "
            f"{', '.join(names[:-1])} on {EVENTS_TOPIC}; found labels: {labels}), and "
            f"segmentation of the hand joints found no grasp or release to end them")
    out = []
    cur = start_ns
    for s, (end, how) in zip(subtasks, [*ends, (end_ns, "episode_end")], strict=True):
        if end <= cur:
            raise SimError(f"{path}: subtask {s.name!r} of task {task.name} is empty "
                           f"(ends at {end} ns, not after {cur} ns)")
        out.append(SourceSegment(s.name, s.object, tuple(s.arms), cur, end, how))
        cur = end
    return tuple(out)


def _segment_by_hands(path: Path, subtasks: list[Subtask], streams: list[StreamData],
                      start_ns: int, end_ns: int, limits: dict[str, tuple[float, float]]
                      ) -> list[tuple[int, str]]:
    """Subtask ends from curation's grasp and release detection on each arm's fingers:
    a subtask ends at the first grasp or release of one of its arms after the previous
    end."""
    if not streams:
        return []
    rec = FileRecord(str(path), "", "", 0, {s.topic: s for s in streams})
    seg = Segment(0, start_ns, end_ns, "events")
    per_side: dict[str, list[int]] = {}
    for side in SIDES:
        cfg = SegmentConfig(gripper_joints=FINGER_JOINTS.format(side=side))
        per_side[side] = sorted(m["time_ns"] for m in detect_marks(rec, seg, cfg, limits)
                                if m["kind"] in ("grasp", "release"))
    ends: list[tuple[int, str]] = []
    cur = start_ns
    for s in subtasks[:-1]:
        later = sorted(t for a in s.arms for t in per_side.get(a, []) if t > cur)
        if not later:
            return []
        cur = later[0]
        ends.append((cur, "segmentation"))
    return ends


# -- generation -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultiplyOptions:
    """How segments are carried over and executed.

    - ``rate_hz``: waypoints per second a source segment is resampled to, each one
      ``Executor.move`` (100 Hz: the executor's IK rate, one waypoint per IK solve).
    - ``interpolation_steps``: MimicGen's ``num_interpolation_steps``, the waypoints that
      bridge the current palm target to a segment's first waypoint (at least; more when
      the bridge would exceed ``max_speed`` m/s or ``max_turn`` rad/s); ``fixed_steps``
      (MimicGen's ``num_fixed_steps``): waypoints held there before the segment runs.
    - ``action_noise``: standard deviation of Gaussian noise on each waypoint, in m on its
      position and in rad on its orientation (MimicGen's ``action_noise``);
      ``noise_during_interpolation`` puts it on the bridge too.
    - ``selection``: ``random`` source demonstration, or ``nearest``: one of the ``nn_k``
      sources whose first object is nearest the new scene's (MimicGen's
      ``nearest_neighbor_object``).
    - ``eef``: the source's end-effector poses: ``palms`` (the measured palm frames on
      /tf, which every source has), ``targets`` (the operator's /teleop palm targets),
      ``auto`` (targets where recorded, else palms).
    - ``blend``: the carry-over starts as the previous segment's and turns into this
      segment's along the approach (``plan_segment``); False: MimicGen's straight bridge.
    - ``symmetric_objects``: a box's new pose is taken, among its symmetric equivalents
      (quarter turns about z for a square footprint, half turns otherwise), as the one
      closest in orientation to the source object.
    - ``check_subtasks``: stop at the first subtask whose predicate fails (see
      ``generate_attempt``), which saves the rest of a failed attempt.
    - ``ik_tolerance_m``: how far IK may leave a palm from its waypoint before the
      waypoint counts as missed (a squeeze puts the targets inside the object, the
      collision limits hold a hand off the table), and ``approach_tolerance_m`` while it
      moves in free space (bridges and approaches, before the hand closes or opens: the
      arm does its best and catches up, as a teleoperated arm does); ``max_misses``:
      missed waypoints in a row (each is skipped) before the attempt fails."""

    rate_hz: float = 100.0
    interpolation_steps: int = 5
    fixed_steps: int = 0
    max_speed: float = 0.4
    max_turn: float = 1.5
    action_noise: float = 0.0
    noise_during_interpolation: bool = False
    selection: str = "random"
    nn_k: int = 3
    symmetric_objects: bool = True
    check_subtasks: bool = True
    max_misses: int = 10
    eef: str = "palms"
    blend: bool = True
    ik_tolerance_m: float = 0.03
    approach_tolerance_m: float = 0.08

    def __post_init__(self) -> None:
        if self.rate_hz <= 0 or self.interpolation_steps < 0 or self.fixed_steps < 0:
            raise SimError(f"multiply options: rate_hz must be > 0 and steps >= 0 (got "
                           f"rate_hz={self.rate_hz}, interpolation_steps="
                           f"{self.interpolation_steps}, fixed_steps={self.fixed_steps})")
        if self.eef not in ("palms", "targets", "auto"):
            raise SimError(f"multiply options: eef {self.eef!r} is not palms, targets or auto")
        if self.selection not in ("random", "nearest"):
            raise SimError(f"multiply options: selection {self.selection!r} is not random "
                           "or nearest")
        if self.action_noise < 0 or self.max_speed <= 0 or self.max_turn <= 0:
            raise SimError("multiply options: action_noise must be >= 0, max_speed and "
                           "max_turn > 0")


def _yaw(transform: np.ndarray) -> float:
    return float(np.arctan2(transform[1, 0], transform[0, 0]))


def symmetric_pose(obj_new: np.ndarray, obj_src: np.ndarray, half_size: Sequence[float]
                   ) -> tuple[np.ndarray, float]:
    """Among the poses of a box that look the same as ``obj_new`` (turns about its z axis
    by multiples of 90° when its footprint is square, of 180° otherwise), the one whose
    yaw is closest to ``obj_src``'s, and the turn applied (rad)."""
    hx, hy = float(half_size[0]), float(half_size[1])
    step = np.pi / 2 if abs(hx - hy) < 1e-6 else np.pi
    best, best_turn, best_err = obj_new, 0.0, np.inf
    for k in range(int(round(2 * np.pi / step))):
        turn = k * step
        c, s = np.cos(turn), np.sin(turn)
        rz = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        cand = obj_new @ rz
        err = rotation_angle(cand, obj_src)
        if err < best_err - 1e-9:
            best, best_turn, best_err = cand, turn, err
    return best, best_turn


def select_source(sources: Sequence[SourceDemo], first_object: np.ndarray,
                  rng: np.random.Generator, options: MultiplyOptions,
                  pelvis: np.ndarray | None = None) -> int:
    """The index of the source demonstration to use (seeded by ``rng``): at random, or
    (``nearest``) at random among the ``nn_k`` sources whose first segment's object
    started nearest ``first_object`` (its world pose in the new scene; ``pelvis``, the
    scene's pelvis pose, places sources recorded relative to the pelvis)."""
    if options.selection == "random" or len(sources) == 1:
        return int(rng.integers(len(sources)))
    dists = []
    for s in sources:
        seg = s.segments[0]
        src = s.objects[seg.object].at(seg.start_ns)[0]
        if s.frame == PELVIS_FRAME and pelvis is not None:
            src = pelvis @ src
        dists.append(float(np.linalg.norm(src[:3, 3] - first_object[:3, 3])))
    order = np.argsort(dists, kind="stable")[: max(1, options.nn_k)]
    return int(order[int(rng.integers(len(order)))])


def _noisy(poses: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma <= 0 or not len(poses):
        return poses
    out = poses.copy()
    out[:, :3, 3] += rng.normal(0.0, sigma, size=(len(poses), 3))
    axis = rng.normal(size=(len(poses), 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = rng.normal(0.0, sigma, size=len(poses))
    half = angle / 2
    q = np.concatenate([np.cos(half)[:, None], axis * np.sin(half)[:, None]], axis=1)
    out[:, :3, :3] = quat_to_mat(q) @ out[:, :3, :3]
    return out


def bridge_steps(start: np.ndarray, end: np.ndarray, options: MultiplyOptions) -> int:
    """How many waypoints the bridge from ``start`` to ``end`` takes: at least
    ``interpolation_steps``, and enough to stay under ``max_speed`` and ``max_turn``."""
    dt = 1.0 / options.rate_hz
    dist = float(np.linalg.norm(end[:3, 3] - start[:3, 3]))
    turn = rotation_angle(start, end)
    need = max(dist / (options.max_speed * dt), turn / (options.max_turn * dt))
    return max(options.interpolation_steps, int(np.ceil(need - 1e-9)))


@dataclass(frozen=True, slots=True)
class TrackedArm:
    """What a ``track`` arm's waypoints are made of while the segment runs: waypoint ``i``
    (from ``first`` + 1 on) is the source pose ``src[i - first]`` carried by the object's
    pose now times the source object's inverse at that time, blended from ``previous``
    by ``weights`` (all world poses, (k, 4, 4))."""

    src: np.ndarray
    obj_src: np.ndarray
    weights: np.ndarray
    previous: np.ndarray
    first: int
    half_size: tuple[float, ...] | None = None

    def waypoint(self, i: int, obj_now: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The world pose of waypoint ``i`` with the object at ``obj_now``, and the
        carry-over transform it used."""
        j = min(i - self.first, len(self.src) - 1)
        if self.half_size is not None:
            obj_now = symmetric_pose(obj_now, self.obj_src[j], self.half_size)[0]
        transform = object_transform(self.obj_src[j], obj_now)
        pose = blend_poses(self.previous @ self.src[j:j + 1], transform @ self.src[j:j + 1],
                           self.weights[j:j + 1])[0]
        return pose, transform

    def carried(self, i: int, transform: np.ndarray) -> np.ndarray:
        """Waypoint ``i`` carried by a fixed ``transform`` (the one the hand closed with)."""
        j = min(i - self.first, len(self.src) - 1)
        out: np.ndarray = transform @ self.src[j]
        return out


@dataclass(frozen=True, slots=True)
class PlannedSegment:
    """One segment carried onto the new scene: per arm its waypoints (k, 4, 4) in the
    world and hand closures (k,), ``bridge`` of them interpolated (then ``fixed`` held)
    before the transformed source poses."""

    subtask: str
    waypoints: dict[str, np.ndarray]
    closure: dict[str, np.ndarray]
    bridge: int
    fixed: int
    transform: np.ndarray
    obj_src: np.ndarray
    obj_new: np.ndarray
    symmetry_turn: float
    #: per arm, the source waypoint where the approach ends (the hand starts to close or
    #: open, or comes nearest the object): the blend is done there, and the waypoints
    #: before it (and the bridge) are free-space motion
    blend_end: dict[str, int] = field(default_factory=dict)
    #: per arm, how its poses are carried over: ``object`` (by the object's pose at the
    #: segment's start), ``robot`` (kept where the source had them relative to the robot:
    #: the arm that holds the object another arm takes) or ``track`` (relative to the
    #: object where it is at each waypoint: the arm that takes it)
    modes: dict[str, str] = field(default_factory=dict)
    #: the ``track`` arms' source poses, computed into waypoints while the segment runs
    track: dict[str, TrackedArm] = field(default_factory=dict)
    object: str = ""

    @property
    def free_waypoints(self) -> int:
        """Waypoints from the start that move in free space (bridge, held steps and the
        approach of every arm)."""
        return self.bridge + self.fixed + min(self.blend_end.values(), default=0)


def blend_weights(dist: np.ndarray, closure: np.ndarray, *, threshold: float = 0.05
                  ) -> np.ndarray:
    """Per waypoint, how far the carry-over has moved from the previous segment's
    transform to this segment's (0 .. 1): a smoothstep from the segment's start to the
    waypoint where the hand starts to close or open (its closure moves ``threshold`` from
    where it started: the grasp or the release), or, in a segment where the hand keeps its
    closure, to the waypoint where the palm comes nearest the object; 1 from there on."""
    c = np.asarray(closure, dtype=float)
    onset = np.flatnonzero(np.abs(c - c[0]) > threshold) if len(c) else np.zeros(0, int)
    k = int(onset[0]) if len(onset) else int(np.argmin(dist))
    w = np.ones(len(dist))
    if k > 0:
        x = np.arange(k + 1) / k
        w[:k + 1] = x * x * (3 - 2 * x)
    return w


def blend_poses(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Poses (k, 4, 4) between ``a`` and ``b`` (k, 4, 4) at fractions ``w`` (k,): linear in
    position, normalised-linear in orientation (exact at 0 and 1)."""
    pa, qa = matrix_pose(a)
    pb, qb = matrix_pose(b)
    qb = np.where((np.sum(qa * qb, axis=1) < 0)[:, None], -qb, qb)
    ww = np.asarray(w, dtype=float)[:, None]
    q = qa + ww * (qb - qa)
    return pose_matrix(pa + ww * (pb - pa), q / np.linalg.norm(q, axis=1, keepdims=True))


def plan_segment(demo: SourceDemo, seg: SourceSegment, to_world: np.ndarray,
                 obj_new: np.ndarray, current: dict[str, np.ndarray],
                 current_closure: dict[str, float], options: MultiplyOptions,
                 rng: np.random.Generator, half_size: Sequence[float] | None = None,
                 previous: dict[str, np.ndarray] | None = None,
                 holding: Sequence[str] = ()) -> PlannedSegment:
    """The waypoints of one segment in the new scene: the source palm poses of
    ``seg`` (resampled at ``options.rate_hz``), mapped to the world by ``to_world`` (the
    demonstration's reference frame in the scene), carried by
    ``T_obj_new · T_obj_src⁻¹``, preceded by a bridge from each arm's ``current`` pose.

    With ``options.blend`` and ``previous`` (per arm, the transform the arm's last segment
    used; the identity before its first), the carry-over starts as the previous one and
    turns into this segment's along the approach (``blend_weights``): the arm leaves from
    where it is, by the source's own path, and is on the transformed path before it nears
    the object. Without, the bridge interpolates straight to the first transformed pose
    (MimicGen).

    ``holding``: the arms that hold the segment's object as it starts. In a segment where
    one arm holds the object and another comes to take it (a handover), the holding arm
    keeps its source poses relative to the robot (where the source presented the object,
    a place both arms reached) and the taking arm tracks the object (``TrackedArm``): its
    poses are relative to the object where it is at each waypoint, as they were to the
    source object at that time, until its hand starts to close; from there the transform
    it closed with is kept (a hand that holds on does not chase the object)."""
    n = max(2, int(round(seg.duration_s * options.rate_hz)) + 1)
    times = np.linspace(seg.start_ns, seg.end_ns, n).astype(np.int64)
    obj_src = to_world @ demo.objects[seg.object].at(seg.start_ns)[0]
    turn = 0.0
    if options.symmetric_objects and half_size is not None:
        obj_new, turn = symmetric_pose(obj_new, obj_src, half_size)
    transform = object_transform(obj_src, obj_new)
    src = {a: to_world @ demo.eef(a, options.eef).at(times) for a in seg.arms}
    eef = {a: transform @ src[a] for a in seg.arms}
    closure = {a: demo.closure_at(a, times) for a in seg.arms}
    modes = {a: "object" for a in seg.arms}
    holders = [a for a in seg.arms if a in holding]
    if holders and len(holders) < len(seg.arms):
        modes = {a: "robot" if a in holders else "track" for a in seg.arms}
    obj_track = to_world @ demo.objects[seg.object].at(times) if "track" in modes.values() \
        else None
    ramp, weights = {}, {}
    for a in seg.arms:
        w = blend_weights(np.linalg.norm(src[a][:, :3, 3] - obj_src[:3, 3], axis=1),
                          closure[a])
        ramp[a] = int(np.argmax(w >= 1.0))
        weights[a] = w if options.blend and previous is not None else np.ones(len(w))
        if modes[a] == "robot":
            eef[a] = src[a].copy()
        if options.blend and previous is not None:
            eef[a] = blend_poses(previous.get(a, np.eye(4)) @ src[a], eef[a], w)
    bridge = max(bridge_steps(current[a], eef[a][0], options) for a in seg.arms)
    waypoints, closures = {}, {}
    for a in seg.arms:
        b = interpolate_poses(current[a], eef[a][0], bridge)
        if options.noise_during_interpolation:
            b = _noisy(b, options.action_noise, rng)
        c0 = current_closure.get(a, float(closure[a][0]))
        bc = c0 + (np.arange(1, bridge + 1) / max(bridge, 1)) * (closure[a][0] - c0)
        held = np.repeat(eef[a][:1], options.fixed_steps, axis=0)
        body = _noisy(eef[a], options.action_noise, rng)
        waypoints[a] = np.concatenate([b, held, body[1:]])
        closures[a] = np.concatenate([bc, np.full(options.fixed_steps, closure[a][0]),
                                      closure[a][1:]])
    track = {}
    if obj_track is not None:
        for a in seg.arms:
            if modes[a] == "track":
                prev = previous.get(a, np.eye(4)) if previous is not None else np.eye(4)
                track[a] = TrackedArm(src[a], obj_track, weights[a], prev,
                                      bridge + options.fixed_steps - 1,
                                      tuple(half_size) if options.symmetric_objects and
                                      half_size is not None else None)
    return PlannedSegment(seg.subtask, waypoints, closures, bridge, options.fixed_steps,
                          transform, obj_src, obj_new, turn, ramp, modes, track, seg.object)


def _scene_object_pose(scene: Scene, name: str) -> np.ndarray:
    pos, quat = scene.body_pose(name)
    return pose_matrix(pos, quat)


def _half_size(layout: Layout, name: str) -> tuple[float, ...] | None:
    for o in layout.objects:
        if o.name == name:
            return tuple(o.half_size)
    if layout.bin is not None and name == "bin":
        return tuple(layout.bin.half_size)
    return None


def _to_world(scene: Scene, demo: SourceDemo) -> np.ndarray:
    if demo.frame == PELVIS_FRAME:
        return _scene_object_pose(scene, PELVIS_FRAME)
    return np.eye(4)


def _list(m: np.ndarray) -> list[list[float]]:
    return [[float(x) for x in row] for row in np.asarray(m)]


def generate_attempt(sources: Sequence[SourceDemo], task: str | Task, layout: Layout,
                     seed: int, options: MultiplyOptions | None = None) -> Trace:
    """One multiplied demonstration attempt in a scene built from ``layout``.

    Picks a source (seeded by ``seed``), carries each of its segments onto the scene
    (``T_obj_new · T_obj_src⁻¹ · T_eef_src``, the object's pose taken when the segment
    starts), bridges from the current palm pose, and executes through IK and physics.
    The returned trace says whether the task succeeded and, if not, which subtask and
    predicate failed; ``trace.provenance`` holds the source file (path, sha256), each
    segment's source times and transform, the seed, the task and the options.

    One source serves the whole attempt, so the arms of a bimanual segment move as they
    moved together in it (DexMimicGen). An arm whose hand ends a segment closed on a free
    object holds it; a later segment on that object in which another arm takes it is
    planned as a handover (``plan_segment``'s ``holding``).

    A subtask's predicate is checked from the end of its segment on: one that does not
    hold there yet (a grasp marked before the lift) must hold before the next segment
    ends, else the attempt stops there, naming that subtask and its predicate. The same
    sources, task, layout, seed and options give the same trace, step by step."""
    if not sources:
        raise SimError("multiply: no source demonstrations given")
    opts = options or MultiplyOptions()
    t = _resolve_task(task)
    for s in sources:
        if s.task != t.name:
            raise SimError(f"{s.path}: source was loaded for task {s.task}, not {t.name}")
    rng = np.random.default_rng(seed)
    scene = Scene(layout)
    try:
        executor = Executor(scene, HandIK(scene, tolerance_m=opts.ik_tolerance_m),
                            grip=t.grip)
        first = t.subtasks[0]
        pick = select_source(sources, _scene_object_pose(scene, first.object), rng, opts,
                             _scene_object_pose(scene, PELVIS_FRAME))
        demo = sources[pick]
        to_world = _to_world(scene, demo)
        layout_objects = {o.name for o in layout.objects}
        closure_now: dict[str, float] = {side: 0.0 for side in SIDES}
        records: list[dict[str, Any]] = []
        outcome = None
        pending: list[str] = []  # subtasks whose predicate has not held since their end
        previous: dict[str, np.ndarray] = {side: np.eye(4) for side in SIDES}
        holding: dict[str, str] = {}  # arm -> the object its hand closed on
        for sub in t.subtasks:
            seg = demo.segment(sub.name)
            current = {side: pose_matrix(*executor.targets[side]) for side in SIDES}
            plan = plan_segment(demo, seg, to_world, _scene_object_pose(scene, seg.object),
                                current, closure_now, opts, rng,
                                _half_size(layout, seg.object), previous,
                                [a for a in seg.arms if holding.get(a) == seg.object])
            start_step = int(executor.step_count)
            late = list(pending)
            live: dict[str, np.ndarray] = {}
            failure = _execute(executor, plan, opts, t, scene, pending, live)
            records.append({
                "subtask": sub.name, "object": seg.object, "arms": list(seg.arms),
                "source_start_ns": seg.start_ns, "source_end_ns": seg.end_ns,
                "boundary": seg.boundary, "transform": _list(plan.transform),
                "object_source": _list(plan.obj_src), "object_new": _list(plan.obj_new),
                "symmetry_turn_rad": plan.symmetry_turn, "bridge_waypoints": plan.bridge,
                "blend_waypoints": dict(plan.blend_end), "modes": dict(plan.modes),
                "tracked_transforms": {a: _list(m) for a, m in live.items()},
                "start_step": start_step, "end_step": int(executor.step_count)})
            for a in seg.arms:
                closure_now[a] = float(plan.closure[a][-1])
                previous[a] = live.get(a, np.eye(4) if plan.modes[a] == "robot"
                                       else plan.transform)
                if closure_now[a] > HELD_CLOSURE and seg.object in layout_objects:
                    holding[a] = seg.object
                elif closure_now[a] <= HELD_CLOSURE:
                    holding.pop(a, None)
            if failure:
                outcome = _outcome(sub.name, failure)
                break
            executor.mark(sub.name)
            if opts.check_subtasks:
                overdue = [n for n in late if n in pending]
                if overdue:
                    outcome = t.subtask_outcome(scene, overdue[0])
                    outcome = _outcome(overdue[0], f"{outcome.reason} (the {overdue[0]} "
                                                   f"predicate never held by the end of "
                                                   f"{sub.name})")
                    break
                if sub is not t.subtasks[-1] and not t.check_subtask(scene, sub.name):
                    pending.append(sub.name)
        if outcome is None:
            executor.hold(t.hold_s)
            outcome = t.check(scene)
            if not outcome.success and pending:
                why = t.subtask_outcome(scene, pending[0]).reason
                outcome = _outcome(pending[0], f"{why} (and {outcome.failed_subtask}: "
                                               f"{outcome.reason})")
        trace: Trace = executor.trace(t.name, seed, layout, outcome)
        trace.provenance.update({
            "method": "mimicgen", "task": t.name, "seed": int(seed),
            "source": {"path": demo.path, "sha256": demo.sha256, "frame": demo.frame,
                       "index": pick, "frames": dict(demo.frames)},
            "segments": records, "options": asdict(opts),
        })
        return trace
    finally:
        scene.close()


def _outcome(subtask: str, reason: str) -> Outcome:
    return Outcome(False, subtask, reason)


#: a hand closed at least this far at a segment's end holds the segment's object
HELD_CLOSURE = 0.5
#: waypoints between checks of the predicates still pending during a segment
_CHECK_EVERY = 10


def _execute(executor: Executor, plan: PlannedSegment, opts: MultiplyOptions, task: Task,
             scene: Scene, pending: list[str], live: dict[str, np.ndarray]) -> str:
    """Run a planned segment waypoint by waypoint; the reason it stopped, "" if it ran.
    ``track`` arms get their waypoints from the object's pose as it runs (the transform
    they used when their hand started to close goes into ``live``). A waypoint IK cannot
    reach is skipped (the arm goes on to the next); ``max_misses``
    in a row, or a missed last waypoint, end the attempt. Pending predicates are checked
    every few waypoints and dropped once they hold."""
    dt = 1.0 / opts.rate_hz
    arms = list(plan.waypoints)
    k = len(plan.waypoints[arms[0]])
    misses = 0
    ik = executor.ik
    strict = ik.tolerance_m
    try:
        for i in range(k):
            ik.tolerance_m = opts.approach_tolerance_m if i < plan.free_waypoints else strict
            poses = {a: plan.waypoints[a][i] for a in arms}
            for a, tracked in plan.track.items():
                if i <= tracked.first:
                    continue
                if a in live:  # the hand has closed: no chasing the object from here
                    poses[a] = tracked.carried(i, live[a])
                    continue
                poses[a], transform = tracked.waypoint(i, _scene_object_pose(scene, plan.object))
                if i - tracked.first >= max(plan.blend_end[a], 1):
                    live[a] = transform  # the carry-over when the hand starts to close
            targets = {a: matrix_pose(p) for a, p in poses.items()}
            hands = {a: float(plan.closure[a][i]) for a in arms}
            try:
                executor.move(targets, dt, hands=hands)
                misses = 0
            except Unreachable as exc:
                misses += 1
                if misses > opts.max_misses or i == k - 1:
                    return f"IK: {exc} (waypoint {i + 1} of {k})"
            if pending and i % _CHECK_EVERY == 0:
                pending[:] = [n for n in pending if not task.check_subtask(scene, n)]
    finally:
        ik.tolerance_m = strict
    if pending:
        pending[:] = [n for n in pending if not task.check_subtask(scene, n)]
    return ""


__all__ = [
    "FINGER_JOINTS", "HELD_CLOSURE", "MultiplyOptions", "OBJECT_FRAMES", "PALM_FRAMES",
    "PELVIS_FRAME", "PlannedSegment", "PoseTrack", "SourceDemo", "SourceSegment",
    "TrackedArm", "WRIST_FRAME", "blend_poses", "blend_weights", "bridge_steps",
    "generate_attempt", "grip_limits", "hand_closure", "interpolate_poses", "invert", "load_source",
    "mat_to_quat", "matrix_pose", "object_transform", "plan_segment", "pose_matrix",
    "quat_to_mat", "rotation_angle", "select_source", "slerp", "symmetric_pose",
    "transform_segment",
]
