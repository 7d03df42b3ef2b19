"""The replay part of ``bench ros2``: ``player_node`` plays a recorded humanoid episode
at rate 1.0 to a counting subscriber, between runs of a bare timer loop (``role_bare``:
its own process, the same messages in memory, the same ``DeadlineWaiter``, publisher and
subscriber), so that ``replay_jitter_vs_bare_timer`` says what replay adds to what the
scheduler and the middleware allow. ``role_load`` is the busy loop of ``--cpu-load``."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from recorder.contract import EVENTS_TOPIC

from .ros2_procs import rclpy_init, start_node, start_role

HUMANOID_SKIP = ("/tf", EVENTS_TOPIC)


def role_bare(config: dict[str, Any]) -> None:
    """The bare timer loop: the episode's messages, in memory, published through
    ``RclpyPublisher`` at their recorded times, waited for with the replay's
    ``DeadlineWaiter`` under ``playback_conditions``; JSON result. ``via_player``
    (diagnosis): play with ``Player`` in this process instead (no executor, no node)."""
    from mcap.reader import make_reader

    from recorder.replay import DeadlineWaiter, JitterStats, Timeline, playback_conditions
    from recorder.ros2pub import RclpyPublisher

    rclpy_init()
    from rclpy.node import Node

    node = Node("demofab_bench_bare_timer")
    pub = RclpyPublisher(node)
    timeline = Timeline.open(config["episode"])
    handles = {}
    for name, info in timeline.topics.items():
        h = pub.create(name, info.type, info.qos)
        if h is not None:
            handles[name] = h
    pub.wait_for_subscribers(1, 10.0)
    if config.get("via_player"):   # diagnosis: the Player in this process, no executor
        from recorder.replay import Player, ReplayOptions

        player = Player(config["episode"], pub, ReplayOptions(**config.get("options", {})))
        player.prepare()
        time.sleep(config.get("delay", 1.0))
        stats = player.play()
        print(json.dumps({"messages": stats.messages, "jitter_ms": stats.jitter_ms}), flush=True)
        return
    with open(config["episode"], "rb") as f:
        messages = [(m.log_time, handles[c.topic], m.data) for _, c, m in
                    make_reader(f).iter_messages(topics=list(handles), log_time_order=True)]
    time.sleep(config.get("delay", 1.0))
    jitter = JitterStats()
    waiter = DeadlineWaiter()
    clock = time.perf_counter_ns
    with playback_conditions():
        t0 = clock()
        first = messages[0][0] if messages else 0
        for log_time, handle, data in messages:
            deadline = t0 + (log_time - first)
            if not waiter.wait_until(deadline):
                continue
            t = clock()
            pub.publish(handle, data)
            jitter.add(t - deadline)
    print(json.dumps({"messages": len(messages), "jitter_ms": jitter.summary()}), flush=True)
    pub.close()
    node.destroy_node()


def role_load(config: dict[str, Any]) -> None:
    """A busy loop on one core, until stdin closes or says stop."""
    stop = threading.Event()

    def wait_for_stop() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    n = 0
    while not stop.is_set():
        for _ in range(100_000):
            n += 1


def _mean_p99(runs: list[dict[str, Any]]) -> float | None:
    p99 = [r["jitter_ms"]["p99"] for r in runs if (r.get("jitter_ms") or {}).get("p99") is not None]
    return round(sum(p99) / len(p99), 4) if p99 else None


def replay(episode: str, work: Path, cpu_load: int = 0, rounds: int = 2) -> dict[str, Any]:
    """``rounds`` replays by ``player_node``, each between two runs of the bare timer loop
    (bare, replay, bare, replay, bare): the load of a shared machine changes from second
    to second, and both sides see the same mix of it."""
    from recorder.replay import Timeline

    topics = [t for t in Timeline.open(episode).topics if t not in HUMANOID_SKIP]
    loads = [start_role("load", {}) for _ in range(cpu_load)]
    count = start_role("count", {"profile": "humanoid", "topics": topics}, work / "replay_count.log")
    bare: list[dict[str, Any]] = []
    played: list[dict[str, Any]] = []
    try:
        for k in range(2 * rounds + 1):
            if k % 2:
                stats_path = work / f"replay_stats_{k // 2}.json"
                player = start_node("player_node", {"path": episode, "rate": 1.0,
                                               "wait_for_subscribers": 1, "delay": 1.0,
                                               "stats_out": str(stats_path)},
                               work / f"player_{k // 2}.log")
                player.wait_for(player.exited, 600)
                exit_code = player.stop()
                stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
                played.append({"exit": exit_code, **{key: stats.get(key) for key in (
                    "messages", "duration_s", "gc_collections", "reader_wakeups", "jitter_ms")}})
            else:
                b = start_role("bare", {"episode": episode, "delay": 1.0}, work / f"bare_{k // 2}.log")
                b.wait_for(b.has_result, 600)
                result = b.last_json() or {"error": "the bare timer loop gave no result"}
                bare.append(result)
                b.stop()
    finally:
        for p in loads:
            p.tell("stop")
            p.stop(signal.SIGKILL, timeout=5)
    time.sleep(1.0)
    count.tell()
    count.wait_for(count.exited, 10)
    received = sum((count.last_json() or {}).get("received", {}).values())
    return {"exit": max((r["exit"] or 0) for r in played) if played else None,
            "published": sum(r["messages"] or 0 for r in played), "received": received,
            "p99_ms": _mean_p99(played), "runs": played, "cpu_load": cpu_load,
            "bare_timer": {"publishes": "the same bytes through RclpyPublisher, to the same "
                                        "subscriber", "p99_ms": _mean_p99(bare), "runs": bare}}


__all__ = ["HUMANOID_SKIP", "replay", "role_bare", "role_load"]
