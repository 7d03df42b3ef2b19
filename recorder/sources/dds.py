"""The DDS source: record a ROS 2 graph without ROS 2 installed (``--source dds``).

Subscribes to every topic of the profile (episode events excepted: the session writes
its own) with the ``cyclonedds`` package, takes raw serialized samples, and yields them
with the receive time.

The bytes are what an rclpy recorder in its own process stores. Measured (ROS 2 Jazzy
wheels, Fast DDS 2.14): a message that crosses processes reaches an rclpy raw subscriber
padded to a multiple of 4 bytes with zeros, over UDP and shared memory alike (only a
subscriber in the publisher's own process gets the unpadded serialization). Cyclone's
take returns the same padded length, but leaves the padding of large, fragmented samples
uninitialised. ``padding`` picks what is stored (see :class:`recorder.cdrwalk.CdrEnd`):
``"zero"`` (default) padded length, padding zeroed: identical to the rclpy recorder's
bytes for a Fast DDS publisher, and deterministic; ``"trim"`` the publisher's own
serialization (rosbags ``serialize_cdr``, the synthetic rig); ``"raw"`` as taken.
Decoders accept all three.

The loop waits on a WaitSet; when nothing arrives for ``heartbeat_s`` (0.1 s) it yields
``None`` so the recorder still applies its plan and commands (``Recorder.run`` treats
``None`` as a tick). Every reader keeps at least 1000 samples (history depth is local to
the reader, not part of QoS matching), so bursts and short recorder stalls lose nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..cdrwalk import CdrEnd
from ..contract import EVENTS_TOPIC
from ..dds import (
    DEFAULT_MIN_RELIABLE_DEPTH,
    DdsTypes,
    any_state,
    domain_id_from_env,
    raw_reader,
)
from ..dds.endpoints import handle
from ..errors import RecorderError, SourceError
from ..profile import Profile
from . import RawMessage, register_source

if TYPE_CHECKING:
    from cyclonedds.core import ReadCondition
    from cyclonedds.domain import DomainParticipant

    from ..dds.endpoints import Reader

PADDING = ("zero", "trim", "raw")


def _as_taken(data: bytes) -> bytes:
    return bytes(data)


class DdsSource:
    clock = "wall"

    def __init__(self, profile: Profile, *, domain_id: int | None = None,
                 topics: Sequence[str] | None = None, heartbeat_s: float = 0.1,
                 take_max: int = 4096, participant: DomainParticipant | None = None,
                 min_reliable_depth: int = DEFAULT_MIN_RELIABLE_DEPTH,
                 min_depth: int = DEFAULT_MIN_RELIABLE_DEPTH, padding: str = "zero") -> None:
        try:
            from cyclonedds.core import DDSException, ReadCondition, WaitSet
            from cyclonedds.domain import DomainParticipant
        except ImportError as exc:
            raise SourceError("--source dds needs the 'cyclonedds' package: "
                              "pip install 'demofab[dds]'") from exc

        self.profile = profile
        specs = [t for t in profile.topics if t.topic != EVENTS_TOPIC]
        if topics is not None:
            names = {t.topic for t in specs}
            unknown = [t for t in topics if t not in names]
            if unknown:
                raise SourceError(f"profile {profile.name!r} has no topic {', '.join(unknown)}")
            specs = [t for t in specs if t.topic in topics]
        if not specs:
            raise SourceError(f"profile {profile.name!r}: no topics to subscribe to")
        if padding not in PADDING:
            raise SourceError(f"DDS source: padding {padding!r} is not one of "
                              f"{', '.join(PADDING)}")
        self.domain_id = domain_id_from_env(domain_id)
        self.heartbeat_ns = int(heartbeat_s * 1e9)
        self.take_max = take_max
        try:
            self.participant = participant or DomainParticipant(self.domain_id)
            types = DdsTypes()
            ends = CdrEnd()
            self.waitset = WaitSet(self.participant)
            self.readers: list[tuple[str, Reader, Callable[[bytes], bytes]]] = []
            self._conditions: list[ReadCondition] = []
            for s in specs:
                r = raw_reader(self.participant, s.topic, s.type, s.qos, types,
                               min_reliable_depth=min_reliable_depth, min_depth=min_depth)
                cond = ReadCondition(r, any_state())
                self.waitset.attach(cond)
                self._conditions.append(cond)
                fix = ends.zeroer(s.type) if padding == "zero" else \
                    ends.trimmer(s.type) if padding == "trim" else _as_taken
                self.readers.append((s.topic, r, fix))
        except RecorderError as exc:
            raise SourceError(f"DDS source: {exc}") from exc
        except DDSException as exc:
            raise SourceError(f"DDS source: cannot join domain {self.domain_id}: {exc}") from exc
        self._closed = False

    @property
    def entities(self) -> list[Reader]:
        """The DataReaders (for :func:`recorder.dds.wait_matched`)."""
        return [r for _, r, _ in self.readers]

    def messages(self) -> Iterator[RawMessage | None]:
        """Messages as they arrive, and None each ``heartbeat_s`` without any."""
        from cyclonedds._clayer import ddspy_take

        state = any_state()
        take_max = self.take_max
        readers = [(topic, handle(r), fix) for topic, r, fix in self.readers]
        wait = self.waitset.wait
        heartbeat = self.heartbeat_ns
        last = time.monotonic_ns()
        while not self._closed:
            wait(heartbeat)
            got = 0
            for topic, ref, fix in readers:
                ret = ddspy_take(ref, state, take_max)
                if isinstance(ret, int):
                    raise SourceError(f"DDS source: taking from {topic} failed (code {ret})")
                if not ret:
                    continue
                now = time.time_ns()
                for data, info in ret:
                    if info.valid_data:
                        got += 1
                        yield RawMessage(topic, fix(data), now)
            if got:
                last = time.monotonic_ns()
            elif time.monotonic_ns() - last >= heartbeat:
                last = time.monotonic_ns()
                yield None

    def close(self) -> None:
        self._closed = True


def _factory(profile: Profile, **options: Any) -> DdsSource:
    return DdsSource(profile, **options)


register_source("dds", _factory)
