"""demofab_ros.diagnostics (no rclpy): the recorder's health as DiagnosticStatus records."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from recorder.health import HealthMonitor
from recorder.profile import load_profile

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "demofab_ros_diagnostics", ROOT / "ros2_ws/src/demofab_ros/demofab_ros/diagnostics.py")
diag = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = diag   # dataclasses look their module up
_spec.loader.exec_module(diag)


def report(tmp_path: Path, rates: dict[str, float], seconds: float = 2.0):
    profile = load_profile("humanoid")
    monitor = HealthMonitor(profile, tmp_path)
    t0 = 10**18
    for topic, hz in rates.items():
        track = monitor.track(profile.topic(topic))
        for i in range(int(seconds * hz)):
            t = t0 + int(i * 1e9 / hz)
            track.log.append(t + 1_000_000)
            track.stamp.append(t)
    return profile, monitor.report(t0, t0 + int(seconds * 1e9), 5_000_000)


def test_each_topic_gets_a_level_from_its_health_flags(tmp_path: Path) -> None:
    profile, rep = report(tmp_path, {"/joint_states": 500, "/imu": 200})
    topics = [t.topic for t in profile.topics]
    out = {s.name: s for s in diag.health_statuses(rep, state="recording", topics=topics,
                                                     skipped={"/tf": "no tf2_msgs"})}
    js = out["demofab_recorder: /joint_states"]
    assert js.level == diag.OK and js.message == "ok"
    values = dict(js.values)
    assert values["expected_hz"] == "500" and float(values["rate_hz"]) == 500.0
    assert values["gaps"] == "0" and values["latency_p99_ms"] == "1"
    imu = out["demofab_recorder: /imu"]
    assert imu.level == diag.WARN and "rate_low" in imu.message
    cam = out["demofab_recorder: /camera/head/image_raw/compressed"]
    assert cam.level == diag.ERROR and "no_messages" in cam.message
    tf = out["demofab_recorder: /tf"]
    assert tf.level == diag.ERROR and tf.message == "not recorded: no tf2_msgs"
    session = dict(out["demofab_recorder: session"].values)
    assert int(session["disk_free_bytes"]) > 0 and session["bytes_written"] == "5000000"
    assert float(session["seconds_left"]) > 0


def test_idle_statuses_are_ok_and_carry_the_disk(tmp_path: Path) -> None:
    out = diag.health_statuses(None, state="idle", topics=["/joint_states"], disk_free_bytes=123)
    assert [s.level for s in out] == [diag.OK, diag.OK]
    assert dict(out[-1].values)["disk_free_bytes"] == "123"


def test_a_write_error_makes_the_session_an_error(tmp_path: Path) -> None:
    out = diag.health_statuses(None, state="idle", topics=[], error="disk full")
    assert out[-1].level == diag.ERROR and out[-1].message == "disk full"
