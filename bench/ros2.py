"""ROS 2 recording and replay: recorder_node vs a bare rclpy subscriber, DDS source, humanoid, replay.

Runs from the main venv; every ROS 2 part runs in ``.venv-ros`` (tools/ros-venv.sh) inside
``tools/netns-run.sh`` (loopback only), started by a driver (``python -m bench.ros2 driver``)
that reports JSON. Parts:

1. **node ladder** — one rclpy publisher process sends a 40-joint JointState (reliable,
   keep-last 10000) at rising rates for ``--duration`` s each; beside ``recorder_node``
   (writing MCAP) a bare rclpy raw subscriber on an EventsExecutor only counts (the
   transport's ceiling, in the same run; same history depth as the node's queue_depth).
   The highest achieved rate with zero loss is ``node_max_rate`` / ``bare_max_rate``;
   ``vs_bare`` is their ratio.
2. **DDS ladder** — the same with ``recorder.sources.dds.DdsSource`` (cyclonedds, no ROS)
   recording instead of the node: ``dds_max_rate``.
3. **humanoid** — the humanoid profile at its real rates (three ~40 KB JPEG-sized camera
   streams at 30 Hz; all topics but /tf, which has no rclpy wheel here) through
   ``recorder_node``: ``humanoid_lost`` = sent - recorded.
4. **replay** — ``player_node`` plays that episode at rate 1.0 to a counting subscriber:
   ``replay_p99_jitter_ms`` is the p99 of (publish time - scheduled time). In the same
   run, before and after it, a **bare timer loop** (``role_bare``: its own process and
   rclpy node, no Player, no file reading: the messages are in memory) waits for the same
   message times with the same method (``recorder.replay.DeadlineWaiter`` under
   ``playback_conditions``) and publishes the same bytes through the same publisher
   (``RclpyPublisher``) to the same subscriber. Runs alternate, bare, replay, bare, replay,
   bare (``--replay-rounds``), so both sides see the same mix of a shared machine's load;
   ``replay_p99_jitter_ms`` and ``bare_timer_p99_jitter_ms`` are the means of their runs'
   p99, and ``replay_jitter_vs_bare_timer`` = replay p99 / bare p99 says what replay adds
   to what the scheduler and the middleware allow (target <= 1.5).
   ``--cpu-load N`` runs N busy-loop processes during this part (a loaded machine);
   ``--only replay`` runs just this part (with the humanoid recording it plays), or give
   ``--replay-episode FILE`` to play a recording you have.

A publisher that cannot reach a rate ends the ladder: then the ceiling measured is the
publisher's (one Python process), and the result says so (``*_limited_by``).
"""

from __future__ import annotations

import argparse
import json
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .ros2_procs import ROOT, child_env, log, rclpy_init, start_node, start_role
from .ros2_replay import HUMANOID_SKIP, replay, role_bare, role_load

PARTS = ("node", "dds", "humanoid", "replay")
BENCH_TOPIC = "/bench/joint_states"
JOINT_STATE = "sensor_msgs/msg/JointState"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=30.0, help="seconds each rate is held")
    p.add_argument("--rates", default="5000,10000,15000,20000,25000,30000,40000",
                   help="ladder of publish rates (msg/s)")
    p.add_argument("--joints", type=int, default=40)
    p.add_argument("--humanoid-seconds", type=float, default=None,
                   help="length of the humanoid run (default: --duration)")
    p.add_argument("--skip", default="", help="comma list of parts to skip: node,dds,humanoid,replay")
    p.add_argument("--only", default="",
                   help="comma list of the parts to run (replay implies humanoid, which "
                        "records the episode it plays, unless --replay-episode is given)")
    p.add_argument("--replay-episode", default=None, help="episode file the replay part plays")
    p.add_argument("--cpu-load", type=int, default=0, metavar="N",
                   help="busy-loop processes running during the replay part")
    p.add_argument("--replay-rounds", type=int, default=2, metavar="N",
                   help="replays, each between two bare timer runs (default 2)")
    p.add_argument("--queue-depth", type=int, default=None,
                   help="recorder_node queue_depth (default: the node's default)")
    p.add_argument("--keep", default=None, help="keep the recordings in this directory")


