"""Episode control: the one controller that ``demofab record`` (terminal and plan) and the
ROS 2 ``recorder_node`` (services and parameters) drive.

``Controller`` applies commands (start, stop with an outcome, discard, re-record, marks)
and the plan's timing (episode length, reset phase, autostart, episode count) to a
``Session``; it owns no message loop, so a ROS 2 node calls ``step`` from its timer while
its subscriptions write to ``Session.write``. ``Recorder`` adds the loop over a source.
"""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from .contract import EpisodeInfo, EventKind
from .errors import RecorderError
from .session import Session, State
from .sources import Source
from .writer import WRITE_ERRORS

#: called after each episode event the controller caused: (kind, time ns, episode)
EventHook = Callable[[EventKind, int, EpisodeInfo], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """Non-interactive episode timing, in the source's clock."""

    episodes: int | None = None       # None: until stopped
    episode_seconds: float | None = None
    reset_seconds: float = 0.0
    task: str = ""
    operator: str = ""
    outcome: str = "success"
    autostart: bool = True


@dataclass(frozen=True, slots=True)
class Command:
    """One episode-control command: start, stop, discard, rerecord, mark, quit.
    ``mark`` takes the event kind (subtask, intervention, note) as ``outcome``; ``stop``
    may carry extra Metadata records for the episode (a sim episode's provenance)."""

    name: str
    outcome: str = "success"
    task: str | None = None
    operator: str | None = None
    label: str = ""
    metadata: dict[str, dict[str, str]] | None = None


class Controller:
    """Commands and the plan, applied to a session at ``step(now)``."""

    def __init__(self, session: Session, plan: Plan | None = None, *,
                 on_event: EventHook | None = None) -> None:
        self.session = session
        self.plan = plan or Plan()
        self.commands: queue.Queue[Command] = queue.Queue()
        self.on_event = on_event
        self.finished: list[EpisodeInfo] = []
        self.stop_reason = ""
        self.error: RecorderError | None = None
        self.task, self.operator = self.plan.task, self.plan.operator
        self.stopped = False
        self.now_ns = 0

    def request_stop(self, reason: str = "stop") -> None:
        self.stopped, self.stop_reason = True, reason

    def _remaining(self) -> int | None:
        if self.plan.episodes is None:
            return None
        return self.plan.episodes - len(self.finished)

    def _event(self, kind: EventKind, now: int, info: EpisodeInfo) -> EpisodeInfo:
        if self.on_event is not None:
            self.on_event(kind, now, info)
        return info

    def apply(self, cmd: Command, now: int) -> EpisodeInfo | None:
        """Apply one command at once; raises ``RecorderError`` when it does not fit the
        session's state. Returns the episode it started or ended."""
        s = self.session
        if cmd.task is not None:
            self.task = cmd.task
        if cmd.operator is not None:
            self.operator = cmd.operator
        if cmd.name == "start":
            return self._start(now)
        if cmd.name == "stop":
            return self._stop(cmd.outcome, now, metadata=cmd.metadata)
        if cmd.name == "discard":
            info = s.discard_episode(at_ns=now, reset_s=self.plan.reset_seconds)
            return self._event(EventKind.DISCARD, now, info)
        if cmd.name == "rerecord":
            if s.current is None and self.finished and s.episodes and \
                    s.episodes[-1] is self.finished[-1]:
                self.finished.pop()
            info = s.rerecord(cmd.task, cmd.operator, at_ns=now)
            return self._event(EventKind.START, now, info)
        if cmd.name == "mark":
            try:
                kind = EventKind[cmd.outcome.upper()]
            except KeyError:
                raise RecorderError(f"unknown mark {cmd.outcome!r}; use subtask, "
                                    "intervention or note") from None
            s.mark(kind, cmd.label, at_ns=now)
            return None
        if cmd.name == "quit":
            self.request_stop("quit")
            return None
        raise RecorderError(f"unknown command {cmd.name!r}")

    def _start(self, now: int) -> EpisodeInfo:
        info = self.session.start_episode(self.task, self.operator, at_ns=now)
        self.error = None
        return self._event(EventKind.START, now, info)

    def _stop(self, outcome: str, now: int, ended_by: str = "stop", *,
              metadata: dict[str, dict[str, str]] | None = None) -> EpisodeInfo:
        info = self.session.stop_episode(outcome, at_ns=now, ended_by=ended_by,
                                         reset_s=self.plan.reset_seconds, metadata=metadata)
        self.finished.append(info)
        return self._event(EventKind.STOP, now, info)

    def step(self, now: int) -> None:
        """Apply queued commands and the plan at time ``now`` (ns, source clock). A command
        that does not fit the state is kept in ``error``; a write failure is raised."""
        s, plan = self.session, self.plan
        self.now_ns = now
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                break
            try:
                self.apply(cmd, now)
            except WRITE_ERRORS:
                raise
            except RecorderError as exc:  # a command that does not fit the state
                self.error = exc
        cur = s.current
        if s.state is State.RECORDING and cur is not None and plan.episode_seconds and \
                now - cur.start_ns >= plan.episode_seconds * 1e9:
            self._stop(plan.outcome, now)
        remaining = self._remaining()
        if remaining is not None and remaining <= 0 and s.state is not State.RECORDING:
            self.request_stop("done")
            return
        if plan.autostart and s.reset_done(now) and s.state is State.IDLE:
            self._start(now)

    def finish(self, ended_by: str = "close", *, at_ns: int | None = None) -> EpisodeInfo | None:
        """Finish the open episode cleanly (outcome unknown), if one is being written; at
        ``at_ns``, else the time of the last step."""
        if self.session.writer is None:
            return None
        return self._stop("unknown", at_ns or self.now_ns or time.time_ns(), ended_by)


class Recorder(Controller):
    """A controller that owns the loop: a source feeds the session.

    A source with a ``bind(controller)`` method gets this recorder before its first
    message; it may then queue commands (start, mark, stop with an outcome) on
    ``commands`` and change ``plan``, which are applied at the next message's time."""

    def __init__(self, session: Session, source: Source, plan: Plan | None = None, *,
                 on_update: Callable[[Recorder, int], None] | None = None,
                 update_every_s: float = 0.25, on_event: EventHook | None = None) -> None:
        super().__init__(session, plan, on_event=on_event)
        self.source = source
        self.on_update = on_update
        self.update_every_ns = int(update_every_s * 1e9)

    def run(self, *, handle_signals: bool = True) -> list[EpisodeInfo]:
        """Record until the plan is done, ``quit``, SIGINT/SIGTERM, or the source ends.
        The open episode is always finished cleanly; a write failure ends the run with
        its error (the episode is kept as damaged)."""
        previous: dict[signal.Signals, signal._HANDLER] = {}
        if handle_signals:
            def on_signal(signum: int, frame: FrameType | None) -> None:
                self.request_stop(signal.Signals(signum).name)

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        s = self.session
        next_update = 0
        bind = getattr(self.source, "bind", None)
        if callable(bind):  # a source that drives episode control itself (the simulator)
            bind(self)
        try:
            for msg in self.source.messages():
                now = time.time_ns() if msg is None else msg.log_time
                self.step(now)
                if self.stopped:
                    break
                if msg is not None:
                    s.write(msg.topic, msg.data, msg.log_time, msg.publish_time, msg.sequence)
                if self.on_update is not None and now >= next_update:
                    self.on_update(self, now)
                    next_update = now + self.update_every_ns
            else:
                self.stop_reason = self.stop_reason or "source ended"
        finally:
            self.source.close()
            self.finish("signal" if self.stop_reason.startswith("SIG") else "close")
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.finished
