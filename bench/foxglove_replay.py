"""Replay into Foxglove beside ``--to dds``: one episode, one Player, both backends.

The same episode through the same Player (one timing core) and two backends, in one run:

* **dds** — ``Player`` with ``DdsPublisher`` (cyclonedds, no ROS 2) to a DDS reader in
  another process, inside ``tools/netns-run.sh`` (loopback only): ``dds_p99_jitter_ms``
  is the p99 of (publish time - scheduled time), as ``bench ros2``'s replay defines it.
* **foxglove** — ``FoxgloveReplay`` (``FoxglovePlayer`` and ``FoxglovePublisher``) to a
  client of the Foxglove WebSocket protocol in another process (:class:`_WsClient`), which
  subscribes to every recorded topic, asks to play, and stamps each message data frame
  when it arrives. ``foxglove_p99_jitter_ms`` is the p99 of (arrival at the client -
  scheduled time): the schedule is the player's (``first publish + (log time - first
  log time) / rate``; both processes read the same monotonic clock), so it holds the
  publish error, the SDK's queueing and the WebSocket delivery; ``foxglove_sent_p99_
  jitter_ms`` is the player's own publish error, like ``dds_p99_jitter_ms``, and
  ``foxglove_vs_dds`` their ratio. The DDS reader stamps its samples the same way
  (``dds_received_p99_jitter_ms``, matched to the recording by topic, order and CRC;
  ``foxglove_vs_dds_received``).

Runs alternate (dds, foxglove, dds, foxglove, ...; ``rounds``) so both see the same mix of
a shared machine's load; figures are the means of the rounds' p99. Entry points:
:func:`measure_foxglove` (``bench review``), :func:`foxglove_jitter`, ``demofab bench
foxglove [--seconds S] [--rounds N] [--episode FILE] --json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NS = 1_000_000_000


def add_arguments(p: Any) -> None:
    p.add_argument("--seconds", type=float, default=10.0, help="length of the synthetic episode")
    p.add_argument("--rounds", type=int, default=2, help="dds/foxglove pairs of runs")
    p.add_argument("--episode", help="play this MCAP file instead of a synthetic episode")


def run(args: Any) -> dict[str, Any]:
    """``demofab bench foxglove``."""
    return foxglove_jitter(args.episode, seconds=args.seconds, rounds=args.rounds)


def measure_foxglove(quick: bool) -> dict[str, Any]:
    """What ``bench review`` merges into its JSON (quick: a 4 s episode, one round)."""
    return foxglove_jitter(seconds=4.0 if quick else 10.0, rounds=1 if quick else 2)


def foxglove_jitter(episode: str | Path | None = None, *, seconds: float = 10.0, rounds: int = 1,
                    work: Path | None = None) -> dict[str, Any]:
    """See the module docstring. ``episode``: an MCAP file to play (default: a synthetic
    humanoid episode of ``seconds`` recorded under ``work``, a temporary directory)."""
    tmp = None if work is not None else Path(tempfile.mkdtemp(prefix="demofab-bench-fox-"))
    work = work or tmp
    assert work is not None
    work.mkdir(parents=True, exist_ok=True)
    try:
        if episode is None:
            from .curate import _record

            session = _record(work / "session", 1, seconds)
            episode = next(iter(sorted(session.glob("episode_*.mcap"))))
        config = {"episode": str(Path(episode).resolve()), "rounds": rounds, "work": str(work)}
        why = _why_no_netns()
        cmd = [sys.executable, "-m", "bench.foxglove_replay", "driver", json.dumps(
            {**config, "dds": why is None})]
        if why is None:
            cmd = [str(ROOT / "tools" / "netns-run.sh"), *cmd]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        out = subprocess.run(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                             timeout=120 + 4 * rounds * (seconds + 10))
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"bench foxglove: the driver failed (exit {out.returncode})")
        result: dict[str, Any] = json.loads(lines[-1])
        if why is not None:
            result["dds_skipped"] = why
        return result
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _why_no_netns() -> str | None:
    try:
        import cyclonedds  # noqa: F401
    except ImportError:
        return "cyclonedds is not installed (pip install 'demofab[dds]')"
    if os.geteuid() != 0:
        return "DDS runs only in a private network namespace: needs root for unshare --net"
    if shutil.which("unshare") is None:
        return "DDS runs only in a private network namespace: 'unshare' (util-linux) missing"
    return None


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return round(sum(got) / len(got), 4) if got else None


# ============================================================ the driver (in the netns)
def role_driver(config: dict[str, Any]) -> None:
    dds: list[dict[str, Any]] = []
    fox: list[dict[str, Any]] = []
    for _ in range(int(config["rounds"])):
        if config["dds"]:
            dds.append(_run_dds(config))
        fox.append(_run_foxglove(config))
    fox_p99 = _mean([r["received_p99_ms"] for r in fox])
    sent_p99 = _mean([r["sent_p99_ms"] for r in fox])
    dds_p99 = _mean([r["p99_ms"] for r in dds]) if dds else None
    dds_recv = _mean([r["received_p99_ms"] for r in dds]) if dds else None
    print(json.dumps({
        "foxglove_p99_jitter_ms": fox_p99, "foxglove_sent_p99_jitter_ms": sent_p99,
        "dds_p99_jitter_ms": dds_p99, "dds_received_p99_jitter_ms": dds_recv,
        "foxglove_vs_dds": round(sent_p99 / dds_p99, 3) if sent_p99 and dds_p99 else None,
        "foxglove_vs_dds_received": round(fox_p99 / dds_recv, 3) if fox_p99 and dds_recv
        else None,
        "foxglove_messages": sum(r["messages"] for r in fox),
        "foxglove_received": sum(r["received"] for r in fox),
        "foxglove_runs": fox, "dds_runs": dds}), flush=True)


class _FirstPublish:
    """A publisher mix-in that notes when the first message went out: the player's
    schedule starts there (its first deadline is the moment it has data)."""

    first_ns: int | None = None

    def publish(self, handle: Any, data: Any) -> None:
        if self.first_ns is None:
            self.first_ns = time.perf_counter_ns()
        super().publish(handle, data)  # type: ignore[misc]


def _run_dds(config: dict[str, Any]) -> dict[str, Any]:
    from recorder.contract import EVENTS_TOPIC
    from recorder.dds import DdsPublisher
    from recorder.replay import Player, ReplayOptions

    class TimedDds(_FirstPublish, DdsPublisher):
        pass

    out_path = Path(config["work"]) / "dds_reader.json"
    reader = subprocess.Popen([sys.executable, "-m", "bench.foxglove_replay", "dds_count",
                               json.dumps({"out": str(out_path)})], cwd=ROOT)
    pub = TimedDds()
    with pub:
        player = Player(config["episode"], pub, ReplayOptions())
        player.prepare()
        # the reader (the DDS source) leaves the events topic to the recorder's own events
        matched = pub.wait_for_subscribers(1, 20.0, topics=[
            t for t in pub.writers if t != EVENTS_TOPIC])
        time.sleep(1.0)
        stats = player.play()
    time.sleep(0.5)
    reader.send_signal(signal.SIGINT)
    reader.wait(timeout=30)
    got = json.loads(out_path.read_text())
    assert pub.first_ns is not None
    received = _dds_received(config["episode"], got["samples"], pub.first_ns)
    return {"messages": stats.messages, "received": len(got["samples"]), "matched": matched,
            "p99_ms": stats.jitter_ms["p99"], "jitter_ms": stats.jitter_ms,
            "received_p99_ms": received["p99"], "received_jitter_ms": received}


def _dds_received(episode: str, samples: list[list[Any]], first_ns: int) -> dict[str, float]:
    """Arrival - schedule of each DDS sample: the k-th sample of a topic is matched to the
    recorded messages of that topic in order, by CRC (a lost best-effort sample is
    skipped over); the count is of the matched ones."""
    import zlib

    from mcap.reader import make_reader

    from recorder.replay import JitterStats

    recorded: dict[str, list[tuple[int, int]]] = {}
    with open(episode, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        first_log = summary.statistics.message_start_time
        for _, ch, m in reader.iter_messages(log_time_order=True):
            recorded.setdefault(ch.topic, []).append((m.log_time, zlib.crc32(m.data)))
    at = dict.fromkeys(recorded, 0)
    jitter = JitterStats()
    for topic, recv, crc in samples:
        msgs, k = recorded.get(topic, []), at.get(topic, 0)
        j = next((i for i in range(k, min(k + 64, len(msgs))) if msgs[i][1] == crc), None)
        if j is None:
            continue
        at[topic] = j + 1
        jitter.add(recv - (first_ns + (msgs[j][0] - first_log)))
    return jitter.summary()


def _run_foxglove(config: dict[str, Any]) -> dict[str, Any]:
    from recorder.replay import JitterStats, ReplayOptions
    from recorder.replay.foxglove import FoxglovePublisher, FoxgloveReplay

    class TimedPublisher(_FirstPublish, FoxglovePublisher):
        pass

    out = Path(config["work"]) / "foxglove_client.json"
    pub = TimedPublisher(port=0)
    with FoxgloveReplay(config["episode"], ReplayOptions(), publisher=pub) as replay:
        topics = sorted(replay.player.timeline.topics)
        client = subprocess.Popen([sys.executable, "-m", "bench.foxglove_replay", "client",
                                   json.dumps({"url": replay.url, "topics": topics,
                                               "out": str(out), "delay": 1.0})], cwd=ROOT)
        client.wait(timeout=60 + 2 * replay.player.duration_s)
        stats = replay.player.stats
    got = json.loads(out.read_text())
    jitter = JitterStats()
    first_log = replay.timeline.episodes[0].start_ns
    assert pub.first_ns is not None
    for log_time, recv in zip(got["log"], got["recv"], strict=True):
        jitter.add(recv - (pub.first_ns + (log_time - first_log)))
    return {"messages": stats.messages, "received": len(got["log"]),
            "sent_p99_ms": stats.jitter_ms["p99"], "sent_jitter_ms": stats.jitter_ms,
            "received_p99_ms": jitter.summary()["p99"], "received_jitter_ms": jitter.summary()}


# ============================================================ the receivers
def role_dds_count(config: dict[str, Any]) -> None:
    """A DDS reader of every humanoid topic (cyclonedds, no ROS) until SIGINT; each
    sample's topic, arrival (perf_counter ns) and CRC go to ``out`` as JSON."""
    import zlib

    from recorder.profile import load_profile
    from recorder.sources.dds import DdsSource

    source = DdsSource(load_profile("humanoid"))
    clock = time.perf_counter_ns
    samples: list[tuple[str, int, int]] = []
    try:
        for m in source.messages():
            if m is not None:
                samples.append((m.topic, clock(), zlib.crc32(m.data)))
    except KeyboardInterrupt:
        pass
    source.close()
    Path(config["out"]).write_text(json.dumps({"samples": samples}))


