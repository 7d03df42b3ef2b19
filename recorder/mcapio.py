"""A lean MCAP writer for the recorder's hot path.

Rare records (header, schemas, channels, attachments, metadata, indexes, summary,
footer) are serialised by the ``mcap`` library's own record classes. Only the message
path is written here: each message record is packed with one precompiled ``struct``
into the chunk buffer and indexed with two ``array`` appends, which is what lets the
recorder keep its health accounting and still outrun a bare ``mcap.Writer`` loop. The
output is checked against the ``mcap`` and ``rosbags`` readers by the tests.

Schemas and channels are written to the data section outside chunks (as the C++ and Go
writers may), so a file cut short keeps every channel definition it has used.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections import defaultdict
from collections.abc import Sequence
from typing import IO

import lz4.frame
import numpy as np
import zstandard
from mcap.data_stream import RecordBuilder
from mcap.opcode import Opcode
from mcap.records import (
    Attachment,
    AttachmentIndex,
    Channel,
    ChunkIndex,
    DataEnd,
    Footer,
    Header,
    McapRecord,
    Metadata,
    MetadataIndex,
    Schema,
    Statistics,
    SummaryOffset,
)

from demofab.checksum import crc32

MAGIC = b"\x89MCAP0\r\n"
_MSG = struct.Struct("<BQHIQQ")          # opcode, length, channel, sequence, log, publish
_MSG_SIZE = _MSG.size                     # 31 bytes: 9 record header + 22 fields
_CHUNK_HEAD = struct.Struct("<BQQQQI")    # opcode, length, start, end, usize, ucrc
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_IDX_HEAD = struct.Struct("<BQHI")        # opcode, length, channel, byte length of entries


class ChunkedWriter:
    """Writes an indexed, chunked MCAP file with per-chunk CRCs and a full summary."""

    def __init__(self, stream: IO[bytes], *, chunk_size: int = 1 << 20,
                 compression: str = "zstd", level: int = 1) -> None:
        if compression not in ("zstd", "lz4", "none"):
            raise ValueError(f"unknown chunk compression {compression!r}")
        self._out = stream
        self._pos = 0
        self.chunk_size = chunk_size
        self.compression = "" if compression == "none" else compression
        self._zstd = zstandard.ZstdCompressor(level=level) if compression == "zstd" else None
        self._buf = bytearray()
        self._index: dict[int, array[int]] = {}   # channel id -> [log0, off0, log1, off1, ...]
        self._cstart = -1
        self._cend = 0
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self._counts: defaultdict[int, int] = defaultdict(int)
        self._chunk_indexes: list[ChunkIndex] = []
        self._attachment_indexes: list[AttachmentIndex] = []
        self._metadata_indexes: list[MetadataIndex] = []
        self.message_count = 0
        self._start = -1
        self._end = 0
        self.finished = False

    # -- low level -----------------------------------------------------------------
    def _write(self, data: bytes | bytearray | memoryview) -> None:
        self._out.write(data)
        self._pos += len(data)

    def _record(self, rec: McapRecord) -> tuple[int, int]:
        builder = RecordBuilder()
        rec.write(builder)
        data: bytes = builder.end()  # type: ignore[no-untyped-call]  # mcap leaves end() unannotated
        offset = self._pos
        self._write(data)
        return offset, len(data)

    @property
    def tell(self) -> int:
        return self._pos + len(self._buf)

    # -- records ----------------------------------------------------------------------
    def start(self, profile: str, library: str) -> None:
        self._write(MAGIC)
        self._record(Header(profile=profile, library=library))

    def register_schema(self, name: str, encoding: str, data: bytes) -> int:
        sid = len(self.schemas) + 1
        schema = Schema(id=sid, name=name, encoding=encoding, data=data)
        self.schemas[sid] = schema
        self.finalize_chunk()
        self._record(schema)
        return sid

    def register_channel(self, topic: str, message_encoding: str, schema_id: int,
                         metadata: dict[str, str]) -> int:
        cid = len(self.channels) + 1
        channel = Channel(id=cid, topic=topic, message_encoding=message_encoding,
                          schema_id=schema_id, metadata=metadata)
        self.channels[cid] = channel
        self.finalize_chunk()
        self._record(channel)
        return cid

    def add_message(self, channel_id: int, log_time: int, data: bytes, publish_time: int,
                    sequence: int) -> None:
        buf = self._buf
        idx = self._index.get(channel_id)
        if idx is None:
            idx = self._index[channel_id] = array("Q")
        idx.append(log_time)
        idx.append(len(buf))
        buf += _MSG.pack(5, 22 + len(data), channel_id, sequence & 0xFFFFFFFF, log_time,
                         publish_time)
        buf += data
        if self._cstart < 0 or log_time < self._cstart:
            self._cstart = log_time
        if log_time > self._cend:
            self._cend = log_time
        if len(buf) >= self.chunk_size:
            self.finalize_chunk()

    def finalize_chunk(self) -> None:
        """Compress and write the open chunk, then its message indexes."""
        buf = self._buf
        if not buf:
            return
        raw = bytes(buf)
        crc = crc32(raw)
        if self._zstd is not None:
            payload = self._zstd.compress(raw)
        elif self.compression == "lz4":
            payload = lz4.frame.compress(raw)
        else:
            payload = raw
        comp = self.compression.encode()
        length = 8 + 8 + 8 + 4 + 4 + len(comp) + 8 + len(payload)
        chunk_start = self._pos
        self._write(_CHUNK_HEAD.pack(Opcode.CHUNK, length, self._cstart, self._cend,
                                     len(raw), crc) + _U32.pack(len(comp)) + comp
                    + _U64.pack(len(payload)))
        self._write(payload)
        chunk_length = self._pos - chunk_start
        index_start = self._pos
        offsets: dict[int, int] = {}
        parts: list[bytes] = []
        pos = index_start
        for cid, entries in self._index.items():
            n = len(entries) // 2
            pairs = np.frombuffer(entries, dtype=np.uint64).reshape(n, 2)
            body = pairs[np.argsort(pairs[:, 0], kind="stable")].tobytes()
            rec = _IDX_HEAD.pack(Opcode.MESSAGE_INDEX, 2 + 4 + len(body), cid, len(body)) + body
            offsets[cid] = pos
            pos += len(rec)
            parts.append(rec)
            self._counts[cid] += n
            self.message_count += n
        self._write(b"".join(parts))
        self._chunk_indexes.append(ChunkIndex(
            message_start_time=self._cstart, message_end_time=self._cend,
            chunk_start_offset=chunk_start, chunk_length=chunk_length,
            message_index_offsets=offsets, message_index_length=self._pos - index_start,
            compression=self.compression, compressed_size=len(payload),
            uncompressed_size=len(raw)))
        if self._start < 0 or self._cstart < self._start:
            self._start = self._cstart
        self._end = max(self._end, self._cend)
        self._buf = bytearray()
        self._index = {}
        self._cstart, self._cend = -1, 0

    def flush(self) -> None:
        self.finalize_chunk()
        self._out.flush()

    def add_attachment(self, create_time: int, log_time: int, name: str, media_type: str,
                       data: bytes) -> None:
        self.finalize_chunk()
        offset, length = self._record(Attachment(create_time=create_time, log_time=log_time,
                                                 name=name, media_type=media_type, data=data))
        self._attachment_indexes.append(AttachmentIndex(
            offset=offset, length=length, create_time=create_time, log_time=log_time,
            data_size=len(data), name=name, media_type=media_type))

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        self.finalize_chunk()
        offset, length = self._record(Metadata(name=name, metadata=data))
        self._metadata_indexes.append(MetadataIndex(offset=offset, length=length, name=name))

    def finish(self) -> None:
        """Data end, summary (schemas, channels, statistics, indexes), footer, magic."""
        self.finalize_chunk()
        self._record(DataEnd(data_section_crc=0))
        summary_start = self._pos
        b = RecordBuilder()
        offsets: list[SummaryOffset] = []

        def group(opcode: Opcode, records: Sequence[McapRecord]) -> None:
            if not records:
                return
            start = b.count
            for r in records:
                r.write(b)
            offsets.append(SummaryOffset(group_opcode=opcode, group_start=summary_start + start,
                                         group_length=b.count - start))

        group(Opcode.SCHEMA, list(self.schemas.values()))
        group(Opcode.CHANNEL, list(self.channels.values()))
        group(Opcode.STATISTICS, [Statistics(
            message_count=self.message_count, schema_count=len(self.schemas),
            channel_count=len(self.channels), attachment_count=len(self._attachment_indexes),
            metadata_count=len(self._metadata_indexes), chunk_count=len(self._chunk_indexes),
            message_start_time=max(self._start, 0), message_end_time=self._end,
            channel_message_counts=dict(self._counts))])
        group(Opcode.CHUNK_INDEX, self._chunk_indexes)
        group(Opcode.ATTACHMENT_INDEX, self._attachment_indexes)
        group(Opcode.METADATA_INDEX, self._metadata_indexes)
        offset_start = summary_start + b.count
        for o in offsets:
            o.write(b)
        summary: bytes = b.end()  # type: ignore[no-untyped-call]  # as in _record
        crc = zlib.crc32(summary)
        crc = zlib.crc32(struct.pack("<BQQQ", Opcode.FOOTER, 20, summary_start, offset_start),
                         crc)
        self._write(summary)
        self._record(Footer(summary_start=summary_start, summary_offset_start=offset_start,
                            summary_crc=crc))
        self._write(MAGIC)
        self.finished = True