def run(args: argparse.Namespace) -> dict[str, Any]:
    venv = subprocess.run([str(ROOT / "tools" / "ros-venv.sh")], check=True, text=True,
                          stdout=subprocess.PIPE).stdout.strip().splitlines()[-1]
    py = str(Path(venv) / "bin" / "python")
    check = ("import pathlib, sys, recorder; "
             "sys.exit(pathlib.Path(recorder.__file__).resolve().parents[1] != pathlib.Path(sys.argv[1]))")
    if subprocess.run([py, "-c", check, str(ROOT)], capture_output=True).returncode != 0:
        subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)], check=True)
    skip = {s for s in args.skip.split(",") if s}
    if args.only:
        only = {s for s in args.only.split(",") if s}
        unknown = only - set(PARTS)
        if unknown:
            raise ValueError(f"--only: unknown part {', '.join(sorted(unknown))} "
                             f"(parts: {', '.join(PARTS)})")
        if "replay" in only and not args.replay_episode:
            only.add("humanoid")
        skip |= set(PARTS) - only
    config = {"duration": args.duration, "rates": [int(r) for r in args.rates.split(",") if r],
              "joints": args.joints, "humanoid_seconds": args.humanoid_seconds or args.duration,
              "skip": sorted(skip), "keep": args.keep, "queue_depth": args.queue_depth,
              "replay_episode": str(Path(args.replay_episode).resolve())
              if args.replay_episode else None, "cpu_load": args.cpu_load,
              "replay_rounds": args.replay_rounds}
    env = child_env()
    env.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="demofab-bench-roslog-"))
    out = subprocess.run([str(ROOT / "tools" / "netns-run.sh"), py, "-m", "bench.ros2", "driver",
                          json.dumps(config)], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"bench ros2: the driver failed (exit {out.returncode})")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# ============================================================================ inner roles
# Everything below runs in .venv-ros, inside the network namespace.

def _qos(depth: int, best_effort: bool = False) -> Any:
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort
                      else ReliabilityPolicy.RELIABLE)


def _msg_class(type_name: str) -> Any:
    import importlib

    pkg, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def _templates(profile: Any, joints: int) -> dict[str, list[bytes]]:
    """A few CDR messages per topic (rosbags); the stamp is patched in when sent."""
    import numpy as np

    from recorder.types import serialize, typestore

    T = typestore().types
    rng = np.random.default_rng(0)
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
                                      frame_id="base_link")
    out: dict[str, list[bytes]] = {}
    for spec in profile.topics:
        t = spec.type
        if t == JOINT_STATE:
            n = len(profile.robot.joints) or joints
            names = profile.robot.joint_names or [f"joint_{k:02d}" for k in range(n)]
            msgs = [T[t](header=header, name=names, position=rng.normal(size=n),
                         velocity=rng.normal(size=n), effort=rng.normal(size=n)) for _ in range(4)]
        elif t == "sensor_msgs/msg/Imu":
            Q, V = T["geometry_msgs/msg/Quaternion"], T["geometry_msgs/msg/Vector3"]
            msgs = [T[t](header=header, orientation=Q(x=0.0, y=0.0, z=0.0, w=1.0),
                         orientation_covariance=np.zeros(9), angular_velocity=V(x=0.1, y=0.0, z=0.0),
                         angular_velocity_covariance=np.zeros(9),
                         linear_acceleration=V(x=0.0, y=0.0, z=9.81),
                         linear_acceleration_covariance=np.zeros(9))]
        elif t == "geometry_msgs/msg/PoseStamped":
            P, Q = T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Quaternion"]
            msgs = [T[t](header=header, pose=T["geometry_msgs/msg/Pose"](
                position=P(x=0.1, y=0.2, z=1.0), orientation=Q(x=0.0, y=0.0, z=0.0, w=1.0)))]
        elif t == "sensor_msgs/msg/CompressedImage":
            # a 640x480 JPEG of a real scene is ~30-60 KB; random bytes do not compress either
            msgs = [T[t](header=header, format="jpeg",
                         data=rng.integers(0, 256, size=int(rng.integers(35_000, 45_000)),
                                           dtype=np.uint8)) for _ in range(8)]
        else:
            continue
        out[spec.topic] = [serialize(m, t) for m in msgs]
    return out


