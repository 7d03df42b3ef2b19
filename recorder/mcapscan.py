"""Walking a damaged MCAP file: every intact record, and what each damaged span cost.

MCAP chunks are independent: a chunk whose bytes were zeroed or flipped (its CRC does not
match, it does not decompress, its length runs past the file) costs only that chunk.
``walk`` reads the data section record by record and, at a damaged record, resumes at
the next record the file still has:

- by the summary (its chunk, message, metadata and attachment indexes give every record
  start of the data section) when the summary is intact (its CRC matches);
- else by scanning forward for the next valid chunk record (opcode 0x06, lengths that
  fit, a known compression, and a payload that decompresses to its size and CRC), or the
  end the damaged record claims, when what lies there is a well-formed record.

Each damaged span is reported as a ``LostRange``: its bytes, and the log time of the
messages it held (exact, from the chunk index, when the summary is intact; else bounded
by the last intact chunk before it and the first one after it). ``recover``
(``recorder.salvage``) and curation's reader (``curation.mcapread``) both use it.
"""

from __future__ import annotations

import bisect
import mmap
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO

from mcap.data_stream import ReadDataStream
from mcap.exceptions import McapError
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
    MessageIndex,
    Metadata,
    MetadataIndex,
    Schema,
    Statistics,
)

from demofab.checksum import crc32

MAGIC = b"\x89MCAP0\r\n"
_REC = struct.Struct("<BQ")
_CHUNK = struct.Struct("<QQQI")           # start, end, uncompressed size, uncompressed CRC
_FOOTER = struct.Struct("<BQQQI")         # opcode, length, summary start, offsets, CRC
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_FOOTER_AT = _FOOTER.size + len(MAGIC)    # the footer starts this far before the end
_CHUNK_MIN = 9 + _CHUNK.size + 4 + 8      # a chunk record with no compression and no data
_COMPRESSIONS = ("", "zstd", "lz4")
_SCAN_WINDOW = 1 << 20
_KNOWN = frozenset(range(Opcode.HEADER, Opcode.DATA_END + 1))
_READERS: dict[int, type[McapRecord]] = {
    Opcode.HEADER: Header, Opcode.SCHEMA: Schema, Opcode.CHANNEL: Channel,
    Opcode.MESSAGE_INDEX: MessageIndex, Opcode.ATTACHMENT: Attachment,
    Opcode.METADATA: Metadata, Opcode.DATA_END: DataEnd, Opcode.FOOTER: Footer,
}
_SUMMARY_READERS: dict[int, type[McapRecord]] = {
    Opcode.SCHEMA: Schema, Opcode.CHANNEL: Channel, Opcode.CHUNK_INDEX: ChunkIndex,
    Opcode.ATTACHMENT_INDEX: AttachmentIndex, Opcode.METADATA_INDEX: MetadataIndex,
    Opcode.STATISTICS: Statistics,
}


Buffer = bytes | bytearray | memoryview | mmap.mmap   # what ``walk`` reads


@dataclass(frozen=True, slots=True)
class LostRange:
    """A damaged span of the data section and the messages it held."""

    start: int                 # byte offset where the damage begins
    end: int                   # byte offset where intact data resumes (or the data ends)
    reason: str                # what was wrong at ``start``
    start_ns: int | None       # log time of the first message it may have held
    end_ns: int | None         # ... and of the last (None: not known)
    exact: bool = False        # times from the chunk index, not bounded by neighbours
    chunks: int | None = None  # chunks it held (None: not known)

    @property
    def size(self) -> int:
        return self.end - self.start

    def what(self) -> str:
        """What was lost: the chunks and their log time (exact, or bounds)."""
        lo, hi = self.start_ns, self.end_ns
        if self.chunks == 0:
            return "no chunk, no message"
        if self.exact and lo is not None and hi is not None:
            n = self.chunks or 0
            return (f"{n} chunk{'s' * (n != 1)} of log time {lo}..{hi} ns "
                    f"({(hi - lo) / 1e9:.3f} s)")
        bounds = "bounds from the intact chunks around them"
        if lo is not None and hi is not None:
            return (f"the messages logged between {lo} and {hi} ns (at most "
                    f"{(hi - lo) / 1e9:.3f} s; {bounds})")
        if lo is not None:
            return f"the messages logged after {lo} ns ({bounds})"
        if hi is not None:
            return f"the messages logged before {hi} ns ({bounds})"
        return "the messages it held (no intact chunk around it gives their time)"

    def describe(self) -> str:
        """One line: the bytes, why they were lost, and the log time they held."""
        return f"bytes {self.start}..{self.end} ({self.size} bytes, {self.reason}): {self.what()}"

    def as_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "reason": self.reason,
                "start_ns": self.start_ns, "end_ns": self.end_ns, "exact": self.exact,
                "chunks": self.chunks}