class _WsClient:
    """The client side of RFC 6455 over a plain socket, just what the bench needs: the
    handshake with the ``foxglove.sdk.v1`` subprotocol, masked frames out, whole frames in
    (answering pings). Written out because the ``websockets`` client, as measured here,
    hands a 40 KB frame over ~5 ms after it arrived (a raw socket: ~0.5 ms), which would
    be its own delay counted as the server's."""

    def __init__(self, url: str) -> None:
        import base64
        import socket

        host, _, port = url.removeprefix("ws://").rstrip("/").rpartition(":")
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Protocol: foxglove.sdk.v1\r\n\r\n").encode())
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"the server refused the WebSocket handshake: {head[:200]!r}")
        self.buf = bytearray(rest)
        self.at = 0                        # where the next frame starts in buf

    def _fill(self) -> None:
        got = self.sock.recv(1 << 20)
        if not got:
            raise ConnectionError("the server closed the connection")
        self.buf += got

    def send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                         bytes([0x80 | 126]) + struct.pack(">H", n))
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self) -> tuple[int, bytes]:
        """The next data frame: (opcode, payload); pings are answered on the way."""
        while True:
            buf, at = self.buf, self.at
            while len(buf) < at + 2:
                self._fill()
            opcode, n, off = buf[at] & 0x0F, buf[at + 1] & 0x7F, 2
            if n >= 126:
                off = 4 if n == 126 else 10
                while len(buf) < at + off:
                    self._fill()
                n = struct.unpack_from(">H" if off == 4 else ">Q", buf, at + 2)[0]
            while len(buf) < at + off + n:
                self._fill()
            payload = bytes(buf[at + off:at + off + n])
            self.at = at + off + n
            if self.at > 1 << 20:          # drop what was read, now and then (not per frame)
                del buf[:self.at]
                self.at = 0
            if opcode == 0x9:
                self.send(0xA, payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("the server closed the connection")
            return opcode, payload


def role_client(config: dict[str, Any]) -> None:
    """A Foxglove protocol client: subscribe to ``topics``, wait ``delay`` s, ask to play,
    stamp every message data frame on arrival until the state says ended; the log times
    and arrival times (perf_counter ns) go to ``out`` as JSON."""
    logs: list[int] = []
    recvs: list[int] = []
    clock = time.perf_counter_ns
    ws = _WsClient(config["url"])
    ws.recv()                                                 # serverInfo
    channels = {c["topic"]: c["id"] for c in json.loads(ws.recv()[1])["channels"]}
    subs = [{"id": i, "channelId": channels[t]} for i, t in enumerate(config["topics"])]
    ws.send(0x1, json.dumps({"op": "subscribe", "subscriptions": subs}).encode())
    time.sleep(config["delay"])
    ws.send(0x2, struct.pack("<BBfBQI", 3, 0, 1.0, 0, 0, 4) + b"play")
    try:
        while True:
            opcode, frame = ws.recv()
            if opcode != 0x2:
                continue
            if frame[0] == 1:
                recvs.append(clock())
                logs.append(struct.unpack_from("<Q", frame, 5)[0])
            elif frame[0] == 5 and frame[1] == 3:
                # ended (the state comes on the control plane, the data may follow it):
                # what is still on the way, until 0.5 s without a frame
                ws.sock.settimeout(0.5)
    except TimeoutError:
        ws.sock.close()           # 0.5 s without a frame after the end (or 30 s at all)
    ws.sock.close()
    Path(config["out"]).write_text(json.dumps({"log": logs, "recv": recvs}))


ROLES = {"driver": role_driver, "dds_count": role_dds_count, "client": role_client}


def main() -> int:
    role = sys.argv[1]
    ROLES[role](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["add_arguments", "foxglove_jitter", "measure_foxglove", "run"]
