"""A lean writer of sharded Zarr v3 arrays (the subset DemoFab releases use).

zarr-python spends milliseconds of per-call overhead on every array it creates and
writes, which dominated ingest time over dozens of small arrays. Releases use one fixed
codec chain, so this module writes the metadata and the shard files directly: inner
chunks encoded with ``bytes`` (+ ``zstd``), concatenated, followed by the shard index
(``bytes`` little endian + ``crc32c``) at the end, exactly as the v3 sharding spec and
zarr-python lay them out. The tests read every array back with zarr-python and
tensorstore; ``demofab bench curate`` times it against zarr-python (``vs_zarr_python``).

The bytes reach the disk through ``demofab.durable`` (direct I/O for large shards); each
writer takes the record of written files (``curation.manifest.WrittenFiles``) explicitly,
and reports every file it closes to it. ``fsync_path``, ``FileSink``, ``write_file`` and
``DIRECT_MIN`` are re-exported from ``demofab.durable`` for the callers of the old module.
"""

from __future__ import annotations

import json
import os
import struct
from collections import deque
from collections.abc import Container
from pathlib import Path
from typing import Any, Protocol

import google_crc32c
import numpy as np
import zstandard

from demofab.durable import DIRECT_MIN, FileSink, WriteLog, fsync_path, move_dir, write_file

__all__ = ["DIRECT_MIN", "DTYPE_NAMES", "MISSING", "ZSTD_LEVEL", "ArrayWriter", "FileSink",
           "WriteRecord", "array_metadata", "fsync_path", "fsync_tree",
           "shard_index", "write_array", "write_file", "write_group", "write_json"]

ZSTD_LEVEL = 3
MISSING = 0xFFFF_FFFF_FFFF_FFFF
DTYPE_NAMES = {"b1": "bool", "i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64",
               "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64",
               "f4": "float32", "f8": "float64"}


class WriteRecord(WriteLog, Protocol):
    """The record the writers report to (``WrittenFiles``): closed files, and renames of
    directories written so far."""

    def move(self, src: Path, dst: Path) -> None:
        """Rename ``src`` to ``dst``; its files keep their place in the record."""


def write_json(path: Path, obj: dict[str, Any], record: WriteRecord | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(obj, indent=2).encode()
    path.write_bytes(data)
    if record is not None:
        record.written(path, [data])


def write_group(path: Path, attributes: dict[str, Any] | None = None,
                record: WriteRecord | None = None) -> None:
    write_json(path / "zarr.json", {"zarr_format": 3, "node_type": "group",
                                    "attributes": attributes or {}}, record)


def array_metadata(shape: tuple[int, ...], dtype: np.dtype[Any] | str, chunk_rows: int,
                   shard_rows: int, compress: bool,
                   attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """``zarr.json`` of a sharded array: shards of ``shard_rows`` rows, inner chunks of
    ``chunk_rows``, ``bytes`` (+ ``zstd``) inside, the index at the end with its crc32c."""
    dt = np.dtype(dtype)
    name = DTYPE_NAMES[dt.kind + str(dt.itemsize)]
    tail = list(shape[1:])
    inner: list[dict[str, Any]] = [
        {"name": "bytes"} if dt.itemsize == 1 else
        {"name": "bytes", "configuration": {"endian": "little"}}]
    if compress:
        inner.append({"name": "zstd", "configuration": {"level": ZSTD_LEVEL, "checksum": False}})
    fill: Any = False if dt.kind == "b" else (0.0 if dt.kind == "f" else 0)
    return {
        "zarr_format": 3, "node_type": "array", "shape": list(shape), "data_type": name,
        "chunk_grid": {"name": "regular",
                       "configuration": {"chunk_shape": [shard_rows, *tail]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [chunk_rows, *tail], "codecs": inner,
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                             {"name": "crc32c"}],
            "index_location": "end"}}],
        "attributes": attributes or {}, "storage_transformers": [],
    }


def _index_bytes(index: np.ndarray[Any, np.dtype[np.uint64]]) -> bytes:
    ib = index.tobytes()
    return ib + struct.pack("<I", google_crc32c.value(ib))


