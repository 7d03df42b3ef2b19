"""Where the player sends messages: the :class:`Publisher` interface, the in-memory
backend, ``/clock``, and the registry of backends by name (``demofab replay --to NAME``).

Backends register a factory with :func:`register_publisher`; :func:`make_publisher`
builds one by name. The built-in ones: ``dds`` (``recorder.dds.DdsPublisher``, Cyclone
DDS, no ROS 2), ``ros2`` (``recorder.ros2pub.RclpyPublisher``) and ``foxglove``
(``recorder.replay.foxglove``, foxglove-sdk), all imported only when asked for, so this
module imports without any of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..profile import Qos
from .errors import ReplayError

__all__ = [
    "CLOCK_QOS", "CLOCK_TOPIC", "CLOCK_TYPE", "PUBLISHERS", "ClockPublisher", "MemoryPublisher",
    "Publisher", "PublisherFactory", "clock_cdr", "make_publisher", "publisher_names",
    "register_publisher",
]

NS = 1_000_000_000
CLOCK_TOPIC = "/clock"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
#: rclcpp::ClockQoS: best effort, keep last 1 (what rosbag2 and rclpy's TimeSource use)
CLOCK_QOS = Qos(reliability="best_effort", durability="volatile", history="keep_last", depth=1)


@runtime_checkable
class Publisher(Protocol):
    """Where the player sends messages. ``create`` is called once per topic before the
    first message and returns the handle ``publish`` gets back, or None when the backend
    cannot publish that type (the player then does not read the topic); ``publish`` gets
    the CDR bytes as recorded (4-byte encapsulation header included). A backend may also
    be a :class:`ClockPublisher`; otherwise the player creates ``/clock``
    (``rosgraph_msgs/msg/Clock``) itself and publishes its CDR."""

    def create(self, topic: str, msgtype: str, qos: Qos) -> Any: ...

    def publish(self, handle: Any, data: bytes) -> None: ...


@runtime_checkable
class ClockPublisher(Protocol):
    """A backend that publishes ``/clock`` itself, given the recorded time in ns."""

    def publish_clock(self, ns: int) -> None: ...


class MemoryPublisher:
    """Keeps what was published: ``(topic, data, perf_counter_ns at publish)`` tuples."""

    def __init__(self) -> None:
        self.created: dict[str, tuple[str, Qos]] = {}
        self.sent: list[tuple[str, bytes, int]] = []
        self._lock = threading.Lock()

    def create(self, topic: str, msgtype: str, qos: Qos) -> str:
        self.created[topic] = (msgtype, qos)
        return topic

    def publish(self, handle: str, data: bytes) -> None:
        self.sent.append((handle, data, time.perf_counter_ns()))

    def topic(self, name: str) -> list[tuple[bytes, int]]:
        return [(d, t) for topic, d, t in self.sent if topic == name]


def clock_cdr(ns: int) -> bytes:
    """``rosgraph_msgs/msg/Clock`` for ``ns`` (nanoseconds), as CDR bytes."""
    from ..types import serialize, typestore

    T = typestore().types
    msg = T[CLOCK_TYPE](clock=T["builtin_interfaces/msg/Time"](sec=ns // NS, nanosec=ns % NS))
    return serialize(msg, CLOCK_TYPE)


# --------------------------------------------------------------------------- registry
#: A factory gets the options of the command line (``domain_id``: int or None) and
#: returns a :class:`Publisher`; it may ignore options it has no use for.
PublisherFactory = Callable[..., Publisher]
PUBLISHERS: dict[str, PublisherFactory] = {}


def register_publisher(name: str, factory: PublisherFactory) -> None:
    """Make ``factory`` the backend called ``name`` (``demofab replay --to name``)."""
    PUBLISHERS[name] = factory


def publisher_names() -> list[str]:
    """The registered backends, built-in ones included, sorted."""
    _load_builtin()
    return sorted(PUBLISHERS)


def make_publisher(name: str, **options: Any) -> Publisher:
    """The backend ``name``, built with ``options``; ReplayError naming the known ones."""
    _load_builtin()
    try:
        factory = PUBLISHERS[name]
    except KeyError:
        raise ReplayError(f"unknown replay target {name!r}; available: "
                          f"{', '.join(sorted(PUBLISHERS))}") from None
    return factory(**options)


def _dds(domain_id: int | None = None, **_: Any) -> Publisher:
    from ..dds import DdsPublisher  # cyclonedds: imported only when asked for

    publisher: Publisher = DdsPublisher(domain_id)
    return publisher


def _foxglove(**options: Any) -> Publisher:
    from .foxglove import foxglove_publisher  # foxglove-sdk: imported only when asked for

    publisher: Publisher = foxglove_publisher(**options)
    return publisher


def _load_builtin() -> None:
    PUBLISHERS.setdefault("dds", _dds)
    PUBLISHERS.setdefault("foxglove", _foxglove)
    if "ros2" not in PUBLISHERS:
        from .. import ros2pub  # noqa: F401  (registers "ros2"; imports without rclpy)
