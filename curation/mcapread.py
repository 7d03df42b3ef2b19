"""A fast, damage-tolerant MCAP reader for ingest.

Reads every record of a file held in memory and keeps each channel's messages as
(log time, payload) lists. A damaged record (bad length, CRC mismatch, a chunk that does
not decompress, a cut file) costs only itself: ``recorder.mcapscan`` resumes at the next
intact record, by the summary's indexes or by scanning for the next valid chunk, and
each lost span is kept in ``lost`` (its bytes and the log time it held);
``truncated_at`` and ``damage`` name the first. The reference ``mcap`` reader is used by
the benchmark beside this one, and the tests check that both read the same messages;
this reader exists because ingest must not stop at damage and must read in bulk.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from mcap.records import Attachment, Header, Metadata, Schema
from mcap.records import Channel as McapChannel

from recorder.mcapscan import ChunkData, Damage, LostRange, Record, Walk

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 1, 2, 3, 4, 5, 6
OP_ATTACHMENT, OP_METADATA, OP_DATA_END = 9, 12, 15

_rec = struct.Struct("<BQ")
_msg = struct.Struct("<BQHIQQ")  # opcode, length, channel, sequence, log, publish
_msg_body = struct.Struct("<HIQQ")
_u16, _u32 = struct.Struct("<H"), struct.Struct("<I")
_VIEW_MIN = 1 << 14  # payloads longer than this are kept as memoryviews


@dataclass
class Channel:
    id: int
    topic: str
    type: str
    message_encoding: str
    schema_encoding: str
    schema: bytes
    log_times: list[int] = field(default_factory=list)
    data: list[bytes | memoryview] = field(default_factory=list)


@dataclass
class McapContent:
    profile: str = ""
    library: str = ""
    channels: dict[int, Channel] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    attachments: dict[str, bytes] = field(default_factory=dict)
    truncated_at: int | None = None   # where the first lost span begins (None: nothing lost)
    damage: str = ""                  # ... and what was wrong there
    unknown_channel_messages: int = 0
    lost: list[LostRange] = field(default_factory=list)  # every lost span, in file order
    summary_damage: str = ""          # why the summary could not be used ("": it could)
    summary_damaged_at: int | None = None


class _Parser:
    def __init__(self, out: McapContent, borrowed: bool, views: bool, walk: Walk) -> None:
        self.out = out
        self.borrowed = borrowed  # the file buffer is reused after parsing: copy out of it
        self.view_min = _VIEW_MIN if views else 1 << 62  # larger payloads stay views
        self.schemas: dict[int, tuple[str, str, bytes]] = {}
        self.walk = walk

    def channel(self, cid: int) -> Channel | None:
        """A channel that no intact record of the data section declared, from the summary
        (an intact summary names every channel, even ones whose records were lost)."""
        summary = self.walk.summary
        ch = summary.channels.get(cid) if summary else None
        if summary is None or ch is None:
            return None
        name, senc, text = self.schemas.get(ch.schema_id, ("", "", b""))
        s = summary.schemas.get(ch.schema_id)
        if not name and s is not None:
            name, senc, text = s.name, s.encoding, s.data
        out = self.out.channels[cid] = Channel(cid, ch.topic, name, ch.message_encoding,
                                                senc, text)
        return out

    def record(self, rec: Record) -> None:
        out, r = self.out, rec.record
        if rec.opcode == OP_MESSAGE:
            cid, _, log, _ = _msg_body.unpack_from(rec.body, 0)
            ch = out.channels.get(cid) or self.channel(cid)
            if ch is None:
                out.unknown_channel_messages += 1
                return
            ch.log_times.append(log)
            body = rec.body
            ch.data.append(body[22:] if len(body) - 22 > self.view_min and not self.borrowed
                           else bytes(body[22:]))
        elif isinstance(r, Schema):
            # records outside chunks carry no CRC: an intact summary's copy is trusted
            summary = self.walk.summary
            r = summary.schemas.get(r.id, r) if summary else r
            self.schemas[r.id] = (r.name, r.encoding, r.data)
        elif isinstance(r, McapChannel):
            summary = self.walk.summary
            r = summary.channels.get(r.id, r) if summary else r
            if r.id not in out.channels:
                name, senc, text = self.schemas.get(r.schema_id, ("", "", b""))
                out.channels[r.id] = Channel(r.id, r.topic, name, r.message_encoding, senc, text)
        elif isinstance(r, Metadata):
            out.metadata[r.name] = dict(r.metadata)
        elif isinstance(r, Attachment):
            out.attachments[r.name] = r.data
        elif isinstance(r, Header):
            out.profile, out.library = r.profile, r.library

    def chunk(self, data: bytes | memoryview) -> None:
        """The hot loop: message records inside a decompressed chunk."""
        channels = self.out.channels
        unpack = _msg.unpack_from
        view = memoryview(data)
        sinks: dict[int, Any] = {}  # channel id -> its two list appends
        pos, size = 0, len(data)
        while pos < size:
            op, n, cid, _, log, pub = unpack(data, pos) if size - pos >= 31 else (0, 0, 0, 0, 0, 0)
            if op == OP_MESSAGE:
                end = pos + 9 + n
                if end > size:
                    raise Damage("message runs past its chunk")
                sink = sinks.get(cid)
                if sink is None:
                    ch = channels.get(cid) or self.channel(cid)
                    if ch is None:
                        self.out.unknown_channel_messages += 1
                        pos = end
                        continue
                    sink = sinks[cid] = (ch.log_times.append, ch.data.append)
                sink[0](log)
                # small payloads as bytes (cheaper to make and to use); large ones (camera
                # frames) as views of the chunk, so they are never copied here
                sink[1](view[pos + 31:end] if n > self.view_min else bytes(data[pos + 31:end]))
                pos = end
                continue
            if size - pos < 9:
                raise Damage("record runs past its chunk")
            op, n = _rec.unpack_from(data, pos)
            end = pos + 9 + n
            if end > size or op == 0:
                raise Damage("record runs past its chunk")
            if op == OP_SCHEMA:
                (sid,) = _u16.unpack_from(view, pos + 9)
                name, p = _str(view, pos + 11, end)
                enc, p = _str(view, p, end)
                (k,) = _u32.unpack_from(view, p)
                self.schemas[sid] = (name, enc, bytes(view[p + 4:p + 4 + k]))
            elif op == OP_CHANNEL:
                cid, sid = struct.unpack_from("<HH", view, pos + 9)
                topic, p = _str(view, pos + 13, end)
                menc, p = _str(view, p, end)
                if cid not in channels:
                    name, senc, text = self.schemas.get(sid, ("", "", b""))
                    channels[cid] = Channel(cid, topic, name, menc, senc, text)
            pos = end


def _str(buf: memoryview, pos: int, end: int) -> tuple[str, int]:
    (n,) = _u32.unpack_from(buf, pos)
    pos += 4
    if pos + n > end:
        raise Damage("string runs past its record")
    return bytes(buf[pos:pos + n]).decode("utf-8", "replace"), pos + n


def read_mcap(buf: bytes | memoryview, *, borrowed: bool = False,
              views: bool = True) -> McapContent:
    """Parse an MCAP file held in memory; never raises on damage (see ``lost``).
    ``borrowed``: ``buf`` is reused once this returns, so nothing kept may point into it
    (payloads then point into decompressed chunks, or are copies). ``views=False``: every
    payload is a copy, so a kept payload does not keep its whole chunk alive."""
    out = McapContent()
    walk = Walk(buf)
    parser = _Parser(out, borrowed, views, walk)
    lost: list[LostRange] = []
    for piece in walk:
        if isinstance(piece, ChunkData):
            data = piece.records
            if borrowed and isinstance(data, memoryview):
                data = bytes(data)  # an uncompressed chunk is a view of the buffer
            try:
                parser.chunk(data)
            except (Damage, struct.error, UnicodeDecodeError) as exc:
                # a chunk without a CRC whose records do not add up: what came before the
                # bad record is kept
                reason = exc.reason if isinstance(exc, Damage) else f"damaged chunk ({exc})"
                lost.append(LostRange(piece.offset, piece.offset + piece.length, reason,
                                      piece.start_ns, piece.end_ns, True, 1))
        elif isinstance(piece, Record):
            parser.record(piece)
        else:
            lost.append(piece)
    lost.sort(key=lambda r: r.start)
    out.lost = lost
    if lost:
        out.truncated_at, out.damage = lost[0].start, lost[0].reason
    out.summary_damage, out.summary_damaged_at = walk.summary_damage, walk.summary_damaged_at
    return out


__all__ = ["Channel", "McapContent", "read_mcap"]
