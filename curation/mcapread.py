"""A fast, damage-tolerant MCAP reader for ingest.

Reads every record of a file held in memory, keeps each channel's messages as
(log time, payload) lists, and stops at the first damaged record (bad
length, CRC mismatch, unknown compression, cut file) with the byte offset where it
broke, keeping everything read before it. The reference ``mcap`` reader is used by the
benchmark beside this one; this reader exists because ingest must not crash on damage
and must read in bulk.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field
from typing import Any

from demofab.checksum import crc32

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 1, 2, 3, 4, 5, 6
OP_ATTACHMENT, OP_METADATA, OP_DATA_END = 9, 12, 15

_rec = struct.Struct("<BQ")
_msg = struct.Struct("<BQHIQQ")  # opcode, length, channel, sequence, log, publish
_u16, _u32, _u64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_chunk = struct.Struct("<QQQI")
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
    truncated_at: int | None = None
    damage: str = ""
    unknown_channel_messages: int = 0


class _Damage(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _str(buf: bytes | memoryview, pos: int) -> tuple[str, int]:
    (n,) = _u32.unpack_from(buf, pos)
    pos += 4
    if pos + n > len(buf):
        raise _Damage("string runs past its record")
    return bytes(buf[pos:pos + n]).decode("utf-8", "replace"), pos + n


def _map(buf: bytes | memoryview, pos: int) -> tuple[dict[str, str], int]:
    (n,) = _u32.unpack_from(buf, pos)
    pos += 4
    end = pos + n
    out: dict[str, str] = {}
    while pos < end:
        k, pos = _str(buf, pos)
        v, pos = _str(buf, pos)
        out[k] = v
    return out, end


def _decompress(kind: str, data: memoryview, size: int) -> bytes | memoryview:
    # large payloads become views of what this returns (no copy per message)
    if kind == "":
        return data
    if kind == "zstd":
        return _zstd().decompress(data, max_output_size=size)
    if kind == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    raise _Damage(f"unknown chunk compression {kind!r}")


def _zstd() -> Any:
    d = getattr(_local, "zstd", None)
    if d is None:
        import zstandard

        d = _local.zstd = zstandard.ZstdDecompressor()
    return d


_local = threading.local()


class _Parser:
    def __init__(self, out: McapContent, borrowed: bool, views: bool = True) -> None:
        self.out = out
        self.borrowed = borrowed  # the file buffer is reused after parsing: copy out of it
        self.view_min = _VIEW_MIN if views else 1 << 62  # larger payloads stay views
        self.schemas: dict[int, tuple[str, str, bytes]] = {}

    def record(self, op: int, buf: memoryview, start: int, end: int) -> None:
        out = self.out
        if op == OP_SCHEMA:
            (sid,) = _u16.unpack_from(buf, start)
            name, p = _str(buf, start + 2)
            enc, p = _str(buf, p)
            (n,) = _u32.unpack_from(buf, p)
            self.schemas[sid] = (name, enc, bytes(buf[p + 4:p + 4 + n]))
        elif op == OP_CHANNEL:
            cid, sid = struct.unpack_from("<HH", buf, start)
            topic, p = _str(buf, start + 4)
            menc, p = _str(buf, p)
            if cid not in out.channels:
                name, senc, text = self.schemas.get(sid, ("", "", b""))
                out.channels[cid] = Channel(cid, topic, name, menc, senc, text)
        elif op == OP_MESSAGE:
            _, _, cid, _, log, pub = _msg.unpack_from(buf, start - 9)
            ch = out.channels.get(cid)
            if ch is None:
                out.unknown_channel_messages += 1
                return
            ch.log_times.append(log)
            ch.data.append(buf[start + 22:end] if end - start > _VIEW_MIN and not self.borrowed
                           else bytes(buf[start + 22:end]))
        elif op == OP_CHUNK:
            _, _, size, crc = _chunk.unpack_from(buf, start)
            kind, p = _str(buf, start + 28)
            (n,) = _u64.unpack_from(buf, p)
            p += 8
            if p + n > end:
                raise _Damage("chunk records run past the chunk")
            data = _decompress(kind, buf[p:p + n], size)
            if kind == "" and self.borrowed:
                data = bytes(data)  # an uncompressed chunk would be a view of the buffer
            if len(data) != size:
                raise _Damage(f"chunk decompresses to {len(data)} bytes, expected {size}")
            if crc and crc32(data) != crc:
                raise _Damage("chunk CRC mismatch")
            self.chunk(data)
        elif op == OP_METADATA:
            name, p = _str(buf, start)
            md, _ = _map(buf, p)
            out.metadata[name] = md
        elif op == OP_ATTACHMENT:
            p = start + 16
            name, p = _str(buf, p)
            _, p = _str(buf, p)
            (n,) = _u64.unpack_from(buf, p)
            out.attachments[name] = bytes(buf[p + 8:p + 8 + n])
        elif op == OP_HEADER:
            out.profile, p = _str(buf, start)
            out.library, _ = _str(buf, p)

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
                    raise _Damage("message runs past its chunk")
                sink = sinks.get(cid)
                if sink is None:
                    ch = channels.get(cid)
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
            op, n = _rec.unpack_from(data, pos)
            end = pos + 9 + n
            if end > size:
                raise _Damage("record runs past its chunk")
            self.record(op, view, pos + 9, end)
            pos = end


def read_mcap(buf: bytes | memoryview, *, borrowed: bool = False,
              views: bool = True) -> McapContent:
    """Parse an MCAP file held in memory; never raises on damage (see ``truncated_at``).
    ``borrowed``: ``buf`` is reused once this returns, so nothing kept may point into it
    (payloads then point into decompressed chunks, or are copies). ``views=False``: every
    payload is a copy, so a kept payload does not keep its whole chunk alive."""
    out = McapContent()
    parser = _Parser(out, borrowed, views)
    buf = memoryview(buf).cast("B")
    size = len(buf)
    if bytes(buf[:8]) != MAGIC:
        out.truncated_at, out.damage = 0, "not an MCAP file (bad magic)"
        return out
    pos = 8
    footer = False
    while pos < size:
        if size - pos < 9:
            out.truncated_at, out.damage = pos, "file is truncated (incomplete record)"
            return out
        op, n = _rec.unpack_from(buf, pos)
        end = pos + 9 + n
        if end > size:
            out.truncated_at, out.damage = pos, "file is truncated (incomplete record)"
            return out
        try:
            parser.record(op, buf, pos + 9, end)
        except (_Damage, struct.error, ValueError, KeyError, MemoryError) as exc:
            reason = exc.reason if isinstance(exc, _Damage) else f"damaged record: {exc}"
            out.truncated_at, out.damage = pos, reason
            return out
        except Exception as exc:  # noqa: BLE001 - zstd/lz4 errors; named, kept, flagged
            out.truncated_at, out.damage = pos, f"damaged record ({type(exc).__name__}: {exc})"
            return out
        if op == OP_FOOTER:
            footer = True
            break
        pos = end
    if not footer:
        out.truncated_at, out.damage = pos, "file is truncated (no footer)"
    return out
