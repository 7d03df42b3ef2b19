"""Recordings from any robot: a rosbag2 bag without a DemoFab profile gets the same
quality checks as our own, against the rates observed in its streams."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curation import curate

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SECONDS = 10.0
GRIPPER = "std_msgs/Header header\nfloat64 width\nfloat64 force\n"


def _bag(path: Path, *, hole: tuple[float, float] | None = None,
         frozen: tuple[float, float] | None = None, jitter_ms: float = 0.0) -> Path:
    """A bag of another robot, written with rosbags: its arm's joint states at 500 Hz, its
    gripper's own message type at 100 Hz, a wrench sensor at 200 Hz. ``hole``: seconds
    (from, to) without joint states; ``frozen``: seconds (from, to) over which the
    gripper repeats its reading at ``from``; ``jitter_ms``: uniform noise on the wrench
    stamps."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(GRIPPER, "acme_msgs/msg/GripperState"))
    T = store.types
    rng = np.random.default_rng(7)

    def header(ns: int) -> object:
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
            frame_id="base")

    def vec(x: float, y: float, z: float) -> object:
        return T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z)

    msgs: list[tuple[int, str, object]] = []
    for i in range(int(SECONDS * 500)):
        s = i / 500
        if hole and hole[0] <= s < hole[1]:
            continue
        q = np.array([np.sin(s), np.cos(0.5 * s), 0.1 * s])
        msgs.append((T0 + i * 2 * MS, "/arm/joint_states", T["sensor_msgs/msg/JointState"](
            header=header(T0 + i * 2 * MS), name=["shoulder", "elbow", "wrist"], position=q,
            velocity=np.array([np.cos(s), -0.5 * np.sin(0.5 * s), 0.1]), effort=np.zeros(0))))
    held = 0.0
    for i in range(int(SECONDS * 100)):
        s = i / 100
        if not (frozen and frozen[0] < s <= frozen[1]):
            held = 0.04 + 0.02 * np.sin(3 * s)
        msgs.append((T0 + i * 10 * MS, "/gripper/state", T["acme_msgs/msg/GripperState"](
            header=header(T0 + i * 10 * MS), width=held, force=1.0 + s)))
    for i in range(int(SECONDS * 200)):
        s = i / 200
        noise = int(rng.uniform(-jitter_ms, jitter_ms) * MS) if jitter_ms else 0
        msgs.append((T0 + i * 5 * MS, "/wrench", T["geometry_msgs/msg/WrenchStamped"](
            header=header(T0 + i * 5 * MS + noise),
            wrench=T["geometry_msgs/msg/Wrench"](force=vec(np.sin(s), 0.0, 9.8 + s),
                                                  torque=vec(0.0, np.cos(s), s)))))
    msgs.sort(key=lambda m: m[0])
    types = {"/arm/joint_states": "sensor_msgs/msg/JointState",
             "/gripper/state": "acme_msgs/msg/GripperState",
             "/wrench": "geometry_msgs/msg/WrenchStamped"}
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {t: w.add_connection(t, ty, typestore=store) for t, ty in types.items()}
        for stamp, topic, msg in msgs:
            # received 1 ms after the stamp
            w.write(conns[topic], stamp + MS, store.serialize_cdr(msg, types[topic]))
    return path


def _episode(bag: Path, out: Path) -> dict:
    (e,) = json.loads((curate([bag], out, "foreign").release / "episodes.json").read_text()
                      )["episodes"]
    return e


def _raised(e: dict) -> set[tuple[str, str]]:
    return {(r["flag"], r["stream"]) for r in e["flag_reasons"]}


def test_clean_bag_of_another_robot_raises_no_quality_flag(tmp_path: Path) -> None:
    e = _episode(_bag(tmp_path / "bag"), tmp_path / "rel")
    # the one flag says that its episode boundaries were found without events
    assert _raised(e) == {("auto_segmented", "")} and e["quality_score"] == 1.0
    js = e["quality_streams"]["/arm/joint_states"]
    assert js["rate_source"] == "inferred" and js["nominal_rate_hz"] == pytest.approx(500)
    assert e["quality_streams"]["/gripper/state"]["nominal_rate_hz"] == pytest.approx(100)
    assert e["quality_streams"]["/wrench"]["nominal_rate_hz"] == pytest.approx(200)


def test_hole_frozen_stream_and_jitter_are_flagged_against_the_observed_rates(
        tmp_path: Path) -> None:
    e = _episode(_bag(tmp_path / "bag", hole=(4.0, 4.5), frozen=(6.0, 7.5), jitter_ms=2.0),
                 tmp_path / "rel")
    assert _raised(e) == {("auto_segmented", ""), ("gaps", "/arm/joint_states"),
                          ("frozen", "/gripper/state"), ("jitter", "/wrench")}
    # the half-second hole: after the stamp at 3.998 s, 502 ms to the next one at 4.5 s
    js = e["quality_streams"]["/arm/joint_states"]
    assert js["gap_list"] == [{"after_ns": T0 + 3998 * MS, "length_ms": 502.0}]
    assert js["missing_estimate"] == 250
    why = next(r["detail"] for r in e["flag_reasons"] if r["flag"] == "gaps")
    assert f"502.0 ms after stamp {T0 + 3998 * MS} (3.998 s into the episode)" in why
    assert "500.0 Hz observed" in why
    grip = e["quality_streams"]["/gripper/state"]
    assert grip["frozen_from_ns"] == T0 + 6000 * MS and grip["frozen_s"] == pytest.approx(1.5)
    why = next(r["detail"] for r in e["flag_reasons"] if r["flag"] == "frozen")
    assert "width unchanged for 1.50 s" in why and "(6.000 s into the episode; 151 messages)" in why
    wrench = e["quality_streams"]["/wrench"]
    assert wrench["nominal_rate_hz"] == pytest.approx(200, rel=0.01)
    assert 2.5 < wrench["jitter_p99_ms"] < 4.0


def test_lost_messages_lower_the_rate_against_the_observed_period(tmp_path: Path) -> None:
    """A stream that loses every fourth message keeps its median period: the loss shows as
    a low rate and as missing messages, not as a slower nominal rate."""
    from mcap.reader import make_reader
    from mcap.writer import Writer

    src = _bag(tmp_path / "bag")
    mcap = next(src.glob("*.mcap"))
    lossy = tmp_path / "lossy.mcap"
    with open(mcap, "rb") as f, open(lossy, "wb") as g:
        w = Writer(g)
        w.start("ros2", "test")
        ids: dict[int, int] = {}
        seen = 0
        for schema, channel, message in make_reader(f).iter_messages():
            if channel.id not in ids:
                sid = w.register_schema(schema.name, schema.encoding, schema.data)
                ids[channel.id] = w.register_channel(channel.topic, "cdr", sid)
            if channel.topic == "/gripper/state":
                seen += 1
                if seen % 4 == 0:
                    continue
            w.add_message(ids[channel.id], log_time=message.log_time, data=message.data,
                          publish_time=message.publish_time)
        w.finish()
    e = _episode(lossy, tmp_path / "rel")
    assert ("rate_low", "/gripper/state") in _raised(e)
    grip = e["quality_streams"]["/gripper/state"]
    assert grip["nominal_rate_hz"] == pytest.approx(100)
    assert grip["missing_estimate"] == pytest.approx(250, abs=2)
    assert ("rate_low", "/arm/joint_states") not in _raised(e)
