"""Sim episodes: a trace re-executed in its scene and recorded like a real rig's episode.

:func:`render_episode` re-executes a :class:`~sim.trace.Trace` (``Scene(trace.layout)``,
``reset``, then ``set_ctrl(ctrl[i]); step()`` per physics step, which gives the attempt's
states to the last bit) and yields the humanoid profile's messages in receive-time order:

- ``/joint_states`` (500 Hz, one per physics step: the state before the step, with the
  draw's encoder noise) and ``/joint_commands`` (the step's ``ctrl``);
- ``/imu`` (500 Hz), ``/teleop/{left,right}_hand/pose`` (90 Hz, the trace's hand targets
  in the pelvis frame);
- ``/tf`` (100 Hz): world -> pelvis, pelvis -> torso and palms, and world -> each object
  (and the bin) as a motion-capture system publishes them, with the draw's noise and an
  age of ``latency_ms["mocap"]`` (the object transforms carry the stamp of the
  measurement they hold);
- the three cameras of ``sim.scenes.CAMERAS`` at 30 Hz as JPEG (rendered from the
  re-executed state; none with ``cameras=False``);
- exact ground truth on ``/sim/ground_truth`` (100 Hz, world poses of objects and palms).

Stamps are nominal times from ``t0_ns`` (no wall clock); log times add the draw's receive
latency per stream. Each stream's noise and jitter come from a stream of the draw's seed of
its own, so the same trace and draw give the same bytes, with or without cameras.

An episode as recorded (:func:`episode_messages`) goes on ``STOP_AFTER_S`` past the
attempt, the robot holding its last command, and stops there (:func:`episode_end_ns`), so
every stream runs up to the stop. :func:`write_episode` writes one into a
``recorder.session.Session``: the start event, the messages, the operator's marks as
subtask events, a note with the reason of a failure, the stop event with the outcome, the
robot model's licence as an attachment, and the sim provenance record
(``recorder.contract.SIM_METADATA``: task, seed, draw, source episodes, versions).
"""

from __future__ import annotations

import heapq
import json
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from recorder import contract
from recorder.contract import SIM_METADATA, EventKind
from recorder.profile import Profile, Qos, TopicSpec, load_profile
from recorder.session import Session
from recorder.sources import RawMessage
from recorder.types import serialize, typestore

from .errors import SimError
from .randomize import Draw
from .scenes import CAMERAS, SIDES, Scene
from .se3 import quat_conj, quat_mul, quat_rotate, relative_pose
from .trace import PHYSICS_DT, Mark, Trace

NS = 1_000_000_000
STEP_NS = round(PHYSICS_DT * NS)
#: the exact state of the scene, a topic of sim episodes only (role ``ground_truth``)
GROUND_TRUTH_TOPIC = "/sim/ground_truth"
#: the topics a sim episode adds to the humanoid profile
SIM_PROFILE_TOPICS = (
    TopicSpec(GROUND_TRUTH_TOPIC, "tf2_msgs/msg/TFMessage", "ground_truth", 100.0,
              Qos(reliability="reliable", durability="volatile", history="keep_last",
                  depth=100)),
)
#: frames on /tf and the ground truth (objects and the bin: their own names)
WORLD_FRAME = "world"
PELVIS_FRAME = "pelvis"
TORSO_FRAME = "torso_link"
PALM_FRAMES = {"left": "left_hand_palm_link", "right": "right_hand_palm_link"}
IMU_FRAME = "imu_link"
BIN_FRAME = "bin"
#: the operator stops the recording this long after the attempt's last command (the robot
#: holding its last pose meanwhile: every stream runs up to the stop)
STOP_AFTER_S = 0.1
#: how long the robot is simulated past the attempt, so that streams reach the stop
HOLD_S = 0.2
#: the default first stamp of a sim episode: 2026-01-01T00:00:00Z
SIM_EPOCH_NS = 1_767_225_600 * NS
#: the operator id of episodes the simulated operator recorded
SIM_OPERATOR = "sim-expert"
SIM_METADATA_VERSION = 1
#: attachment holding the licence of the robot model (BSD-3, Unitree G1 of MuJoCo Menagerie)
MODEL_LICENCE_ATTACHMENT = "unitree_g1_LICENSE"
JPEG_QUALITY = 90


def camera_topic(camera: str) -> str:
    """The profile topic of one of ``sim.scenes.CAMERAS``."""
    return f"/camera/{camera}/image_raw/compressed"


