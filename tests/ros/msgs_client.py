"""Child of test_demofab_msgs.py, run with the freshly built demofab_msgs on its paths:
drives player_node's ~/seek (demofab_msgs/srv/Seek) and recorder_node's ~/stop_episode
(demofab_msgs/srv/StopEpisode), listens to /demofab/episode_events, prints JSON."""

from __future__ import annotations

import json
import sys
import time

import rclpy
from demofab_msgs.msg import EpisodeEvent
from demofab_msgs.srv import Seek, StopEpisode
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_srvs.srv import Trigger


def call(node: Node, srv_type: object, name: str, request: object) -> object:
    client = node.create_client(srv_type, name)
    if not client.wait_for_service(timeout_sec=20):
        raise SystemExit(f"service {name} not available")
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=20)
    return future.result()


def main() -> None:
    rclpy.init()
    node = Node("demofab_msgs_client")
    events: list[EpisodeEvent] = []
    node.create_subscription(EpisodeEvent, "/demofab/episode_events", events.append,
                             QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    out: dict[str, object] = {}
    good = call(node, Seek, "/demofab_player/seek", Seek.Request(time_s=0.5))
    bad = call(node, Seek, "/demofab_player/seek", Seek.Request(time_s=99.0))
    out["seek"] = [good.success, good.message, bad.success, bad.message]
    started = call(node, Trigger, "/demofab_recorder/start", Trigger.Request())
    stopped = call(node, StopEpisode, "/demofab_recorder/stop_episode",
                   StopEpisode.Request(outcome="failure", note="dropped the cup"))
    out["stop"] = [started.success, stopped.success, stopped.message, stopped.file]
    end = time.monotonic() + 10
    while len(events) < 2 and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    out["events"] = [[e.kind, e.episode_index, e.outcome] for e in events]
    print(json.dumps(out), flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
