"""recorder_node (ros2_ws/src/demofab_ros) against real rclpy publishers, in the ROS venv.

An rclpy publisher sends the humanoid profile's topics as pre-serialized CDR (built with
rosbags, so the exact bytes are known) at their real rates; the recorder node, started as
a process, must store exactly those bytes (as they arrive: Fast DDS zero-pads a payload to
a multiple of 4 bytes, see ``rosutil.on_wire``), and its services must start, stop (with the
outcome), discard and re-record episodes. ``/tf`` is not published: this venv has no
tf2_msgs wheel, so neither side can create a TFMessage endpoint; the node reports it as
"not recorded" instead (checked below).

Discovery: the test publishes probes into a first episode until the node's
``/diagnostics`` counts every topic (both sides have matched), then discards it.
"""

from __future__ import annotations

import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcap.reader import make_reader

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from recorder.contract import read_session_state  # noqa: E402
from recorder.profile import EVENTS_TOPIC, load_profile  # noqa: E402
from recorder.session import Session  # noqa: E402
from tests.ros.rosutil import (  # noqa: E402
    Ros,
    message_class,
    node_log,
    on_wire,
    publish_paced,
    qos,
    schedule,
    start_node,
    stop_node,
)

PROFILE = load_profile("humanoid")
NODE = "/demofab_recorder"
SENT_TOPICS = [t.topic for t in PROFILE.topics if t.topic not in ("/tf", EVENTS_TOPIC)]


def read_episode(path: Path) -> tuple[dict[str, list[bytes]], dict[str, dict[str, str]]]:
    data: dict[str, list[bytes]] = {}
    with open(path, "rb") as f:
        reader = make_reader(f)
        for _, channel, message in reader.iter_messages(log_time_order=False):
            data.setdefault(channel.topic, []).append(message.data)
        f.seek(0)
        metadata = {m.name: dict(m.metadata) for m in make_reader(f).iter_metadata()}
    return data, metadata


class Rig:
    """The test side: publishers for the profile's topics and a /diagnostics subscriber."""

    def __init__(self) -> None:
        self.ros = Ros("demofab_test_rig")
        node = self.ros.node
        self.pubs = {name: node.create_publisher(message_class(PROFILE.topic(name).type), name,
                                                 qos(PROFILE.topic(name).qos, 100))
                     for name in SENT_TOPICS}
        self.diagnostics: list[DiagnosticArray] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append,
                                 QoSProfile(depth=100))

    def status(self, name: str) -> DiagnosticStatus | None:
        for msg in reversed(self.diagnostics):
            for st in msg.status:
                if st.name == f"demofab_recorder: {name}":
                    return st
        return None

    def value(self, name: str, key: str) -> str | None:
        st = self.status(name)
        if st is None:
            return None
        return next((kv.value for kv in st.values if kv.key == key), None)

    def counted(self, name: str) -> int:
        v = self.value(name, "count")
        return int(v) if v else 0

    def connect(self) -> None:
        """Wait until both sides matched on every topic: probes into a discarded episode."""
        self.ros.spin_until(lambda: all(p.get_subscription_count() >= 1 for p in self.pubs.values()),
                            30, "the recorder's subscriptions")
        assert self.ros.call(Trigger, f"{NODE}/start").success
        probes = schedule(PROFILE, SENT_TOPICS, 0.05, 0)
        for _ in range(200):
            publish_paced(self.pubs, probes)
            self.ros.spin_for(0.1)
            if all(self.counted(t) > 0 for t in SENT_TOPICS):
                break
        else:
            raise AssertionError("the recorder did not receive every topic: "
                                 + ", ".join(f"{t}={self.counted(t)}" for t in SENT_TOPICS))
        answer = self.ros.call(Trigger, f"{NODE}/discard")
        assert answer.success, answer.message

    def record(self, seconds: float, seed: int) -> dict[str, list[bytes]]:
        """One paced burst of the profile; returns what was sent per topic, once the node's
        health (window = whole episode) counts all of it."""
        msgs = schedule(PROFILE, SENT_TOPICS, seconds, 1_800_000_000 * 10**9, seed)
        publish_paced(self.pubs, msgs)
        sent: dict[str, list[bytes]] = {}
        for _, topic, data in msgs:
            sent.setdefault(topic, []).append(on_wire(data))
        self.diagnostics.clear()
        self.ros.spin_until(lambda: all(self.counted(t) >= len(sent[t]) for t in sent), 20,
                            "the recorder to count every message")
        return sent

    def close(self) -> None:
        self.ros.close()


