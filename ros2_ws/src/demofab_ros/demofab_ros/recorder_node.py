"""recorder_node: record a DemoFab profile's ROS 2 topics into per-episode MCAP files.

A thin adapter over ``recorder.session.Session`` and ``recorder.control.Controller``, the
episode controller of ``demofab record``: the services submit its commands (start, stop
with an outcome, discard, re-record, marks) and a 50 Hz timer calls its ``step`` (episode
length, reset phase, autostart, episode count, from the parameters). Every profile topic
is subscribed with ``raw=True`` and the profile's QoS (a deeper history, so a busy moment
does not drop samples), and the CDR bytes go straight to ``Session.write`` with the
receive time (``time.time_ns()``) as log time: nothing is deserialised or serialised again.

At start the session's interrupted episodes are recovered (``Session.recover``). A write
failure (full disk, I/O error) ends the episode, kept as damaged, and the node (exit 2).

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
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import SetBool, Trigger

from recorder.contract import EPISODE_EVENT_TYPE, EVENTS_TOPIC, OUTCOMES, ROBOT_DESCRIPTION
from recorder.control import Command, Controller, Plan
from recorder.errors import RecorderError
from recorder.profile import TopicSpec
from recorder.session import EpisodeInfo, EventKind, Session, make_event
from recorder.writer import WRITE_ERRORS, WriterOptions

from .diagnostics import health_statuses
from .runtime import RuntimeNode, run

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


class RecorderNode(RuntimeNode):
    """Subscriptions write to the session; services and the timer drive the controller."""

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
        for r in self.session.recover():
            self.get_logger().warn(f"recovered {r.path.name}: {r.messages} messages "
                                   f"({r.kept_bytes} of {r.total_bytes} bytes usable)")
        self.profile = self.session.profile
        self.controller = Controller(self.session, self._plan(), on_event=self._on_event)
        self._plan_stale = True  # the plan is read from the parameters at the next tick
        self.error = ""
        self.status = 0
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
            event_cls = message_class(EPISODE_EVENT_TYPE)
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
        self._plan_stale = True  # the new values apply once this returns: read at the next tick
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
            self.session.robot_description = (ROBOT_DESCRIPTION, "application/xml",
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
                self._failed(topic, exc)

        return on_message

    def _failed(self, what: str, exc: RecorderError) -> None:
        """Log an error once; a write failure also ends the node (exit status 2), as it
        ends ``demofab record``: the episode is kept as damaged for ``recover``."""
        if str(exc) != self.error:
            self.error = str(exc)
            self.get_logger().error(f"{what}: {exc}")
        if isinstance(exc, WRITE_ERRORS) and not self.done.done():
            self.status = 2
            self.done.set_result(False)

    # -- episode control: the controller of ``demofab record`` ---------------------------
    def _plan(self) -> Plan:
        p = self._param
        return Plan(episodes=int(p("episodes")) or None,
                    episode_seconds=float(p("episode_seconds")) or None,
                    reset_seconds=float(p("reset_seconds")), task=p("task"),
                    operator=p("operator"), outcome=p("outcome"), autostart=bool(p("autostart")))

    def _on_event(self, kind: EventKind, at_ns: int, info: EpisodeInfo) -> None:
        if self.events_pub is not None:  # the same bytes as recorded in the episode
            outcome = info.outcome if kind is EventKind.STOP else ""
            self.events_pub.publish(make_event(kind, at_ns, info, outcome=outcome))
        if kind is EventKind.START:
            self.error = ""
            self.get_logger().info(f"episode {info.index} recording: {info.file} "
                                   f"(task {info.task!r}, operator {info.operator!r})")
        elif kind is EventKind.DISCARD:
            self.get_logger().info(f"episode {info.index} discarded (discarded/{info.file})")
        else:
            self.get_logger().info(_summary(info))

    def command(self, cmd: Command) -> EpisodeInfo | None:
        """Apply one command now (the services); raises ``RecorderError`` if it does not
        fit the session's state."""
        c = self.controller
        c.plan = self._plan()
        try:
            return c.apply(cmd, time.time_ns())
        except WRITE_ERRORS as exc:
            self._failed("episode control", exc)
            raise

    def _tick(self) -> None:
        """The plan: stop after episode_seconds, autostart after the reset phase, done
        after the wanted number of episodes (parameters are read again after a change)."""
        c = self.controller
        if self._plan_stale:
            self._plan_stale = False
            c.plan = self._plan()
            c.task, c.operator = c.plan.task, c.plan.operator
        try:
            c.step(time.time_ns())
        except RecorderError as exc:
            self._failed("episode control", exc)
            return
        if c.stopped and not self.done.done():
            self.get_logger().info(f"{len(c.finished)} episodes recorded; done")
            self.done.set_result(True)

    # -- services ----------------------------------------------------------------------
    def _answer(self, response: Any, *commands: Command) -> Any:
        try:
            for cmd in commands:
                info = self.command(cmd)
        except RecorderError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success = True
        if info is not None:
            response.message = _summary(info) if info.end_ns else \
                f"episode {info.index} recording: {info.file}"
        return response

    def _srv_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._answer(response, Command("start", task=self._param("task"),
                                              operator=self._param("operator")))

    def _srv_stop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        return self._answer(response, Command("stop", "success" if request.data else "failure"))

    def _srv_discard(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._answer(response, Command("discard"))

    def _srv_rerecord(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._answer(response, Command("rerecord", task=self._param("task"),
                                              operator=self._param("operator")))

    def _srv_stop_episode(self, request: Any, response: Any) -> Any:
        commands = [Command("stop", request.outcome or "success")]
        if request.note and self.session.current is not None:
            commands.insert(0, Command("mark", "note", label=request.note))
        self._answer(response, *commands)
        if response.success:
            response.file = str(self.session.dir / self.session.episodes[-1].file)
        return response

    # -- health ------------------------------------------------------------------------
    def _publish_health(self) -> None:
        s = self.session
        report = None
        episode: dict[str, object] = {"episodes_recorded": len(s.episodes)}
        if s.current is not None and s.writer is not None:
            report = s.health(window_s=float(self._param("health_window_s")))
            episode.update(episode=s.current.index, file=s.current.file, task=s.current.task,
                           operator=s.current.operator,
                           episode_s=round((time.time_ns() - s.current.start_ns) / 1e9, 1))
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
    def finish(self, reason: str) -> int:
        """Close the open episode cleanly (outcome unknown; ended_by "close" when the plan
        is done, else "signal"); the exit status is 2 after a write failure."""
        try:
            self.controller.finish("close" if reason == "close" else "signal",
                                   at_ns=time.time_ns())
        except RecorderError as exc:
            self._failed("closing the episode", exc)
            self.status = 2
        return self.status


def _descriptor(description: str) -> Any:
    from rcl_interfaces.msg import ParameterDescriptor

    return ParameterDescriptor(description=description)


def _summary(info: EpisodeInfo) -> str:
    state = ("flagged: " + ", ".join(info.flags)) if info.flagged else "ok"
    return (f"episode {info.index} {info.file}: {info.outcome}, {info.messages} messages, "
            f"{(info.end_ns - info.start_ns) / 1e9:.1f} s, {state}")


def main(args: list[str] | None = None) -> int:
    return run("recorder_node", RecorderNode, args)


if __name__ == "__main__":
    sys.exit(main())
