"""Endpoints on the ROS 2 graph: raw DataReaders and DataWriters, taking and writing
serialized samples, and waiting for the other side to match.

ROS 2 topic ``/x`` is the DDS topic ``rt/x``. Samples are taken and written as raw bytes
(cyclonedds' C layer: ``ddspy_take`` / ``ddspy_write``), the CDR bytes with their 4-byte
header that rosbag2 stores: nothing is deserialised on the hot path. Taken samples are
still padded to a multiple of 4 bytes (see :class:`recorder.cdrwalk.CdrEnd`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..profile import Qos
from .errors import DdsError, require_cyclonedds
from .idltypes import DdsTypes
from .qos import dds_qos

if TYPE_CHECKING:
    from cyclonedds.core import Entity
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.idl import IdlStruct
    from cyclonedds.pub import DataWriter
    from cyclonedds.sub import DataReader

    Reader = DataReader[IdlStruct]
    Writer = DataWriter[IdlStruct]


def wire_topic(topic: str) -> str:
    """ROS 2 topic name to DDS topic name: ``/joint_states`` -> ``rt/joint_states``."""
    if not topic.startswith("/"):
        raise DdsError(f"topic {topic!r} must be absolute (start with '/')")
    return "rt" + topic


def domain_id_from_env(domain_id: int | None = None) -> int:
    """``domain_id`` when given, else ``ROS_DOMAIN_ID`` (0 when unset), as ROS 2 does."""
    if domain_id is not None:
        return int(domain_id)
    raw = os.environ.get("ROS_DOMAIN_ID", "").strip()
    try:
        return int(raw) if raw else 0
    except ValueError:
        raise DdsError(f"ROS_DOMAIN_ID={raw!r} is not an integer") from None


_ANY_STATE: int | None = None


def any_state() -> int:
    """The sample mask that takes every sample (any sample, view and instance state)."""
    global _ANY_STATE
    if _ANY_STATE is None:
        from cyclonedds.core import InstanceState, SampleState, ViewState

        _ANY_STATE = int(SampleState.Any | ViewState.Any | InstanceState.Any)
    return _ANY_STATE


def handle(entity: Entity) -> int:
    """The C handle of a cyclonedds entity, which the raw take and write calls need."""
    return int(entity._ref)  # noqa: SLF001 - cyclonedds' raw C layer takes the handle


def raw_reader(participant: DomainParticipant, topic: str, ros_type: str, qos: Qos,
               types: DdsTypes, **kw: Any) -> Reader:
    """A DataReader on ``rt/<topic>`` for raw takes (``kw`` goes to :func:`dds_qos`)."""
    require_cyclonedds()
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    t = Topic(participant, wire_topic(topic), types.get(ros_type))
    return DataReader(participant, t, qos=dds_qos(qos, type_hash=types.type_hash(ros_type), **kw))


def raw_writer(participant: DomainParticipant, topic: str, ros_type: str, qos: Qos,
               types: DdsTypes, **kw: Any) -> Writer:
    """A DataWriter on ``rt/<topic>`` for raw writes (``kw`` goes to :func:`dds_qos`)."""
    require_cyclonedds()
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic

    t = Topic(participant, wire_topic(topic), types.get(ros_type))
    return DataWriter(participant, t, qos=dds_qos(qos, type_hash=types.type_hash(ros_type), **kw))


def take_raw(reader: Reader, n: int = 4096) -> list[bytes]:
    """Take up to ``n`` samples as serialized bytes (still padded; see ``CdrEnd``)."""
    from cyclonedds._clayer import ddspy_take

    ret = ddspy_take(handle(reader), any_state(), n)
    if isinstance(ret, int):
        raise DdsError(f"taking samples from {reader.topic.name} failed: return code {ret}")
    return [bytes(d) for d, info in ret if info.valid_data]


def write_raw(writer: Writer, data: bytes) -> None:
    """Write one serialized sample (CDR bytes with their header)."""
    from cyclonedds._clayer import ddspy_write

    ret = ddspy_write(handle(writer), data)
    if ret < 0:
        raise DdsError(f"writing {len(data)} bytes to {writer.topic.name} failed: "
                       f"return code {ret}")


def wait_matched(entities: Iterable[Reader | Writer], count: int = 1,
                 timeout_s: float = 10.0) -> bool:
    """Wait until every reader has ``count`` matched writers and every writer ``count``
    matched readers. Discovery is asymmetric: wait on *both* sides before publishing
    volatile data, or the first samples are lost for good."""
    from cyclonedds.pub import DataWriter

    ents = list(entities)
    deadline = time.monotonic() + timeout_s
    while True:
        ok = all(len(e.get_matched_subscriptions() if isinstance(e, DataWriter)
                     else e.get_matched_publications()) >= count for e in ents)
        if ok:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


__all__ = [
    "any_state", "domain_id_from_env", "handle", "raw_reader", "raw_writer", "take_raw",
    "wait_matched", "wire_topic", "write_raw",
]
