"""Replay in the simulator: an episode's recorded commands re-executed in the scene.

:func:`replay` reads an episode (any recording with ``/joint_commands`` and
``/joint_states`` of the humanoid's joints), builds its scene and drives it with the
recorded commands, held from one command to the next on the 2 ms physics grid. It compares
the simulated joint positions with the recorded ones at each recorded ``/joint_states``
stamp and checks the task's success predicate at the end.

- A sim episode (it carries the ``SIM_METADATA`` provenance record) is rebuilt exactly: the
  layout of its draw, the scene's reset state. Replayed against itself its error is the
  recorded sensor noise alone (zero for a draw without noise).
- A real recording: the task from the episode metadata (or the caller), the task's default
  layout with each object's first pose on ``/tf`` (child frame = the object's name, parent
  one of ``WORLD_FRAMES`` or ``pelvis``), and the robot started at the first recorded
  joint state.

A test-site engineer reads the drift (``max_joint_error_rad``, ``rms_joint_error_rad``, the
worst joint and when) and whether the task succeeded in the simulator.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from recorder.contract import EPISODE_METADATA, SIM_METADATA

from .episode import BIN_FRAME, PELVIS_FRAME, STEP_NS, WORLD_FRAME
from .errors import SimError
from .randomize import Draw
from .scenes import Layout, Scene, profile_joint_names
from .se3 import quat_mul, quat_rotate
from .tasks import Task, get_task

MCAP_MAGIC = b"\x89MCAP0\r\n"
COMMANDS_TOPIC = "/joint_commands"
STATES_TOPIC = "/joint_states"
TF_TOPIC = "/tf"
#: parent frames on /tf taken as the simulator's world (a motion-capture or map frame)
WORLD_FRAMES = (WORLD_FRAME, "map", "odom", "mocap")


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay found: the drift of the simulated joints from the recorded ones
    (positions, rad) and whether the task succeeded in the simulator."""

    path: str
    task: str
    sim_episode: bool             # rebuilt from the sim provenance record
    steps: int                    # physics steps executed
    duration_s: float
    commands: int                 # recorded /joint_commands used
    compared: int                 # recorded /joint_states compared
    joints: int                   # joints compared per state
    max_joint_error_rad: float
    rms_joint_error_rad: float
    worst_joint: str
    worst_at_s: float             # since the first command
    success: bool                 # the task's predicate at the end
    failed_subtask: str = ""
    reason: str = ""
    recorded_outcome: str = ""    # what the episode metadata says
    #: std of the recorded position noise (a sim episode's draw; 0 for a real recording)
    sensor_noise_std_rad: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: the largest error of each joint compared, rad
    joint_max_error_rad: dict[str, float] = field(default_factory=dict)
    #: where each object started in the replayed scene (world x, y, m)
    object_xy: dict[str, tuple[float, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (``demofab sim replay --json``)."""
        out = asdict(self)
        out["notes"] = list(self.notes)
        out["joint_max_error_rad"] = dict(self.joint_max_error_rad)
        out["object_xy"] = {k: list(v) for k, v in self.object_xy.items()}
        return out


@dataclass(slots=True)
class _Stream:
    stamps: np.ndarray        # int64 ns, increasing
    values: np.ndarray        # (n, 43) positions in profile order, NaN where not recorded


@dataclass(slots=True)
class _Episode:
    metadata: dict[str, dict[str, str]]
    commands: _Stream
    states: _Stream
    #: child frame -> (parent frame, pos, quat wxyz), the first of each on /tf
    first_poses: dict[str, tuple[str, np.ndarray, np.ndarray]]


def _read(path: Path, joints: list[str]) -> _Episode:
    from mcap.exceptions import McapError
    from mcap.reader import make_reader
    from rosbags.serde import SerdeError
    from zstandard import ZstdError

    from recorder.errors import RecorderError
    from recorder.types import SchemaStore, schema_store

    try:
        with path.open("rb") as f:
            head = f.read(len(MCAP_MAGIC))
    except OSError as exc:
        raise SimError(f"{path}: cannot read the episode: {exc.strerror}") from None
    if head != MCAP_MAGIC:
        raise SimError(f"{path}: not an MCAP file (it does not start with the MCAP magic)")
    index = {name: i for i, name in enumerate(joints)}
    rows: dict[str, list[tuple[int, np.ndarray]]] = {COMMANDS_TOPIC: [], STATES_TOPIC: []}
    first: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    stores: dict[int, SchemaStore] = {}
    try:
        with path.open("rb") as f:
            reader = make_reader(f, validate_crcs=True)
            metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
            # a sim episode's scene comes from its provenance: its /tf is not needed
            topics = [COMMANDS_TOPIC, STATES_TOPIC] + \
                ([] if SIM_METADATA in metadata else [TF_TOPIC])
            for schema, channel, message in reader.iter_messages(topics=topics,
                                                                 log_time_order=True):
                if schema is None:
                    raise SimError(f"{path}: topic {channel.topic} has no schema to decode")
                store = stores.get(channel.id)
                if store is None:
                    store = stores[channel.id] = schema_store(schema.name, schema.encoding,
                                                              schema.data)
                msg = store.deserialize(message.data)
                if channel.topic == TF_TOPIC:
                    for t in msg.transforms:
                        if t.child_frame_id not in first and \
                                t.header.frame_id in (*WORLD_FRAMES, PELVIS_FRAME):
                            tr, r = t.transform.translation, t.transform.rotation
                            first[t.child_frame_id] = (t.header.frame_id,
                                                       np.array([tr.x, tr.y, tr.z]),
                                                       np.array([r.w, r.x, r.y, r.z]))
                    continue
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                if stamp == 0:  # a rig that does not stamp: the receive time
                    stamp = message.log_time
                row = np.full(len(joints), np.nan)
                pos = np.asarray(msg.position, dtype=np.float64)
                for name, value in zip(msg.name, pos, strict=False):
                    i = index.get(name)
                    if i is not None:
                        row[i] = value
                rows[channel.topic].append((stamp, row))
    except SimError:
        raise
    except (McapError, RecorderError, SerdeError, OSError, ValueError, RuntimeError,
            KeyError, IndexError, AttributeError, EOFError, struct.error, ZstdError) as exc:
        # the mcap reader's own errors, a CRC mismatch, a chunk that does not decompress,
        # a message that does not decode
        raise SimError(f"{path}: damaged or unreadable MCAP ({type(exc).__name__}: {exc})"
                       ) from None
    streams = {}
    for topic, got in rows.items():
        if not got:
            raise SimError(f"{path}: no {topic} messages; replay re-executes the recorded "
                           f"{COMMANDS_TOPIC} and compares them with {STATES_TOPIC}")
        got.sort(key=lambda r: r[0])
        values = np.array([r for _, r in got])
        if np.isnan(values).all():
            raise SimError(f"{path}: {topic} names none of the humanoid's joints "
                           f"(expected names such as {joints[0]})")
        streams[topic] = _Stream(np.array([s for s, _ in got], dtype=np.int64), values)
    return _Episode(metadata, streams[COMMANDS_TOPIC], streams[STATES_TOPIC], first)


def _layout_for(path: Path, ep: _Episode, task: Task,
                notes: list[str]) -> tuple[Layout, bool, float]:
    """The scene's layout, whether it is a sim episode's, and the recorded noise std."""
    sim = ep.metadata.get(SIM_METADATA)
    if sim is not None:
        where = f"{path}: {SIM_METADATA} record"
        try:
            raw = json.loads(sim["draw"])
        except (KeyError, json.JSONDecodeError) as exc:
            raise SimError(f"{where}: no readable draw ({exc})") from None
        d = Draw.from_dict(raw, where)
        return d.layout, True, d.sensor_noise.joint_position_std_rad
    layout = task.default_layout()
    with Scene(layout) as scene:
        pelvis = scene.body_pose(PELVIS_FRAME)

    def world(name: str) -> tuple[np.ndarray, np.ndarray] | None:
        got = ep.first_poses.get(name)
        if got is None:
            return None
        parent, pos, quat = got
        if parent == PELVIS_FRAME:  # the robot's frame: fixed in the simulator's world
            return pelvis[0] + quat_rotate(pelvis[1], pos), quat_mul(pelvis[1], quat)
        return pos, quat

    objects = []
    for o in layout.objects:
        pose = world(o.name)
        if pose is None:
            notes.append(f"object {o.name!r} is not on {TF_TOPIC}: its default place is used")
            objects.append(o)
            continue
        pos, q = pose
        yaw = math.atan2(2 * (q[0] * q[3] + q[1] * q[2]), 1 - 2 * (q[2] ** 2 + q[3] ** 2))
        objects.append(replace(o, xy=(float(pos[0]), float(pos[1])), yaw=yaw))
    bin_spec = layout.bin
    bin_pose = world(BIN_FRAME)
    if bin_spec is not None and bin_pose is not None:
        pos = bin_pose[0]
        bin_spec = replace(bin_spec, xy=(float(pos[0]), float(pos[1])))
    return replace(layout, objects=tuple(objects), bin=bin_spec), False, 0.0


def replay(path: str | Path, *, task: str | None = None) -> ReplayReport:
    """Re-execute the episode at ``path`` in the simulator and compare; ``task`` names the
    task when the episode's metadata does not. Raises ``SimError`` naming the file and what
    is missing for bad input (not an MCAP, no ``/joint_commands``, an unknown task)."""
    p = Path(path)
    joints = profile_joint_names()
    ep = _read(p, joints)
    facts = ep.metadata.get(EPISODE_METADATA, {})
    sim = ep.metadata.get(SIM_METADATA, {})
    name = task or sim.get("task") or facts.get("task", "")
    if not name:
        raise SimError(f"{p}: the episode names no task (no {EPISODE_METADATA} task); "
                       "give the task")
    notes: list[str] = []
    try:
        task_ = get_task(name)
    except SimError as exc:
        raise SimError(f"{p}: {exc}") from None
    layout, is_sim, noise = _layout_for(p, ep, task_, notes)
    cmd, st = ep.commands, ep.states
    t_start = int(cmd.stamps[0])
    t_end = max(int(cmd.stamps[-1]), int(st.stamps[-1]))
    steps = (t_end - t_start) // STEP_NS + 1
    with Scene(layout) as scene:
        scene.reset()
        home = scene.ctrl()
        if not is_sim:
            _start_at(scene, joints, st, t_start)
        sim_q = np.empty((steps, len(joints)))
        held = home.copy()
        c = 0
        for i in range(steps):
            t = t_start + i * STEP_NS
            while c < len(cmd.stamps) and cmd.stamps[c] <= t:
                row = cmd.values[c]
                held = np.where(np.isnan(row), held, row)
                c += 1
            sim_q[i] = scene.qpos()
            scene.set_ctrl(held)
            scene.step()
        outcome = task_.check(scene)
    inside = (st.stamps >= t_start) & (st.stamps <= t_end)
    k = np.rint((st.stamps[inside] - t_start) / STEP_NS).astype(np.int64)
    k = np.clip(k, 0, steps - 1)
    rec = st.values[inside]
    err = np.abs(sim_q[k] - rec)
    valid = ~np.isnan(err)
    compared_joints = int(valid.any(axis=0).sum())
    if valid.any():
        e = np.where(valid, err, -1.0)
        flat = int(np.argmax(e))
        row, col = divmod(flat, e.shape[1])
        max_err = float(e[row, col])
        rms = float(np.sqrt(np.mean(err[valid] ** 2)))
        worst, worst_at = (joints[col], float((k[row] * STEP_NS) / 1e9)) if max_err > 0 \
            else ("", 0.0)
        per_joint = {joints[j]: float(e[:, j].max()) for j in range(e.shape[1])
                     if valid[:, j].any()}
    else:
        max_err, rms, worst, worst_at = 0.0, 0.0, "", 0.0
        per_joint = {}
    return ReplayReport(
        path=str(p), task=name, sim_episode=is_sim, steps=steps,
        duration_s=steps * STEP_NS / 1e9, commands=len(cmd.stamps), compared=int(inside.sum()),
        joints=compared_joints, max_joint_error_rad=max_err, rms_joint_error_rad=rms,
        worst_joint=worst, worst_at_s=worst_at, success=bool(outcome.success),
        failed_subtask=outcome.failed_subtask, reason=outcome.reason,
        recorded_outcome=facts.get("outcome", ""),
        sensor_noise_std_rad=noise, notes=tuple(notes), joint_max_error_rad=per_joint,
        object_xy={o.name: o.xy for o in layout.objects})


def _start_at(scene: Scene, joints: list[str], states: _Stream, t_start: int) -> None:
    """Put the robot in the recorded joint state at (or first after) ``t_start``."""
    i = max(0, int(np.searchsorted(states.stamps, t_start, side="right")) - 1)
    q = states.values[i]
    for name, value in zip(joints, q, strict=True):
        if not np.isnan(value):
            scene.data.joint(name).qpos[0] = value
    scene.data.qvel[:] = 0.0
    scene.set_ctrl(np.where(np.isnan(q), scene.ctrl(), q))
    mujoco.mj_forward(scene.model, scene.data)


__all__ = ["COMMANDS_TOPIC", "MCAP_MAGIC", "STATES_TOPIC", "TF_TOPIC", "WORLD_FRAMES", "ReplayReport",
           "replay"]