def role_pub(config: dict[str, Any]) -> None:
    """Publish one topic (or a profile's topics) paced at their rates; JSON result on stdout."""
    from recorder.profile import load_profile

    rclpy = rclpy_init()
    from rclpy.node import Node

    profile = load_profile(config["profile"])
    node = Node("demofab_bench_pub")
    specs = [s for s in profile.topics if s.topic in config["topics"]]
    templates = _templates(profile, config.get("joints", 40))
    pubs = {s.topic: node.create_publisher(_msg_class(s.type), s.topic,
                                           _qos(max(s.qos.depth, config.get("depth", 10000)),
                                                s.qos.reliability == "best_effort"))
            for s in specs}
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while not all(p.get_subscription_count() >= config["subscribers"] for p in pubs.values()):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "subscribers did not match"}), flush=True)
            return
        time.sleep(0.02)
    time.sleep(config.get("settle", 2.0))   # the readers' side of discovery
    seconds = config["seconds"]
    # one merged schedule: (due index per topic) from each topic's rate
    rates = {s.topic: float(config.get("rate") or s.rate_hz or 0.0) for s in specs}
    totals = {t: int(r * seconds) for t, r in rates.items()}
    sent = dict.fromkeys(rates, 0)
    bufs = {t: [bytearray(b) for b in templates[t]] for t in rates}
    pack = struct.Struct("<iI").pack_into
    t0 = time.perf_counter()
    wall0 = time.time_ns()
    while True:
        now = time.perf_counter() - t0
        done = True
        for topic, rate in rates.items():
            due = min(totals[topic], int(now * rate) + 1)
            n = sent[topic]
            if n < totals[topic]:
                done = False
            if n >= due:
                continue
            publish, pool = pubs[topic].publish, bufs[topic]
            k = len(pool)
            while n < due:
                buf = pool[n % k]
                stamp = wall0 + int(n * 1e9 / rate)
                pack(buf, 4, stamp // 1_000_000_000, stamp % 1_000_000_000)
                publish(bytes(buf))
                n += 1
            sent[topic] = n
        if done:
            break
        pending = [sent[t] / rates[t] for t in rates if sent[t] < totals[t]]
        ahead = (min(pending) if pending else 0.0) - (time.perf_counter() - t0)
        if ahead > 0.0005:
            time.sleep(ahead)
    elapsed = time.perf_counter() - t0
    total = sum(sent.values())
    print(json.dumps({"sent": sent, "total": total, "seconds": round(elapsed, 3),
                      "rate": round(total / elapsed, 1)}), flush=True)
    sys.stdin.readline()   # stay alive until the driver is done (reliable repairs)
    node.destroy_node()
    rclpy.shutdown()


def role_count(config: dict[str, Any]) -> None:
    """A bare rclpy raw subscriber on an EventsExecutor: counts, prints counts every 0.25 s."""
    rclpy_init()
    from rclpy.experimental import EventsExecutor
    from rclpy.node import Node
    from rclpy.task import Future

    from recorder.profile import load_profile

    profile = load_profile(config["profile"])
    node = Node("demofab_bench_count")
    counts: dict[str, int] = {}
    for spec in profile.topics:
        if spec.topic not in config["topics"]:
            continue
        counts[spec.topic] = 0

        def on_message(data: bytes, topic: str = spec.topic) -> None:
            counts[topic] += 1

        node.create_subscription(_msg_class(spec.type), spec.topic, on_message,
                                 _qos(max(spec.qos.depth, config.get("depth") or 10000),
                                      spec.qos.reliability == "best_effort"),
                                 raw=True)
    ex = EventsExecutor()
    ex.add_node(node)
    stop = threading.Event()
    def wait_for_stdin() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_for_stdin, daemon=True).start()
    never = Future()
    next_print = 0.0
    while not stop.is_set():
        ex.spin_until_future_complete(never, timeout_sec=0.05)
        if time.monotonic() >= next_print:
            print(json.dumps({"received": counts}), flush=True)
            next_print = time.monotonic() + 0.25
    print(json.dumps({"received": counts}), flush=True)


def role_dds(config: dict[str, Any]) -> None:
    """Record with the DDS source (cyclonedds, no ROS) until SIGINT."""
    from recorder.control import Plan, Recorder
    from recorder.profile import load_profile
    from recorder.session import Session
    from recorder.sources.dds import DdsSource

    profile = load_profile(config["profile"])
    session = Session(config["out"], profile)
    source = DdsSource(profile)
    print("ready", flush=True)
    Recorder(session, source, Plan(episodes=1, autostart=True)).run()