@dataclass(frozen=True, slots=True)
class Record:
    """An intact record outside chunks. ``record`` is the ``mcap`` library's parse of it
    (None for messages, whose body the caller reads, and for unknown opcodes)."""

    offset: int
    opcode: int
    body: memoryview
    record: McapRecord | None


@dataclass(frozen=True, slots=True)
class ChunkData:
    """An intact chunk: its place, its times, and its records, decompressed and checked."""

    offset: int
    length: int                # bytes of the chunk record in the file
    start_ns: int
    end_ns: int
    records: bytes | memoryview


@dataclass
class Summary:
    """The parts of an intact summary section that recovery needs."""

    start: int                                           # where the data section ends
    schemas: dict[int, Schema] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    chunk_indexes: list[ChunkIndex] = field(default_factory=list)
    attachment_indexes: list[AttachmentIndex] = field(default_factory=list)
    metadata_indexes: list[MetadataIndex] = field(default_factory=list)
    statistics: Statistics | None = None

    def record_starts(self) -> list[int]:
        """Every record start of the data section that the indexes name, sorted."""
        starts = {self.start}
        for ci in self.chunk_indexes:
            starts.add(ci.chunk_start_offset)
            starts.add(ci.chunk_start_offset + ci.chunk_length)
            starts.update(ci.message_index_offsets.values())
        starts.update(a.offset for a in self.attachment_indexes)
        starts.update(m.offset for m in self.metadata_indexes)
        return sorted(starts)


class Damage(Exception):
    """A record that cannot be read (only raised inside this module and its users)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_local = threading.local()


def decompress(kind: str, data: memoryview, size: int) -> bytes | memoryview:
    """A chunk's records; ``Damage`` when they do not decompress to ``size`` bytes."""
    try:
        if kind == "":
            out: bytes | memoryview = data
        elif kind == "zstd":
            d = getattr(_local, "zstd", None)
            if d is None:
                import zstandard

                d = _local.zstd = zstandard.ZstdDecompressor()
            out = d.decompress(data, max_output_size=size)
        elif kind == "lz4":
            import lz4.frame

            out = lz4.frame.decompress(data)
        else:
            raise Damage(f"unknown chunk compression {kind!r}")
    except Damage:
        raise
    except Exception as exc:  # zstd and lz4 raise their own error types
        raise Damage(f"chunk does not decompress ({type(exc).__name__}: {exc})") from exc
    if len(out) != size:
        raise Damage(f"chunk decompresses to {len(out)} bytes, expected {size}")
    return out


def chunk_at(buf: memoryview, pos: int, limit: int, *, strict: bool) -> ChunkData:
    """The chunk record at ``pos``, checked (``strict``: its lengths must add up exactly,
    as they do in every writer's output; used when looking for a chunk in garbage)."""
    if limit - pos < _CHUNK_MIN:
        raise Damage("file is truncated (incomplete record)")
    op, n = _REC.unpack_from(buf, pos)
    if op != Opcode.CHUNK:
        raise Damage(f"expected a chunk, found opcode {op:#04x}")
    end = pos + 9 + n
    if end > limit or n < _CHUNK_MIN - 9:
        raise Damage(f"chunk length {n} runs past the end of the data (at {limit})")
    start_ns, end_ns, size, crc = _CHUNK.unpack_from(buf, pos + 9)
    p = pos + 9 + _CHUNK.size
    (clen,) = _U32.unpack_from(buf, p)
    if clen > 16 or p + 4 + clen + 8 > end:
        raise Damage(f"chunk compression name of {clen} bytes")
    kind = bytes(buf[p + 4:p + 4 + clen]).decode("ascii", "replace")
    p += 4 + clen
    (rlen,) = _U64.unpack_from(buf, p)
    p += 8
    if p + rlen > end or (strict and p + rlen != end):
        raise Damage(f"chunk records length {rlen} does not fit the chunk ({end - p} bytes)")
    if kind not in _COMPRESSIONS:
        raise Damage(f"unknown chunk compression {kind!r}")
    if strict and (start_ns > end_ns or size > 1 << 34 or (kind == "" and size != rlen)):
        raise Damage("implausible chunk header")
    data = decompress(kind, buf[p:p + rlen], size)
    if crc:
        if crc32(data) != crc:
            raise Damage("chunk CRC mismatch")
    elif strict:
        _check_records(data)  # no CRC to trust: its records must at least add up
    return ChunkData(pos, end - pos, start_ns, end_ns, data)


