"""The DDS path without ROS 2: CDR padding, QoS mapping, the DDS source and replay backend.

Tests that put traffic on DDS run inside a loopback-only network namespace: outside one,
the test re-runs itself under ``tools/netns-run.sh`` (root and ``unshare`` needed; skipped
with the reason otherwise). Peers are separate processes, so samples cross the loopback
network as they would between a robot and the recorder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mcap.reader import make_reader

from recorder.control import Plan, Recorder
from recorder.profile import EVENTS_TOPIC, Profile, Qos, load_profile
from recorder.session import Session
from recorder.sources.synthetic import RigOptions, SyntheticRig
from recorder.types import serialize, typestore
from tests.until import Until

from .conftest import T0, record

ROOT = Path(__file__).resolve().parents[2]
NETNS = ROOT / "tools" / "netns-run.sh"
cyclonedds = pytest.importorskip("cyclonedds", reason="the DDS extra is not installed "
                                 "(pip install 'demofab[dds]')")

from recorder.dds import (  # noqa: E402
    CdrEnd,
    CdrError,
    DdsError,
    DdsPublisher,
    DdsTypes,
    dds_qos,
    dds_type_name,
    wait_matched,
    wire_topic,
)
from recorder.replay import Player, ReplayOptions  # noqa: E402
from recorder.sources.dds import DdsSource  # noqa: E402


def _why_no_netns() -> str | None:
    if os.geteuid() != 0:
        return "DDS tests run in a private network namespace: need root for unshare --net"
    if shutil.which("unshare") is None:
        return "DDS tests run in a private network namespace: 'unshare' (util-linux) missing"
    return None


def isolated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run the test body inside tools/netns-run.sh (a pytest subprocess), never on a real
    network interface."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if os.environ.get("DEMOFAB_NETNS") == "1":
            return fn(*args, **kwargs)
        why = _why_no_netns()
        if why:
            pytest.skip(why)
        node = f"{Path(__file__).relative_to(ROOT)}::{fn.__name__}"
        r = subprocess.run([str(NETNS), sys.executable, "-m", "pytest", "-q", "-p",
                            "no:cacheprovider", "-W", "ignore::pytest.PytestUnknownMarkWarning",
                            node], cwd=ROOT, capture_output=True, text=True, timeout=600)
        out = r.stdout[-8000:] + r.stderr[-3000:]
        if r.returncode != 0:
            pytest.fail(f"failed inside the network namespace:\n{out}", pytrace=False)
        if " passed" not in r.stdout:
            pytest.skip(f"skipped inside the network namespace: {out[-500:]}")

    return wrapper


def all_reliable(profile: Profile) -> Profile:
    """The profile with every topic reliable: lossless by contract, so counts are exact."""
    return replace(profile, topics=tuple(replace(t, qos=replace(t.qos, reliability="reliable"))
                                         for t in profile.topics))


def pad4(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def in_order(got: list, sent: list) -> bool:
    """``got`` is ``sent`` with some items left out, none reordered or changed."""
    it = iter(sent)
    return all(any(g == s for s in it) for g in got)


def sha(b: bytes) -> str:
    return hashlib.sha1(b).hexdigest()


# ----------------------------------------------------------------------------- no network
def test_names_on_the_wire():
    assert wire_topic("/joint_states") == "rt/joint_states"
    assert dds_type_name("sensor_msgs/msg/JointState") == "sensor_msgs::msg::dds_::JointState_"
    t = DdsTypes().get("demofab_msgs/msg/EpisodeEvent")
    assert t.__idl_typename__ == "demofab_msgs::msg::dds_::EpisodeEvent_"


@pytest.mark.parametrize("extra", [0, 1, 2, 3])
def test_cyclone_padding_is_stripped_to_the_exact_cdr_length(extra):
    T = typestore().types
    msg = T["sensor_msgs/msg/CompressedImage"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=2),
                                        frame_id="cam"),
        format="jpeg", data=__import__("numpy").arange(1000 + extra, dtype="uint8"))
    data = serialize(msg, "sensor_msgs/msg/CompressedImage")
    padded = data + bytes(-len(data) % 4)
    trim = CdrEnd().trimmer("sensor_msgs/msg/CompressedImage")
    assert trim(padded) == data
    assert trim(data) == data
    junk = data + b"\xd9\x07\x13"[:-len(data) % 4] if len(data) % 4 else data
    assert CdrEnd().zeroer("sensor_msgs/msg/CompressedImage")(junk) == padded


def test_types_that_always_end_aligned_are_not_walked(humanoid):
    ends = CdrEnd()
    rig = SyntheticRig(humanoid, RigOptions(seed=1, start_ns=T0))
    walked = {t.type for t in humanoid.topics if ends.plan(t.type) is not None}
    assert walked == {"sensor_msgs/msg/CompressedImage", "demofab_msgs/msg/EpisodeEvent"}
    for i, m in enumerate(rig.messages()):   # and every type trims to itself
        typ = humanoid.topic(m.topic).type
        assert ends.trimmer(typ)(m.data + bytes(-len(m.data) % 4)) == m.data
        if i > 400:
            break


def test_a_truncated_message_is_an_error_not_a_short_record():
    T = typestore().types
    data = serialize(T["std_msgs/msg/String"](data="hello"), "std_msgs/msg/String")
    with pytest.raises(CdrError, match="11 bytes is truncated"):
        CdrEnd().trimmer("std_msgs/msg/String")(data[:-3])
    with pytest.raises(CdrError, match="6 bytes is truncated"):   # cut inside the length
        CdrEnd().trimmer("std_msgs/msg/String")(data[:6])


def test_big_endian_messages_are_trimmed_too():
    store = typestore()
    T = store.types
    msg = T["std_msgs/msg/String"](data="hello")
    data = bytes(store.serialize_cdr(msg, "std_msgs/msg/String", little_endian=False))
    assert data[1] == 0
    assert CdrEnd().trimmer("std_msgs/msg/String")(data + bytes(-len(data) % 4)) == data


def test_an_unknown_type_is_named_in_the_error():
    with pytest.raises(CdrError, match="acme_msgs/msg/Nope"):
        CdrEnd().plan("acme_msgs/msg/Nope")
    with pytest.raises(DdsError, match="acme_msgs/msg/Nope"):
        DdsTypes().get("acme_msgs/msg/Nope")


def test_without_cyclonedds_the_package_imports_and_says_what_to_install():
    code = ("import sys; sys.modules['cyclonedds'] = None\n"
            "import recorder.dds as dds\n"
            "from recorder.sources import make_source\n"
            "from recorder.profile import load_profile\n"
            "for make in (dds.DdsPublisher, lambda: make_source('dds', load_profile('humanoid'))):\n"
            "    try:\n"
            "        make()\n"
            "    except Exception as e:\n"
            "        print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    publisher, source = r.stdout.strip().splitlines()
    assert publisher.startswith("DdsError") and "pip install 'demofab[dds]'" in publisher
    assert source.startswith("SourceError") and "pip install 'demofab[dds]'" in source


def test_every_public_name_of_the_dds_package_imports():
    import recorder.dds as dds

    assert set(dds.__all__) >= {"CdrEnd", "DdsPublisher", "DdsTypes", "dds_qos", "raw_reader",
                                "raw_writer", "take_raw", "write_raw", "wait_matched"}
    for name in dds.__all__:
        assert getattr(dds, name) is not None, name


def test_qos_maps_the_ros_profile_and_carries_the_type_hash():
    from cyclonedds.core import Policy

    q = dds_qos(Qos(depth=10), type_hash="RIHS01_ab")
    assert isinstance(q[Policy.Reliability], Policy.Reliability.Reliable)
    assert q[Policy.History].depth == 1000          # deep history for reliable topics
    assert q[Policy.Userdata].data == b"typehash=RIHS01_ab;"
    be = dds_qos(Qos(reliability="best_effort", depth=5))
    assert be[Policy.Reliability] == Policy.Reliability.BestEffort
    assert be[Policy.History].depth == 5
    tl = dds_qos(Qos(durability="transient_local", depth=100))
    assert tl[Policy.Durability] == Policy.Durability.TransientLocal
    assert tl[Policy.History].depth == 100


# ----------------------------------------------------------------------------- peers
PUBLISHER = r"""
import sys, time
from dataclasses import replace
from cyclonedds.domain import DomainParticipant
from recorder.dds import DdsTypes, raw_writer, write_raw, wait_matched
from recorder.profile import EVENTS_TOPIC, load_profile
from recorder.sources.synthetic import RigOptions, SyntheticRig