# ---------------------------------------------------------------------------- driver
def _mcap_counts(session: Path) -> dict[str, int]:
    from mcap.reader import make_reader

    counts: dict[str, int] = {}
    for path in sorted(session.glob("episode_*.mcap")):
        with open(path, "rb") as f:
            summary = make_reader(f).get_summary()
        if summary is None or summary.statistics is None:
            raise RuntimeError(f"bench ros2: {path} has no summary (the recorder did not finish it)")
        for cid, n in summary.statistics.channel_message_counts.items():
            topic = summary.channels[cid].topic
            counts[topic] = counts.get(topic, 0) + n
    return counts


def _wait_drained(session: Path, quiet_s: float = 2.5, timeout: float = 120) -> None:
    """Until the episode file stops growing (chunks close at least every second of data)."""
    end = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < end:
        size = sum(p.stat().st_size for p in session.glob("episode_*.mcap*"))
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)


def _bench_profile(path: Path, rate: int) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({
        "format_version": 1, "name": "bench_joint_states",
        "robot": {"name": "bench"},
        "topics": [{"topic": BENCH_TOPIC, "type": JOINT_STATE, "role": "observation",
                    "rate_hz": rate, "qos": {"reliability": "reliable", "depth": 1000}}],
    }))
    return path


def ladder(kind: str, config: dict[str, Any], work: Path) -> dict[str, Any]:
    steps = []
    best = bare_best = 0.0
    limited = ""
    for rate in config["rates"]:
        step_dir = work / f"{kind}_{rate}"
        step_dir.mkdir()
        profile = _bench_profile(step_dir / "profile.yaml", rate)
        session = step_dir / "session"
        if kind == "node":
            params = {"profile": str(profile), "out": str(session), "autostart": True,
                      "health_rate_hz": 0.0, "robot_description_topic": "''"}
            if config.get("queue_depth"):
                params["queue_depth"] = config["queue_depth"]
            rec = start_node("recorder_node", params, step_dir / "recorder.log")
        else:
            rec = start_role("dds", {"profile": str(profile), "out": str(session)}, step_dir / "dds.log")
        bare = start_role("count", {"profile": str(profile), "topics": [BENCH_TOPIC],
                               "depth": config.get("queue_depth")}, step_dir / "count.log")
        pub = start_role("pub", {"profile": str(profile), "topics": [BENCH_TOPIC], "rate": rate,
                            "seconds": config["duration"], "subscribers": 2, "joints": config["joints"]},
                    step_dir / "pub.log")
        ok = pub.wait_for(pub.has_result, config["duration"] + 90)
        sent = pub.last_json() or {"error": "publisher gave no result"}
        if not ok or "error" in sent:
            log(f"{kind} {rate}: {sent}")
            for p in (pub, bare, rec):
                p.stop(signal.SIGKILL)
            steps.append({"rate": rate, "error": sent.get("error", "publisher failed")})
            break
        _wait_drained(session)
        bare.tell()
        bare.wait_for(bare.exited, 10)
        rc = rec.stop()
        pub.tell()
        pub.stop(timeout=10)
        got = _mcap_counts(session).get(BENCH_TOPIC, 0)
        bare_got = (bare.last_json() or {}).get("received", {}).get(BENCH_TOPIC, 0)
        step = {"rate": rate, "achieved": sent["rate"], "sent": sent["total"], "recorded": got,
                "bare_received": bare_got, "lost": sent["total"] - got,
                "bare_lost": sent["total"] - bare_got, "exit": rc}
        steps.append(step)
        log(f"{kind} ladder: {step}")
        reached = sent["rate"] >= 0.95 * rate
        # "held with zero loss": every rung up to this one lost nothing
        if step["lost"] == 0 and not any(s.get("lost") for s in steps[:-1]):
            best = max(best, sent["rate"])
        if step["bare_lost"] == 0 and not any(s.get("bare_lost") for s in steps[:-1]):
            bare_best = max(bare_best, sent["rate"])
        if not reached:
            limited = f"publisher (one rclpy process reached {sent['rate']:.0f} of {rate} msg/s)"
            break
        if step["lost"] and step["bare_lost"]:
            break
    return {"max_rate": round(best, 1), "bare_max_rate": round(bare_best, 1), "steps": steps,
            "limited_by": limited or "subscriber"}




