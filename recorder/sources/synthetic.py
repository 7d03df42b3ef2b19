"""The synthetic humanoid rig: the embedded default source.

It plays a plausible teleoperation: smooth joint trajectories inside the profile's joint
limits, commands that lead the measured state, an IMU that follows the torso, VR hand
poses, TF, and real JPEG camera frames. Imperfections are configurable: stamp jitter,
dropped messages, receive latency, and stalls (a camera unplugged for a while).
"""

from __future__ import annotations

import heapq
import math
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import SourceError
from ..profile import Profile, TopicSpec
from ..types import serialize, typestore
from . import RawMessage, register_source

if TYPE_CHECKING:
    from rosbags.typesys.store import MsgType

NS = 1_000_000_000


@dataclass
class RigOptions:
    seed: int = 0
    jitter_ms: float = 0.2        # std of the stamp jitter around the nominal period
    drop_rate: float = 0.0        # probability that any one message is lost
    latency_ms: float = 2.0       # mean receive latency (log time minus stamp)
    latency_jitter_ms: float = 0.5
    realtime: bool = False        # pace messages on the wall clock
    start_ns: int | None = None   # first stamp; default: now
    stalls: dict[str, tuple[float, float]] = field(default_factory=dict)  # topic: (at_s, for_s)
    frame_pool: int = 45          # distinct JPEG frames per camera, cycled
    jpeg_quality: int = 80