def shard_index(slots: int, chunks: list[tuple[int, int]]) -> bytes:
    """The index at the end of a shard: ``slots`` (offset, nbytes) pairs, little-endian
    uint64, the first ``len(chunks)`` given and the rest empty (``MISSING``), then the
    crc32c of those bytes."""
    index = np.full((slots, 2), MISSING, dtype="<u8")
    if chunks:
        index[:len(chunks)] = np.asarray(chunks, dtype=np.uint64)
    return _index_bytes(index)


def _regular_index(slots: int, nchunks: int, chunk_bytes: int) -> bytes:
    """The index of a shard of ``nchunks`` back-to-back chunks of ``chunk_bytes`` each."""
    index = np.full((slots, 2), MISSING, dtype="<u8")
    index[:nchunks, 0] = np.arange(nchunks, dtype=np.uint64) * np.uint64(chunk_bytes)
    index[:nchunks, 1] = chunk_bytes
    return _index_bytes(index)


class ArrayWriter:
    """Rows appended in order; each full shard is written as one file. ``rows=-1``: the
    count is not known yet, and ``zarr.json`` is written by ``close``. Every file it
    closes is reported to ``record``."""

    def __init__(self, path: Path, rows: int, tail: tuple[int, ...],
                 dtype: np.dtype[Any] | type[np.generic] | str, chunk_rows: int,
                 shard_rows: int, compress: bool = True,
                 attributes: dict[str, Any] | None = None,
                 record: WriteRecord | None = None) -> None:
        if chunk_rows <= 0 or shard_rows % chunk_rows:
            raise ValueError(f"{path}: shards of {shard_rows} rows do not hold whole chunks of "
                             f"{chunk_rows} rows")
        self.path = Path(path)
        self.rows, self.tail = rows, tuple(tail)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.chunk_rows, self.shard_rows = chunk_rows, shard_rows
        self.compress = compress
        self.record = record
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL) if compress else None
        self._buf: deque[np.ndarray[Any, Any]] = deque()
        self._buffered = 0
        self._written = 0
        self._shard = 0
        self._attributes = attributes
        # uncompressed 1-D bytes (camera frames) go into the open shard file as they are
        # appended: nothing is held back, and a shard is written while later rows come in
        self._stream = not compress and self.tail == () and self.dtype.itemsize == 1
        self._sink: FileSink | None = None
        self._in_shard = 0
        if rows >= 0:
            self._write_metadata()

    def _write_metadata(self) -> None:
        write_json(self.path / "zarr.json", array_metadata(
            (self.rows, *self.tail), self.dtype, self.chunk_rows, self.shard_rows,
            self.compress, self._attributes), self.record)

    def append(self, block: np.ndarray[Any, Any]) -> None:
        block = np.asarray(block)
        if block.shape[1:] != self.tail:
            raise ValueError(f"{self.path}: block of shape {block.shape[1:]} where rows are "
                             f"{self.tail}")
        if not len(block):
            return
        if self._stream:
            self._stream_in(np.ascontiguousarray(block).data.cast("B"))
            return
        self._buf.append(block)
        self._buffered += len(block)
        while self._buffered >= self.shard_rows:
            self._flush(self.shard_rows)

    def _stream_in(self, data: memoryview) -> None:
        while len(data):
            if self._sink is None:
                key = self.path.joinpath("c", str(self._shard))
                key.parent.mkdir(parents=True, exist_ok=True)
                self._sink = FileSink(key, self.record)
            n = min(len(data), self.shard_rows - self._in_shard)
            self._sink.write(data[:n])
            self._in_shard += n
            data = data[n:]
            if self._in_shard == self.shard_rows:
                self._end_shard()

    def _end_shard(self) -> None:
        """Pad the open shard to whole chunks, then its index."""
        assert self._sink is not None
        n, cr = self._in_shard, self.chunk_rows
        nchunks = -(-n // cr)
        self._sink.write(bytes(nchunks * cr - n))
        self._sink.write(_regular_index(self.shard_rows // cr, nchunks, cr))
        self._sink.close()
        self._sink = None
        self._written += n
        self._in_shard = 0
        self._shard += 1

    def abort(self) -> None:
        if self._sink is not None:
            self._sink.abort()
            self._sink = None

    def move_to(self, path: Path) -> None:
        """Move what is written so far (and what is still to come) to ``path``."""
        if self.record is not None:
            self.record.move(self.path, path)
        else:
            move_dir(self.path, path)
        if self._sink is not None:
            self._sink.path = path / self._sink.path.relative_to(self.path)
        self.path = Path(path)

    def close(self) -> None:
        if self._sink is not None:
            self._end_shard()
        if self._buffered:
            self._flush(self._buffered)
        if self.rows < 0:  # rows unknown until now (appended as they came): metadata last
            self.rows = self._written
            self._write_metadata()
        if self._written != self.rows:
            raise ValueError(f"{self.path}: {self._written} rows written, {self.rows} declared")

    def _take(self, n: int) -> np.ndarray[Any, Any]:
        data = self._buf[0] if len(self._buf) == 1 else np.concatenate(list(self._buf))
        out, rest = data[:n], data[n:]
        self._buf = deque([rest] if len(rest) else [])
        self._buffered = len(rest)
        return out

    def _take_views(self, n: int) -> list[np.ndarray[Any, Any]]:
        """The first ``n`` buffered rows as views of the appended blocks (no copy)."""
        out: list[np.ndarray[Any, Any]] = []
        need = n
        while need:
            block = self._buf[0]
            if len(block) <= need:
                out.append(block)
                self._buf.popleft()
                need -= len(block)
            else:
                out.append(block[:need])
                self._buf[0] = block[need:]
                need = 0
        self._buffered -= n
        return out

    def _flush_plain(self, n: int) -> None:
        """Uncompressed rows (camera bytes): the shard is the rows themselves, zero-padded
        to whole chunks, then the index; written straight from the appended blocks."""
        views = [np.ascontiguousarray(v, dtype=self.dtype).data.cast("B")
                 for v in self._take_views(n)]
        cr = self.chunk_rows
        chunk_bytes = cr * int(np.prod(self.tail, dtype=np.int64)) * self.dtype.itemsize
        nchunks = -(-n // cr)
        pad = nchunks * chunk_bytes - sum(len(v) for v in views)
        parts: list[bytes | memoryview] = [
            *views, bytes(pad), _regular_index(self.shard_rows // cr, nchunks, chunk_bytes)]
        self._write_shard(parts)
        self._written += n

    def _write_shard(self, parts: list[bytes | memoryview]) -> None:
        key = self.path.joinpath("c", str(self._shard), *(["0"] * len(self.tail)))
        key.parent.mkdir(parents=True, exist_ok=True)
        write_file(key, parts, self.record)
        self._shard += 1

    def _flush(self, n: int) -> None:
        if self._zstd is None:
            self._flush_plain(n)
            return
        data = np.ascontiguousarray(self._take(n), dtype=self.dtype)
        cr = self.chunk_rows
        parts: list[bytes | memoryview] = []
        chunks: list[tuple[int, int]] = []
        offset = 0
        for lo in range(0, len(data), cr):
            chunk = data[lo:lo + cr]
            if len(chunk) < cr:  # edge chunks are stored full size, padded with zeros
                chunk = np.concatenate([chunk, np.zeros((cr - len(chunk), *self.tail), self.dtype)])
            # no copy: zstd, sha256 and write take buffers
            enc = self._zstd.compress(chunk.data.cast("B"))
            parts.append(enc)
            chunks.append((offset, len(enc)))
            offset += len(enc)
        parts.append(shard_index(self.shard_rows // cr, chunks))
        self._write_shard(parts)
        self._written += len(data)


def write_array(path: Path, data: np.ndarray[Any, Any], chunk_rows: int, shard_rows: int,
                compress: bool = True, attributes: dict[str, Any] | None = None,
                record: WriteRecord | None = None) -> None:
    data = np.asarray(data)
    w = ArrayWriter(path, len(data), data.shape[1:], data.dtype, chunk_rows, shard_rows,
                    compress, attributes, record)
    w.append(data)
    w.close()


def fsync_tree(root: Path, done: Container[str] = ()) -> None:
    """fsync every file under ``root`` not in ``done`` (already synced by a record of
    written files), then every directory, deepest first, so that the entries themselves
    are durable."""
    dirs = []
    for dirpath, _, names in os.walk(root):
        dirs.append(dirpath)
        for n in names:
            path = os.path.join(dirpath, n)
            if path not in done:
                fsync_path(path)
    for d in reversed(dirs):
        fsync_path(d)