def _check_records(data: bytes | memoryview) -> None:
    pos, size = 0, len(data)
    while pos < size:
        if size - pos < 9:
            raise Damage("record runs past its chunk")
        op, n = _REC.unpack_from(data, pos)
        if op == 0 or pos + 9 + n > size:
            raise Damage("record runs past its chunk")
        pos += 9 + n


def parse_record(op: int, body: memoryview) -> McapRecord | None:
    """The ``mcap`` library's parse of a record outside chunks (``Damage`` when it does
    not fill its body exactly); None for messages and opcodes it does not know."""
    if op == Opcode.MESSAGE_INDEX:  # checked, not parsed: nothing here reads its entries
        if len(body) < 6 or _U32.unpack_from(body, 2)[0] != len(body) - 6 or len(body) % 16 != 6:
            raise Damage("damaged MessageIndex record")
        return None
    reader = _READERS.get(op)
    if reader is None:
        if op == Opcode.MESSAGE and len(body) < 22:
            raise Damage(f"message record of {len(body)} bytes (at least 22 expected)")
        return None
    stream = ReadDataStream(BytesIO(body))
    try:
        rec: McapRecord = reader.read(stream)  # type: ignore[attr-defined]
    except (McapError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise Damage(f"damaged {reader.__name__} record ({type(exc).__name__})") from exc
    if stream.count != len(body):
        raise Damage(f"damaged {reader.__name__} record ({stream.count} of {len(body)} bytes "
                     "read)")
    if op == Opcode.ATTACHMENT:  # the library reads past its CRC; it is checked here
        (crc,) = _U32.unpack_from(body, len(body) - 4)
        if crc and crc32(body[:-4]) != crc:
            raise Damage("attachment CRC mismatch")
    return rec


def check_footer(buf: memoryview) -> tuple[int, int, str, int | None]:
    """Where the summary is (start, footer offset; start 0: none) by the footer, checked
    against the summary CRC; else why it cannot be used and where."""
    size = len(buf)
    at = size - _FOOTER_AT
    if at < len(MAGIC) or bytes(buf[size - len(MAGIC):]) != MAGIC:
        return 0, 0, "no footer (the file does not end with the MCAP magic)", None
    op, n, start, offsets, crc = _FOOTER.unpack_from(buf, at)
    if op != Opcode.FOOTER or n != 20:
        return 0, 0, "footer is damaged", at
    if start == 0:
        return 0, at, "", None
    if not len(MAGIC) <= start <= at or (offsets and not start <= offsets <= at):
        return 0, 0, f"footer points the summary at {start}, outside the file", at
    if crc and crc32(buf[start:at + 9 + 16]) != crc:
        return 0, 0, "summary CRC mismatch", start
    return start, at, "", None


def read_summary(buf: memoryview) -> tuple[Summary | None, str, int | None]:
    """The summary when it is intact; else why not and where (None and "": the file
    has none)."""
    start, at, reason, where = check_footer(buf)
    if not start:
        return None, reason, where
    return parse_summary(buf, start, at)


def parse_summary(buf: memoryview, start: int, at: int) -> tuple[Summary | None, str, int | None]:
    """The summary records in [start, at)."""
    summary = Summary(start)
    pos = start
    try:
        while pos < at:
            op, n = _REC.unpack_from(buf, pos)
            end = pos + 9 + n
            if end > at:
                raise Damage("summary record runs past the footer")
            reader = _SUMMARY_READERS.get(op)
            if reader is not None:
                rec = reader.read(ReadDataStream(BytesIO(buf[pos + 9:end])))  # type: ignore[attr-defined]
                if isinstance(rec, Schema):
                    summary.schemas[rec.id] = rec
                elif isinstance(rec, Channel):
                    summary.channels[rec.id] = rec
                elif isinstance(rec, ChunkIndex):
                    summary.chunk_indexes.append(rec)
                elif isinstance(rec, AttachmentIndex):
                    summary.attachment_indexes.append(rec)
                elif isinstance(rec, MetadataIndex):
                    summary.metadata_indexes.append(rec)
                elif isinstance(rec, Statistics):
                    summary.statistics = rec
            pos = end
    except (Damage, McapError, struct.error, UnicodeDecodeError, ValueError) as exc:
        return None, f"summary is damaged ({type(exc).__name__})", pos
    for ci in summary.chunk_indexes:
        if not len(MAGIC) <= ci.chunk_start_offset < ci.chunk_start_offset + ci.chunk_length <= start:
            return None, f"chunk index points outside the data section ({ci.chunk_start_offset})", start
    summary.chunk_indexes.sort(key=lambda c: c.chunk_start_offset)
    return summary, "", None


class Walk:
    """One pass over a file's data section: iterate it for its ``Record``, ``ChunkData``
    and ``LostRange`` pieces in file order (message indexes are checked, not yielded; a
    lost range comes once the intact chunk after it is found, or at the end). The
    summary is read only when needed (damage, a channel no record declared): then
    ``summary`` is the intact summary, or None with ``summary_damage`` and
    ``summary_damaged_at`` saying why. ``complete``: the data section ended with its
    Data End record."""

    def __init__(self, buf: Buffer) -> None:
        view = memoryview(buf)
        self.buf = view if view.format == "B" and view.ndim == 1 else view.cast("B")
        self._start, self._at, self.summary_damage, self.summary_damaged_at = check_footer(
            self.buf)
        self._summary: Summary | None = None
        self._parsed = not self._start   # the summary is parsed only when it is needed
        self._starts: list[int] = []
        self._chunk_starts: set[int] = set()
        self.complete = False
        self.lost: list[LostRange] = []

    @property
    def summary(self) -> Summary | None:
        """The intact summary (parsed on first use), or None."""
        if not self._parsed:
            self._parsed = True
            self._summary, damage, at = parse_summary(self.buf, self._start, self._at)
            if self._summary is None:
                self.summary_damage, self.summary_damaged_at = damage, at
            else:
                self._starts = self._summary.record_starts()
                self._chunk_starts = {c.chunk_start_offset for c in self._summary.chunk_indexes}
        return self._summary

    @property
    def limit(self) -> int:
        """Where the data section ends: the summary's start, else the file's end."""
        summary = self.summary if self._parsed else None
        return summary.start if summary is not None else len(self.buf)

    def __iter__(self) -> Iterator[Record | ChunkData | LostRange]:
        buf = self.buf
        pending: list[tuple[int, int, str]] = []   # damaged spans waiting for the next chunk
        prev_end_ns: int | None = None
        pos = len(MAGIC)
        if bytes(buf[:len(MAGIC)]) != MAGIC:
            pos = self._resume(0, None)
            pending.append((0, pos, "not an MCAP file (bad magic)"))
        limit = self.limit
        while pos < limit:
            claimed: int | None = None
            try:
                if limit - pos < 9:
                    raise Damage("file is truncated (incomplete record)")
                op, n = _REC.unpack_from(buf, pos)
                end = pos + 9 + n
                if op == 0:
                    raise Damage("record with opcode 0x00: zeroed bytes, or not MCAP")
                if end > limit:
                    raise Damage("file is truncated (incomplete record)" if limit == len(buf)
                                 and not self.summary else
                                 f"record length {n} runs past the end of the data ({limit})")
                claimed = end
                if op not in _KNOWN and self.summary is not None and pos in self._chunk_starts:
                    raise Damage(f"opcode {op:#04x} where the chunk index names a chunk")
                if op != Opcode.CHUNK and (op not in _KNOWN or self._parsed):
                    # records outside chunks carry no CRC: one that runs over a record
                    # the intact summary indexes has a damaged length (or opcode)
                    self._check_span(pos, end)
                if op == Opcode.MESSAGE_INDEX:  # checked and passed over: no reader needs it
                    if n < 6 or _U32.unpack_from(buf, pos + 11)[0] != n - 6 or n % 16 != 6:
                        raise Damage("damaged MessageIndex record")
                    pos = end
                    continue
                if op == Opcode.CHUNK:
                    piece: Record | ChunkData = chunk_at(buf, pos, limit, strict=False)
                else:
                    piece = Record(pos, op, buf[pos + 9:end], parse_record(op, buf[pos + 9:end]))
            except Damage as exc:
                resume = self._resume(pos, claimed)
                limit = self.limit  # the summary, now read, may end the data section sooner
                if pending and pending[-1][1] == pos:   # one damaged span, not two
                    pending[-1] = (pending[-1][0], resume, pending[-1][2])
                else:
                    pending.append((pos, resume, exc.reason))
                pos = resume
                continue
            if isinstance(piece, ChunkData):
                yield from self._flush(pending, prev_end_ns, piece.start_ns)
                prev_end_ns = piece.end_ns
            yield piece
            if op in (Opcode.DATA_END, Opcode.FOOTER):
                self.complete = True
                break
            pos = end
        if not self.complete:
            if self.summary is not None and pos >= limit:
                self.complete = True  # no Data End record, but the summary follows
            elif not pending or pending[-1][1] < pos:
                pending.append((pos, pos, "file is truncated (no Data End record, no footer)"))
        yield from self._flush(pending, prev_end_ns, None)

    def _flush(self, pending: list[tuple[int, int, str]], before: int | None,
               after: int | None) -> Iterator[LostRange]:
        for start, end, reason in pending:
            lost = self._lost(start, end, reason, before, after)
            self.lost.append(lost)
            yield lost
        pending.clear()

    def _lost(self, start: int, end: int, reason: str, before: int | None,
              after: int | None) -> LostRange:
        if self.summary is not None:
            chunks = [c for c in self.summary.chunk_indexes if start <= c.chunk_start_offset < end]
            if not chunks:
                return LostRange(start, end, reason, None, None, True, 0)
            return LostRange(start, end, reason, min(c.message_start_time for c in chunks),
                             max(c.message_end_time for c in chunks), True, len(chunks))
        return LostRange(start, end, reason, before, after)

    def _check_span(self, pos: int, end: int) -> None:
        if self.summary is None:
            return
        i = bisect.bisect_right(self._starts, pos)
        if i < len(self._starts) and self._starts[i] < end:
            raise Damage(f"record runs over the record at byte {self._starts[i]} that the "
                         "summary indexes (a damaged length or opcode)")

    def _resume(self, pos: int, claimed: int | None) -> int:
        """Where intact data starts again after a damaged record at ``pos``."""
        if self.summary is not None:
            i = bisect.bisect_right(self._starts, pos)
            return min(self._starts[i], self.limit) if i < len(self._starts) else self.limit
        stop = self.limit
        if claimed is not None and pos < claimed < self.limit and self._plausible(claimed):
            stop = claimed
        found = self._find_chunk(pos + 1, stop)
        return found if found is not None else stop

    def _plausible(self, pos: int) -> bool:
        """A well-formed record starts at ``pos`` (a chunk must also be valid)."""
        if self.limit - pos < 9:
            return False
        op, n = _REC.unpack_from(self.buf, pos)
        if op == Opcode.CHUNK:
            try:
                chunk_at(self.buf, pos, self.limit, strict=False)
            except Damage:
                return False
            return True
        if op not in _READERS or pos + 9 + n > self.limit:
            return False
        try:
            parse_record(op, self.buf[pos + 9:pos + 9 + n])
        except Damage:
            return False
        return True

    def _find_chunk(self, pos: int, stop: int) -> int | None:
        """The first valid chunk record starting in [pos, stop)."""
        buf = self.buf
        while pos < stop:
            window = bytes(buf[pos:min(stop, pos + _SCAN_WINDOW)])
            i = window.find(b"\x06")
            while i >= 0:
                try:
                    chunk_at(buf, pos + i, self.limit, strict=True)
                except (Damage, struct.error):
                    i = window.find(b"\x06", i + 1)
                    continue
                return pos + i
            pos += len(window)
        return None


def walk(buf: Buffer) -> Walk:
    """The pieces of ``buf``'s data section; see ``Walk``."""
    return Walk(buf)


__all__ = ["ChunkData", "Damage", "LostRange", "Record", "Summary", "Walk", "chunk_at",
           "decompress", "parse_record", "read_summary", "walk"]
