"""The replay backend over DDS, no ROS 2 needed: one raw DataWriter per topic, with the
recorded QoS and the type hash in USER_DATA."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..profile import Qos
from .endpoints import domain_id_from_env, raw_writer, wait_matched
from .endpoints import handle as entity_handle
from .errors import DdsError, require_cyclonedds
from .idltypes import DdsTypes
from .qos import DEFAULT_MIN_RELIABLE_DEPTH

if TYPE_CHECKING:
    from cyclonedds.domain import DomainParticipant

    from .endpoints import Writer


class DdsPublisher:
    """A :class:`recorder.replay.Publisher` that writes the recorded bytes to DDS."""

    def __init__(self, domain_id: int | None = None, *,
                 participant: DomainParticipant | None = None,
                 min_reliable_depth: int = DEFAULT_MIN_RELIABLE_DEPTH) -> None:
        require_cyclonedds()
        from cyclonedds._clayer import ddspy_write
        from cyclonedds.domain import DomainParticipant

        self.domain_id = domain_id_from_env(domain_id)
        self.participant: DomainParticipant | None = \
            participant or DomainParticipant(self.domain_id)
        self.types = DdsTypes()
        self.min_reliable_depth = min_reliable_depth
        self.writers: dict[str, Writer] = {}
        self._write: Callable[[int, bytes], int] = ddspy_write

    def create(self, topic: str, msgtype: str, qos: Qos) -> Writer:
        """The writer of ``topic`` (made on first use)."""
        if topic in self.writers:
            return self.writers[topic]
        if self.participant is None:
            raise DdsError(f"cannot create a DDS writer for {topic}: the publisher is closed")
        from cyclonedds.core import DDSException

        try:
            w = raw_writer(self.participant, topic, msgtype, qos, self.types,
                           min_reliable_depth=self.min_reliable_depth)
        except DDSException as exc:
            raise DdsError(f"cannot create a DDS writer for {topic} ({msgtype}): {exc}") from exc
        self.writers[topic] = w
        return w

    def publish(self, handle: Writer, data: bytes) -> None:
        """Write one sample to the writer ``create`` returned."""
        if self._write(entity_handle(handle), data) < 0:
            raise DdsError(f"writing {len(data)} bytes to {handle.topic.name} failed")

    def wait_for_subscribers(self, count: int = 1, timeout_s: float = 5.0,
                             topics: Iterable[str] | None = None) -> bool:
        """Wait until each writer (of ``topics``, default all) has ``count`` readers."""
        ws = [self.writers[t] for t in topics] if topics is not None \
            else list(self.writers.values())
        return wait_matched(ws, count, timeout_s)

    def close(self) -> None:
        self.writers.clear()
        self.participant = None

    def __enter__(self) -> DdsPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DdsPublisher"]