def with_sim_topics(profile: Profile) -> Profile:
    """``profile`` with the sim topics (``SIM_PROFILE_TOPICS``) it lacks, before its events;
    its own topics unchanged (what ``Session.adopt_profile`` accepts)."""
    have = {t.topic for t in profile.topics}
    extra = [t for t in SIM_PROFILE_TOPICS if t.topic not in have]
    if not extra:
        return profile
    topics = [t for t in profile.topics if t.role != "event"]
    events = [t for t in profile.topics if t.role == "event"]
    return replace(profile, topics=(*topics, *extra, *events))


def sim_profile(*, cameras: bool = True) -> Profile:
    """The humanoid profile plus the sim topics (``/sim/ground_truth``), events last;
    ``cameras=False``: without the camera topics (for episodes recorded without
    rendering, whose health would otherwise flag the silent cameras)."""
    base = load_profile("humanoid")
    if not cameras:
        base = replace(base, topics=tuple(t for t in base.topics if t.role != "camera"))
    return with_sim_topics(base)


def _rotvec_quat(v: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    axis = v / angle
    return np.array([np.cos(angle / 2), *(np.sin(angle / 2) * axis)])


# -- message building -------------------------------------------------------------------
class _Msgs:
    """CDR builders for the profile's message types."""

    def __init__(self) -> None:
        self.T = typestore().types

    def header(self, stamp: int, frame: str) -> Any:
        T = self.T
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS),
            frame_id=frame)

    def joint_state(self, stamp: int, names: list[str], position: np.ndarray,
                    velocity: np.ndarray, effort: np.ndarray) -> bytes:
        msg = self.T["sensor_msgs/msg/JointState"](
            header=self.header(stamp, ""), name=names, position=position, velocity=velocity,
            effort=effort)
        return serialize(msg, "sensor_msgs/msg/JointState")

    def joint_state_template(self, names: list[str], velocities: bool,
                             efforts: bool) -> JointStateTemplate:
        """A fast builder of JointStates with these names (see ``JointStateTemplate``)."""
        return JointStateTemplate(self, names, velocities, efforts)

    def transform(self, stamp: int, parent: str, child: str, pos: np.ndarray,
                  quat: np.ndarray) -> Any:
        T = self.T
        return T["geometry_msgs/msg/TransformStamped"](
            header=self.header(stamp, parent), child_frame_id=child,
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=float(pos[0]), y=float(pos[1]),
                                                           z=float(pos[2])),
                rotation=self.quat(quat)))

    def quat(self, q: np.ndarray) -> Any:
        return self.T["geometry_msgs/msg/Quaternion"](x=float(q[1]), y=float(q[2]),
                                                      z=float(q[3]), w=float(q[0]))

    def tf(self, transforms: list[Any]) -> bytes:
        return serialize(self.T["tf2_msgs/msg/TFMessage"](transforms=transforms),
                         "tf2_msgs/msg/TFMessage")

    def pose(self, stamp: int, frame: str, pose7: np.ndarray) -> bytes:
        T = self.T
        msg = T["geometry_msgs/msg/PoseStamped"](
            header=self.header(stamp, frame),
            pose=T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=float(pose7[0]), y=float(pose7[1]),
                                                      z=float(pose7[2])),
                orientation=self.quat(pose7[3:7])))
        return serialize(msg, "geometry_msgs/msg/PoseStamped")

    def imu(self, stamp: int, quat: np.ndarray, gyro: np.ndarray, accel: np.ndarray) -> bytes:
        T = self.T
        V = T["geometry_msgs/msg/Vector3"]
        cov = np.zeros(9)
        msg = T["sensor_msgs/msg/Imu"](
            header=self.header(stamp, IMU_FRAME), orientation=self.quat(quat),
            orientation_covariance=cov,
            angular_velocity=V(x=float(gyro[0]), y=float(gyro[1]), z=float(gyro[2])),
            angular_velocity_covariance=cov,
            linear_acceleration=V(x=float(accel[0]), y=float(accel[1]), z=float(accel[2])),
            linear_acceleration_covariance=cov)
        return serialize(msg, "sensor_msgs/msg/Imu")

    def image(self, stamp: int, frame: str, jpeg: bytes) -> bytes:
        msg = self.T["sensor_msgs/msg/CompressedImage"](
            header=self.header(stamp, frame), format="jpeg",
            data=np.frombuffer(jpeg, dtype=np.uint8))
        return serialize(msg, "sensor_msgs/msg/CompressedImage")


