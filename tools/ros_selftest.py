"""Self-test of the ROS 2 venv (tools/ros-venv.sh --selftest runs it in tools/netns-run.sh).

Checks, printing one line each and exiting non-zero on the first failure:
  1. rclpy.init() works, rmw is rmw_fastrtps_cpp, rclpy.experimental.EventsExecutor exists
  2. one process: JointState publisher -> typed + raw (raw=True) subscriptions; raw bytes
     carry the 4-byte CDR header 00 01 00 00 and decode to the same message (rclpy, rosbags)
  3. two processes: rclpy publisher (child) -> rclpy subscriber (EventsExecutor)
  4. rclpy publisher (child) -> cyclonedds raw reader: same bytes as the rclpy raw reader
  5. cyclonedds raw writer (child) -> rclpy typed + raw subscriber: decoded and byte-equal
Run by hand:  tools/netns-run.sh .venv-ros/bin/python tools/ros_selftest.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cyclonedds.pub import DataWriter
    from cyclonedds.qos import Qos
    from cyclonedds.sub import DataReader

TOPIC = "/demofab_selftest/joint_states"
N = 50


def joint_state(i: int, njoints: int = 40) -> Any:
    from sensor_msgs.msg import JointState

    m = JointState()
    m.header.stamp.sec = i
    m.header.stamp.nanosec = 123
    m.header.frame_id = "base_link"
    m.name = [f"joint_{k:02d}" for k in range(njoints)]
    m.position = [0.5 * k + i for k in range(njoints)]
    m.velocity = [1.0] * njoints
    m.effort = []
    return m


# --------------------------------------------------------------------------- cyclonedds
def _sequence(subtype: object) -> object:
    from cyclonedds.idl.types import sequence

    return sequence[subtype]  # type: ignore[misc]  # generic at run time (__class_getitem__) only


def cdds_joint_state_type() -> Any:
    """A cyclonedds IdlStruct with the DDS name and layout of sensor_msgs/msg/JointState."""
    from cyclonedds.idl import make_idl_struct
    from cyclonedds.idl.annotations import final
    from cyclonedds.idl.types import float64, int32, uint32

    time_t = final(
        make_idl_struct("Time", "builtin_interfaces::msg::dds_::Time_", {"sec": int32, "nanosec": uint32})
    )
    header_t = final(
        make_idl_struct("Header", "std_msgs::msg::dds_::Header_", {"stamp": time_t, "frame_id": str})
    )
    return final(
        make_idl_struct(
            "JointState",
            "sensor_msgs::msg::dds_::JointState_",
            {
                "header": header_t,
                "name": _sequence(str),
                "position": _sequence(float64),
                "velocity": _sequence(float64),
                "effort": _sequence(float64),
            },
        )
    )


def cdds_qos(depth: int = 1000) -> Qos:
    from cyclonedds.core import Policy
    from cyclonedds.qos import Qos
    from cyclonedds.util import duration

    # = ROS 2 default profile (reliable, volatile, keep-last) with a deep history
    return Qos(
        Policy.Reliability.Reliable(duration(seconds=1)),
        Policy.History.KeepLast(depth),
        Policy.Durability.Volatile,
    )


def cdds_take_raw(reader: DataReader[Any], n: int = 1024) -> list[bytes]:
    from cyclonedds._clayer import ddspy_take
    from cyclonedds.core import InstanceState, SampleState, ViewState

    ret = ddspy_take(reader._ref,  # noqa: SLF001 - cyclonedds has no public handle for its C layer
                     SampleState.Any | ViewState.Any | InstanceState.Any, n)
    if isinstance(ret, int):
        raise RuntimeError(f"ddspy_take returned {ret}")
    return [bytes(d) for d, info in ret if info.valid_data]


def cdds_write_raw(writer: DataWriter[Any], data: bytes) -> None:
    from cyclonedds._clayer import ddspy_write

    ret = ddspy_write(writer._ref, data)  # noqa: SLF001 - the C layer's handle, as above
    if ret < 0:
        raise RuntimeError(f"ddspy_write returned {ret}")


# --------------------------------------------------------------------------- children
def child_rclpy_pub() -> None:
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import JointState

    rclpy.init()
    node = Node("selftest_pub")
    pub = node.create_publisher(JointState, TOPIC, QoSProfile(depth=1000))
    print("ready", flush=True)
    sys.stdin.readline()  # parent says go once its readers have matched us
    # ... and we wait until our writer has matched them too (both sides must know each
    # other, or volatile samples sent in between are skipped by the reader)
    wait_until(lambda: pub.get_subscription_count() >= 3, 10)
    for i in range(N):
        pub.publish(joint_state(i))
    sys.stdin.readline()  # wait until the parent is done (keeps writer alive for repairs)
    node.destroy_node()
    rclpy.shutdown()


def child_cdds_pub() -> None:
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    js = ts.types["sensor_msgs/msg/JointState"]
    hdr = ts.types["std_msgs/msg/Header"]
    tm = ts.types["builtin_interfaces/msg/Time"]
    import numpy as np

    dp = DomainParticipant(0)
    w = DataWriter(dp, Topic(dp, "rt" + TOPIC, cdds_joint_state_type()), qos=cdds_qos())
    print("ready", flush=True)
    sys.stdin.readline()
    wait_until(lambda: len(w.get_matched_subscriptions()) >= 2, 10)
    for i in range(N):
        m = js(
            header=hdr(stamp=tm(sec=i, nanosec=123), frame_id="base_link"),
            name=[f"joint_{k:02d}" for k in range(40)],
            position=np.array([0.5 * k + i for k in range(40)]),
            velocity=np.ones(40),
            effort=np.zeros(0),
        )
        cdds_write_raw(w, bytes(ts.serialize_cdr(m, "sensor_msgs/msg/JointState")))
    sys.stdin.readline()


# --------------------------------------------------------------------------- parent
def spawn(mode: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, __file__, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "ready", \
        f"child {mode} did not start"
    return p


def tell(p: subprocess.Popen[str], line: str) -> None:
    assert p.stdin is not None
    p.stdin.write(line + "\n")
    p.stdin.flush()


def finish(p: subprocess.Popen[str]) -> None:
    try:
        tell(p, "done")
    except BrokenPipeError:
        pass
    p.wait(timeout=10)


def wait_until(pred: Callable[[], object], timeout: float,
               spin: Callable[[], object] | None = None) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        if spin is not None:
            spin()
        else:
            time.sleep(0.01)
    return bool(pred())


def _frame_id(msg: Any) -> object:
    """The header frame of a message rosbags deserialised (typed ``object`` by rosbags)."""
    return msg.header.frame_id


def ok(name: str, cond: bool, detail: str = "") -> None:
    print(f"{'PASS' if cond else 'FAIL'} {name} {detail}", flush=True)
    if not cond:
        sys.exit(1)


def main() -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.experimental import EventsExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from rclpy.serialization import deserialize_message
    from rclpy.utilities import get_rmw_implementation_identifier
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import JointState

    ts = get_typestore(Stores.ROS2_JAZZY)
    rclpy.init()
    ok(
        "1 rclpy.init",
        get_rmw_implementation_identifier() == "rmw_fastrtps_cpp",
        get_rmw_implementation_identifier() + f" EventsExecutor={EventsExecutor.__module__}",
    )

    # 2. one process
    node = Node("selftest")
    qos = QoSProfile(depth=1000)
    typed: list[Any] = []
    raw: list[bytes] = []
    node.create_subscription(JointState, "/selftest_local", typed.append, qos)
    node.create_subscription(JointState, "/selftest_local", raw.append, qos, raw=True)
    pub = node.create_publisher(JointState, "/selftest_local", qos)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    wait_until(lambda: pub.get_subscription_count() >= 2, 5, lambda: ex.spin_once(0.01))
    for i in range(5):
        pub.publish(joint_state(i))
    wait_until(lambda: len(typed) >= 5 and len(raw) >= 5, 5, lambda: ex.spin_once(0.01))
    good = (
        len(typed) == 5
        and len(raw) == 5
        and all(isinstance(b, bytes) for b in raw)
        and raw[0][:4] == b"\x00\x01\x00\x00"
        and [deserialize_message(b, JointState) for b in raw] == typed
        and _frame_id(ts.deserialize_cdr(raw[0], "sensor_msgs/msg/JointState")) == "base_link"
    )
    ok(
        "2 one-process pub/sub typed+raw",
        good,
        f"typed={len(typed)} raw={len(raw)} header={raw[0][:4].hex() if raw else None} "
        f"len={len(raw[0]) if raw else 0}",
    )
    ex.remove_node(node)

    # 3 + 4. child rclpy pub -> rclpy (EventsExecutor) + cyclonedds raw reader
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    dp = DomainParticipant(0)
    reader = DataReader(dp, Topic(dp, "rt" + TOPIC, cdds_joint_state_type()), qos=cdds_qos())
    got_typed: list[Any] = []
    got_raw: list[bytes] = []
    got_cdds: list[bytes] = []
    s1 = node.create_subscription(JointState, TOPIC, got_typed.append, qos)
    node.create_subscription(JointState, TOPIC, got_raw.append, qos, raw=True)
    eex = EventsExecutor()
    eex.add_node(node)
    child = spawn("--child-rclpy-pub")
    try:
        matched = wait_until(
            lambda: s1.get_publisher_count() >= 1 and reader.get_matched_publications(),
            15,
            lambda: eex.spin_once(0.01),
        )
        ok("3a discovery rclpy pub (other process) -> rclpy + cyclonedds readers", matched)
        tell(child, "go")

        def spin() -> None:
            eex.spin_once(0.01)
            got_cdds.extend(cdds_take_raw(reader))

        wait_until(lambda: len(got_typed) >= N and len(got_raw) >= N and len(got_cdds) >= N, 15, spin)
    finally:
        finish(child)
    ok(
        "3 two-process rclpy -> rclpy (EventsExecutor)",
        len(got_typed) == N and [m.header.stamp.sec for m in got_typed] == list(range(N)),
        f"{len(got_typed)}/{N}",
    )
    ok(
        "4 rclpy -> cyclonedds raw bytes == rclpy raw bytes",
        got_cdds == got_raw and len(got_cdds) == N,
        f"{len(got_cdds)}/{N}, {len(got_cdds[0]) if got_cdds else 0} B/msg",
    )

    # 5. child cyclonedds raw writer -> rclpy typed + raw
    got_typed.clear()
    got_raw.clear()
    child = spawn("--child-cdds-pub")
    try:
        ok(
            "5a discovery cyclonedds writer -> rclpy",
            wait_until(lambda: s1.get_publisher_count() >= 1, 15, lambda: eex.spin_once(0.01)),
        )
        tell(child, "go")
        wait_until(lambda: len(got_typed) >= N and len(got_raw) >= N, 15, lambda: eex.spin_once(0.01))
    finally:
        finish(child)
    js_name = "sensor_msgs/msg/JointState"
    expect = [ts.serialize_cdr(ts.deserialize_cdr(b, js_name), js_name) for b in got_raw]
    ok(
        "5 cyclonedds raw -> rclpy",
        len(got_typed) == N
        and [m.position[1] for m in got_typed] == [0.5 + i for i in range(N)]
        and [bytes(e) for e in expect] == got_raw,
        f"{len(got_typed)}/{N}",
    )
    node.destroy_node()
    rclpy.shutdown()
    print("ros selftest: all passed", flush=True)


if __name__ == "__main__":
    if "--child-rclpy-pub" in sys.argv:
        child_rclpy_pub()
    elif "--child-cdds-pub" in sys.argv:
        child_cdds_pub()
    else:
        if os.environ.get("DEMOFAB_NETNS") != "1":
            print("warning: not inside tools/netns-run.sh; DDS traffic may leave loopback", file=sys.stderr)
        main()