def humanoid(config: dict[str, Any], work: Path) -> dict[str, Any]:
    from recorder.profile import load_profile

    profile = load_profile("humanoid")
    topics = [t.topic for t in profile.topics if t.topic not in HUMANOID_SKIP]
    session = work / "humanoid"
    rec = start_node("recorder_node", {"profile": "humanoid", "out": str(session), "autostart": True,
                                  "robot_description_topic": "''"}, work / "humanoid_recorder.log")
    pub = start_role("pub", {"profile": "humanoid", "topics": topics, "seconds": config["humanoid_seconds"],
                        "subscribers": 1, "depth": 0}, work / "humanoid_pub.log")
    pub.wait_for(pub.has_result, config["humanoid_seconds"] + 90)
    sent = pub.last_json() or {"error": "no result"}
    _wait_drained(session)
    rc = rec.stop()
    pub.tell()
    pub.stop(timeout=10)
    if "error" in sent:
        return {"error": sent["error"]}
    got = _mcap_counts(session)
    per_topic = {t: {"sent": n, "recorded": got.get(t, 0)} for t, n in sent["sent"].items()}
    lost = sum(v["sent"] - v["recorded"] for v in per_topic.values())
    files = sorted(session.glob("episode_*.mcap"))
    return {"lost": lost, "sent": sent["total"], "seconds": sent["seconds"], "exit": rc,
            "topics": per_topic, "file": str(files[-1]) if files else None,
            "mb_per_s": round(sum(p.stat().st_size for p in files) / 1e6 / sent["seconds"], 2)}


def role_driver(config: dict[str, Any]) -> None:
    work = Path(config["keep"] or tempfile.mkdtemp(prefix="demofab-bench-ros2-"))
    work.mkdir(parents=True, exist_ok=True)
    skip = set(config["skip"])
    result: dict[str, Any] = {"duration_s": config["duration"], "joints": config["joints"]}
    if "node" not in skip:
        node = ladder("node", config, work)
        result.update(node_max_rate=node["max_rate"], bare_max_rate=node["bare_max_rate"],
                      vs_bare=round(node["max_rate"] / node["bare_max_rate"], 3)
                      if node["bare_max_rate"] else None,
                      node_limited_by=node["limited_by"], node_steps=node["steps"])
    if "dds" not in skip:
        dds = ladder("dds", config, work)
        result.update(dds_max_rate=dds["max_rate"], dds_bare_max_rate=dds["bare_max_rate"],
                      dds_limited_by=dds["limited_by"], dds_steps=dds["steps"])
    episode = None
    if "humanoid" not in skip:
        h = humanoid(config, work)
        episode = h.pop("file", None)
        result.update(humanoid_lost=h.get("lost"), humanoid=h)
        log(f"humanoid: {h}")
    episode = config.get("replay_episode") or episode
    if "replay" not in skip and episode:
        r = replay(episode, work, config.get("cpu_load", 0), config.get("replay_rounds", 2))
        p99 = r["p99_ms"]
        bare_p99 = r["bare_timer"]["p99_ms"]
        result.update(replay_p99_jitter_ms=p99, bare_timer_p99_jitter_ms=bare_p99,
                      replay_jitter_vs_bare_timer=round(p99 / bare_p99, 3)
                      if p99 is not None and bare_p99 else None, replay=r)
        log(f"replay: {r}")
    result["targets"] = {
        "vs_bare>=0.8": result.get("vs_bare") is not None and result["vs_bare"] >= 0.8,
        "node_max_rate>=10000": result.get("node_max_rate", 0) >= 10000,
        "humanoid_lost==0": result.get("humanoid_lost") == 0,
        "replay_p99_jitter_ms<=1": result.get("replay_p99_jitter_ms") is not None
        and result["replay_p99_jitter_ms"] <= 1.0,
        "replay_jitter_vs_bare_timer<=1.5": result.get("replay_jitter_vs_bare_timer") is not None
        and result["replay_jitter_vs_bare_timer"] <= 1.5,
    }
    result["targets"] = {k: v for k, v in result["targets"].items()
                         if _measured(k, skip)}
    print(json.dumps(result), flush=True)


def _measured(target: str, skip: set[str]) -> bool:
    """Whether the run measured what ``target`` judges (skipped parts have no verdict)."""
    part = ("replay" if target.startswith("replay") else "humanoid"
            if target.startswith("humanoid") else "node")
    return part not in skip


ROLES = {"driver": role_driver, "pub": role_pub, "count": role_count, "dds": role_dds,
         "bare": role_bare, "load": role_load}

if __name__ == "__main__":
    ROLES[sys.argv[1]](json.loads(sys.argv[2]))