@cache
def camera_frames(name: str, width: int, height: int, count: int, quality: int,
                  seed: int) -> tuple[bytes, ...]:
    """A loop of real JPEG frames of a synthetic work cell, as a camera would send them."""
    rng = np.random.default_rng([zlib.crc32(name.encode()), seed])
    small = rng.integers(60, 200, size=(height // 8, width // 8, 3), dtype=np.uint8)
    base = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    frames = []
    for i in range(count):
        img = cv2.add(base, rng.integers(0, 24, size=(height, width, 3), dtype=np.uint8))
        phase = 2 * math.pi * i / count
        cx = int(width / 2 + width / 4 * math.cos(phase))
        cy = int(height / 2 + height / 5 * math.sin(2 * phase))
        cv2.rectangle(img, (0, int(height * 0.7)), (width, height), (90, 70, 50), -1)
        cv2.circle(img, (cx, cy), height // 10, (40, 40, 220), -1)
        cv2.rectangle(img, (cx - 60, cy + 40), (cx - 10, cy + 90), (30, 180, 30), -1)
        cv2.putText(img, f"{name} {i:03d}", (12, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    (255, 255, 255), 2)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise SourceError(f"synthetic rig: JPEG encoding failed for camera {name}")
        frames.append(buf.tobytes())
    return tuple(frames)


class SyntheticRig:
    """Generates the profile's topics (events excluded: the session writes those)."""

    clock = "sim"

    def __init__(self, profile: Profile, options: RigOptions | None = None, **kw: object) -> None:
        self.profile = profile
        self.opt = options or RigOptions(**kw)  # type: ignore[arg-type]
        self.rng = np.random.default_rng(self.opt.seed)
        self.t0 = self.opt.start_ns if self.opt.start_ns is not None else time.time_ns()
        self.joints = profile.robot.joints
        if not self.joints:
            raise SourceError(f"profile {profile.name!r} lists no robot joints for the rig")
        lo = np.array([j.lower for j in self.joints])
        hi = np.array([j.upper for j in self.joints])
        self.mid, self.amp = (lo + hi) / 2, (hi - lo) / 2 * 0.6
        n = len(self.joints)
        self.freq = self.rng.uniform(0.1, 0.6, n)
        self.phase = self.rng.uniform(0, 2 * math.pi, n)
        self.names = [j.name for j in self.joints]
        self._closed = False
        st = typestore()
        self.T = st.types
        self._builders = {
            "sensor_msgs/msg/JointState": self._joint_state,
            "sensor_msgs/msg/Imu": self._imu,
            "geometry_msgs/msg/PoseStamped": self._pose,
            "tf2_msgs/msg/TFMessage": self._tf,
            "sensor_msgs/msg/CompressedImage": self._image,
        }
        self.specs = [t for t in profile.topics if t.role != "event"]
        for t in self.specs:
            if t.type not in self._builders:
                raise SourceError(f"synthetic rig cannot generate {t.type} (topic {t.topic})")
            if not t.rate_hz:
                raise SourceError(f"synthetic rig needs rate_hz for topic {t.topic}")

    # -- message builders (t: seconds since the rig started) ---------------------------
    def _header(self, stamp: int, frame: str) -> MsgType:
        T = self.T
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS),
            frame_id=frame)

    def _q(self, t: float) -> np.ndarray:
        q: np.ndarray = self.mid + self.amp * np.sin(2 * math.pi * self.freq * t + self.phase)
        return q

    def _joint_state(self, spec: TopicSpec, t: float, stamp: int, i: int) -> bytes:
        lead = 0.01 if spec.role == "action" else 0.0  # commands lead the measured state
        q = self._q(t + lead)
        dq = self.amp * 2 * math.pi * self.freq * np.cos(2 * math.pi * self.freq * (t + lead)
                                                         + self.phase)
        effort = -2.0 * (q - self.mid) + 0.05 * self.rng.standard_normal(len(q))
        msg = self.T["sensor_msgs/msg/JointState"](
            header=self._header(stamp, ""), name=self.names, position=q, velocity=dq,
            effort=effort if spec.role != "action" else np.zeros(0))
        return serialize(msg, spec.type)

    def _quat(self, yaw: float, pitch: float = 0.0) -> MsgType:
        cy, sy, cp, sp = math.cos(yaw / 2), math.sin(yaw / 2), math.cos(pitch / 2), math.sin(pitch / 2)
        return self.T["geometry_msgs/msg/Quaternion"](x=-sy * sp, y=cy * sp, z=sy * cp, w=cy * cp)

    def _imu(self, spec: TopicSpec, t: float, stamp: int, i: int) -> bytes:
        T = self.T
        V = T["geometry_msgs/msg/Vector3"]
        yaw = 0.2 * math.sin(0.3 * t)
        noise = 0.01 * self.rng.standard_normal(6)
        cov = np.zeros(9)
        msg = T["sensor_msgs/msg/Imu"](
            header=self._header(stamp, "imu_link"), orientation=self._quat(yaw),
            orientation_covariance=cov,
            angular_velocity=V(x=noise[0], y=noise[1], z=0.06 * math.cos(0.3 * t) + noise[2]),
            angular_velocity_covariance=cov,
            linear_acceleration=V(x=noise[3], y=noise[4], z=9.81 + noise[5]),
            linear_acceleration_covariance=cov)
        return serialize(msg, spec.type)

    def _hand(self, t: float, left: bool) -> tuple[float, float, float]:
        s = 1.0 if left else -1.0
        return (0.35 + 0.1 * math.sin(0.7 * t), s * (0.2 + 0.05 * math.cos(0.9 * t)),
                1.0 + 0.08 * math.sin(1.1 * t + s))

    def _pose(self, spec: TopicSpec, t: float, stamp: int, i: int) -> bytes:
        T = self.T
        x, y, z = self._hand(t, "left" in spec.topic)
        msg = T["geometry_msgs/msg/PoseStamped"](
            header=self._header(stamp, "pelvis"),
            pose=T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=x, y=y, z=z),
                                             orientation=self._quat(0.3 * math.sin(t), 0.2)))
        return serialize(msg, spec.type)

    def _tf(self, spec: TopicSpec, t: float, stamp: int, i: int) -> bytes:
        T = self.T
        V, TS = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/TransformStamped"]

        def tf(parent: str, child: str, xyz: tuple[float, float, float], yaw: float) -> MsgType:
            return TS(header=self._header(stamp, parent), child_frame_id=child,
                      transform=T["geometry_msgs/msg/Transform"](
                          translation=V(x=xyz[0], y=xyz[1], z=xyz[2]), rotation=self._quat(yaw)))

        transforms = [
            tf("world", "pelvis", (0.01 * t, 0.0, 0.78), 0.05 * math.sin(0.2 * t)),
            tf("pelvis", "torso_link", (0.0, 0.0, 0.2), 0.2 * math.sin(0.3 * t)),
            tf("torso_link", "head_link", (0.0, 0.0, 0.45), 0.1 * math.sin(0.5 * t)),
            tf("pelvis", "left_hand_palm_link", self._hand(t, True), 0.3 * math.sin(t)),
            tf("pelvis", "right_hand_palm_link", self._hand(t, False), -0.3 * math.sin(t)),
        ]
        return serialize(T["tf2_msgs/msg/TFMessage"](transforms=transforms), spec.type)

    def _image(self, spec: TopicSpec, t: float, stamp: int, i: int) -> bytes:
        cam = spec.camera or {}
        frames = camera_frames(spec.topic.split("/")[2] if spec.topic.count("/") > 2 else spec.topic,
                               int(cam.get("width", 640)), int(cam.get("height", 480)),
                               self.opt.frame_pool, self.opt.jpeg_quality, self.opt.seed)
        frame_id = spec.topic.strip("/").split("/")[1] + "_optical_frame" \
            if spec.topic.count("/") > 2 else "camera"
        msg = self.T["sensor_msgs/msg/CompressedImage"](
            header=self._header(stamp, frame_id), format="jpeg",
            data=np.frombuffer(frames[i % len(frames)], dtype=np.uint8))
        return serialize(msg, spec.type)

    # -- the stream ------------------------------------------------------------------
    def messages(self) -> Iterator[RawMessage]:
        """An endless merge of all topics in receive-time order (until ``close``)."""
        opt, rng = self.opt, self.rng
        heap: list[tuple[int, int, int, int]] = []  # (log_time, topic idx, msg idx, stamp)

        def schedule(k: int, i: int) -> None:
            spec = self.specs[k]
            nominal = self.t0 + int(i * NS / spec.rate_hz)  # type: ignore[operator]
            stamp = nominal + int(rng.normal(0, opt.jitter_ms) * 1e6) if opt.jitter_ms else nominal
            latency = max(0.0, rng.normal(opt.latency_ms, opt.latency_jitter_ms))
            heapq.heappush(heap, (stamp + int(latency * 1e6), k, i, stamp))

        for k in range(len(self.specs)):
            schedule(k, 0)
        wall0 = time.monotonic_ns()
        while heap and not self._closed:
            log_time, k, i, stamp = heapq.heappop(heap)
            schedule(k, i + 1)
            spec = self.specs[k]
            t = (stamp - self.t0) / NS
            stall = opt.stalls.get(spec.topic)
            if stall and stall[0] <= t < stall[0] + stall[1]:
                continue
            if opt.drop_rate and rng.random() < opt.drop_rate:
                continue
            if opt.realtime:
                ahead = (log_time - self.t0) - (time.monotonic_ns() - wall0)
                if ahead > 0:
                    time.sleep(ahead / NS)
            data = self._builders[spec.type](spec, t, stamp, i)
            yield RawMessage(spec.topic, data, log_time, stamp)

    def close(self) -> None:
        self._closed = True


def _factory(profile: Profile, **options: object) -> SyntheticRig:
    return SyntheticRig(profile, RigOptions(**options))  # type: ignore[arg-type]


register_source("synthetic", _factory)
