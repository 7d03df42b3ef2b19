"""player_node (ros2_ws/src/demofab_ros) -> rclpy subscribers, in the ROS venv.

An episode is written with ``recorder.session.Session`` (known bytes and log times); the
player node, started as a process, waits for the test's subscribers, and they must get
every message, in order, byte for byte, with the recorded spacing. Its services
(pause, resume, toggle_pause) and runtime parameters (seek_to, rate) are checked on a
second run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from std_srvs.srv import Trigger  # noqa: E402

from recorder.profile import EVENTS_TOPIC, load_profile  # noqa: E402
from recorder.session import Session  # noqa: E402
from tests.ros.rosutil import (  # noqa: E402
    Ros,
    message_class,
    node_log,
    qos,
    schedule,
    start_node,
    stop_node,
)

PROFILE = load_profile("humanoid")
TOPICS = ["/joint_states", "/imu", "/teleop/left_hand/pose", "/camera/head/image_raw/compressed"]
NODE = "/demofab_player"


def write_episode(directory: Path, seconds: float) -> dict[str, list[tuple[int, bytes]]]:
    """One episode of ``seconds`` of the TOPICS; returns (log time, bytes) per topic."""
    t0 = 1_800_000_000 * 10**9
    session = Session(directory, PROFILE)
    session.start_episode("replay test", "ci", at_ns=t0)
    recorded: dict[str, list[tuple[int, bytes]]] = {}
    for offset, topic, data in schedule(PROFILE, TOPICS, seconds, t0 + 10**6, seed=7):
        log_time = t0 + 10**6 + offset
        session.write(topic, data, log_time)
        recorded.setdefault(topic, []).append((log_time, data))
    session.stop_episode("success", at_ns=t0 + int(seconds * 1e9) + 2 * 10**6)
    return recorded


class Listener:
    def __init__(self) -> None:
        self.ros = Ros("demofab_test_listener")
        self.got: dict[str, list[tuple[int, bytes]]] = {t: [] for t in TOPICS}
        for topic in TOPICS:
            spec = PROFILE.topic(topic)
            self.ros.node.create_subscription(message_class(spec.type), topic, self._cb(topic),
                                              qos(spec.qos, 1000), raw=True)

    def _cb(self, topic: str) -> Any:
        box = self.got[topic]

        def on_message(data: bytes) -> None:
            box.append((time.perf_counter_ns(), data))

        return on_message

    def count(self) -> int:
        return sum(len(v) for v in self.got.values())


@pytest.fixture
def listener() -> Any:
    listener = Listener()
    yield listener
    listener.ros.close()


def test_player_node_plays_every_message_in_order_with_the_recorded_spacing(
        tmp_path: Path, listener: Listener) -> None:
    recorded = write_episode(tmp_path / "session", 2.0)
    total = sum(len(v) for v in recorded.values())
    stats_path = tmp_path / "stats.json"
    node = start_node("player_node", {"path": str(tmp_path / "session" / "episode_0000.mcap"),
                                      "wait_for_subscribers": 1, "delay": 0.5,
                                      "stats_out": str(stats_path)},
                      tmp_path / "player.log")
    try:
        listener.ros.spin_until(lambda: listener.count() >= total or node.poll() is not None, 30,
                                "every replayed message")
        listener.ros.spin_for(0.2)
        rc = node.wait(20)
    finally:
        stop_node(node)
    assert rc == 0, node_log(node)
    log = node_log(node)
    assert f"{EVENTS_TOPIC}: not played" in log   # no demofab_msgs package in this venv
    # every message, in order, byte for byte (padded to 4 bytes as Fast DDS delivers them)
    for topic in TOPICS:
        got = [d for _, d in listener.got[topic]]
        want = [d + b"\0" * (-len(d) % 4) for _, d in recorded[topic]]
        assert len(got) == len(want), f"{topic}: {len(got)} of {len(want)} messages"
        assert got == want, f"{topic}: bytes or order differ"
    # the recorded spacing: receive time - first receive time vs log time - first log time
    pairs = sorted((t, log) for topic in TOPICS
                   for (t, _), (log, _) in zip(listener.got[topic], recorded[topic], strict=True))
    recv = np.array([p[0] for p in pairs], dtype=np.int64)
    logt = np.array([p[1] for p in pairs], dtype=np.int64)
    err_ms = ((recv - recv[0]) - (logt - logt[0])) / 1e6
    err_ms -= np.median(err_ms)
    p99 = np.percentile(np.abs(err_ms), 99)
    assert p99 < 10.0, f"spacing error p99 {p99:.2f} ms"
    stats = json.loads(stats_path.read_text())
    assert stats["messages"] == total
    assert stats["jitter_ms"]["p99"] < 10.0, stats


def test_player_node_services_and_runtime_parameters(tmp_path: Path, listener: Listener) -> None:
    recorded = write_episode(tmp_path / "session", 2.0)
    first_js = recorded["/joint_states"][0][0]
    node = start_node("player_node", {"path": str(tmp_path / "session"), "start_paused": True,
                                      "wait_for_subscribers": 1}, tmp_path / "player.log")
    try:
        ros = listener.ros
        ros.spin_until(lambda: "playing" in node_log(node) or node.poll() is not None, 30,
                       "the player to start")
        assert node.poll() is None, node_log(node)
        ros.spin_for(0.5)
        assert listener.count() == 0, "a paused player published"
        # seek by parameter (works without demofab_msgs), then resume by service
        results = ros.set_parameters("demofab_player", seek_to=1.0)
        assert results[0].successful, results[0].reason
        bad = ros.set_parameters("demofab_player", seek_to=99.0)
        assert not bad[0].successful and "past the end" in bad[0].reason
        answer = ros.call(Trigger, f"{NODE}/resume")
        assert answer.success, answer.message
        ros.spin_until(lambda: len(listener.got["/joint_states"]) > 20, 10, "messages after resume")
        first = recorded["/joint_states"].index(
            next(r for r in recorded["/joint_states"] if r[1] == listener.got["/joint_states"][0][1]))
        assert (recorded["/joint_states"][first][0] - first_js) / 1e9 >= 0.99, "seek_to was ignored"
        answer = ros.call(Trigger, f"{NODE}/pause")
        assert answer.success and "paused" in answer.message
        ros.spin_for(0.3)
        n = listener.count()
        ros.spin_for(0.4)
        assert listener.count() == n, "the player published while paused"
        assert ros.set_parameters("demofab_player", rate=4.0)[0].successful
        assert not ros.set_parameters("demofab_player", rate=0.0)[0].successful
        answer = ros.call(Trigger, f"{NODE}/toggle_pause")
        assert answer.success and "playing" in answer.message, answer.message
        started = time.monotonic()
        rc = node.wait(20)
        assert rc == 0, node_log(node)
        # at rate 4 the rest (< 1 s of recording) takes well under a second
        assert time.monotonic() - started < 1.5
        ros.spin_for(0.2)
        got_js = [d for _, d in listener.got["/joint_states"]]
        want_js = [d for _, d in recorded["/joint_states"][first:]]
        assert got_js == want_js
    finally:
        stop_node(node)
