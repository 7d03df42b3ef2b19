"""File-level salvage: copy every intact record of a damaged or cut-short MCAP file into
a new, valid, indexed one.

A crash (kill -9, power loss, full disk) leaves an episode without its summary: salvage
keeps everything up to its last complete chunk. Damage inside the file (zeroed or
flipped bytes) costs only the chunk it hits: ``recorder.mcapscan`` resumes at the next
intact record, by the summary's indexes or by scanning for the next valid chunk, and
names each lost span (bytes, log time) in ``RecoveryResult.lost``, which ``recovery_facts``
turns into the recovered file's metadata.
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Attachment, Channel, Schema

from .contract import EPISODE_EVENT_TYPE, EVENTS_TOPIC, PART_SUFFIX, RECOVERY_METADATA
from .errors import RecorderError
from .health import HealthMonitor
from .mcapscan import ChunkData, LostRange, Record, Walk
from .profile import Profile, TopicSpec
from .types import deserialize
from .writer import ChannelInfo, EpisodeWriter, WriterOptions

_REC = struct.Struct("<BQ")
_MSG = struct.Struct("<HIQQ")  # channel, sequence, log time, publish time


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    path: Path
    messages: int
    kept_bytes: int       # bytes of the damaged file that were usable
    total_bytes: int      # size of the damaged file
    cut_reason: str       # why reading stopped early ("" when the data section was complete)
    start_event: dict[str, Any] | None
    first_ns: int
    last_ns: int
    writer: EpisodeWriter
    lost: list[LostRange] = field(default_factory=list)  # damaged spans, in file order
    summary_damage: str = ""  # why the source's summary could not be used ("" if it could)

    def lost_lines(self) -> list[str]:
        """One line per lost span, for the console."""
        return [f"lost {r.describe()}" for r in self.lost]


def recovery_facts(res: RecoveryResult) -> dict[str, str]:
    """What the recovered file's metadata says about its recovery (string values)."""
    return {"recovered": "true", "recovered_bytes": str(res.kept_bytes),
            "damaged_bytes": str(res.total_bytes), "cut_reason": res.cut_reason,
            "lost_ranges": json.dumps([r.as_dict() for r in res.lost], separators=(",", ":")),
            "summary_damage": res.summary_damage}


class _Copy:
    """The state of one salvage: channels seen so far and what was written."""

    def __init__(self, writer: EpisodeWriter, profile: Profile, walk: Walk) -> None:
        self.writer = writer
        self.specs = {t.topic: t for t in profile.topics}
        summary = walk.summary
        # an intact summary (its CRC checked) names every schema and channel, even ones
        # whose records were in a damaged span; schema and channel records outside chunks
        # carry no CRC, so where the summary has one its copy is the one trusted
        self.schemas: dict[int, Schema] = dict(summary.schemas) if summary else {}
        self.spare: dict[int, Channel] = dict(summary.channels) if summary else {}
        self.trusted = frozenset(self.schemas)
        self.channels: dict[int, Channel] = {}
        self.count, self.first_ns, self.last_ns = 0, -1, -1
        self.start_event: dict[str, Any] | None = None

    def channel(self, ch: Channel) -> None:
        if ch.id in self.channels:
            return
        ch = self.spare.get(ch.id, ch)
        self.channels[ch.id] = ch
        _add_channel(self.writer, ch, self.schemas, self.specs)

    def schema(self, s: Schema) -> None:
        if s.id not in self.trusted:
            self.schemas[s.id] = s

    def message(self, body: bytes | memoryview) -> None:
        cid, _, log_time, publish_time = _MSG.unpack_from(body, 0)
        ch = self.channels.get(cid)
        if ch is None:
            spare = self.spare.get(cid)
            if spare is None:
                return  # its channel record was lost and there is no summary to name it
            self.channel(spare)
            ch = spare
        data = bytes(body[22:])
        self.writer.write(ch.topic, data, log_time, publish_time, None)
        self.count += 1
        self.first_ns = log_time if self.first_ns < 0 else min(self.first_ns, log_time)
        self.last_ns = max(self.last_ns, log_time)
        if ch.topic == EVENTS_TOPIC and self.start_event is None:
            self.start_event = _event(data)

    def chunk(self, data: bytes | memoryview) -> None:
        pos, size = 0, len(data)
        while pos + 9 <= size:
            op, n = _REC.unpack_from(data, pos)
            end = pos + 9 + n
            if end > size:
                return  # a CRC-less chunk with a bad record: keep what came before it
            body = data[pos + 9:end]
            if op == Opcode.MESSAGE and n >= 22:
                self.message(body)
            elif op == Opcode.SCHEMA:
                self.schema(Schema.read(ReadDataStream(BytesIO(body))))
            elif op == Opcode.CHANNEL:
                self.channel(Channel.read(ReadDataStream(BytesIO(body))))
            pos = end

    def record(self, rec: Record) -> None:
        r = rec.record
        if isinstance(r, Schema):
            self.schema(r)
        elif isinstance(r, Channel):
            self.channel(r)
        elif isinstance(r, Attachment):
            self.writer.add_attachment(r.name, r.media_type, r.data, r.log_time)
        elif rec.opcode == Opcode.MESSAGE:  # unchunked files
            self.message(rec.body)