@pytest.fixture
def rig() -> Any:
    r = Rig()
    yield r
    r.close()


def params(out: Path, **extra: Any) -> dict[str, Any]:
    return {"out": str(out), "profile": "humanoid", "health_rate_hz": 5.0,
            "health_window_s": 1000.0, "robot_description_topic": "", **extra}


def test_recorder_node_stores_the_published_bytes_and_the_outcome(tmp_path: Path, rig: Rig) -> None:
    out = tmp_path / "session"
    node = start_node("recorder_node", params(out, task="stack cups", operator="ana"),
                      tmp_path / "recorder.log")
    try:
        rig.connect()
        answer = rig.ros.call(Trigger, f"{NODE}/start")
        assert answer.success and "episode 1 recording" in answer.message, answer.message
        sent = rig.record(2.0, seed=1)
        answer = rig.ros.call(SetBool, f"{NODE}/stop", SetBool.Request(data=True))
        assert answer.success and "success" in answer.message, answer.message

        # live health: one status per profile topic (window: the whole episode, so the
        # silence around the burst may flag rate/gaps: a warning, never an error)
        js = rig.status("/joint_states")
        assert js is not None and js.level in (DiagnosticStatus.OK, DiagnosticStatus.WARN), js
        assert rig.value("/joint_states", "expected_hz") == "500"
        assert rig.counted("/joint_states") == len(sent["/joint_states"])
        assert float(rig.value("/joint_states", "rate_hz")) > 0
        # /tf cannot be subscribed here (no tf2_msgs): an error that says so
        tf = rig.status("/tf")
        assert tf is not None and tf.level == DiagnosticStatus.ERROR
        assert "not recorded" in tf.message and "tf2_msgs" in tf.message
        session = rig.status("session")
        assert session is not None and int(rig.value("session", "disk_free_bytes")) > 0
    finally:
        assert stop_node(node) == 0, node_log(node)
    log = node_log(node)
    assert "/tf: not recorded" in log

    assert (out / "discarded" / "episode_0000.mcap").is_file()   # the discovery probes
    data, metadata = read_episode(out / "episode_0001.mcap")
    for topic, messages in sent.items():
        assert len(data.get(topic, [])) == len(messages), topic
        assert data[topic] == messages, f"{topic}: recorded bytes differ from the sent bytes"
    assert set(data) == set(sent) | {EVENTS_TOPIC}
    episode = metadata["demofab.episode"]
    assert episode["outcome"] == "success"
    assert episode["task"] == "stack cups" and episode["operator"] == "ana"
    assert episode["messages"] == str(sum(len(m) for m in data.values()))
    state = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert state["relative_file_paths"] == ["episode_0001.mcap"]


def test_recorder_node_failure_rerecord_runtime_task_and_sigint(tmp_path: Path, rig: Rig) -> None:
    out = tmp_path / "session"
    node = start_node("recorder_node", params(out, task="first"), tmp_path / "recorder.log")
    try:
        rig.connect()   # episode 0, discarded
        results = rig.ros.set_parameters("demofab_recorder", task="pour water", operator="bo")
        assert all(r.successful for r in results), results
        refused = rig.ros.set_parameters("demofab_recorder", outcome="maybe")
        assert not refused[0].successful and "outcome" in refused[0].reason
        assert rig.ros.call(Trigger, f"{NODE}/start").success          # episode 1
        rig.record(0.5, seed=2)
        answer = rig.ros.call(SetBool, f"{NODE}/stop", SetBool.Request(data=False))
        assert answer.success and "failure" in answer.message, answer.message
        refused = rig.ros.call(SetBool, f"{NODE}/stop", SetBool.Request(data=True))
        assert not refused.success and "no episode is recording" in refused.message
        answer = rig.ros.call(Trigger, f"{NODE}/rerecord")              # 1 out, 2 in
        assert answer.success and "episode 2" in answer.message, answer.message
        sent = rig.record(0.5, seed=3)
    finally:
        rc = stop_node(node, signal.SIGINT)                              # finishes episode 2
    assert rc == 0, node_log(node)
    _, failed = read_episode(out / "discarded" / "episode_0001.mcap")
    assert failed["demofab.episode"]["outcome"] == "failure"
    assert failed["demofab.episode"]["task"] == "pour water"
    data, metadata = read_episode(out / "episode_0002.mcap")
    assert metadata["demofab.episode"]["ended_by"] == "signal"
    assert metadata["demofab.episode"]["outcome"] == "unknown"
    assert metadata["demofab.episode"]["operator"] == "bo"
    for topic, messages in sent.items():
        got = data[topic]
        assert len(got) == len(messages), topic
        bad = [(i, len(a), len(b)) for i, (a, b) in enumerate(zip(got, messages, strict=True)) if a != b]
        assert not bad, f"{topic}: {bad}"
    assert not list(out.glob("*.part"))


