"""Start-up, spinning, signals and shutdown shared by the demofab_ros nodes.

``run(name, make_node, args)``: rclpy is initialised without its own signal handlers;
SIGINT and SIGTERM only set a flag (checked between short spins, so a signal never lands
in the middle of a write) and tell the node (``interrupted``); the node ends the run by
completing its ``done`` future. ``finish(reason)`` closes what the node holds and gives
the exit status; the node is then destroyed and rclpy shut down, whatever happened.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.task import Future

from recorder.errors import RecorderError


class RuntimeNode(Node):
    """A node that ``run`` can drive: ``done`` ends the run, the hooks below do the rest."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.done = Future()

    def begin(self) -> None:
        """Called once before spinning (e.g. start playback)."""

    def poll(self) -> None:
        """Called between spins (every ``period_s``), on the spinning thread: cheap
        checks that need no timer of their own (a timer's Python callback would take the
        interpreter from the node's other threads more often)."""

    def interrupted(self, reason: str) -> None:
        """Called from the signal handler: only set flags or stop threads here."""

    def finish(self, reason: str) -> int:
        """Close what the node holds; ``reason`` is "close" (done), a signal's name or
        "shutdown". Returns the exit status."""
        return 0


class Signals:
    """SIGINT/SIGTERM handlers that only note the signal and tell the node."""

    def __init__(self, node: RuntimeNode) -> None:
        self.node = node
        self.received: list[str] = []
        self._previous: dict[signal.Signals, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        self.node.interrupted(name)

    def __enter__(self) -> Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def spin(node: RuntimeNode, executor: Any, signals: Signals, period_s: float = 0.2) -> str:
    """Spin until ``node.done`` or a signal; returns "close" or the signal's name
    ("shutdown" when rclpy was shut down from elsewhere). ``EventsExecutor.spin()``
    without a timeout would not return on a signal, hence the short spins."""
    try:
        while not signals.received and not node.done.done() and rclpy.ok(context=node.context):
            executor.spin_until_future_complete(node.done, timeout_sec=period_s)
            node.poll()
    except ExternalShutdownException:
        return "shutdown"
    if signals.received:
        return signals.received[0]
    return "close" if node.done.done() else "shutdown"


def run(name: str, make_node: Callable[[], RuntimeNode], args: list[str] | None = None, *,
        period_s: float = 0.2) -> int:
    """Run one node to its end; a ``RecorderError`` while creating it is one line on
    stderr and exit status 2."""
    from rclpy.experimental import EventsExecutor
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = make_node()
    except RecorderError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = EventsExecutor()
    executor.add_node(node)
    reason = "shutdown"
    status = 1
    try:
        with Signals(node) as signals:
            node.begin()
            reason = spin(node, executor, signals, period_s)
    finally:
        try:
            status = node.finish(reason)
        finally:
            executor.remove_node(node)
            node.destroy_node()
            rclpy.try_shutdown()
    return status