def salvage(src: Path, dest: Path, profile: Profile,
            options: WriterOptions | None = None) -> RecoveryResult:
    """Copy every intact record of ``src`` into a new MCAP at ``dest`` (left open:
    the caller adds metadata and closes ``result.writer``)."""
    monitor = HealthMonitor(profile, dest.parent)
    writer = EpisodeWriter(dest, profile, options, health=monitor, profile_channels=False)
    try:
        with open(src, "rb") as f:
            total = f.seek(0, 2)
            buf: mmap.mmap | bytes = (mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                                      if total else b"")
        try:
            copy, walk = _copy_all(buf, writer, profile)
        finally:
            if isinstance(buf, mmap.mmap):
                _close(buf)
        lost = list(walk.lost)
        reason = ""
        if not walk.complete:
            tail = lost[-1] if lost and lost[-1].end >= total else None
            reason = tail.reason if tail else "the file ends without its Data End record"
        return RecoveryResult(dest, copy.count, total - sum(r.size for r in lost), total,
                              reason, copy.start_event, copy.first_ns, copy.last_ns, writer,
                              lost, walk.summary_damage)
    except BaseException:
        writer.abort()
        raise


def _copy_all(buf: mmap.mmap | bytes, writer: EpisodeWriter,
              profile: Profile) -> tuple[_Copy, Walk]:
    walk = Walk(buf)
    copy = _Copy(writer, profile, walk)
    for piece in walk:
        if isinstance(piece, ChunkData):
            copy.chunk(piece.records)
        elif isinstance(piece, Record):
            copy.record(piece)
        del piece  # no view of the file outlives the walk
    walk.buf.release()
    return copy, walk


def _close(buf: mmap.mmap) -> None:
    try:
        buf.close()
    except BufferError:  # a view of it is still alive somewhere: the GC closes it later
        pass


def _add_channel(writer: EpisodeWriter, ch: Channel, schemas: dict[int, Schema],
                 specs: dict[str, TopicSpec]) -> None:
    schema = schemas.get(ch.schema_id)
    info = ChannelInfo(
        topic=ch.topic, type=schema.name if schema else "", message_encoding=ch.message_encoding,
        schema_text=schema.data.decode(errors="replace") if schema else "",
        schema_encoding=schema.encoding if schema else "",
        metadata=tuple(ch.metadata.items()),
    )
    writer.add_channel(info, specs.get(ch.topic))


def _event(data: bytes) -> dict[str, Any] | None:
    try:
        msg = deserialize(data, EPISODE_EVENT_TYPE)
    except Exception:  # noqa: BLE001 - a damaged event only loses its facts
        return None
    return {"index": msg.episode_index, "episode_id": msg.episode_id, "task": msg.task,
            "operator": msg.operator_id,
            "stamp_ns": msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec}


def recover_file(src: Path, dest: Path, profile: Profile) -> RecoveryResult:
    """Recover a single damaged MCAP file (not part of a session) into ``dest``."""
    if dest.exists():
        raise RecorderError(f"{dest} already exists; choose another output path")
    part = dest.with_name(dest.name + PART_SUFFIX)
    if part.exists():
        raise RecorderError(f"{part} exists (an interrupted recovery?); delete it or choose "
                            "another output path")
    res = salvage(src, dest, profile)
    facts = recovery_facts(res)
    del facts["recovered"]
    res.writer.close({RECOVERY_METADATA: {"source": str(src), **facts}})
    return res


__all__ = ["RecoveryResult", "recover_file", "recovery_facts", "salvage"]
