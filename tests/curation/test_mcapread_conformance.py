"""curation/mcapread.py against the ``mcap`` library, on every file of the conformance
folder: clean, truncated and damaged ones (``damaged.json`` says where each was hit).

Where the library reads the whole data section, both read the same messages, channels,
schemas, times and bytes. Where the library raises, mcapread keeps exactly the records
the library read before the damage, reports the offset where the library's last good
record ended, and also keeps every intact chunk after the damage: on the damaged copies
of ``chunks.mcap`` it reads what the library reads from the undamaged file, less the one
chunk that was hit.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcap.reader import make_reader
from mcap.records import Channel, Chunk, ChunkIndex, DataEnd, Message, Schema
from mcap.stream_reader import StreamReader, breakup_chunk

from curation.mcapread import McapContent, read_mcap

HERE = Path(__file__).parent.parent / "conformance"
FILES = sorted(p.relative_to(HERE).as_posix() for p in HERE.rglob("*.mcap"))
DAMAGED = json.loads((HERE / "damaged.json").read_text())

Messages = dict[str, list[tuple[int, bytes]]]  # topic -> (log time, payload) in file order


@dataclass
class LibraryRead:
    """What the mcap library's stream reader reads of a file's data section."""

    messages: Messages = field(default_factory=dict)
    channels: dict[int, tuple[str, str, str, str, bytes]] = field(default_factory=dict)
    good_end: int = 0          # where the last record it read whole ends
    error: str = ""


def library_read(data: bytes) -> LibraryRead:
    out = LibraryRead()
    schemas: dict[int, Schema] = {}
    topics: dict[int, str] = {}
    f = io.BytesIO(data)

    def take(records: list) -> None:
        for r in records:
            if isinstance(r, Schema):
                schemas[r.id] = r
            elif isinstance(r, Channel):
                s = schemas.get(r.schema_id)
                topics[r.id] = r.topic
                out.channels[r.id] = (r.topic, r.message_encoding, s.name if s else "",
                                      s.encoding if s else "", s.data if s else b"")
            elif isinstance(r, Message):
                out.messages.setdefault(topics[r.channel_id], []).append((r.log_time, r.data))

    try:
        for record in StreamReader(f, emit_chunks=True, validate_crcs=True).records:
            take(breakup_chunk(record, validate_crc=True) if isinstance(record, Chunk)
                 else [record])
            out.good_end = f.tell()
            if isinstance(record, DataEnd):
                break
    except Exception as exc:  # noqa: BLE001 - whatever the library raises on damage
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def mcapread_messages(content: McapContent) -> Messages:
    out: Messages = {}
    for ch in content.channels.values():
        out.setdefault(ch.topic, []).extend(zip(ch.log_times, map(bytes, ch.data), strict=True))
    return {t: m for t, m in out.items() if m}


def chunk_messages(data: bytes, ci: ChunkIndex) -> Messages:
    """The messages of one chunk of an undamaged file, read by the library."""
    f = io.BytesIO(data[ci.chunk_start_offset:ci.chunk_start_offset + ci.chunk_length])
    chunk = next(iter(StreamReader(f, skip_magic=True, emit_chunks=True).records))
    assert isinstance(chunk, Chunk)
    summary = make_reader(io.BytesIO(data)).get_summary()
    assert summary is not None
    out: Messages = {}
    for r in breakup_chunk(chunk, validate_crc=True):
        if isinstance(r, Message):
            out.setdefault(summary.channels[r.channel_id].topic, []).append((r.log_time, r.data))
    return out


def chunk_index(data: bytes) -> list[ChunkIndex]:
    summary = make_reader(io.BytesIO(data)).get_summary()
    assert summary is not None
    return sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)


def test_the_conformance_folder_has_clean_truncated_and_damaged_files():
    assert {"truncated.mcap", "chunks.mcap", *DAMAGED} <= set(FILES)
    assert len(FILES) >= 10


@pytest.mark.parametrize("name", FILES)
def test_mcapread_reads_what_the_library_reads(name):
    data = (HERE / name).read_bytes()
    lib = library_read(data)
    content = read_mcap(data)
    mine = mcapread_messages(content)
    # every channel the library saw, with the same topic, encodings and schema
    for cid, (topic, menc, sname, senc, sdata) in lib.channels.items():
        ch = content.channels[cid]
        assert (ch.topic, ch.message_encoding, ch.type, ch.schema_encoding, ch.schema) == (
            topic, menc, sname, senc, sdata)
    if not lib.error:
        assert mine == lib.messages
        assert content.lost == [] and content.truncated_at is None
        return
    # the library stopped: mcapread kept exactly what it read before the damage ...
    assert content.truncated_at == lib.good_end, lib.error
    for topic, messages in lib.messages.items():
        assert mine[topic][:len(messages)] == messages
    # ... and the damage is named where the library stopped
    assert content.lost[0].start == lib.good_end and content.damage


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_mcapread_keeps_every_intact_chunk_of_a_damaged_file(name):
    case = DAMAGED[name]
    original = (HERE / case["source"]).read_bytes()
    data = (HERE / name).read_bytes()
    expected = library_read(original).messages
    chunks = chunk_index(original)
    hit = None if case["chunk"] is None else chunks[case["chunk"]]
    if hit is not None:  # less exactly the messages of the chunk that was hit
        for topic, messages in chunk_messages(original, hit).items():
            gone = set(messages)
            expected[topic] = [m for m in expected[topic] if m not in gone]
    content = read_mcap(data)
    assert mcapread_messages(content) == {t: m for t, m in expected.items() if m}
    lo, hi = case["damaged_bytes"]
    if hit is None:
        assert all(r.chunks == 0 for r in content.lost)
        return
    (lost,) = content.lost
    assert lost.start <= lo and hi <= lost.end
    assert lost.start == hit.chunk_start_offset
    if case["summary_usable"]:  # the chunk index gives its exact time
        assert lost.exact and lost.chunks == 1
        assert (lost.start_ns, lost.end_ns) == (hit.message_start_time, hit.message_end_time)
    else:  # bounded by the intact chunks around it
        before, after = chunks[case["chunk"] - 1], chunks[case["chunk"] + 1]
        assert (lost.start_ns, lost.end_ns) == (before.message_end_time,
                                                after.message_start_time)


def test_mcapread_recovers_more_than_the_library_stream_reader():
    name = "chunks_zeroed_header.mcap"
    data = (HERE / name).read_bytes()
    lib = library_read(data)
    mine = mcapread_messages(read_mcap(data))
    assert lib.error
    assert sum(map(len, mine.values())) > sum(map(len, lib.messages.values()))
    # messages logged after the damage are kept, on every topic the file has
    last_lib = max(t for m in lib.messages.values() for t, _ in m)
    assert all(any(t > last_lib for t, _ in m) for m in mine.values())


def test_a_damaged_summary_loses_no_message_and_is_named():
    content = read_mcap((HERE / "chunks_zeroed_summary.mcap").read_bytes())
    clean = read_mcap((HERE / "chunks.mcap").read_bytes())
    assert mcapread_messages(content) == mcapread_messages(clean)
    assert content.lost == [] and content.summary_damage == "summary CRC mismatch"


def _chunk_spans(data: bytes) -> list[tuple[int, int, Messages]]:
    return [(c.chunk_start_offset, c.chunk_start_offset + c.chunk_length,
             chunk_messages(data, c)) for c in chunk_index(data)]


ORIGINAL = (HERE / "chunks.mcap").read_bytes()
SPANS = _chunk_spans(ORIGINAL)
SUMMARY_START = int.from_bytes(ORIGINAL[-37 + 9:-37 + 17], "little")


@settings(max_examples=150, deadline=None)
@given(start=st.integers(8, SUMMARY_START - 1), length=st.integers(1, 600),
       flip=st.booleans(), cut_summary=st.booleans())
def test_any_damage_costs_at_most_the_chunks_it_touches(start: int, length: int, flip: bool,
                                                         cut_summary: bool) -> None:
    if cut_summary:  # no summary to name channels: damage starts in the first chunk or later
        start = max(start, SPANS[0][0])
    end = min(start + length, SUMMARY_START)
    buf = bytearray(ORIGINAL)
    for i in range(start, end):
        buf[i] = buf[i] ^ 0xFF if flip else 0
    if cut_summary:
        del buf[SUMMARY_START:]
    mine = mcapread_messages(read_mcap(bytes(buf)))
    kept = {(t, m) for t, ms in mine.items() for m in ms}
    every = {(t, m) for t, ms in library_read(ORIGINAL).messages.items() for m in ms}
    assert kept <= every  # nothing made up
    for lo, hi, messages in SPANS:
        if hi <= start or end <= lo:  # an intact chunk: all of it is kept
            assert {(t, m) for t, ms in messages.items() for m in ms} <= kept
