"""Reading an undamaged MCAP file chunk by chunk with the ``mcap`` library: the reference
the damage tests of recover and curation compare against."""

from __future__ import annotations

import io
from collections import Counter

from mcap.reader import make_reader
from mcap.records import Chunk, ChunkIndex, Message
from mcap.stream_reader import StreamReader, breakup_chunk


def chunks_of(data: bytes) -> list[ChunkIndex]:
    """The chunk index of ``data``, in file order."""
    summary = make_reader(io.BytesIO(data)).get_summary()
    assert summary is not None
    return sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)


def chunk_counts(data: bytes, ci: ChunkIndex) -> Counter[str]:
    """Messages per topic in one chunk of the undamaged file, read by the mcap library."""
    summary = make_reader(io.BytesIO(data)).get_summary()
    assert summary is not None
    f = io.BytesIO(data[ci.chunk_start_offset:ci.chunk_start_offset + ci.chunk_length])
    chunk = next(iter(StreamReader(f, skip_magic=True, emit_chunks=True).records))
    assert isinstance(chunk, Chunk)
    return Counter(summary.channels[r.channel_id].topic
                   for r in breakup_chunk(chunk, validate_crc=True) if isinstance(r, Message))
