"""The replay backend for ROS 2 itself (rclpy): raw CDR bytes through rclpy publishers.

Registered as the replay backend ``ros2`` (``demofab replay --to ros2``) and used by the
``player_node`` of ``ros2_ws``. rclpy is imported lazily: this module imports without
ROS 2, and :class:`RclpyPublisher` raises a one-line :class:`RclpyMissing` when rclpy is
not there.

Message classes are resolved with ``rosidl_runtime_py.utilities.get_message`` when that
package exists, else by importing ``<pkg>.msg`` (what it does too). A type whose package
is not installed (e.g. ``demofab_msgs`` before ``ros2_ws`` is built) is skipped with a
note in :attr:`RclpyPublisher.skipped`; the player then does not read that topic.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any

from .profile import Qos
from .replay import ReplayError, register_publisher

__all__ = ["RclpyMissing", "RclpyPublisher", "message_class", "rclpy_qos"]


class RclpyMissing(ReplayError):
    """rclpy is not importable in this interpreter."""


def _rclpy() -> Any:
    try:
        import rclpy
    except ImportError as exc:
        raise RclpyMissing("--to ros2 needs rclpy: run it in a ROS 2 environment (source your "
                           "ROS 2 setup, or use the .venv-ros from tools/ros-venv.sh), or use "
                           "--to dds, which needs no ROS 2") from exc
    return rclpy


def message_class(msgtype: str) -> Any:
    """The rclpy message class for ``pkg/msg/Name``; ReplayError when not installed."""
    try:   # a ROS 2 package, without type information
        get_message = importlib.import_module("rosidl_runtime_py.utilities").get_message
    except ImportError:
        get_message = None
    try:
        if get_message is not None:
            return get_message(msgtype)
        pkg, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ReplayError(f"message type {msgtype} is not installed in this ROS 2 environment "
                          f"({exc})") from exc


def rclpy_qos(qos: Qos) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL if qos.history == "keep_all" else HistoryPolicy.KEEP_LAST,
        depth=max(1, qos.depth),
        reliability=ReliabilityPolicy.RELIABLE if qos.reliability == "reliable"
        else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.durability == "transient_local"
        else DurabilityPolicy.VOLATILE,
    )


class RclpyPublisher:
    """Replay :class:`recorder.replay.Publisher` on an rclpy node.

    Give it a node (the player_node does) or let it create ``node_name`` (and init rclpy
    in its own context if needed); :meth:`close` destroys only what it created."""

    def __init__(self, node: Any = None, *, node_name: str = "demofab_replay",
                 skip_missing_types: bool = True) -> None:
        rclpy = _rclpy()
        self._own_context: Any = None
        if node is None:
            from rclpy.context import Context

            ctx = Context()
            rclpy.init(context=ctx)
            self._own_context = ctx
            node = rclpy.create_node(node_name, context=ctx)
            self._own_node = True
        else:
            self._own_node = False
        self.node = node
        self.skip_missing_types = skip_missing_types
        self.publishers: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}

    def create(self, topic: str, msgtype: str, qos: Qos) -> Any:
        try:
            cls = message_class(msgtype)
        except ReplayError as exc:
            if not self.skip_missing_types:
                raise
            self.skipped[topic] = str(exc)
            return None
        pub = self.node.create_publisher(cls, topic, rclpy_qos(qos))
        self.publishers[topic] = pub
        return pub

    def publish(self, handle: Any, data: bytes) -> None:
        handle.publish(data)

    def wait_for_subscribers(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() >= count for p in self.publishers.values()):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        for pub in self.publishers.values():
            self.node.destroy_publisher(pub)
        self.publishers.clear()
        if self._own_node:
            self.node.destroy_node()
        if self._own_context is not None:
            import rclpy

            rclpy.shutdown(context=self._own_context)
            self._own_context = None

    def __enter__(self) -> RclpyPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _factory(domain_id: int | None = None, **_: Any) -> RclpyPublisher:
    """``--to ros2``: a node of its own, in ``domain_id`` (default: $ROS_DOMAIN_ID)."""
    if domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    return RclpyPublisher()


register_publisher("ros2", _factory)
