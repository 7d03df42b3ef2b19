"""Recovery: turn an episode cut short (crash, kill -9, power loss, full disk) into a valid,
indexed MCAP holding everything up to its last complete chunk."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mcap.exceptions import McapError
from mcap.records import Attachment, Channel, Chunk, DataEnd, Footer, Message, Schema
from mcap.stream_reader import StreamReader, breakup_chunk

from .errors import RecorderError
from .health import HealthMonitor
from .profile import EVENTS_TOPIC, Profile, TopicSpec
from .types import EPISODE_EVENT_TYPE, deserialize
from .writer import ChannelInfo, EpisodeWriter, WriterOptions

CRASHED_SUFFIX = ".crashed"


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    path: Path
    messages: int
    kept_bytes: int       # bytes of the damaged file that were usable
    total_bytes: int      # size of the damaged file
    cut_reason: str       # why reading stopped ("" when the file was complete)
    start_event: dict | None
    first_ns: int
    last_ns: int
    writer: EpisodeWriter


def salvage(src: Path, dest: Path, profile: Profile,
            options: WriterOptions | None = None) -> RecoveryResult:
    """Copy every complete record of ``src`` into a new MCAP at ``dest`` (left open:
    the caller adds metadata and closes ``result.writer``)."""
    total = src.stat().st_size
    monitor = HealthMonitor(profile, dest.parent)
    writer = EpisodeWriter(dest, profile, options, health=monitor, profile_channels=False)
    specs = {t.topic: t for t in profile.topics}
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    count, good, reason = 0, 0, ""
    first_ns, last_ns = -1, -1
    start_event: dict | None = None
    with open(src, "rb") as f:
        reader = StreamReader(f, emit_chunks=True, validate_crcs=True)
        try:
            for record in reader.records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                    _add_channel(writer, record, schemas, specs)
                elif isinstance(record, Chunk):
                    inner = breakup_chunk(record, validate_crc=True)
                    for r in inner:
                        if isinstance(r, Schema):
                            schemas[r.id] = r
                        elif isinstance(r, Channel):
                            channels[r.id] = r
                            _add_channel(writer, r, schemas, specs)
                    for r in inner:
                        if isinstance(r, Message):
                            ch = channels.get(r.channel_id)
                            if ch is None:
                                continue
                            writer.write(ch.topic, r.data, r.log_time, r.publish_time, None)
                            count += 1
                            first_ns = r.log_time if first_ns < 0 else min(first_ns, r.log_time)
                            last_ns = max(last_ns, r.log_time)
                            if ch.topic == EVENTS_TOPIC and start_event is None:
                                start_event = _event(r.data)
                elif isinstance(record, Message):  # unchunked files
                    ch = channels.get(record.channel_id)
                    if ch is not None:
                        writer.write(ch.topic, record.data, record.log_time,
                                     record.publish_time, None)
                        count += 1
                        first_ns = record.log_time if first_ns < 0 else first_ns
                        last_ns = max(last_ns, record.log_time)
                elif isinstance(record, Attachment):
                    writer.add_attachment(record.name, record.media_type, record.data,
                                          record.log_time)
                elif isinstance(record, (DataEnd, Footer)):
                    good = f.tell()
                    break
                good = f.tell()
            else:
                good = f.tell()
        except (McapError, ValueError, EOFError, OSError, IndexError, struct.error) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, EOFError) and exc.errno:
                writer.abort()
                raise
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if good < total and not reason:
        reason = "trailing bytes after the last complete record"
    return RecoveryResult(dest, count, good, total, reason, start_event, first_ns, last_ns,
                          writer)


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


def _event(data: bytes) -> dict | None:
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
    res = salvage(src, dest, profile)
    res.writer.close({"demofab.recovery": {"source": str(src), "recovered_bytes": str(res.kept_bytes),
                                           "damaged_bytes": str(res.total_bytes),
                                           "cut_reason": res.cut_reason}})
    return res


class _Recoverable(Protocol):
    def recover(self) -> list[RecoveryResult]: ...


def recover_session(directory: Path, *, session: _Recoverable) -> list[RecoveryResult]:
    """Recover every episode of ``session`` that was being written when it stopped
    (the public path of ``Session.recover``; ``directory`` is the session's own)."""
    return session.recover()
