"""Replay into Foxglove, checked with a client written here against the Foxglove WebSocket
protocol (subprotocol ``foxglove.sdk.v1``, what foxglove-sdk speaks): serverInfo and
advertise, subscribe, message data with the recorded CDR bytes at the recorded times,
playback control (seek, pause, speed), the Log panel's entries, the robot description."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcap.reader import make_reader

pytest.importorskip("foxglove")
pytest.importorskip("websockets")
from websockets.sync.client import ClientConnection, connect

from recorder.contract import EVENTS_TOPIC, ROBOT_DESCRIPTION
from recorder.replay import ReplayOptions
from recorder.replay.foxglove import (
    LOG_TOPIC,
    ROBOT_DESCRIPTION_TOPIC,
    ROBOT_DESCRIPTION_URI,
    FoxgloveReplay,
    layout_path,
)
from recorder.types import deserialize

ROOT = Path(__file__).resolve().parents[2]
SUBPROTOCOL = "foxglove.sdk.v1"
PLAY, PAUSE = 0, 1
PLAYING, PAUSED, BUFFERING, ENDED = 0, 1, 2, 3
JOINTS = "/joint_states"
HEAD = "/camera/head/image_raw/compressed"


# ---------------------------------------------------------------- a protocol client
class Client:
    """Connects, keeps every frame the server sends (parsed), and sends the client's
    messages: subscribe, playback control requests (binary op 3) and fetchAsset."""

    def __init__(self, url: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(url, subprotocols=[SUBPROTOCOL], max_size=None, open_timeout=5))
        assert self.ws.subprotocol == SUBPROTOCOL
        self.info = json.loads(self.ws.recv(5))
        assert self.info["op"] == "serverInfo"
        adv = json.loads(self.ws.recv(5))
        assert adv["op"] == "advertise"
        self.channels = {c["topic"]: c for c in adv["channels"]}
        self.subs: dict[int, str] = {}
        self.messages: list[tuple[str, int, bytes, int]] = []   # topic, log time, data, recv ns
        self.states: list[tuple[int, int, float, bool, str]] = []
        self.times: list[int] = []
        self.assets: dict[int, tuple[int, str, bytes]] = {}
        self.other: list[Any] = []
        self._lock = threading.RLock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                frame = self.ws.recv()
            except Exception:  # noqa: BLE001 - closed
                return
            now = time.perf_counter_ns()
            with self._lock:
                if isinstance(frame, str):
                    self.other.append(json.loads(frame))
                elif frame[0] == 1:        # message data: sub id, log time, payload
                    sub, log_time = struct.unpack_from("<IQ", frame, 1)
                    self.messages.append((self.subs[sub], log_time, bytes(frame[13:]), now))
                elif frame[0] == 2:        # time
                    self.times.append(struct.unpack_from("<Q", frame, 1)[0])
                elif frame[0] == 4:        # fetch asset response
                    rid, status, n = struct.unpack_from("<IBI", frame, 1)
                    err = bytes(frame[10:10 + n]).decode()
                    self.assets[rid] = (status, err, bytes(frame[10 + n:]))
                elif frame[0] == 5:        # playback state
                    status, t, speed, seek, n = struct.unpack_from("<BQfBI", frame, 1)
                    rid = bytes(frame[19:19 + n]).decode()
                    self.states.append((status, t, speed, bool(seek), rid))
                else:
                    self.other.append(frame)

    def subscribe(self, *topics: str) -> None:
        subs = []
        for topic in topics:
            sid = len(self.subs) + 1
            self.subs[sid] = topic
            subs.append({"id": sid, "channelId": self.channels[topic]["id"]})
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))

    def control(self, command: int, speed: float = 1.0, seek: int | None = None,
                request_id: str = "") -> tuple[int, int, float, bool, str]:
        """Send a playback control request; the state that answers it."""
        rid = request_id.encode()
        self.ws.send(struct.pack("<BBfBQI", 3, command, speed, seek is not None, seek or 0,
                                 len(rid)) + rid)
        return self.wait(lambda: next((s for s in self.states if s[4] == request_id), None))

    def fetch_asset(self, uri: str, request_id: int) -> tuple[int, str, bytes]:
        self.ws.send(json.dumps({"op": "fetchAsset", "uri": uri, "requestId": request_id}))
        return self.wait(lambda: self.assets.get(request_id))

    def received(self, topic: str) -> list[tuple[int, bytes, int]]:
        with self._lock:
            return [(t, d, r) for top, t, d, r in self.messages if top == topic]

    def wait(self, what: Callable[[], Any], timeout: float = 10.0) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                got = what()
            if got:
                return got
            time.sleep(0.01)
        raise AssertionError(f"nothing came within {timeout} s")

    def ended(self) -> bool:
        return any(s[0] == ENDED for s in self.states)

    def close(self) -> None:
        self._stack.close()
        self._thread.join(5)


def recorded_messages(session: Path, topic: str) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for f in sorted(session.glob("episode_*.mcap")):
        with open(f, "rb") as fh:
            out += [(m.log_time, bytes(m.data)) for _, _, m in
                    make_reader(fh).iter_messages(topics=[topic], log_time_order=True)]
    return out


def log_lines(client: Client) -> list[str]:
    """The ``message`` field (3) of each foxglove.Log (protobuf) on the log channel."""
    lines = []
    for _, data, _ in client.received(LOG_TOPIC):
        i = 0
        while i < len(data):
            key = data[i]
            i += 1
            field, wire = key >> 3, key & 7
            if wire == 0:
                while data[i] & 0x80:
                    i += 1
                i += 1
                continue
            n, shift = 0, 0
            while True:
                b = data[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if field == 3:
                lines.append(data[i:i + n].decode())
            i += n
    return lines


@pytest.fixture
def session(recorded: Any) -> Path:
    return Path(recorded[0].dir)


@pytest.fixture
def served(session: Path):
    with FoxgloveReplay(session, ReplayOptions(rate=1.0), port=0) as replay:
        client = Client(replay.url)
        yield replay, client
        client.close()


# --------------------------------------------------------------------------- the tests
def test_the_app_is_told_the_recorded_time_range_and_every_topic_with_its_recorded_schema(
        served: Any, session: Path) -> None:
    replay, client = served
    assert {"playbackControl", "time", "assets"} <= set(client.info["capabilities"])
    start = client.info["dataStartTime"]
    end = client.info["dataEndTime"]
    first = last = None
    schemas = {}
    for f in sorted(session.glob("episode_*.mcap")):
        with open(f, "rb") as fh:
            summary = make_reader(fh).get_summary()
        assert summary is not None and summary.statistics is not None
        first = summary.statistics.message_start_time if first is None else first
        last = summary.statistics.message_end_time
        for ch in summary.channels.values():
            sch = summary.schemas[ch.schema_id]
            schemas[ch.topic] = (sch.name, sch.encoding, sch.data.decode())
    assert start["sec"] * 10**9 + start["nsec"] == first
    assert end["sec"] * 10**9 + end["nsec"] == last
    for topic, (name, encoding, text) in schemas.items():
        ch = client.channels[topic]
        assert (ch["encoding"], ch["schemaName"], ch["schemaEncoding"], ch["schema"]) == \
            ("cdr", name, encoding, text), topic
    assert client.channels[LOG_TOPIC]["schemaName"] == "foxglove.Log"
    assert client.channels[ROBOT_DESCRIPTION_TOPIC]["schemaName"] == "std_msgs/msg/String"


def test_subscribed_topics_carry_the_recorded_bytes_at_the_recorded_log_times(
        served: Any, session: Path) -> None:
    replay, client = served
    client.subscribe(JOINTS, HEAD, EVENTS_TOPIC, "/tf")
    state = client.control(PLAY, speed=2.0, request_id="go")
    assert state[0] == PLAYING and state[2] == 2.0
    client.wait(client.ended)
    time.sleep(0.2)
    for topic in (JOINTS, HEAD, EVENTS_TOPIC, "/tf"):
        got = [(t, d) for t, d, _ in client.received(topic)]
        assert got == recorded_messages(session, topic), topic
    # the playback time came with it, in recorded time, rising
    assert len(client.times) > 20 and client.times == sorted(client.times)


def test_a_seek_plays_on_from_the_seek_time_and_says_so(served: Any, session: Path) -> None:
    replay, client = served
    client.subscribe(JOINTS, LOG_TOPIC)
    rec = recorded_messages(session, JOINTS)
    # into episode 1, 0.3 s after its start, while paused
    ep1 = replay.timeline.episodes[1]
    target = ep1.start_ns + 300_000_000
    state = client.control(PAUSE, seek=target, request_id="seek-1")
    assert state == (PAUSED, target, 1.0, True, "seek-1")
    time.sleep(0.3)
    assert client.received(JOINTS) == []              # paused: nothing yet
    client.control(PLAY, request_id="play-1")
    client.wait(lambda: len(client.received(JOINTS)) >= 100)
    got = [(t, d) for t, d, _ in client.received(JOINTS)]
    after = [m for m in rec if m[0] >= target]
    assert got == after[:len(got)]
    # back into episode 0 while playing: the stream starts again there, in order
    back = replay.timeline.episodes[0].start_ns + 100_000_000
    n = len(client.received(JOINTS))
    state = client.control(PLAY, seek=back, request_id="seek-2")
    assert state[:4] == (PLAYING, back, 1.0, True)
    client.wait(lambda: len(client.received(JOINTS)) >= n + 100)
    rest = [(t, d) for t, d, _ in client.received(JOINTS)[n:]]
    expected = [m for m in rec if m[0] >= back]
    k = rest.index(expected[0])
    assert k < 10                                      # only what was already on the way
    assert rest[k:] == expected[:len(rest) - k]
    assert any("episode 0 playing from 0.1" in line for line in log_lines(client))


def test_pause_stops_the_messages_and_play_carries_on_where_it_paused(
        served: Any, session: Path) -> None:
    replay, client = served
    client.subscribe(JOINTS)
    client.control(PLAY, request_id="p1")
    client.wait(lambda: len(client.received(JOINTS)) >= 50)
    state = client.control(PAUSE, request_id="p2")
    assert state[0] == PAUSED and not state[3]
    time.sleep(0.2)                                    # what was on the way arrives
    n = len(client.received(JOINTS))
    time.sleep(0.5)
    assert len(client.received(JOINTS)) == n           # nothing while paused
    client.control(PLAY, request_id="p3")
    client.wait(lambda: len(client.received(JOINTS)) >= n + 50)
    got = [(t, d) for t, d, _ in client.received(JOINTS)]
    assert got == recorded_messages(session, JOINTS)[:len(got)]   # no gap, no repeat


def _slope(msgs: list[tuple[int, bytes, int]]) -> float:
    """Recorded seconds per wall second (least squares over the messages)."""
    xs = [r / 1e9 for _, _, r in msgs]
    ys = [t / 1e9 for t, _, _ in msgs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / \
        sum((x - mx) ** 2 for x in xs)


def test_the_speed_the_app_asks_for_sets_the_pace(served: Any) -> None:
    replay, client = served
    client.subscribe(JOINTS)
    end0 = replay.timeline.episodes[0].end_ns     # within episode 0: no reset gap in between
    client.control(PLAY, speed=1.0, request_id="r1")
    client.wait(lambda: len(client.received(JOINTS)) >= 150)     # 0.3 s at 500 Hz
    state = client.control(PLAY, speed=3.0, request_id="r3")
    n = len(client.received(JOINTS))
    assert state[0] == PLAYING and state[2] == 3.0
    client.wait(lambda: client.received(JOINTS)[-1][0] > end0)
    msgs = client.received(JOINTS)
    slow = _slope(msgs[10:n])
    fast = _slope([m for m in msgs[n + 10:] if m[0] <= end0])
    # recorded seconds per wall second: about 1, then about 3 (a loaded machine blurs it)
    assert 0.6 < slow < 1.6
    assert 2.0 < fast / slow < 4.5
    assert replay.player.rate == 3.0


def test_episode_starts_and_ends_and_the_recorded_events_show_in_the_log(
        served: Any, session: Path) -> None:
    replay, client = served
    client.subscribe(LOG_TOPIC)
    client.control(PLAY, speed=4.0, request_id="go")
    client.wait(client.ended)
    time.sleep(0.2)
    lines = log_lines(client)
    wanted = ["episode 0 start (episode_0000.mcap): task 'stack cups', operator op7",
              "episode 0 START: task 'stack cups', operator op7",
              "episode 0 STOP: success",
              "episode 0 end (episode_0000.mcap): task 'stack cups', operator op7, outcome success",
              "episode 1 start (episode_0001.mcap): task 'stack cups', operator op7",
              "episode 1 START: task 'stack cups', operator op7",
              "episode 1 STOP: success",
              "episode 1 end (episode_0001.mcap): task 'stack cups', operator op7, outcome success"]
    assert lines == wanted
    # each at its recorded time: the events' log times are the recorded ones
    ev_times = [t for t, _ in recorded_messages(session, EVENTS_TOPIC)]
    log_times = [t for t, _, _ in client.received(LOG_TOPIC)]
    assert [log_times[i] for i in (1, 2, 5, 6)] == ev_times


def test_after_the_end_play_starts_over_from_the_start(served: Any) -> None:
    replay, client = served
    client.subscribe(JOINTS)
    client.control(PLAY, speed=4.0, request_id="a")
    client.wait(client.ended)
    n = len(client.received(JOINTS))
    state = client.control(PLAY, speed=4.0, request_id="again")
    assert state[0] == PLAYING and state[1] == replay.time_range[0]
    client.wait(lambda: len(client.received(JOINTS)) >= n + 50)
    assert client.received(JOINTS)[n][0] == client.received(JOINTS)[0][0]


def test_the_robot_description_is_an_asset_and_a_latched_topic_sent_again_after_a_seek(
        served: Any, session: Path) -> None:
    replay, client = served
    with open(session / "episode_0000.mcap", "rb") as fh:
        urdf = next(a.data for a in make_reader(fh).iter_attachments() if a.name == ROBOT_DESCRIPTION)
    status, err, data = client.fetch_asset(ROBOT_DESCRIPTION_URI, 1)
    assert (status, data) == (0, urdf)
    status, err, data = client.fetch_asset("package://demofab/meshes/nothing.stl", 2)
    assert status == 1 and data == b""
    client.subscribe(ROBOT_DESCRIPTION_TOPIC)          # a late subscriber gets it
    first = client.wait(lambda: client.received(ROBOT_DESCRIPTION_TOPIC))
    assert deserialize(first[0][1], "std_msgs/msg/String").data == urdf.decode()
    target = replay.timeline.episodes[1].start_ns
    client.control(PAUSE, seek=target, request_id="s")
    again = client.wait(lambda: client.received(ROBOT_DESCRIPTION_TOPIC)[1:])
    assert again[0][0] == target and again[0][1] == first[0][1]


def test_the_server_listens_on_127_0_0_1_only_by_default(session: Path) -> None:
    with FoxgloveReplay(session, port=0) as replay:
        assert replay.url == f"ws://127.0.0.1:{replay.port}"
        with socket.create_connection(("127.0.0.1", replay.port), timeout=2):
            pass
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", replay.port), timeout=2).close()


def test_a_taken_port_is_a_replay_error_naming_it(session: Path) -> None:
    from recorder.replay import ReplayError

    with FoxgloveReplay(session, port=0) as replay, \
            pytest.raises(ReplayError, match=f"cannot serve Foxglove on 127.0.0.1:{replay.port}"):
        FoxgloveReplay(session, port=replay.port)


def test_without_foxglove_sdk_the_product_imports_and_the_target_says_what_to_install() -> None:
    code = ("import sys; sys.modules['foxglove'] = None\n"
            "import recorder.cli, recorder.replay\n"
            "from recorder.replay import make_publisher, publisher_names, ReplayError\n"
            "assert 'foxglove' in publisher_names()\n"
            "try:\n    make_publisher('foxglove')\n"
            "except ReplayError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pip install 'demofab[view]'" in r.stdout


def test_demofab_replay_to_foxglove_prints_the_url_and_layout_and_plays_when_the_app_connects(
        session: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "demofab.cli", "replay", str(session), "--to",
                             "foxglove", "--port", "0", "--json"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        layout = proc.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:") and Path(layout) == layout_path()
        client = Client(url)
        client.subscribe(JOINTS)
        client.wait(lambda: len(client.received(JOINTS)) >= 20)
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["messages"] > 0
    assert "Foxglove WebSocket" in err


def test_the_humanoid_layout_shows_the_three_cameras_the_joints_the_robot_and_the_log(
        humanoid: Any) -> None:
    layout = json.loads(layout_path("humanoid").read_text())
    panels = layout["configById"]
    images = {c["imageMode"]["imageTopic"] for k, c in panels.items() if k.startswith("Image!")}
    assert images == {t.topic for t in humanoid.topics if t.role == "camera"}
    names = [j.name for j in humanoid.robot.joints]
    plots = [p for k, c in panels.items() if k.startswith("Plot!") for p in c["paths"]]
    assert plots
    for p in plots:   # each curve is the joint its label names
        index = int(p["value"].removeprefix(f"{JOINTS}.position[").removesuffix("]"))
        assert names[index].removesuffix("_joint") == p["label"]
    urdf = [la for k, c in panels.items() if k.startswith("3D!") for la in c["layers"].values()
            if la["layerId"] == "foxglove.Urdf"]
    assert urdf and urdf[0]["topic"] == ROBOT_DESCRIPTION_TOPIC
    assert any(c.get("topicToRender") == LOG_TOPIC for k, c in panels.items() if k.startswith("Log!"))

    def leaves(node: Any) -> list[str]:
        return [node] if isinstance(node, str) else leaves(node["first"]) + leaves(node["second"])

    assert sorted(leaves(layout["layout"])) == sorted(panels)
    assert os.path.basename(layout_path()) == "humanoid.json"


def test_the_registry_backend_serves_a_timeline_for_the_foxglove_player(session: Path) -> None:
    from recorder.replay import ReplayError, make_publisher
    from recorder.replay.foxglove import FoxglovePlayer, FoxglovePublisher

    pub = make_publisher("foxglove", port=0)
    assert isinstance(pub, FoxglovePublisher)
    player = FoxglovePlayer(session, pub, ReplayOptions(rate=4.0, episodes=(1,)))
    with pytest.raises(ReplayError, match=r"serve\(timeline\) must come before"):
        player.prepare()
    pub.serve(player.timeline)
    try:
        player.prepare()
        client = Client(pub.url)
        client.subscribe(JOINTS)
        time.sleep(0.3)
        stats = player.play()
        time.sleep(0.3)
        got = [(t, d) for t, d, _ in client.received(JOINTS)]
        ep1 = [m for m in recorded_messages(session, JOINTS)
               if m[0] >= player.timeline.episodes[0].start_ns]
        assert got == ep1 and stats.published[JOINTS] == len(ep1)
        client.close()
    finally:
        pub.close()


def test_a_loop_tells_the_app_that_time_went_back_as_a_seek(session: Path) -> None:
    with FoxgloveReplay(session, ReplayOptions(rate=4.0, loop=True, episodes=(0,)),
                        port=0) as replay:
        client = Client(replay.url)
        client.subscribe(JOINTS, LOG_TOPIC)
        rec = [m for m in recorded_messages(session, JOINTS)
               if m[0] <= replay.timeline.episodes[0].end_ns]
        client.control(PLAY, speed=4.0, request_id="go")
        client.wait(lambda: len(client.received(JOINTS)) >= len(rec) + 50)
        client.control(PAUSE, request_id="stop")
        jumps = [s for s in client.states if s[3] and s[4] == ""]
        assert jumps and jumps[0][1] == replay.time_range[0]   # did_seek, back to the start
        got = [(t, d) for t, d, _ in client.received(JOINTS)]
        assert got[:len(rec)] == rec and got[len(rec):] == rec[:len(got) - len(rec)]
        starts = [ln for ln in log_lines(client) if ln.startswith("episode 0 start")]
        ends = [ln for ln in log_lines(client) if ln.startswith("episode 0 end")]
        assert len(starts) == 2 and len(ends) == 1          # each pass starts; the first ended
        client.close()


def _served_connections_nodelay(port: int) -> list[bool]:
    """TCP_NODELAY of each connection this process serves on ``port`` (Linux)."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        with sock:
            try:
                if sock.family in (socket.AF_INET, socket.AF_INET6) and \
                        sock.type == socket.SOCK_STREAM and sock.getsockname()[1] == port:
                    sock.getpeername()
                    out.append(bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
            except OSError:
                continue
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_a_client_that_subscribes_gets_its_messages_without_nagle_delays(session: Path) -> None:
    with FoxgloveReplay(session, port=0) as replay:
        client = Client(replay.url)
        assert _served_connections_nodelay(replay.port) == [False]   # as the SDK accepts it
        client.subscribe(JOINTS)
        client.wait(lambda: _served_connections_nodelay(replay.port) == [True])
        client.close()
