"""ROS 2 over DDS without ROS 2: join the ROS 2 graph with the ``cyclonedds`` package.

ROS 2 topic ``/x`` of type ``pkg/msg/T`` is the DDS topic ``rt/x`` of type
``pkg::msg::dds_::T_``, encoded XCDR1 (the CDR bytes rosbag2 stores, with their 4-byte
header). This module builds those DDS types from rosbags' typestore
(:func:`recorder.types.typestore`, so DemoFab's own ``demofab_msgs`` work too), maps a
profile's :class:`recorder.profile.Qos` onto DDS QoS, and advertises the RIHS01 type hash
in USER_DATA (``typehash=RIHS01_<hex>;``) the way rmw does, so ``ros2 topic info -v``
shows the right hash. Samples are taken and written as raw bytes (``ddspy_take`` /
``ddspy_write``): nothing is deserialised on the hot path.

Samples that cross processes arrive padded to a multiple of 4 bytes, from Cyclone and
from Fast DDS alike (measured: an rclpy raw subscriber in another process gets the padded
bytes; only one in the publisher's own process gets the bare serialization). Fast DDS pads
with zeros; Cyclone leaves the padding of large (fragmented) samples uninitialised. The
DDS source therefore keeps the padded length and zeroes the padding (``padding="zero"``,
the default: byte-identical to an rclpy recorder fed by a Fast DDS publisher, and
deterministic), or trims it (``"trim"``: the publisher's own serialization, as rosbags
writes it), or keeps the bytes as taken (``"raw"``). :class:`CdrEnd` finds the true end of
a message by walking its CDR with the type definition, only for the types whose end can
be unaligned (a trailing string or ``uint8[]``: CompressedImage, Image, ...); types that
always end on 4 bytes (JointState, Imu, PoseStamped, TFMessage) cost nothing.

Needs the optional extra ``dds`` (``pip install demofab[dds]``).
Keep test traffic off real networks: run inside ``tools/netns-run.sh``.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import RecorderError
from .profile import Qos
from .types import typestore

__all__ = [
    "DEFAULT_MIN_RELIABLE_DEPTH", "CdrEnd", "DdsError", "DdsPublisher", "DdsTypes", "ReceiveReport",
    "dds_qos", "dds_type_name", "domain_id_from_env", "drain", "raw_reader", "raw_writer",
    "take_raw", "wait_matched", "wire_topic", "write_raw",
]

#: reliable readers and writers keep at least this many samples (bursts are not lost)
DEFAULT_MIN_RELIABLE_DEPTH = 1000


class DdsError(RecorderError):
    """The DDS layer failed: cyclonedds missing, an entity not created, a write refused."""


def _cdds() -> Any:
    try:
        import cyclonedds  # noqa: F401
    except ImportError as exc:
        raise DdsError("the DDS path needs the 'cyclonedds' package: "
                       "pip install 'demofab[dds]' (cyclonedds==11.0.1)") from exc
    import cyclonedds.core

    return cyclonedds


def wire_topic(topic: str) -> str:
    """ROS 2 topic name to DDS topic name: ``/joint_states`` -> ``rt/joint_states``."""
    if not topic.startswith("/"):
        raise DdsError(f"topic {topic!r} must be absolute (start with '/')")
    return "rt" + topic


def dds_type_name(ros_type: str) -> str:
    """``sensor_msgs/msg/JointState`` -> ``sensor_msgs::msg::dds_::JointState_``."""
    parts = ros_type.split("/")
    if len(parts) != 3:
        raise DdsError(f"message type {ros_type!r} is not of the form pkg/msg/Name")
    pkg, kind, name = parts
    return f"{pkg}::{kind}::dds_::{name}_"


def domain_id_from_env(domain_id: int | None = None) -> int:
    if domain_id is not None:
        return int(domain_id)
    raw = os.environ.get("ROS_DOMAIN_ID", "").strip()
    try:
        return int(raw) if raw else 0
    except ValueError:
        raise DdsError(f"ROS_DOMAIN_ID={raw!r} is not an integer") from None


# --------------------------------------------------------------------------- types
class DdsTypes:
    """cyclonedds ``IdlStruct`` classes for ROS 2 message types, from the typestore's field
    definitions (layout and DDS name are what matter: DDS matches types by name)."""

    def __init__(self, store: Any = None) -> None:
        self.store = store or typestore()
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _field(self, node: tuple[Any, Any]) -> Any:
        import cyclonedds.idl.types as t
        from rosbags.typesys.base import Nodetype

        base = {"bool": bool, "byte": t.byte, "char": t.uint8, "int8": t.int8,
                "uint8": t.uint8, "int16": t.int16, "uint16": t.uint16, "int32": t.int32,
                "uint32": t.uint32, "int64": t.int64, "uint64": t.uint64,
                "float32": t.float32, "float64": t.float64}
        kind, det = node
        if kind == Nodetype.BASE:
            name, bound = det
            if name == "string":
                return t.bounded_str[bound] if bound else str
            if name not in base:
                raise DdsError(f"no DDS mapping for ROS 2 base type {name!r}")
            return base[name]
        if kind == Nodetype.NAME:
            return self._get(det)
        if kind == Nodetype.ARRAY:
            return t.array[self._field(det[0]), det[1]]
        if kind == Nodetype.SEQUENCE:
            inner = self._field(det[0])
            return t.sequence[inner, det[1]] if det[1] else t.sequence[inner]
        raise DdsError(f"no DDS mapping for field node {node!r}")

    def _get(self, ros_type: str) -> Any:
        cls = self._cache.get(ros_type)
        if cls is not None:
            return cls
        _cdds()
        import cyclonedds.idl.types as t
        from cyclonedds.idl import make_idl_struct
        from cyclonedds.idl.annotations import final

        try:
            fields = self.store.fielddefs[ros_type][1]
        except KeyError:
            raise DdsError(f"unknown ROS 2 message type {ros_type!r}") from None
        members = {name: self._field(node) for name, node in fields}
        if not members:   # an empty ROS 2 message has one uint8 member on the wire
            members = {"structure_needs_at_least_one_member": t.uint8}
        cls = final(make_idl_struct(ros_type.replace("/", "_"), dds_type_name(ros_type), members))
        self._cache[ros_type] = cls
        return cls

    def get(self, ros_type: str) -> Any:
        with self._lock:
            return self._get(ros_type)

    def type_hash(self, ros_type: str) -> str:
        return self.store.hash_rihs01(ros_type)


# --------------------------------------------------------------------------- CDR end
_PRIM = {"bool": 1, "byte": 1, "char": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2,
         "int32": 4, "uint32": 4, "float32": 4, "int64": 8, "uint64": 8, "float64": 8}
_U32 = {True: struct.Struct("<I").unpack_from, False: struct.Struct(">I").unpack_from}

Skip = Callable[[bytes, int, Callable[[bytes, int], tuple[int]]], int]


class CdrEnd:
    """The end of a CDR message, for stripping the zero padding Cyclone appends.

    ``length(type, data)`` is the true length of ``data`` (header included). Per type, a
    plan is compiled once from the typestore: it says whether the end can be unaligned at
    all (only then is the message walked), and how to skip each field. The walk reads
    only sequence and string lengths; arrays of primitives are skipped in one step.
    """

    def __init__(self, store: Any = None) -> None:
        self.store = store or typestore()
        self._plans: dict[str, Skip | None] = {}
        self._structs: dict[str, Skip] = {}

    # guaranteed alignment of the end position of a node (1, 2, 4 or 8)
    def _end_align(self, node: tuple[Any, Any]) -> int:
        from rosbags.typesys.base import Nodetype

        kind, det = node
        if kind == Nodetype.BASE:
            return 1 if det[0] in ("string", "wstring") else _PRIM[det[0]]
        if kind == Nodetype.NAME:
            fields = self.store.fielddefs[det][1]
            return self._end_align(fields[-1][1]) if fields else 1
        if kind == Nodetype.ARRAY:
            return self._end_align(det[0]) if det[1] else 1
        if kind == Nodetype.SEQUENCE:   # empty: ends on the 4-byte length
            return min(4, self._end_align(det[0]))
        raise DdsError(f"unknown field node {node!r}")

    def _skip(self, node: tuple[Any, Any]) -> Skip:
        from rosbags.typesys.base import Nodetype

        kind, det = node
        if kind == Nodetype.BASE:
            name = det[0]
            if name == "string":
                def skip_str(d: bytes, p: int, u32: Callable[[bytes, int], tuple[int]]) -> int:
                    p = (p + 3) & ~3
                    return p + 4 + u32(d, p + 4)[0]

                return skip_str
            if name not in _PRIM:
                raise DdsError(f"cannot walk CDR of base type {name!r}")
            s = _PRIM[name]
            m = s - 1
            return lambda d, p, u32: ((p + m) & ~m) + s
        if kind == Nodetype.NAME:
            return self._struct(det)
        elem = det[0]
        prim = elem[0] == Nodetype.BASE and elem[1][0] in _PRIM
        if kind == Nodetype.ARRAY:
            n = det[1]
            if prim:
                s = _PRIM[elem[1][0]]
                m = s - 1
                return lambda d, p, u32: ((p + m) & ~m) + n * s if n else p
            inner = self._skip(elem)

            def skip_array(d: bytes, p: int, u32: Callable[[bytes, int], tuple[int]]) -> int:
                for _ in range(n):
                    p = inner(d, p, u32)
                return p

            return skip_array
        if kind == Nodetype.SEQUENCE:
            if prim:
                s = _PRIM[elem[1][0]]
                m = s - 1

                def skip_pseq(d: bytes, p: int, u32: Callable[[bytes, int], tuple[int]]) -> int:
                    p = (p + 3) & ~3
                    n = u32(d, p + 4)[0]
                    p += 4
                    return ((p + m) & ~m) + n * s if n else p

                return skip_pseq
            inner = self._skip(elem)

            def skip_seq(d: bytes, p: int, u32: Callable[[bytes, int], tuple[int]]) -> int:
                p = (p + 3) & ~3
                n = u32(d, p + 4)[0]
                p += 4
                for _ in range(n):
                    p = inner(d, p, u32)
                return p

            return skip_seq
        raise DdsError(f"unknown field node {node!r}")

    def _struct(self, name: str) -> Skip:
        got = self._structs.get(name)
        if got is not None:
            return got
        fields = self.store.fielddefs[name][1]
        if not fields:
            fn: Skip = lambda d, p, u32: p + 1  # noqa: E731 - the dummy uint8 member
        else:
            parts = [self._skip(node) for _, node in fields]

            def fn(d: bytes, p: int, u32: Callable[[bytes, int], tuple[int]]) -> int:
                for part in parts:
                    p = part(d, p, u32)
                return p

        self._structs[name] = fn
        return fn

    def plan(self, ros_type: str) -> Skip | None:
        """None when messages of this type always end on a 4-byte boundary."""
        if ros_type not in self._plans:
            from rosbags.typesys.base import Nodetype

            try:
                align = self._end_align((Nodetype.NAME, ros_type))
            except KeyError:
                raise DdsError(f"unknown ROS 2 message type {ros_type!r}") from None
            self._plans[ros_type] = self._struct(ros_type) if align < 4 else None
        return self._plans[ros_type]

    def trimmer(self, ros_type: str) -> Callable[[bytes], bytes]:
        """A function that returns the message without trailing padding."""
        skip = self.plan(ros_type)
        if skip is None:
            return bytes

        def trim(data: bytes) -> bytes:
            # positions are relative to the CDR origin, 4 bytes into the buffer; u32 reads
            # add the 4 themselves (see skip_str / skip_seq)
            end = 4 + skip(data, 0, _U32[data[1] == 1])
            if end > len(data):
                raise DdsError(f"{ros_type}: CDR message of {len(data)} bytes is truncated "
                               f"(its fields need {end})")
            return bytes(data[:end]) if end < len(data) else bytes(data)

        return trim

    def zeroer(self, ros_type: str) -> Callable[[bytes], bytes]:
        """A function that keeps the padded length but sets the padding bytes to zero
        (Cyclone leaves them uninitialised in fragmented samples)."""
        trim = self.trimmer(ros_type)
        if self.plan(ros_type) is None:
            return trim

        def zero(data: bytes) -> bytes:
            body = trim(data)
            return body + bytes(len(data) - len(body)) if len(body) < len(data) else body

        return zero

    def length(self, ros_type: str, data: bytes) -> int:
        return len(self.trimmer(ros_type)(data))


# --------------------------------------------------------------------------- QoS
def dds_qos(qos: Qos, *, type_hash: str | None = None,
            min_reliable_depth: int = DEFAULT_MIN_RELIABLE_DEPTH, min_depth: int = 1) -> Any:
    """A cyclonedds ``Qos`` for a ROS 2 QoS profile (reader or writer side).

    Reliable volatile keep-last endpoints keep at least ``min_reliable_depth`` samples: a
    reliable keep-last writer overwrites unacknowledged samples and a reader's history
    overflows in bursts (a third of a 30k msg/s stream was lost with the ROS default of 10).
    ``min_depth`` raises every keep-last depth (the DDS source's readers use 1000, so a
    best-effort stream survives a stalled recorder for a while: depth is local, not matched).
    """
    _cdds()
    from cyclonedds.core import Policy
    from cyclonedds.core import Qos as CQos
    from cyclonedds.util import duration

    policies: list[Any] = []
    if qos.reliability == "reliable":
        policies.append(Policy.Reliability.Reliable(duration(seconds=1)))
    else:
        policies.append(Policy.Reliability.BestEffort)
    policies.append(Policy.Durability.TransientLocal if qos.durability == "transient_local"
                    else Policy.Durability.Volatile)
    if qos.history == "keep_all":
        policies.append(Policy.History.KeepAll)
    else:
        depth = max(1, qos.depth, min_depth)
        if qos.reliability == "reliable" and qos.durability == "volatile":
            depth = max(depth, min_reliable_depth)
        policies.append(Policy.History.KeepLast(depth))
    if type_hash:
        policies.append(Policy.Userdata(f"typehash={type_hash};".encode()))
    return CQos(*policies)


# --------------------------------------------------------------------------- raw I/O
_ANY_STATE: int | None = None


def _any_state() -> int:
    global _ANY_STATE
    if _ANY_STATE is None:
        from cyclonedds.core import InstanceState, SampleState, ViewState

        _ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any
    return _ANY_STATE


def raw_reader(participant: Any, topic: str, ros_type: str, qos: Qos, types: DdsTypes,
               **kw: Any) -> Any:
    """A DataReader on ``rt/<topic>`` for raw takes."""
    _cdds()
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    t = Topic(participant, wire_topic(topic), types.get(ros_type))
    return DataReader(participant, t, qos=dds_qos(qos, type_hash=types.type_hash(ros_type), **kw))


def raw_writer(participant: Any, topic: str, ros_type: str, qos: Qos, types: DdsTypes,
               **kw: Any) -> Any:
    """A DataWriter on ``rt/<topic>`` for raw writes."""
    _cdds()
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic

    t = Topic(participant, wire_topic(topic), types.get(ros_type))
    return DataWriter(participant, t, qos=dds_qos(qos, type_hash=types.type_hash(ros_type), **kw))


def take_raw(reader: Any, n: int = 4096) -> list[bytes]:
    """Take up to ``n`` samples as serialized bytes (still padded; see :class:`CdrEnd`)."""
    from cyclonedds._clayer import ddspy_take

    ret = ddspy_take(reader._ref, _any_state(), n)
    if isinstance(ret, int):
        raise DdsError(f"taking samples from {reader.topic.name} failed: return code {ret}")
    return [d for d, info in ret if info.valid_data]


def write_raw(writer: Any, data: bytes) -> None:
    from cyclonedds._clayer import ddspy_write

    ret = ddspy_write(writer._ref, data)
    if ret < 0:
        raise DdsError(f"writing {len(data)} bytes to {writer.topic.name} failed: "
                       f"return code {ret}")


def wait_matched(entities: Iterable[Any], count: int = 1, timeout_s: float = 10.0) -> bool:
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


# --------------------------------------------------------------------------- replay backend
class DdsPublisher:
    """The replay :class:`recorder.replay.Publisher` over DDS, no ROS 2 needed: one raw
    DataWriter per topic, with the recorded QoS and the type hash in USER_DATA."""

    def __init__(self, domain_id: int | None = None, *, participant: Any = None,
                 min_reliable_depth: int = DEFAULT_MIN_RELIABLE_DEPTH) -> None:
        _cdds()
        from cyclonedds.domain import DomainParticipant

        self.domain_id = domain_id_from_env(domain_id)
        self.participant = participant or DomainParticipant(self.domain_id)
        self.types = DdsTypes()
        self.min_reliable_depth = min_reliable_depth
        self.writers: dict[str, Any] = {}
        from cyclonedds._clayer import ddspy_write

        self._write = ddspy_write

    def create(self, topic: str, msgtype: str, qos: Qos) -> Any:
        if topic in self.writers:
            return self.writers[topic]
        try:
            w = raw_writer(self.participant, topic, msgtype, qos, self.types,
                           min_reliable_depth=self.min_reliable_depth)
        except DdsError:
            raise
        except Exception as exc:  # noqa: BLE001 - cyclonedds raises its own DDSException
            raise DdsError(f"cannot create a DDS writer for {topic} ({msgtype}): {exc}") from exc
        self.writers[topic] = w
        return w

    def publish(self, handle: Any, data: bytes) -> None:
        if self._write(handle._ref, data) < 0:
            raise DdsError(f"writing {len(data)} bytes to {handle.topic.name} failed")

    def wait_for_subscribers(self, count: int = 1, timeout_s: float = 5.0,
                             topics: Iterable[str] | None = None) -> bool:
        ws = [self.writers[t] for t in topics] if topics is not None else list(self.writers.values())
        return wait_matched(ws, count, timeout_s)

    def close(self) -> None:
        self.writers.clear()
        self.participant = None

    def __enter__(self) -> DdsPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- measuring
@dataclass
class ReceiveReport:
    """What a source received: for benchmarks and loss checks."""

    received: int = 0
    per_topic: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    duplicates: int = 0          # same (topic, header stamp) seen twice

    @property
    def wall_s(self) -> float:
        return (self.last_ns - self.first_ns) / 1e9 if self.received > 1 else 0.0

    @property
    def rate_hz(self) -> float:
        return (self.received - 1) / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"received": self.received, "per_topic": dict(self.per_topic),
                "bytes": self.bytes, "wall_s": round(self.wall_s, 4),
                "rate_hz": round(self.rate_hz, 1), "duplicates": self.duplicates}


def drain(source: Any, expected: int | Mapping[str, int], *, idle_timeout_s: float = 2.0,
          timeout_s: float = 120.0, keep: list[Any] | None = None) -> ReceiveReport:
    """Pull messages from a (DDS) source until ``expected`` messages arrived (a total, or
    per topic), nothing arrived for ``idle_timeout_s`` after the first message, or
    ``timeout_s`` passed. ``keep`` collects the messages. The bench uses it for the zero-loss
    rate: publish N messages at a paced rate from another process, drain, compare."""
    from .types import stamp_reader

    rep = ReceiveReport()
    seen: set[tuple[str, int]] = set()
    stamps: dict[str, Any] = {}
    types = getattr(source, "topic_types", {})
    t_end = time.monotonic() + timeout_s
    last_rx = time.monotonic()

    def done() -> bool:
        if isinstance(expected, Mapping):
            return all(rep.per_topic[t] >= n for t, n in expected.items())
        return rep.received >= expected

    for msg in source.messages():
        now = time.monotonic()
        if msg is None:
            if (rep.received and now - last_rx > idle_timeout_s) or now > t_end:
                break
            continue
        last_rx = now
        if not rep.received:
            rep.first_ns = msg.log_time
        rep.last_ns = msg.log_time
        rep.received += 1
        rep.per_topic[msg.topic] += 1
        rep.bytes += len(msg.data)
        if msg.topic not in stamps:
            stamps[msg.topic] = stamp_reader(types[msg.topic]) if msg.topic in types else None
        fn = stamps[msg.topic]
        if fn is not None:
            key = (msg.topic, fn(msg.data))
            if key in seen:
                rep.duplicates += 1
            seen.add(key)
        if keep is not None:
            keep.append(msg)
        if done() or now > t_end:
            break
    return rep
