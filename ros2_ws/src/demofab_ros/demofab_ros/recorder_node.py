"""recorder_node: record a DemoFab profile's ROS 2 topics into per-episode MCAP files.

A thin adapter over ``recorder.session.Session``: every profile topic is subscribed with
``raw=True`` and the profile's QoS (a deeper history, so a busy moment does not drop
samples), and the CDR bytes go straight to ``Session.write`` with the receive time
(``time.time_ns()``) as log time: nothing is deserialised or serialised again.

Services (standard interfaces, callable with ``ros2 service call``):

  ~/start     std_srvs/srv/Trigger   start an episode (task/operator from the parameters)
  ~/stop      std_srvs/srv/SetBool   stop it: data=true success, data=false failure
  ~/discard   std_srvs/srv/Trigger   discard the open episode (moved to discarded/)
  ~/rerecord  std_srvs/srv/Trigger   discard the open (or last) episode and start again
  ~/stop_episode demofab_msgs/srv/StopEpisode  (only where demofab_msgs is built)

Live health at ``health_rate_hz`` on ``/diagnostics`` (diagnostic_msgs/DiagnosticArray).
SIGINT/SIGTERM finish the open episode cleanly (outcome "unknown", ended_by "signal").
"""

from __future__ import annotations

import importlib
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from std_srvs.srv import SetBool, Trigger

from recorder.errors import RecorderError
from recorder.profile import EVENTS_TOPIC, TopicSpec
from recorder.session import OUTCOMES, EpisodeInfo, EventKind, Session, State, make_event
from recorder.writer import COMPRESSIONS, WriterOptions

from .diagnostics import health_statuses

NODE_NAME = "demofab_recorder"

#: (name, default, description); every one can be given in a params YAML or on the command
#: line; task, operator, outcome, reset_seconds and episode_seconds also change at runtime.
PARAMETERS: tuple[tuple[str, Any, str], ...] = (
    ("profile", "humanoid", "built-in profile name or path to a profile YAML"),
    ("out", "", "session directory (created or reopened); default sessions/session-<time>"),
    ("task", "", "task of the next episodes (changeable at runtime)"),
    ("operator", "", "teleoperator of the next episodes (changeable at runtime)"),
    ("robot", "", "robot name in the episode facts (default: the profile's)"),
    ("robot_description_file", "", "URDF/MJCF file attached to every episode"),
    ("robot_description_topic", "/robot_description",
     "std_msgs/String topic (transient local) whose URDF is attached; empty: off"),
    ("reset_seconds", 0.0, "reset phase after each episode (not recorded)"),
    ("episode_seconds", 0.0, "stop each episode after this long; 0 = stop by service"),
    ("episodes", 0, "exit after this many finished episodes; 0 = run until shut down"),
    ("autostart", False, "start an episode at once and after every reset phase"),
    ("outcome", "success", "outcome of episodes ended by episode_seconds"),
    ("compression", "zstd", "MCAP chunk compression: zstd, lz4 or none"),
    ("chunk_size", 1048576, "MCAP chunk size in bytes"),
    ("queue_depth", 10000, "minimum subscription history depth (the profile's if deeper)"),
    ("health_rate_hz", 1.0, "rate of the /diagnostics health messages; 0 = off"),
    ("health_window_s", 2.0, "window of the live health figures"),
)
RUNTIME = {"task", "operator", "outcome", "reset_seconds", "episode_seconds", "autostart",
           "episodes"}


def message_class(type_name: str) -> Any:
    """``sensor_msgs/msg/JointState`` -> the rclpy message class (ImportError if missing)."""
    pkg, kind, name = type_name.split("/")
    module = importlib.import_module(f"{pkg}.{kind}")
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f"{pkg}.{kind} has no {name}") from None


def qos_for(spec: TopicSpec, min_depth: int) -> QoSProfile:
    q = spec.qos
    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL if q.history == "keep_all" else HistoryPolicy.KEEP_LAST,
        depth=max(q.depth, min_depth),
        reliability=(ReliabilityPolicy.BEST_EFFORT if q.reliability == "best_effort"
                     else ReliabilityPolicy.RELIABLE),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if q.durability == "transient_local"
                    else DurabilityPolicy.VOLATILE),
    )


class RecorderNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for name, default, description in PARAMETERS:
            self.declare_parameter(name, default, _descriptor(description))
        p = self._param
        from recorder.cli import open_session

        out = p("out") or f"sessions/session-{datetime.now():%Y%m%d-%H%M%S}"
        options = WriterOptions(compression=p("compression"), chunk_size=int(p("chunk_size")))
        self.session: Session = open_session(Path(out), p("profile"), options=options,
                                             robot=p("robot") or None)
        for r in self.session.recovered:
            self.get_logger().warn(f"recovered {r.path.name}: {r.messages} messages "
                                   f"({r.kept_bytes} of {r.total_bytes} bytes usable)")
        self.profile = self.session.profile
        self.finished: list[EpisodeInfo] = []
        self.done = Future()
        self.error = ""
        self._load_robot_description()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # subscriptions: raw CDR bytes straight into the session
        self.skipped: dict[str, str] = {}
        self.subscriptions_by_topic: dict[str, Any] = {}
        depth = int(p("queue_depth"))
        for spec in self.profile.topics:
            if spec.topic == EVENTS_TOPIC:
                continue  # the session writes its own episode events
            try:
                cls = message_class(spec.type)
            except (ImportError, ValueError) as exc:
                pkg = spec.type.split("/")[0]
                self.skipped[spec.topic] = f"no message class for {spec.type} ({exc})"
                self.get_logger().warn(
                    f"{spec.topic}: not recorded: cannot import the {spec.type} message class "
                    f"(is the ROS 2 package {pkg} installed?); the episode health will flag it")
                continue
            self.subscriptions_by_topic[spec.topic] = self.create_subscription(
                cls, spec.topic, self._callback(spec.topic), qos_for(spec, depth), raw=True)
        self.get_logger().info(
            f"recording profile {self.profile.name!r} into {self.session.dir} "
            f"({len(self.subscriptions_by_topic)} topics"
            + (f", skipped: {', '.join(self.skipped)}" if self.skipped else "") + ")")

        # live episode events, where the demofab_msgs package is built
        self.events_pub = None
        try:
            event_cls = message_class("demofab_msgs/msg/EpisodeEvent")
        except ImportError:
            event_cls = None
        if event_cls is not None:
            self.events_pub = self.create_publisher(
                event_cls, EVENTS_TOPIC,
                qos_for(self.profile.events_topic, 100))

        # services
        self.create_service(Trigger, "~/start", self._srv_start)
        self.create_service(SetBool, "~/stop", self._srv_stop)
        self.create_service(Trigger, "~/discard", self._srv_discard)
        self.create_service(Trigger, "~/rerecord", self._srv_rerecord)
        try:
            stop_cls = message_class("demofab_msgs/srv/StopEpisode")
        except ImportError:
            stop_cls = None
        if stop_cls is not None:
            self.create_service(stop_cls, "~/stop_episode", self._srv_stop_episode)

        # health and episode timing
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        rate = float(p("health_rate_hz"))
        if rate > 0:
            self.create_timer(1.0 / rate, self._publish_health)
        self.create_timer(0.02, self._tick)
        self._tick()

    # -- parameters --------------------------------------------------------------------
    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        for param in params:
            if param.name not in RUNTIME and param.name in {n for n, _, _ in PARAMETERS}:
                return SetParametersResult(
                    successful=False,
                    reason=f"{param.name} is read at start-up only; restart the node to change it")
            if param.name == "outcome" and param.value not in OUTCOMES:
                return SetParametersResult(
                    successful=False,
                    reason=f"outcome {param.value!r} is not one of {', '.join(OUTCOMES)}")
            if param.name == "compression" and param.value not in COMPRESSIONS:
                return SetParametersResult(successful=False, reason="bad compression")
        return SetParametersResult(successful=True)

    def _load_robot_description(self) -> None:
        path = self._param("robot_description_file")
        if path:
            data = Path(path).read_bytes()
            self.session.robot_description = (Path(path).name, "application/xml", data)
            return
        topic = self._param("robot_description_topic")
        if not topic:
            return
        from std_msgs.msg import String

        def on_description(msg: String) -> None:
            if self.session.robot_description is None:
                self.get_logger().info(f"robot description from {topic} "
                                       f"({len(msg.data)} characters) attached to episodes")
            self.session.robot_description = ("robot_description.urdf", "application/xml",
                                              msg.data.encode())

        self.create_subscription(String, topic, on_description, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))

    # -- the hot path --------------------------------------------------------------------
    def _callback(self, topic: str) -> Any:
        write = self.session.write
        time_ns = time.time_ns

        def on_message(data: bytes) -> None:
            try:
                write(topic, data, time_ns())
            except RecorderError as exc:
                self._write_failed(topic, exc)

        return on_message

    def _write_failed(self, topic: str, exc: RecorderError) -> None:
        if str(exc) != self.error:
            self.error = str(exc)
            self.get_logger().error(f"{topic}: {exc}")

    # -- episode control ---------------------------------------------------------------
    def _publish_event(self, kind: EventKind, at_ns: int, info: EpisodeInfo,
                       outcome: str = "") -> None:
        if self.events_pub is not None:  # the same bytes as recorded in the episode
            self.events_pub.publish(make_event(kind, at_ns, info, outcome=outcome))

    def start(self) -> EpisodeInfo:
        now = time.time_ns()
        info = self.session.start_episode(self._param("task"), self._param("operator"),
                                          at_ns=now)
        self.error = ""
        self._publish_event(EventKind.START, now, info)
        self.get_logger().info(f"episode {info.index} recording: {info.file} "
                               f"(task {info.task!r}, operator {info.operator!r})")
        return info

    def stop(self, outcome: str, ended_by: str = "stop") -> EpisodeInfo:
        now = time.time_ns()
        info = self.session.stop_episode(outcome, at_ns=now, ended_by=ended_by,
                                         reset_s=float(self._param("reset_seconds")))
        self.finished.append(info)
        self._publish_event(EventKind.STOP, now, info, outcome)
        self.get_logger().info(_summary(info))
        return info

    def discard(self) -> EpisodeInfo:
        now = time.time_ns()
        info = self.session.discard_episode(at_ns=now,
                                            reset_s=float(self._param("reset_seconds")))
        self._publish_event(EventKind.DISCARD, now, info)
        self.get_logger().info(f"episode {info.index} discarded (discarded/{info.file})")
        return info

    def rerecord(self) -> EpisodeInfo:
        s = self.session
        if s.current is None and self.finished and s.episodes and s.episodes[-1] is self.finished[-1]:
            self.finished.pop()
        now = time.time_ns()
        info = s.rerecord(self._param("task"), self._param("operator"), at_ns=now)
        self._publish_event(EventKind.START, now, info)
        self.get_logger().info(f"re-recording: episode {info.index} recording: {info.file}")
        return info

    def _tick(self) -> None:
        """Episode timing: stop after episode_seconds, autostart after the reset phase."""
        s = self.session
        now = time.time_ns()
        try:
            seconds = float(self._param("episode_seconds"))
            if s.state is State.RECORDING and s.writer is not None and s.writer.failed is None \
                    and seconds > 0 and now - s.current.start_ns >= seconds * 1e9:  # type: ignore[union-attr]
                self.stop(self._param("outcome"))
            wanted = int(self._param("episodes"))
            if wanted > 0 and len(self.finished) >= wanted and s.state is not State.RECORDING:
                if not self.done.done():
                    self.get_logger().info(f"{len(self.finished)} episodes recorded; done")
                    self.done.set_result(True)
                return
            if s.reset_done(now) and self._param("autostart") and s.state is State.IDLE:
                self.start()
        except RecorderError as exc:
            self._write_failed("episode control", exc)

    # -- services ----------------------------------------------------------------------
    def _answer(self, response: Any, action: Any) -> Any:
        try:
            info = action()
        except RecorderError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success = True
        response.message = _summary(info) if info.end_ns else \
            f"episode {info.index} recording: {info.file}"
        return response

    def _srv_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._answer(response, self.start)

    def _srv_stop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        return self._answer(response, lambda: self.stop("success" if request.data else "failure"))

    def _srv_discard(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._answer(response, self.discard)

    def _srv_rerecord(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._answer(response, self.rerecord)

    def _srv_stop_episode(self, request: Any, response: Any) -> Any:
        outcome = request.outcome or "success"

        def action() -> EpisodeInfo:
            if request.note and self.session.current is not None:
                self.session.mark(EventKind.NOTE, request.note)
            return self.stop(outcome)

        self._answer(response, action)
        if response.success:
            response.file = str(self.session.dir / self.session.episodes[-1].file)
        return response

    # -- health ------------------------------------------------------------------------
    def _publish_health(self) -> None:
        s = self.session
        report = None
        episode: dict[str, object] = {"episodes_recorded": len(s.episodes)}
        if s.current is not None and s.writer is not None and s.writer.failed is None:
            report = s.health(window_s=float(self._param("health_window_s")))
            episode.update(episode=s.current.index, file=s.current.file, task=s.current.task,
                           operator=s.current.operator,
                           episode_s=round((time.time_ns() - s.current.start_ns) / 1e9, 1))
        import shutil

        statuses = health_statuses(
            report, state=s.state.value, hardware_id=s.robot,
            topics=[t.topic for t in self.profile.topics if t.topic != EVENTS_TOPIC],
            skipped=self.skipped, episode=episode, session_dir=str(s.dir),
            disk_free_bytes=None if report is not None else shutil.disk_usage(s.dir).free,
            error=self.error)
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [DiagnosticStatus(level=bytes([st.level]), name=st.name, message=st.message,
                                       hardware_id=st.hardware_id,
                                       values=[KeyValue(key=k, value=v) for k, v in st.values])
                      for st in statuses]
        self.diag_pub.publish(msg)

    # -- the end -----------------------------------------------------------------------
    def finish(self, ended_by: str = "signal") -> EpisodeInfo | None:
        """Close the open episode cleanly (outcome unknown)."""
        s = self.session
        if s.writer is None or s.writer.failed is not None:
            return None
        info = s.close(ended_by=ended_by)
        if info is not None:
            self.finished.append(info)
            self.get_logger().info(_summary(info))
        return info


def _descriptor(description: str) -> Any:
    from rcl_interfaces.msg import ParameterDescriptor

    return ParameterDescriptor(description=description)


def _summary(info: EpisodeInfo) -> str:
    state = ("flagged: " + ", ".join(info.flags)) if info.flagged else "ok"
    return (f"episode {info.index} {info.file}: {info.outcome}, {info.messages} messages, "
            f"{(info.end_ns - info.start_ns) / 1e9:.1f} s, {state}")


def spin(node: Node, executor: Any, period_s: float = 0.2) -> str:
    """Spin until ``node.done`` or SIGINT/SIGTERM; returns "close" or the signal's name.

    Our own handlers only set a flag (checked between short spins), so a signal never
    lands in the middle of a write; rclpy's own handlers are left off (``main``), and
    ``EventsExecutor.spin()`` without a timeout would not return on them anyway.
    """
    stop: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        stop.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop and not node.done.done() and rclpy.ok(context=node.context):
            executor.spin_until_future_complete(node.done, timeout_sec=period_s)
    except ExternalShutdownException:
        stop.append("shutdown")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return "close" if node.done.done() and not stop else (stop[0] if stop else "shutdown")


def main(args: list[str] | None = None) -> int:
    from rclpy.experimental import EventsExecutor
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = RecorderNode()
    except RecorderError as exc:
        print(f"recorder_node: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = EventsExecutor()
    executor.add_node(node)
    reason = "signal"
    try:
        reason = spin(node, executor)
    finally:
        node.finish("close" if reason == "close" else "signal")
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