class JointStateTemplate:
    """``sensor_msgs/JointState`` CDR bytes for fixed joint names, made by writing the
    stamp and the values into the bytes that rosbags serialized once for these names (the
    layout of a message with fixed names and array lengths does not change): the same
    bytes as ``serialize``, some 40 times faster, for the 500 Hz joint streams."""

    _STAMP = struct.Struct("<iI")

    def __init__(self, msgs: _Msgs, names: list[str], velocities: bool, efforts: bool) -> None:
        n = len(names)
        self.n = n
        markers = [np.full(n, v) for v in (1.25, 2.5, 3.75)]
        probe = msgs.joint_state(0, names, markers[0],
                                 markers[1] if velocities else np.zeros(0),
                                 markers[2] if efforts else np.zeros(0))
        if probe[:2] != b"\x00\x01":  # CDR little endian is what rosbags writes
            raise SimError("JointState template: rosbags did not write little-endian CDR")
        self.template = bytes(probe)
        self.offsets: list[int | None] = []
        for marker, used in zip(markers, (True, velocities, efforts), strict=True):
            at = probe.find(marker.astype("<f8").tobytes()) if used else -1
            if used and at < 0:
                raise SimError("JointState template: the value arrays were not found")
            self.offsets.append(at if used else None)

    def build(self, stamp: int, position: np.ndarray, velocity: np.ndarray | None = None,
              effort: np.ndarray | None = None) -> bytes:
        """The message at ``stamp`` (ns) with these values (``n`` each)."""
        buf = bytearray(self.template)
        self._STAMP.pack_into(buf, 4, stamp // NS, stamp % NS)
        for at, values in zip(self.offsets, (position, velocity, effort), strict=True):
            if at is None:
                continue
            if values is None or len(values) != self.n:
                raise SimError(f"JointState template: {self.n} values expected")
            buf[at:at + 8 * self.n] = np.asarray(values, dtype="<f8").tobytes()
        return bytes(buf)


@dataclass(slots=True)
class _Stream:
    """One topic of the episode: rate, latency, its own noise generator and its builder."""

    topic: str
    order: int                  # tie-break between streams at equal log times
    rate_hz: float
    latency_ms: float
    rng: np.random.Generator
    build: Callable[[int, int, np.random.Generator], bytes]  # (stamp, step, rng) -> CDR
    count: int = 0
    last_log: int = 0

    def stamp(self, j: int) -> int:
        """The nominal time of message ``j`` since the episode's start, ns."""
        return round(j * NS / self.rate_hz)


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """An RGB frame as JPEG bytes (OpenCV)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SimError(f"JPEG encoding of a {rgb.shape[1]}x{rgb.shape[0]} frame failed")
    return bytes(buf.tobytes())


def render_episode(trace: Trace, draw: Draw, *, cameras: bool = True,
                   profile: Profile | None = None, t0_ns: int = SIM_EPOCH_NS,
                   image_size: tuple[int, int] | None = None,
                   jpeg_quality: int = JPEG_QUALITY,
                   hold_s: float = 0.0) -> Iterator[RawMessage]:
    """The messages of ``trace`` re-executed in its scene, in log-time order.

    ``profile`` (default :func:`sim_profile`) decides which topics are produced (those of
    the sim topics it lists; events are the session's). ``image_size`` (width, height)
    overrides the profile's camera size. With ``cameras=False`` nothing is rendered.
    ``hold_s``: the robot goes on publishing for that long after the trace, holding its
    last command (the rig between the task's end and the operator's stop)."""
    profile = profile or sim_profile()
    _check_layout(trace, draw)
    wanted = {t.topic: t for t in profile.topics if t.role != "event"}
    _check_trace(trace)
    scene = Scene(trace.layout)
    try:
        ep = _Episode(scene, trace, draw, wanted, cameras, t0_ns, image_size, jpeg_quality)
        ep.hold_steps = max(0, round(hold_s * NS / STEP_NS))
        yield from ep.run()
    finally:
        scene.close()


def _check_layout(trace: Trace, draw: Draw) -> None:
    if trace.layout != draw.layout:
        raise SimError(f"trace of task {trace.task!r}, seed {trace.seed} was executed in "
                       f"another layout than the draw of seed {draw.seed}; record a trace "
                       "with the draw it was executed in")


def _check_trace(trace: Trace) -> None:
    where = f"trace of task {trace.task!r}, seed {trace.seed}"
    if trace.ctrl.ndim != 2 or trace.ctrl.shape[1] != 43:
        raise SimError(f"{where}: ctrl has shape {trace.ctrl.shape}, expected (steps, 43)")
    if trace.teleop.shape != (trace.steps, 2, 7):
        raise SimError(f"{where}: teleop has shape {trace.teleop.shape}, expected "
                       f"({trace.steps}, 2, 7)")
    if trace.steps == 0:
        raise SimError(f"{where}: the trace has no steps")


class _Episode:
    """The re-execution loop and the streams it feeds."""

    def __init__(self, scene: Scene, trace: Trace, draw: Draw, wanted: dict[str, TopicSpec],
                 cameras: bool, t0_ns: int, image_size: tuple[int, int] | None,
                 jpeg_quality: int) -> None:
        self.scene, self.trace, self.draw, self.t0 = scene, trace, draw, t0_ns
        self.noise = draw.sensor_noise
        self.m = _Msgs()
        self.names = list(scene.joint_names)
        self.js = self.m.joint_state_template(self.names, True, True)
        self.cmd = self.m.joint_state_template(self.names, False, False)
        limits = {j.name: (j.lower, j.upper) for j in load_profile("humanoid").robot.joints}
        self.lower = np.array([limits.get(n, (-np.inf, np.inf))[0] for n in self.names])
        self.upper = np.array([limits.get(n, (-np.inf, np.inf))[1] for n in self.names])
        self.objects = [o.name for o in trace.layout.objects]
        self.jpeg_quality = jpeg_quality
        self.hold_steps = 0
        # world poses of the objects at every step so far (the mocap reads them late)
        self.history: list[list[tuple[np.ndarray, np.ndarray]]] = []
        self.bin_pose: tuple[np.ndarray, np.ndarray] | None = None
        if trace.layout.bin is not None:
            self.bin_pose = scene.body_pose("bin")
        builders: dict[str, tuple[str, Callable[[int, int, np.random.Generator], bytes]]] = {
            "/joint_states": ("joint_states", self._joint_states),
            "/joint_commands": ("joint_commands", self._joint_commands),
            "/imu": ("imu", self._imu),
            "/tf": ("tf", self._tf),
            GROUND_TRUTH_TOPIC: ("", self._ground_truth),
        }
        for i, side in enumerate(SIDES):
            builders[f"/teleop/{side}_hand/pose"] = ("teleop", self._teleop(i))
        if cameras:
            for cam in CAMERAS:
                spec = wanted.get(camera_topic(cam))
                if spec is None:
                    continue
                size = image_size or (int((spec.camera or {}).get("width", 640)),
                                      int((spec.camera or {}).get("height", 480)))
                builders[camera_topic(cam)] = ("camera", self._camera(cam, size))
        self.streams: list[_Stream] = []
        for order, spec in enumerate(wanted.values()):
            if spec.topic not in builders or not spec.rate_hz:
                continue
            key, build = builders[spec.topic]
            self.streams.append(_Stream(
                topic=spec.topic, order=order, rate_hz=spec.rate_hz,
                latency_ms=draw.latency_ms.get(key, 0.0) if key else 0.0,
                rng=draw.rng("messages", zlib.crc32(spec.topic.encode())), build=build))

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> Iterator[RawMessage]:
        scene, ctrl = self.scene, self.trace.ctrl
        scene.reset()
        heap: list[tuple[int, int, int, str, bytes, int]] = []
        last = self.trace.steps - 1
        for i in range(self.trace.steps + self.hold_steps):
            self.history.append([scene.object_pose(n) for n in self.objects])
            end = (i + 1) * STEP_NS
            for s in self.streams:
                while (stamp := s.stamp(s.count)) < end:
                    self._emit(s, stamp, i, heap)
            while heap and heap[0][0] < self.t0 + end:
                log, _, _, topic, data, stamp = heapq.heappop(heap)
                yield RawMessage(topic, data, log, stamp)
            scene.set_ctrl(ctrl[min(i, last)])
            scene.step()
        while heap:
            log, _, _, topic, data, stamp = heapq.heappop(heap)
            yield RawMessage(topic, data, log, stamp)

    def _emit(self, s: _Stream, rel_stamp: int, step: int,
              heap: list[tuple[int, int, int, str, bytes, int]]) -> None:
        stamp = self.t0 + rel_stamp
        data = s.build(stamp, step, s.rng)
        jitter = self.draw.latency_jitter_ms
        lat_ms = s.latency_ms + (float(s.rng.normal(0.0, jitter)) if jitter and s.latency_ms
                                 else 0.0)
        log = max(stamp + round(max(0.0, lat_ms) * 1e6), s.last_log)  # delivered in order
        s.last_log = log
        heapq.heappush(heap, (log, s.order, s.count, s.topic, data, stamp))
        s.count += 1

    # -- builders (the scene holds the state before physics step ``step``) -------------
    def _joint_states(self, stamp: int, step: int, rng: np.random.Generator) -> bytes:
        sc, n = self.scene, self.noise
        k = len(self.names)
        q, dq, tau = sc.qpos(), sc.qvel(), sc.effort()
        if n.joint_position_std_rad:
            # an encoder reads inside the joint's range: the noise does not carry a joint at
            # its limit (an open hand) past it
            noisy = q + rng.normal(0.0, n.joint_position_std_rad, k)
            q = np.clip(noisy, np.minimum(self.lower, q), np.maximum(self.upper, q))
        if n.joint_velocity_std_rad_s:
            dq = dq + rng.normal(0.0, n.joint_velocity_std_rad_s, k)
        if n.joint_effort_std_nm:
            tau = tau + rng.normal(0.0, n.joint_effort_std_nm, k)
        return self.js.build(stamp, q, dq, tau)

    def _joint_commands(self, stamp: int, step: int, rng: np.random.Generator) -> bytes:
        i = min(step, self.trace.steps - 1)
        return self.cmd.build(stamp, self.trace.ctrl[i])

    def _imu(self, stamp: int, step: int, rng: np.random.Generator) -> bytes:
        quat, gyro, accel = self.scene.imu()
        n = self.noise
        if n.imu_orientation_std_rad:
            quat = quat_mul(_rotvec_quat(rng.normal(0.0, n.imu_orientation_std_rad, 3)), quat)
        if n.imu_gyro_std_rad_s:
            gyro = gyro + rng.normal(0.0, n.imu_gyro_std_rad_s, 3)
        if n.imu_accel_std_m_s2:
            accel = accel + rng.normal(0.0, n.imu_accel_std_m_s2, 3)
        return self.m.imu(stamp, quat, gyro, accel)

    def _teleop(self, index: int) -> Callable[[int, int, np.random.Generator], bytes]:
        def build(stamp: int, step: int, rng: np.random.Generator) -> bytes:
            pose = self.trace.teleop[min(step, self.trace.steps - 1), index]
            n = self.noise
            if n.teleop_position_std_m or n.teleop_rotation_std_rad:  # tracking jitter
                pos = pose[:3] + rng.normal(0.0, n.teleop_position_std_m, 3)
                quat = quat_mul(_rotvec_quat(rng.normal(0.0, n.teleop_rotation_std_rad, 3)),
                                pose[3:7])
                pose = np.concatenate([pos, quat])
            return self.m.pose(stamp, PELVIS_FRAME, pose)

        return build

    def _tf(self, stamp: int, step: int, rng: np.random.Generator) -> bytes:
        sc, m, n = self.scene, self.m, self.noise
        pelvis = sc.body_pose(PELVIS_FRAME)
        out = [m.transform(stamp, WORLD_FRAME, PELVIS_FRAME, *pelvis),
               m.transform(stamp, PELVIS_FRAME, TORSO_FRAME,
                           *relative_pose(pelvis, sc.body_pose(TORSO_FRAME)))]
        for side in SIDES:
            out.append(m.transform(stamp, PELVIS_FRAME, PALM_FRAMES[side],
                                   *relative_pose(pelvis, sc.palm_pose(side))))
        # the motion-capture system: poses measured ``mocap`` ms ago, with noise
        age_ms = self.draw.latency_ms.get("mocap", 0.0)
        jitter = self.draw.latency_jitter_ms
        if age_ms and jitter:
            age_ms = max(0.0, age_ms + float(rng.normal(0.0, jitter)))
        back = min(step, round(age_ms * 1e6 / STEP_NS))
        measured = stamp - back * STEP_NS
        poses = list(zip(self.objects, self.history[step - back], strict=True))
        if self.bin_pose is not None:
            poses.append((BIN_FRAME, self.bin_pose))
        for name, (pos, quat) in poses:
            if n.mocap_position_std_m:
                pos = pos + rng.normal(0.0, n.mocap_position_std_m, 3)
            if n.mocap_rotation_std_rad:
                quat = quat_mul(_rotvec_quat(rng.normal(0.0, n.mocap_rotation_std_rad, 3)),
                                quat)
            out.append(m.transform(measured, WORLD_FRAME, name, pos, quat))
        return m.tf(out)

    def _ground_truth(self, stamp: int, step: int, rng: np.random.Generator) -> bytes:
        sc, m = self.scene, self.m
        out = [m.transform(stamp, WORLD_FRAME, PALM_FRAMES[side], *sc.palm_pose(side))
               for side in SIDES]
        out += [m.transform(stamp, WORLD_FRAME, name, *pose)
                for name, pose in zip(self.objects, self.history[step], strict=True)]
        return m.tf(out)

    def _camera(self, cam: str,
                size: tuple[int, int]) -> Callable[[int, int, np.random.Generator], bytes]:
        frame = f"{cam}_optical_frame"

        def build(stamp: int, step: int, rng: np.random.Generator) -> bytes:
            rgb = self.scene.render(cam, size[0], size[1])
            return self.m.image(stamp, frame, encode_jpeg(rgb, self.jpeg_quality))

        return build


# -- writing an episode -----------------------------------------------------------------
def provenance_record(trace: Trace, draw: Draw) -> dict[str, str]:
    """The sim provenance record (``SIM_METADATA``) of an episode, string values with
    nested data as JSON: ``task``, ``seed``, ``success``, ``failed_subtask``, ``reason``,
    ``steps``, ``draw`` (``Draw.as_dict()``), ``marks``, ``provenance`` (the trace's own:
    the operator's style, or a multiplied demo's source, segments and transforms, and what
    the generator adds), ``sources`` (the source episodes a multiplied demo came from, each
    with its path and sha256, as curation's episode table lists them; ``[]`` for the
    simulated operator), and the ``mujoco`` and ``demofab`` versions."""
    import mujoco

    from demofab import __version__

    prov = trace.provenance
    sources = prov.get("sources")
    if sources is None:
        sources = [prov["source"]] if isinstance(prov.get("source"), dict) else []
    return {
        "format_version": str(SIM_METADATA_VERSION),
        "task": trace.task,
        "seed": str(trace.seed),
        "success": "true" if trace.success else "false",
        "failed_subtask": trace.failed_subtask,
        "reason": trace.reason,
        "steps": str(trace.steps),
        "physics_dt": repr(PHYSICS_DT),
        "draw": _json(draw.as_dict()),
        "marks": _json([[m.step, m.kind, m.label] for m in trace.marks]),
        "provenance": _json(prov),
        "sources": _json(sources),
        "mujoco": mujoco.__version__,
        "demofab": __version__,
    }


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _event_kind(kind: str, where: str) -> EventKind:
    try:
        return EventKind[kind.upper()]
    except KeyError:
        raise SimError(f"{where}: mark kind {kind!r} is not an event kind "
                       f"({', '.join(k.name.lower() for k in EventKind)})") from None


def attach_model_licence(session: Session, at_ns: int) -> None:
    """Attach the robot model's licence to the open episode."""
    from .assets import g1_licence

    if session.writer is not None:
        session.writer.add_attachment(MODEL_LICENCE_ATTACHMENT, "text/plain",
                                      g1_licence().encode(), at_ns)


def episode_end_ns(trace: Trace, t0_ns: int) -> int:
    """When the episode of ``trace`` starting at ``t0_ns`` stops: ``STOP_AFTER_S`` after
    the attempt's last command."""
    return t0_ns + trace.steps * STEP_NS + round(STOP_AFTER_S * NS)


def episode_messages(trace: Trace, draw: Draw, *, cameras: bool = True,
                     profile: Profile | None = None, t0_ns: int = SIM_EPOCH_NS,
                     image_size: tuple[int, int] | None = None,
                     jpeg_quality: int = JPEG_QUALITY) -> Iterator[RawMessage]:
    """The messages of the episode as recorded (what ``write_episode`` writes): the
    attempt, then the robot holding its last pose until the stop (:func:`episode_end_ns`),
    so every stream runs up to the stop; what is received after it is not part of it.
    A worker renders these and the driver passes them to ``write_episode(messages=)``."""
    end = episode_end_ns(trace, t0_ns)
    for msg in render_episode(trace, draw, cameras=cameras, profile=profile, t0_ns=t0_ns,
                              image_size=image_size, jpeg_quality=jpeg_quality,
                              hold_s=HOLD_S):
        if msg.log_time >= end:
            return
        yield msg


def _write_messages(session: Session, trace: Trace, marks: list[Mark], kinds: list[EventKind],
                    messages: Iterable[RawMessage], t0_ns: int) -> int:
    """The episode's messages and marks into the open episode; returns the stop time."""
    attach_model_licence(session, t0_ns)
    k, last = 0, t0_ns
    stop = episode_end_ns(trace, t0_ns)
    for msg in messages:
        if msg.log_time >= stop:
            break
        while k < len(marks) and t0_ns + marks[k].step * STEP_NS <= msg.log_time:
            session.mark(kinds[k], marks[k].label, at_ns=t0_ns + marks[k].step * STEP_NS)
            k += 1
        session.write(msg.topic, msg.data, msg.log_time, msg.publish_time, msg.sequence)
        last = msg.log_time
    end = max(last, stop)
    for j in range(k, len(marks)):
        session.mark(kinds[j], marks[j].label, at_ns=min(end, t0_ns + marks[j].step * STEP_NS))
    if not trace.success:
        session.mark(EventKind.NOTE, failure_note(trace), at_ns=end)
    return end


def write_episode(session: Session, trace: Trace, draw: Draw, *, cameras: bool = True,
                  t0_ns: int = SIM_EPOCH_NS, operator: str = SIM_OPERATOR,
                  image_size: tuple[int, int] | None = None,
                  jpeg_quality: int = JPEG_QUALITY,
                  messages: Iterable[RawMessage] | None = None) -> contract.EpisodeInfo:
    """Write ``trace`` as one episode of ``session`` (its profile decides the topics):
    start at ``t0_ns``, the messages, the marks, a note with the reason of a failure,
    stop with outcome ``success``/``failure`` and the sim provenance record.
    ``messages``: the episode's messages already rendered (:func:`episode_messages` of the
    same trace, draw and ``t0_ns``, e.g. by a worker process), written as they are."""
    where = f"trace of task {trace.task!r}, seed {trace.seed}"
    _check_layout(trace, draw)
    _check_trace(trace)
    marks = sorted(trace.marks, key=lambda m: m.step)
    kinds = [_event_kind(m.kind, where) for m in marks]
    session.start_episode(trace.task, operator, at_ns=t0_ns)
    try:
        if messages is None:
            messages = episode_messages(trace, draw, cameras=cameras, profile=session.profile,
                                        t0_ns=t0_ns, image_size=image_size,
                                        jpeg_quality=jpeg_quality)
        end = _write_messages(session, trace, marks, kinds, messages, t0_ns)
    except SimError:
        # a trace that cannot be recorded leaves no half episode behind: it is discarded
        # (kept under discarded/), and the session is ready for the next one
        if session.writer is not None:
            session.discard_episode(at_ns=t0_ns)
        raise
    return session.stop_episode("success" if trace.success else "failure", at_ns=end,
                                metadata={SIM_METADATA: provenance_record(trace, draw)})


def failure_note(trace: Trace) -> str:
    """The note a failed episode ends with: which subtask failed and why."""
    return f"failed {trace.failed_subtask or 'task'}: {trace.reason or 'predicate not met'}"


__all__ = [
    "BIN_FRAME", "GROUND_TRUTH_TOPIC", "HOLD_S", "IMU_FRAME", "STOP_AFTER_S",
    "episode_end_ns", "episode_messages", "JPEG_QUALITY", "MODEL_LICENCE_ATTACHMENT",
    "JointStateTemplate",
    "PALM_FRAMES", "PELVIS_FRAME", "SIM_EPOCH_NS", "SIM_METADATA_VERSION",
    "SIM_OPERATOR", "SIM_PROFILE_TOPICS", "STEP_NS", "TORSO_FRAME", "WORLD_FRAME",
    "attach_model_licence", "camera_topic", "encode_jpeg",
    "failure_note", "provenance_record", "quat_conj", "quat_mul", "quat_rotate",
    "relative_pose", "render_episode", "sim_profile", "with_sim_topics", "write_episode",
]
