"""The recording loop: a source feeds a session; episodes start and stop on a plan
(non-interactive) or on commands (keys in the terminal panel, ROS 2 services)."""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from .errors import RecorderError
from .session import EpisodeInfo, Session, State
from .sources import Source


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
    """One episode-control command: start, stop, discard, rerecord, mark, quit."""

    name: str
    outcome: str = "success"
    task: str | None = None
    operator: str | None = None
    label: str = ""


class Recorder:
    def __init__(self, session: Session, source: Source, plan: Plan | None = None, *,
                 on_update: Callable[[Recorder, int], None] | None = None,
                 update_every_s: float = 0.25) -> None:
        self.session = session
        self.source = source
        self.plan = plan or Plan()
        self.commands: queue.Queue[Command] = queue.Queue()
        self.on_update = on_update
        self.update_every_ns = int(update_every_s * 1e9)
        self.finished: list[EpisodeInfo] = []
        self.stop_reason = ""
        self.error: Exception | None = None
        self.task, self.operator = self.plan.task, self.plan.operator
        self._stop = False
        self.now_ns = 0

    def request_stop(self, reason: str = "stop") -> None:
        self._stop, self.stop_reason = True, reason

    def _remaining(self) -> int | None:
        if self.plan.episodes is None:
            return None
        return self.plan.episodes - len(self.finished)

    def _handle(self, cmd: Command, now: int) -> None:
        s = self.session
        if cmd.task is not None:
            self.task = cmd.task
        if cmd.operator is not None:
            self.operator = cmd.operator
        if cmd.name == "start":
            s.start_episode(self.task, self.operator, at_ns=now)
        elif cmd.name == "stop":
            self.finished.append(s.stop_episode(cmd.outcome, at_ns=now,
                                                reset_s=self.plan.reset_seconds))
        elif cmd.name == "discard":
            s.discard_episode(at_ns=now, reset_s=self.plan.reset_seconds)
        elif cmd.name == "rerecord":
            if s.current is None and self.finished and s.episodes and \
                    s.episodes[-1] is self.finished[-1]:
                self.finished.pop()
            s.rerecord(at_ns=now)
        elif cmd.name == "mark":
            from .session import EventKind

            s.mark(EventKind[cmd.outcome.upper()], cmd.label, at_ns=now)
        elif cmd.name == "quit":
            self.request_stop("quit")
        else:
            raise RecorderError(f"unknown command {cmd.name!r}")

    def step(self, now: int) -> None:
        """Apply commands and the plan at time ``now`` (ns, source clock)."""
        s, plan = self.session, self.plan
        self.now_ns = now
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                break
            try:
                self._handle(cmd, now)
            except RecorderError as exc:  # a command that does not fit the state
                self.error = exc
        if s.state is State.RECORDING and plan.episode_seconds is not None and \
                now - s.current.start_ns >= plan.episode_seconds * 1e9:  # type: ignore[union-attr]
            self.finished.append(s.stop_episode(plan.outcome, at_ns=now,
                                                reset_s=plan.reset_seconds))
        remaining = self._remaining()
        if remaining is not None and remaining <= 0 and s.state is not State.RECORDING:
            self.request_stop("done")
            return
        if plan.autostart and s.reset_done(now) and s.state is State.IDLE:
            s.start_episode(self.task, self.operator, at_ns=now)

    def run(self, *, handle_signals: bool = True) -> list[EpisodeInfo]:
        """Record until the plan is done, ``quit``, SIGINT/SIGTERM, or the source ends.
        The open episode is always finished cleanly."""
        previous: dict[int, object] = {}
        if handle_signals:
            def on_signal(signum: int, frame: FrameType | None) -> None:
                self.request_stop(signal.Signals(signum).name)

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        s = self.session
        next_update = 0
        try:
            for msg in self.source.messages():
                now = time.time_ns() if msg is None else msg.log_time
                self.step(now)
                if self._stop:
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
            if s.writer is not None and s.writer.failed is None:
                ended = "signal" if self.stop_reason.startswith("SIG") else "close"
                self.finished.append(s.stop_episode("unknown", at_ns=self.now_ns or None,
                                                    ended_by=ended))
            for sig, handler in previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
        return self.finished
