"""Replay core: order, timing, rate, loop, offset, seek, pause, filter, remap, QoS, /clock.

The player publishes into an in-memory backend here; the DDS and rclpy backends have
their own tests (test_dds.py, tests/ros). Timing checks are one-sided where they can be
(a message is never published before its time) and generous where the machine's load
decides (lateness).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader

from recorder.contract import EPISODE_METADATA, EVENTS_TOPIC
from recorder.profile import parse_profile
from recorder.replay import (
    CLOCK_QOS,
    CLOCK_TOPIC,
    CLOCK_TYPE,
    JitterStats,
    MemoryPublisher,
    Player,
    ReplayError,
    ReplayOptions,
    Timeline,
    parse_remap,
    qos_from_metadata,
)
from recorder.types import deserialize, serialize, typestore
from recorder.writer import EpisodeWriter

MS = 1_000_000
T0 = 1_760_000_000_000_000_000

PROFILE = parse_profile({
    "name": "tiny",
    "topics": [
        {"topic": "/a", "type": "std_msgs/msg/String",
         "qos": {"reliability": "reliable", "depth": 50}},
        {"topic": "/b", "type": "std_msgs/msg/String",
         "qos": {"reliability": "best_effort", "depth": 5}},
    ],
})


def text(s: str) -> bytes:
    return serialize(typestore().types["std_msgs/msg/String"](data=s), "std_msgs/msg/String")


def label(data: bytes) -> str:
    return deserialize(data, "std_msgs/msg/String").data


def write_episode(path: Path, msgs: list[tuple[str, int, str]], index: int = 0) -> Path:
    """An episode file with (topic, log time ms from T0, label) messages."""
    w = EpisodeWriter(path, PROFILE)
    for topic, t_ms, s in msgs:
        w.write(topic, text(s), T0 + t_ms * MS, T0 + t_ms * MS)
    return w.close({EPISODE_METADATA: {"episode_index": str(index)}})


@pytest.fixture
def ep(tmp_path: Path) -> Path:
    """0..400 ms, /a every 50 ms, /b at 25, 125, 225, 325 ms."""
    msgs = [("/a", t, f"a{t}") for t in range(0, 401, 50)]
    msgs += [("/b", t, f"b{t}") for t in (25, 125, 225, 325)]
    return write_episode(tmp_path / "episode_0000.mcap", sorted(msgs, key=lambda m: m[1]))


def play(src, **kw) -> tuple[MemoryPublisher, Player]:
    pub = MemoryPublisher()
    player = Player(src, pub, ReplayOptions(**kw))
    player.play()
    return pub, player


def wait_for_first(pub: MemoryPublisher, timeout_s: float = 10.0) -> None:
    """Until the first message is out (the read-ahead process has started)."""
    deadline = time.monotonic() + timeout_s
    while not pub.sent and time.monotonic() < deadline:
        time.sleep(0.001)


def labels(pub: MemoryPublisher, topic: str | None = None) -> list[str]:
    return [label(d) for t, d, _ in pub.sent if topic is None or t == topic]


# ----------------------------------------------------------------------------- order, bytes
def test_a_session_plays_every_message_in_log_time_order_with_its_bytes(recorded):
    session, _, _ = recorded
    pub, player = play(session.dir, rate=50.0)
    expected = []
    for e in session.episodes:
        with open(session.dir / e.file, "rb") as f:
            expected += [(c.topic, m.data) for _, c, m in
                         make_reader(f).iter_messages(log_time_order=True)]
    assert [(t, d) for t, d, _ in pub.sent] == expected
    assert player.stats.messages == len(expected) == player.total
    assert player.stats.published[EVENTS_TOPIC] == 4   # start + stop of two episodes


def test_episodes_of_a_session_play_back_to_back_in_metadata_order(recorded):
    session, _, _ = recorded
    tl = Timeline.open(session.dir)
    assert [e.path.name for e in tl.episodes] == [e.file for e in session.episodes]
    first, second = tl.episodes
    assert second.offset_ns == first.duration_ns          # default gap 0: no reset pause
    kept = Timeline.open(session.dir, gap_s=None)          # recorded gaps kept
    assert kept.episodes[1].offset_ns == second.start_ns - first.start_ns > first.duration_ns


def test_selected_episodes_play_in_the_order_given(recorded):
    session, _, _ = recorded
    pub, player = play(session.dir, rate=50.0, episodes=(1, 0))
    events = [deserialize(d, "demofab_msgs/msg/EpisodeEvent") for t, d, _ in pub.sent
              if t == EVENTS_TOPIC]
    assert [(e.episode_index, e.kind) for e in events] == [(1, 0), (1, 1), (0, 0), (0, 1)]
    with pytest.raises(ReplayError, match=r"no episode 7 \(episodes: 0, 1\)"):
        Player(session.dir, MemoryPublisher(), ReplayOptions(episodes=(7,)))


def test_several_files_play_as_one_selection(tmp_path):
    a = write_episode(tmp_path / "x.mcap", [("/a", 0, "x0"), ("/a", 100, "x1")], index=3)
    b = write_episode(tmp_path / "y.mcap", [("/a", 5000, "y0"), ("/a", 5050, "y1")], index=4)
    pub, player = play([b, a], rate=20.0, episode_gap_s=0.1)
    assert labels(pub) == ["y0", "y1", "x0", "x1"]
    assert [e.index for e in player.timeline.episodes] == [4, 3]
    assert player.duration_s == pytest.approx(0.05 + 0.1 + 0.1)


# ----------------------------------------------------------------------------- timing, rate
def _spacing_ok(pub: MemoryPublisher, rate: float, late_ms: float) -> None:
    sent = pub.sent
    log = [int(label(d)[1:]) for _, d, _ in sent]   # labels carry the log time in ms
    t0 = sent[0][2]
    for (_, _, t), ms in zip(sent, log, strict=True):
        due = (ms - log[0]) / rate * MS
        assert t - t0 >= due - 0.3 * MS, "published before its time"
    total = (sent[-1][2] - t0) / MS
    assert (log[-1] - log[0]) / rate - 0.3 <= total <= (log[-1] - log[0]) / rate + late_ms


def test_messages_keep_the_recorded_spacing_and_are_never_early(ep):
    pub, player = play(ep)
    _spacing_ok(pub, 1.0, late_ms=40)
    j = player.stats.jitter_ms
    assert j["count"] == 13 and 0 <= j["p50"] <= j["p99"] <= j["max"]


def test_rate_scales_the_spacing(ep):
    pub, _ = play(ep, rate=4.0)
    _spacing_ok(pub, 4.0, late_ms=30)
    pub, _ = play(ep, rate=0.5)
    _spacing_ok(pub, 0.5, late_ms=40)


def test_set_rate_while_playing_speeds_up_the_rest(ep):
    pub = MemoryPublisher()
    player = Player(ep, pub, ReplayOptions(rate=1.0))
    player.start()
    wait_for_first(pub)
    time.sleep(0.1)
    player.set_rate(10.0)
    t0 = time.perf_counter()
    player.wait(5)
    assert time.perf_counter() - t0 < 0.2     # 300 ms left at 10x: ~30 ms, not 300
    assert len(pub.sent) == 13


# ----------------------------------------------------------------------------- loop, offset, seek
def test_loop_starts_over_until_stopped(ep):
    pub = MemoryPublisher()

    def progress(t, i, n):
        if player.stats.loops >= 2:
            player.stop()

    player = Player(ep, pub, ReplayOptions(rate=10.0, loop=True, progress_every_s=0.0),
                    on_progress=progress)
    player.play()
    once = [f"a{t}" if t % 50 == 0 else f"b{t}" for t in sorted(
        list(range(0, 401, 50)) + [25, 125, 225, 325])]
    got = labels(pub)
    assert got[:26] == once + once
    assert player.stats.stopped and player.stats.loops >= 2


def test_start_offset_skips_the_first_seconds(ep):
    pub, _ = play(ep, start_offset_s=0.2)
    assert labels(pub) == ["a200", "b225", "a250", "a300", "b325", "a350", "a400"]
    with pytest.raises(ReplayError, match="past the end"):
        Player(ep, MemoryPublisher(), ReplayOptions(start_offset_s=9.0))


def test_seek_jumps_backwards_and_forwards(ep):
    pub = MemoryPublisher()
    player = Player(ep, pub, ReplayOptions(start_paused=True))
    player.start()
    player.seek(0.3)
    time.sleep(0.05)
    assert pub.sent == []                      # still paused after the seek
    player.resume()
    deadline = time.monotonic() + 2
    while len(pub.sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    player.seek(0.0)                           # back to the start
    player.wait(5)
    got = labels(pub)
    assert got[:2] == ["a300", "b325"]
    assert got[-13:] == labels(play(ep, rate=20.0)[0])


def test_pause_holds_publishing_and_resume_keeps_the_spacing(ep):
    pub = MemoryPublisher()
    player = Player(ep, pub, ReplayOptions())
    player.start()
    wait_for_first(pub)
    time.sleep(0.11)
    player.pause()
    n = len(pub.sent)
    time.sleep(0.3)
    assert len(pub.sent) == n and player.paused
    t_resume = time.perf_counter_ns()
    player.resume()
    player.wait(5)
    after = [t for _, _, t in pub.sent[n:]]
    assert len(pub.sent) == 13
    assert after[0] >= t_resume                 # nothing published while paused
    # the rest keeps its recorded spacing after the pause: 400 ms - position at pause
    remaining_ms = 400 - int(label(pub.sent[n - 1][1])[1:])
    assert (after[-1] - t_resume) / MS >= remaining_ms - 60


def test_control_from_another_thread_while_playing(ep):
    pub = MemoryPublisher()
    player = Player(ep, pub, ReplayOptions(loop=True))
    t = threading.Thread(target=player.play)
    t.start()
    for _ in range(20):
        player.toggle_pause()
        player.set_rate(2.0)
        player.seek(0.1)
        time.sleep(0.005)
    player.stop()
    t.join(3)
    assert not t.is_alive() and player.stats.stopped


# ----------------------------------------------------------------------------- topics, QoS
def test_topic_filter_and_remap(ep):
    pub, player = play(ep, rate=20.0, topics=("/b",), remap={"/b": "/robot/b"})
    assert set(pub.created) == {"/robot/b"}
    assert labels(pub) == ["b25", "b125", "b225", "b325"]
    assert player.stats.published == {"/robot/b": 4}
    with pytest.raises(ReplayError, match=r"no CDR topic /nope .*topics: .*/a"):
        Player(ep, MemoryPublisher(), ReplayOptions(topics=("/nope",)))
    with pytest.raises(ReplayError, match="remap: no topic /x"):
        Player(ep, MemoryPublisher(), ReplayOptions(remap={"/x": "/y"}))


def test_remap_rules_parse_like_ros2():
    assert parse_remap(["/a:=/b", " /c := /d "]) == {"/a": "/b", "/c": "/d"}
    for bad in ("/a=/b", "/a:=", "a:=/b"):
        with pytest.raises(ReplayError, match="remap rule"):
            parse_remap([bad])


def test_publishers_get_the_recorded_qos(ep):
    pub, _ = play(ep, rate=20.0)
    assert pub.created["/a"][1].reliability == "reliable"
    assert pub.created["/a"][1].depth == 50
    assert pub.created["/b"][1].reliability == "best_effort"
    events = pub.created[EVENTS_TOPIC][1]
    assert (events.durability, events.depth) == ("transient_local", 100)


def test_qos_from_metadata_reads_strings_integers_and_mixed_offers():
    assert qos_from_metadata(None).reliability == "reliable"
    q = qos_from_metadata("- {history: 1, depth: 7, reliability: 2, durability: 1}")
    assert (q.reliability, q.durability, q.history, q.depth) == (
        "best_effort", "transient_local", "keep_last", 7)
    mixed = qos_from_metadata("- {reliability: reliable, depth: 3}\n"
                              "- {reliability: best_effort, depth: 9}")
    assert (mixed.reliability, mixed.depth) == ("best_effort", 9)


def test_a_backend_that_cannot_publish_a_type_skips_only_that_topic(ep):
    class NoStrings(MemoryPublisher):
        def create(self, topic, msgtype, qos):
            return None if topic == "/b" else super().create(topic, msgtype, qos)

    pub = NoStrings()
    player = Player(ep, pub, ReplayOptions(rate=20.0))
    stats = player.play()
    assert player.unpublished == ["/b"] and player.total == 9
    assert stats.published == {"/a": 9}


# ----------------------------------------------------------------------------- /clock
def test_clock_carries_the_recorded_time_at_the_requested_rate(ep):
    pub, player = play(ep, clock_hz=100.0)
    assert pub.created[CLOCK_TOPIC] == (CLOCK_TYPE, CLOCK_QOS)
    clocks = [deserialize(d, CLOCK_TYPE).clock for t, d, _ in pub.sent if t == CLOCK_TOPIC]
    ns = [c.sec * 1_000_000_000 + c.nanosec for c in clocks]
    assert 30 <= len(ns) <= 45                     # 0.4 s at 100 Hz
    assert ns == sorted(ns) and T0 <= ns[0] and ns[-1] <= T0 + 400 * MS
    # each clock lies between the messages published around it
    last_msg = T0
    for t, d, _ in pub.sent:
        if t == CLOCK_TOPIC:
            c = deserialize(d, CLOCK_TYPE).clock
            assert c.sec * 1_000_000_000 + c.nanosec >= last_msg
        else:
            last_msg = T0 + int(label(d)[1:]) * MS


def test_a_player_started_paused_holds_its_clock_at_the_start(ep):
    pub = MemoryPublisher()
    player = Player(ep, pub, ReplayOptions(start_paused=True, clock_hz=100.0))
    player.start()

    def clock_ns() -> list[int]:
        return [c.sec * 1_000_000_000 + c.nanosec for c in (
            deserialize(d, CLOCK_TYPE).clock for t, d, _ in list(pub.sent) if t == CLOCK_TOPIC)]

    deadline = time.monotonic() + 5
    while len(clock_ns()) < 10 and time.monotonic() < deadline:   # 0.1 s of /clock while paused
        time.sleep(0.01)
    ns = clock_ns()
    player.stop()
    player.wait(5)
    assert ns and set(ns) == {T0}       # not run on by the read-ahead's start-up time


def test_a_backend_with_publish_clock_gets_the_clock_directly(ep):
    class WithClock(MemoryPublisher):
        def __init__(self):
            super().__init__()
            self.clock: list[int] = []

        def publish_clock(self, ns: int) -> None:
            self.clock.append(ns)

    pub = WithClock()
    Player(ep, pub, ReplayOptions(rate=2.0, clock_hz=50.0)).play()
    assert CLOCK_TOPIC not in pub.created
    assert 5 <= len(pub.clock) <= 15 and pub.clock == sorted(pub.clock)


# ----------------------------------------------------------------------------- progress, stats
def test_progress_reports_time_index_and_total(ep):
    seen: list[tuple[float, int, int]] = []
    Player(ep, MemoryPublisher(), ReplayOptions(rate=4.0, progress_every_s=0.0),
           on_progress=lambda t, i, n: seen.append((t, i, n))).play()
    assert seen[-1] == (pytest.approx(0.4), 13, 13)
    assert [i for _, i, _ in seen] == sorted(i for _, i, _ in seen)


def test_jitter_percentiles():
    j = JitterStats()
    for us in range(1, 101):            # 1..100 us
        j.add(us * 1000)
    j.add(250 * MS)                     # one very late message, beyond the histogram
    s = j.summary()
    assert s["count"] == 101
    assert s["p50"] == pytest.approx(0.051, abs=0.002)
    assert s["p99"] == pytest.approx(0.100, abs=0.002)
    assert s["max"] == pytest.approx(250.0)


# ----------------------------------------------------------------------------- errors, CLI
def test_bad_selections_say_what_is_wrong(tmp_path, ep):
    with pytest.raises(ReplayError, match="does not exist"):
        Timeline.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReplayError, match="no finished episodes"):
        Timeline.open(tmp_path / "empty")
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file")
    with pytest.raises(ReplayError, match="junk.mcap: cannot read as MCAP"):
        Timeline.open(tmp_path / "junk.mcap")
    with pytest.raises(ReplayError, match="rate must be positive"):
        ReplayOptions(rate=0)


def test_replay_to_ros2_without_rclpy_fails_with_one_clear_line(ep):
    pytest.importorskip("mcap")
    try:
        import rclpy  # noqa: F401
        pytest.skip("rclpy is installed here")
    except ImportError:
        pass
    r = subprocess.run([sys.executable, "-m", "demofab.cli", "replay", str(ep), "--to", "ros2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs rclpy" in lines[0] and "ROS 2 environment" in lines[0]
