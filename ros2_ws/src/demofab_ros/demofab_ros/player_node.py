"""player_node: replay a DemoFab recording (episode file, several, or a session) on ROS 2.

A thin adapter over ``recorder.replay.Player`` with the rclpy backend
(``recorder.ros2pub.RclpyPublisher``): the recorded CDR bytes are published unchanged, on
the recorded spacing, with the recorded QoS. Playback runs in a thread; the executor in
the main thread answers the services and parameter changes.

Services:

  ~/pause, ~/resume, ~/toggle_pause, ~/stop   std_srvs/srv/Trigger
  ~/seek    demofab_msgs/srv/Seek (float64 time_s)   only where demofab_msgs is built

Parameters that act at runtime (``ros2 param set /demofab_player NAME VALUE``):

  rate      playback speed (the set-rate service of ``ros2 bag play``)
  seek_to   seconds into the selection: jump there (works without demofab_msgs)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from recorder.errors import RecorderError
from recorder.replay import Player, ReplayOptions, parse_remap
from recorder.ros2pub import RclpyPublisher, message_class

from .runtime import RuntimeNode, run

NODE_NAME = "demofab_player"
STRINGS = Parameter.Type.STRING_ARRAY
INTEGERS = Parameter.Type.INTEGER_ARRAY

#: (name, default, description); a Parameter.Type default declares an unset typed array
PARAMETERS: tuple[tuple[str, Any, str], ...] = (
    ("path", "", "episode file (.mcap), session directory or rosbag2 bag to play"),
    ("rate", 1.0, "playback speed; changeable at runtime (set-rate)"),
    ("loop", False, "start over at the end, until stopped"),
    ("start_offset", 0.0, "seconds into the selection to start at"),
    ("start_paused", False, "start paused (resume with ~/resume or ~/toggle_pause)"),
    ("clock", False, "publish /clock with the recorded time"),
    ("clock_rate", 100.0, "/clock rate in Hz when clock is true"),
    ("topics", STRINGS, "recorded topics to play (unset or empty: all)"),
    ("remap", STRINGS, "topic remaps, '/from:=/to'"),
    ("episodes", INTEGERS, "episode indices of a session to play (unset or empty: all)"),
    ("episode_gap", 0.0, "seconds between the episodes of a session; < 0 keeps the recorded gaps"),
    ("delay", 0.0, "seconds to wait after creating the publishers before playing"),
    ("wait_for_subscribers", 0, "wait until every topic has this many subscribers (0: off)"),
    ("wait_timeout", 10.0, "give up waiting for subscribers after this many seconds"),
    ("seek_to", -1.0, "set to jump to this many seconds into the selection"),
    ("exit_on_end", True, "exit when the playback ends (not when looping)"),
    ("stats_out", "", "write the playback statistics (JSON) to this file at the end"),
)


class PlayerNode(RuntimeNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for name, default, description in PARAMETERS:
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        p = self._param
        path = p("path")
        if not path:
            raise RecorderError("player_node: set the 'path' parameter to an episode file "
                                "or a session directory")
        gap = float(p("episode_gap"))
        clock = bool(p("clock"))
        options = ReplayOptions(
            rate=float(p("rate")), loop=bool(p("loop")), start_offset_s=float(p("start_offset")),
            topics=tuple(p("topics")) if p("topics") else None,
            remap=parse_remap(list(p("remap") or [])),
            clock_hz=float(p("clock_rate")) if clock else None,
            episodes=tuple(int(i) for i in p("episodes")) if p("episodes") else None,
            episode_gap_s=gap if gap >= 0 else None,
            start_paused=bool(p("start_paused")),
        )
        self.backend = RclpyPublisher(self)
        self.player = Player(Path(path), self.backend, options)
        self.player.prepare()   # publishers now, so subscribers can discover them early
        for topic, why in self.backend.skipped.items():
            self.get_logger().warn(f"{topic}: not played: {why}")
        self.get_logger().info(
            f"playing {path}: {len(self.player.timeline.episodes)} episode(s), "
            f"{self.player.total} messages, {self.player.duration_s:.2f} s at rate {options.rate}"
            + (", looping" if options.loop else ""))

        self.create_service(Trigger, "~/pause", self._srv_pause)
        self.create_service(Trigger, "~/resume", self._srv_resume)
        self.create_service(Trigger, "~/toggle_pause", self._srv_toggle)
        self.create_service(Trigger, "~/stop", self._srv_stop)
        try:
            seek_cls = message_class("demofab_msgs/srv/Seek")
        except RecorderError:
            seek_cls = None
        if seek_cls is not None:
            self.create_service(seek_cls, "~/seek", self._srv_seek)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _param(self, name: str) -> Any:
        from rclpy.exceptions import ParameterUninitializedException

        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:   # an unset typed array
            return None

    # -- playback ------------------------------------------------------------------------
    def wait_for_subscribers(self) -> None:
        count = int(self._param("wait_for_subscribers"))
        if count > 0 and not self.backend.wait_for_subscribers(count, float(self._param("wait_timeout"))):
            missing = [t for t, pub in self.backend.publishers.items()
                       if pub.get_subscription_count() < count]
            self.get_logger().warn(f"playing although these topics have fewer than {count} "
                                   f"subscriber(s): {', '.join(missing)}")
        delay = float(self._param("delay"))
        if delay > 0:
            time.sleep(delay)

    def begin(self) -> None:
        self.wait_for_subscribers()
        self.player.start()

    def interrupted(self, reason: str) -> None:
        self.player.stop()

    def poll(self) -> None:
        """The run ends with the playback, unless exit_on_end is false (checked between
        spins: no timer wakes the interpreter while the player thread keeps time)."""
        if self.player.finished and self._param("exit_on_end") and not self.done.done():
            self.done.set_result(True)

    def finish(self, reason: str) -> int:
        """Stop playback, write the statistics; exit status 1 if the playback failed."""
        self.player.stop()
        self.player.join(5.0)
        self.report()
        error = self.player.error
        if error is not None:
            self.get_logger().error(f"playback failed: {error}")
        self.backend.close()
        return 1 if error is not None else 0

    def report(self) -> dict[str, Any]:
        stats = self.player.stats.as_dict()
        stats["unpublished"] = sorted(self.player.unpublished)
        out = self._param("stats_out")
        if out:
            Path(out).write_text(json.dumps(stats))
        j = stats["jitter_ms"]
        self.get_logger().info(f"played {stats['messages']} messages in {stats['duration_s']} s; "
                               f"timing error p50 {j['p50']} ms, p99 {j['p99']} ms, max {j['max']} ms")
        return stats

    # -- services and parameters -----------------------------------------------------------
    def _where(self) -> str:
        return f"{self.player.position_s:.3f} s of {self.player.duration_s:.3f} s"

    def _srv_pause(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.player.pause()
        response.success, response.message = True, f"paused at {self._where()}"
        return response

    def _srv_resume(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.player.resume()
        response.success, response.message = True, f"playing from {self._where()}"
        return response

    def _srv_toggle(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        paused = self.player.toggle_pause()
        response.success = True
        response.message = f"{'paused at' if paused else 'playing from'} {self._where()}"
        return response

    def _srv_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.player.stop()
        response.success, response.message = True, f"stopped at {self._where()}"
        return response

    def _seek(self, t_s: float) -> tuple[bool, str]:
        if not t_s >= 0:
            return False, f"seek time must be >= 0 s, got {t_s}"
        if t_s > self.player.duration_s:
            return False, (f"seek time {t_s:.3f} s is past the end of the selection "
                           f"({self.player.duration_s:.3f} s)")
        self.player.seek(t_s)
        return True, f"seeking to {t_s:.3f} s"

    def _srv_seek(self, request: Any, response: Any) -> Any:
        response.success, response.message = self._seek(float(request.time_s))
        return response

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for param in params:
            if param.name == "rate":
                rate = float(param.value)
                if not rate > 0:
                    return SetParametersResult(successful=False,
                                               reason=f"rate must be positive, got {rate}")
                self.player.set_rate(rate)
            elif param.name == "seek_to":
                if float(param.value) < 0:   # the "unset" value
                    continue
                ok, why = self._seek(float(param.value))
                if not ok:
                    return SetParametersResult(successful=False, reason=why)
            elif param.name in ("exit_on_end", "stats_out", "wait_timeout"):
                continue
            else:
                return SetParametersResult(
                    successful=False,
                    reason=f"{param.name} is read at start-up only; use rate, seek_to or the "
                           "services at runtime")
        return SetParametersResult(successful=True)


def main(args: list[str] | None = None) -> int:
    return run("player_node", PlayerNode, args, period_s=0.1)


if __name__ == "__main__":
    sys.exit(main())