def test_recorder_node_timed_episodes_and_exit(tmp_path: Path) -> None:
    out = tmp_path / "session"
    node = start_node("recorder_node", params(out, autostart=True, episode_seconds=0.6,
                                              reset_seconds=0.3, episodes=2, outcome="failure"),
                      tmp_path / "recorder.log")
    try:
        rc = node.wait(30)
    finally:
        stop_node(node)
    assert rc == 0, node_log(node)
    files = sorted(p.name for p in out.glob("episode_*.mcap"))
    assert files == ["episode_0000.mcap", "episode_0001.mcap"]
    for name in files:
        _, metadata = read_episode(out / name)
        episode = metadata["demofab.episode"]
        assert episode["outcome"] == "failure"
        assert 0.55 < (int(episode["end_ns"]) - int(episode["start_ns"])) / 1e9 < 1.5


def test_recorder_node_recovers_an_interrupted_episode_before_recording(tmp_path: Path) -> None:
    out = tmp_path / "session"
    crashed = Session(out, PROFILE)
    crashed.start_episode("cut short", "ana", at_ns=1_800_000_000 * 10**9)
    assert crashed.writer is not None
    crashed.writer.abort(keep=True)   # as after kill -9: the .part stays, listed as open
    node = start_node("recorder_node", params(out, autostart=True, episode_seconds=0.3,
                                              episodes=1), tmp_path / "recorder.log")
    try:
        rc = node.wait(30)
    finally:
        stop_node(node)
    assert rc == 0, node_log(node)
    assert "recovered episode_0000.mcap" in node_log(node)
    state = read_session_state(out)
    assert state is not None and state.damaged == ()
    assert [(e.file, e.task, e.ended_by) for e in state.episodes] == [
        ("episode_0000.mcap", "cut short", "recovered"), ("episode_0001.mcap", "", "stop")]
    assert not list(out.glob("*.part"))


@contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """Processes started inside inherit a file size limit: a full disk, for them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_recorder_node_exits_2_when_the_disk_fills_and_keeps_the_episode_damaged(
        tmp_path: Path, rig: Rig) -> None:
    out = tmp_path / "session"
    with file_size_limit(2_500_000):
        node = start_node("recorder_node", params(out), tmp_path / "recorder.log")
    try:
        rig.connect()   # episode 0, discarded
        assert rig.ros.call(Trigger, f"{NODE}/start").success   # episode 1
        publish_paced(rig.pubs, schedule(PROFILE, SENT_TOPICS, 3.0, 1_800_000_000 * 10**9, 4))
        rc = node.wait(20)
    finally:
        stop_node(node)
    log = node_log(node)
    assert rc == 2, log
    errors = [ln for ln in log.splitlines() if "[ERROR]" in ln]
    assert errors and "episode_0001.mcap.part: disk full" in errors[0], log
    state = read_session_state(out)
    assert state is not None and state.open_episode is None
    assert [(e.file, e.flagged) for e in state.damaged] == [("episode_0001.mcap", True)]
    assert (out / "episode_0001.mcap.part").is_file()
    assert (out / "discarded" / "episode_0000.mcap").is_file()