seconds, reliable, start = float(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
prof = load_profile("humanoid")
if reliable:
    prof = replace(prof, topics=tuple(replace(t, qos=replace(t.qos, reliability="reliable"))
                                      for t in prof.topics))
dp = DomainParticipant(0)
types = DdsTypes()
writers = {t.topic: raw_writer(dp, t.topic, t.type, t.qos, types)
           for t in prof.topics if t.topic != EVENTS_TOPIC}
print("ready", flush=True)
sys.stdin.readline()
wait_on = sys.argv[4].split(",") if len(sys.argv) > 4 else list(writers)
assert wait_matched([writers[t] for t in wait_on], 1, 20), "publisher: readers not matched"
n = 0
for m in SyntheticRig(prof, RigOptions(seed=7, start_ns=start, realtime=True)).messages():
    if m.log_time >= start + seconds * 1e9:
        break
    write_raw(writers[m.topic], m.data)
    n += 1
print(n, flush=True)
sys.stdin.readline()   # stay up for retransmits until the parent is done
"""


def sent_by_publisher(profile: Profile, seconds: float, start: int) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for m in SyntheticRig(profile, RigOptions(seed=7, start_ns=start)).messages():
        if m.log_time >= start + seconds * 1e9:
            break
        out.setdefault(m.topic, []).append(m.data)
    return out


def spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def episode_messages(path: Path) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    with open(path, "rb") as f:
        for _, ch, m in make_reader(f).iter_messages(log_time_order=True):
            out.setdefault(ch.topic, []).append(m.data)
    return out


@pytest.mark.dds
@isolated
def test_dds_source_records_exactly_the_bytes_a_cyclonedds_publisher_sent(tmp_path):
    prof = all_reliable(load_profile("humanoid"))
    start = time.time_ns()
    source = DdsSource(prof)
    pub = spawn(PUBLISHER, "1.0", "1", str(start))
    try:
        assert pub.stdout.readline().strip() == "ready"
        expected = sent_by_publisher(prof, 1.0, start)
        assert wait_matched(source.entities, 1, 20), "DDS source did not match the publisher"
        pub.stdin.write("go\n")
        pub.stdin.flush()
        n = sum(map(len, expected.values()))
        session = Session(tmp_path / "session", prof)
        feed = Until(source, n)
        finished = Recorder(session, feed, Plan(episodes=1)).run(handle_signals=False)
        assert int(pub.stdout.readline()) == n
    finally:
        pub.stdin.write("done\n")
        pub.stdin.flush()
        pub.wait(20)
    got = episode_messages(session.dir / finished[0].file)
    got.pop(EVENTS_TOPIC)
    assert {t: len(v) for t, v in got.items()} == {t: len(v) for t, v in expected.items()}
    for topic in expected:   # byte for byte, padded to 4 with zeros like an rclpy recorder
        assert got[topic] == [pad4(d) for d in expected[topic]], topic
    assert any(pad4(d) != d for d in expected["/camera/head/image_raw/compressed"])


@pytest.mark.dds
@isolated
def test_best_effort_topics_match_and_trimming_gives_the_serialized_bytes(tmp_path):
    prof = load_profile("humanoid")      # imu and cameras are best effort here
    start = time.time_ns()
    topics = ["/imu", "/camera/head/image_raw/compressed"]
    source = DdsSource(prof, topics=topics, padding="trim")
    pub = spawn(PUBLISHER, "0.5", "0", str(start), ",".join(topics))
    try:
        assert pub.stdout.readline().strip() == "ready"
        expected = sent_by_publisher(prof, 0.5, start)
        assert wait_matched(source.entities, 1, 20)
        pub.stdin.write("go\n")
        pub.stdin.flush()
        want = len(expected["/imu"]) + len(expected["/camera/head/image_raw/compressed"])
        got: dict[str, list[bytes]] = {}
        for m in Until(source, want, idle_s=2.0).messages():
            if m is not None:
                got.setdefault(m.topic, []).append(m.data)
    finally:
        pub.stdin.write("done\n")
        pub.stdin.flush()
        pub.wait(20)
    for topic in ("/imu", "/camera/head/image_raw/compressed"):
        sent = expected[topic]
        assert len(got[topic]) >= 0.95 * len(sent), topic   # best effort: loss allowed
        # in order, and trimmed to the bytes the publisher serialized
        assert in_order(got[topic], sent), topic


SUBSCRIBER = r"""
import json, sys, time
from cyclonedds.core import ReadCondition, WaitSet
from cyclonedds.domain import DomainParticipant
from recorder.dds import CdrEnd, DdsTypes, any_state, raw_reader, take_raw, wait_matched
from recorder.profile import load_profile
import hashlib

out = sys.argv[1]
prof = load_profile("humanoid")
dp = DomainParticipant(0)
types, ends = DdsTypes(), CdrEnd()
ws = WaitSet(dp)
readers = []
for t in prof.topics:
    r = raw_reader(dp, t.topic, t.type, t.qos, types)
    ws.attach(ReadCondition(r, any_state()))
    readers.append((t.topic, r, ends.trimmer(t.type)))
print("ready", flush=True)
assert wait_matched([r for _, r, _ in readers], 1, 20), "subscriber: writers not matched"
print("matched", flush=True)
got = {t: [] for t, _, _ in readers}
last = None
while last is None or time.monotonic() - last < 2.0:
    ws.wait(100_000_000)
    for topic, r, trim in readers:
        for d in take_raw(r):
            now = time.monotonic_ns()
            got[topic].append([now, hashlib.sha1(trim(d)).hexdigest()])  # as recorded
            last = time.monotonic()
json.dump(got, open(out, "w"))
print("done", flush=True)
"""


@pytest.mark.dds
@isolated
def test_dds_replay_delivers_every_message_in_order_with_the_recorded_spacing(tmp_path, humanoid):
    session, _, finished = record(tmp_path / "s", humanoid, episodes=1, seconds=1.0)
    recorded = episode_messages(session.dir / finished[0].file)
    with open(session.dir / finished[0].file, "rb") as f:
        log = [m.log_time for _, c, m in make_reader(f).iter_messages(topics=["/joint_states"])]
    out = tmp_path / "received.json"
    sub = spawn(SUBSCRIBER, str(out))
    with DdsPublisher() as pub:
        player = Player(session.dir, pub, ReplayOptions(rate=1.0))
        player.prepare()
        assert sub.stdout.readline().strip() == "ready"
        assert pub.wait_for_subscribers(1, 20), "replay writers did not match the subscriber"
        assert sub.stdout.readline().strip() == "matched"
        stats = player.play()
        assert sub.stdout.readline().strip() == "done"
    sub.wait(20)
    got = json.loads(out.read_text())
    assert stats.messages == sum(map(len, recorded.values()))
    for topic, msgs in recorded.items():
        hashes = [h for _, h in got[topic]]
        if humanoid.topic(topic).qos.reliability == "reliable":
            assert hashes == [sha(m) for m in msgs], topic
        else:   # best effort may drop, never reorder
            assert len(hashes) >= 0.95 * len(msgs), topic
            assert in_order(hashes, [sha(m) for m in msgs]), topic
    # spacing: arrival intervals follow the recorded intervals
    arrive = [t for t, _ in got["/joint_states"]]
    offsets = sorted(a - b for a, b in zip(arrive, log, strict=True))
    mid = offsets[len(offsets) // 2]          # the constant part: start-up and latency
    errs = sorted(abs(a - b - mid) / 1e6 for a, b in zip(arrive, log, strict=True))
    # loose: a loaded 2-core machine reached a 5 ms median; bursts would be off by 100s of ms
    assert errs[len(errs) // 2] < 3.0, f"median spacing error {errs[len(errs) // 2]:.2f} ms"
    assert abs((arrive[-1] - arrive[0]) - (log[-1] - log[0])) / 1e6 < 50


@pytest.mark.dds
@isolated
def test_record_cli_with_the_dds_source(tmp_path):
    start = time.time_ns()
    pub = spawn(PUBLISHER, "6.0", "0", str(start))
    try:
        assert pub.stdout.readline().strip() == "ready"
        pub.stdin.write("go\n")
        pub.stdin.flush()
        r = subprocess.run([sys.executable, "-m", "demofab.cli", "record", "--source", "dds",
                            "--profile", "humanoid", "--out", str(tmp_path / "s"),
                            "--episodes", "1", "--episode-seconds", "2.5", "--json"],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        pub.kill()
    assert r.returncode == 0, r.stderr
    [episode] = json.loads(r.stdout)
    counts = episode["counts"]
    for topic in ("/joint_states", "/imu", "/tf", "/camera/head/image_raw/compressed",
                  "/teleop/left_hand/pose"):
        assert counts[topic] > 0, topic
    assert counts["/joint_states"] >= 300     # 500 Hz for 2.5 s, minus discovery


@pytest.mark.dds
@isolated
def test_replay_cli_prints_a_json_summary(tmp_path, humanoid):
    session, _, finished = record(tmp_path / "s", humanoid, episodes=1, seconds=0.5)
    r = subprocess.run([sys.executable, "-m", "demofab.cli", "replay", str(session.dir),
                        "--to", "dds", "--rate", "2", "--delay", "0", "--clock", "50",
                        "--remap", "/imu:=/robot/imu", "--json"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    counts = dict(finished[0].counts)
    counts["/robot/imu"] = counts.pop("/imu")
    assert summary["published"] == counts
    assert summary["clock_messages"] >= 5
    assert set(summary["jitter_ms"]) >= {"p50", "p99", "max"}
    assert "timing error p50" in r.stderr
