"""Helpers of the ROS 2 node tests: start the demofab_ros nodes as processes, and a test-side
rclpy node spun in the test's own thread (EventsExecutor) for publishing, subscribing and
service calls."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.experimental import EventsExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future

from recorder.profile import Profile, TopicSpec
from recorder.types import serialize, typestore

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "ros2_ws" / "src" / "demofab_ros"


def node_env() -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PKG), str(ROOT), env.get("PYTHONPATH"))
                                        if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_arg(v) for v in value) + "]"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


def start_node(executable: str, params: dict[str, Any], log: Path) -> subprocess.Popen:
    """``python -m demofab_ros.<executable> --ros-args -p k:=v ...``; output into ``log``."""
    cmd = [sys.executable, "-m", f"demofab_ros.{executable}", "--ros-args"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={_arg(v)}"]
    out = open(log, "w")  # noqa: SIM115 - closed by stop_node
    proc = subprocess.Popen(cmd, cwd=ROOT, env=node_env(), stdout=out, stderr=subprocess.STDOUT)
    proc.log_file = out  # type: ignore[attr-defined]
    proc.log_path = log  # type: ignore[attr-defined]
    return proc


def stop_node(proc: subprocess.Popen, sig: int = 2, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.log_file.close()  # type: ignore[attr-defined]
    return proc.returncode


def node_log(proc: subprocess.Popen) -> str:
    if not proc.log_file.closed:  # type: ignore[attr-defined]
        proc.log_file.flush()  # type: ignore[attr-defined]
    return Path(proc.log_path).read_text()  # type: ignore[attr-defined]


def qos(spec_qos: Any, min_depth: int = 0) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=max(spec_qos.depth, min_depth),
        reliability=(ReliabilityPolicy.BEST_EFFORT if spec_qos.reliability == "best_effort"
                     else ReliabilityPolicy.RELIABLE),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if spec_qos.durability == "transient_local"
                    else DurabilityPolicy.VOLATILE))


def message_class(type_name: str) -> Any:
    import importlib

    pkg, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class Ros:
    """A test-side rclpy node in its own context, spun in the calling thread."""

    def __init__(self, name: str) -> None:
        self.ctx = Context()
        rclpy.init(context=self.ctx, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node(name, context=self.ctx)
        self.executor = EventsExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._never = Future()

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.executor.spin_until_future_complete(self._never, timeout_sec=min(left, 0.05))

    def spin_until(self, pred: Callable[[], bool], timeout: float, what: str = "") -> None:
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}")
            self.executor.spin_until_future_complete(self._never, timeout_sec=0.02)

    def call(self, srv_type: Any, name: str, request: Any = None, timeout: float = 15.0) -> Any:
        client = self.node.create_client(srv_type, name)
        self.spin_until(lambda: client.service_is_ready(), timeout, f"service {name}")
        future = client.call_async(request if request is not None else srv_type.Request())
        self.spin_until(future.done, timeout, f"the answer of {name}")
        self.node.destroy_client(client)
        return future.result()

    def set_parameters(self, node_name: str, **values: Any) -> list[Any]:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request()
        req.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        return list(self.call(SetParameters, f"/{node_name}/set_parameters", req).results)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


# ----------------------------------------------------------------------------- messages
def make_message(spec: TopicSpec, i: int, stamp_ns: int, profile: Profile,
                 rng: np.random.Generator) -> bytes:
    """CDR bytes (rosbags) of message ``i`` of a profile topic, stamped ``stamp_ns``."""
    T = typestore().types
    header = T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
        frame_id="base_link")
    t = spec.type
    if t == "sensor_msgs/msg/JointState":
        n = len(profile.robot.joints) or 40
        names = profile.robot.joint_names or [f"joint_{k:02d}" for k in range(n)]
        msg = T[t](header=header, name=names, position=rng.normal(size=n),
                   velocity=rng.normal(size=n), effort=rng.normal(size=n))
    elif t == "sensor_msgs/msg/Imu":
        Q, V = T["geometry_msgs/msg/Quaternion"], T["geometry_msgs/msg/Vector3"]
        msg = T[t](header=header, orientation=Q(x=0.0, y=0.0, z=0.0, w=1.0),
                   orientation_covariance=np.zeros(9), angular_velocity=V(x=0.1 * i, y=0.0, z=0.0),
                   angular_velocity_covariance=np.zeros(9),
                   linear_acceleration=V(x=0.0, y=0.0, z=9.81),
                   linear_acceleration_covariance=np.zeros(9))
    elif t == "geometry_msgs/msg/PoseStamped":
        P, Q = T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Quaternion"]
        msg = T[t](header=header, pose=T["geometry_msgs/msg/Pose"](
            position=P(x=0.001 * i, y=0.2, z=1.0), orientation=Q(x=0.0, y=0.0, z=0.0, w=1.0)))
    elif t == "sensor_msgs/msg/CompressedImage":
        size = int(rng.integers(20_000, 40_000)) | 1   # odd: the CDR does not end aligned
        msg = T[t](header=header, format="jpeg",
                   data=rng.integers(0, 256, size=size, dtype=np.uint8))
    else:
        raise ValueError(f"no test message for {t}")
    return serialize(msg, t)


def schedule(profile: Profile, topics: list[str], seconds: float, t0_ns: int,
             seed: int = 0) -> list[tuple[int, str, bytes]]:
    """(offset ns, topic, CDR) for ``seconds`` of the profile's topics at their rates."""
    rng = np.random.default_rng(seed)
    out = []
    for name in topics:
        spec = profile.topic(name)
        period = int(1e9 / spec.rate_hz)
        for i in range(int(seconds * spec.rate_hz)):
            out.append((i * period, name, make_message(spec, i, t0_ns + i * period, profile, rng)))
    out.sort(key=lambda m: m[0])
    return out


def on_wire(data: bytes) -> bytes:
    """What a Fast DDS subscriber receives for pre-serialized ``data`` published with rclpy:
    the payload zero-padded to a multiple of 4 bytes (measured: a 24323-byte CompressedImage
    arrives as 24324 bytes, ending in one zero). Decoders accept the padding (rosbags allows
    up to 3 extra bytes); the recorder stores the bytes exactly as they came off the wire."""
    return data + b"\0" * (-len(data) % 4)


def publish_paced(publishers: dict[str, Any], messages: list[tuple[int, str, bytes]]) -> None:
    """Publish each message at its offset (wall clock) from now."""
    start = time.perf_counter_ns()
    for offset, topic, data in messages:
        delay = (start + offset - time.perf_counter_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        publishers[topic].publish(data)
