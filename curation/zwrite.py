"""A lean writer of sharded Zarr v3 arrays (the subset DemoFab releases use).

zarr-python spends milliseconds of per-call overhead on every array it creates and
writes, which dominated ingest time over dozens of small arrays. Releases use one fixed
codec chain, so this module writes the metadata and the shard files directly: inner
chunks encoded with ``bytes`` (+ ``zstd``), concatenated, followed by the shard index
(``bytes`` little endian + ``crc32c``) at the end, exactly as the v3 sharding spec and
zarr-python lay them out. The tests read every array back with zarr-python and
tensorstore.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import struct
import threading
from collections import deque
from collections.abc import Container, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import zstandard

ZSTD_LEVEL = 3
MISSING = 0xFFFF_FFFF_FFFF_FFFF
DTYPE_NAMES = {"b1": "bool", "i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64",
               "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64",
               "f4": "float32", "f8": "float64"}


# sha256 and size of every file written through this module while a ``recording()``
# block is open, by path: the manifest takes them from there instead of reading the
# files back. A background thread hashes and fsyncs each file as it is closed
# (hashlib and fsync release the GIL), so that work overlaps the encoding of the next
# array on the second core. Scoped to the block, so nothing leaks between releases.
_WRITTEN: ContextVar[_Recorder | None] = ContextVar("zwrite_written", default=None)


class _Recorder:
    def __init__(self) -> None:
        self.written: dict[str, tuple[str, int]] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="zwrite-hash")
        self._jobs: list[Future[None]] = []
        self._lock = threading.Lock()  # writers on several threads queue jobs; drain swaps

    def _queue(self, job: Future[None]) -> None:
        with self._lock:
            self._jobs.append(job)

    def submit(self, path: Path, parts: Sequence[bytes | memoryview]) -> None:
        self._queue(self._pool.submit(self._hash_and_sync, path, parts))

    def hashed(self, path: Path, digest: str, size: int) -> None:
        """A file whose hash its writer computed: only the fsync (metadata) is left."""
        self.written[str(path)] = (digest, size)
        self._queue(self._pool.submit(fsync_path, path))

    def _hash_and_sync(self, path: Path, parts: Sequence[bytes | memoryview]) -> None:
        h = hashlib.sha256()
        for p in parts:
            h.update(p)
        self.written[str(path)] = (h.hexdigest(), sum(len(p) for p in parts))
        fsync_path(path)

    def drain(self) -> None:
        """Wait for the hashes and fsyncs queued so far (re-raising a failure)."""
        with self._lock:
            jobs, self._jobs = self._jobs, []
        for job in jobs:
            job.result()

    def finish(self) -> None:
        try:
            self.drain()  # re-raises a failed hash or fsync here
        finally:
            self._pool.shutdown(wait=True)


@contextmanager
def recording() -> Iterator[dict[str, tuple[str, int]]]:
    rec = _Recorder()
    token = _WRITTEN.set(rec)
    try:
        yield rec.written
    finally:
        _WRITTEN.reset(token)
        rec.finish()


def _record(path: Path, parts: Sequence[bytes | memoryview]) -> None:
    rec = _WRITTEN.get()
    if rec is not None:
        rec.submit(path, parts)


def forget(root: Path) -> None:
    """Files under ``root`` (about to be deleted) leave the manifest's record."""
    rec = _WRITTEN.get()
    if rec is None:
        return
    rec.drain()
    prefix = str(root) + os.sep
    # list(): a snapshot taken at once; writers on other threads add entries meanwhile
    for key in [k for k in list(rec.written) if k.startswith(prefix) or k == str(root)]:
        del rec.written[key]


def move(src: Path, dst: Path) -> None:
    """Rename a written directory; its files keep their place in the manifest's record."""
    rec = _WRITTEN.get()
    if rec is not None:
        rec.drain()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not src.exists():
        return  # nothing written there yet
    os.rename(src, dst)
    if rec is not None:
        old, new = str(src) + os.sep, str(dst) + os.sep
        for key in [k for k in list(rec.written) if k.startswith(old)]:
            rec.written[new + key[len(old):]] = rec.written.pop(key)


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- direct I/O ---------------------------------------------------------------------------
# Large shard files are written with O_DIRECT through a reused, page-aligned staging
# buffer per thread: the bytes are copied once into memory that is already mapped and hot,
# hashed there, and go to the disk without passing through the page cache. Buffered
# writes of hundreds of MB into fresh page-cache pages cost more CPU than all of ingest's
# decoding here (see docs/architecture.md, "Writing a release"). Filesystems that refuse
# O_DIRECT (tmpfs, some overlays) get the buffered path.
DIRECT_MIN = 1 << 20        # files smaller than this are written buffered
_STAGE = 8 << 20            # staging buffer per thread (a multiple of the block size)
_BLOCK = 4096               # O_DIRECT alignment of offsets and lengths
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_no_direct: set[int] = set()  # st_dev of filesystems that refused O_DIRECT
_stages: list[memoryview] = []  # free staging buffers, reused (their pages stay mapped)
_stages_lock = threading.Lock()


def _take_stage() -> memoryview:
    with _stages_lock:
        if _stages:
            return _stages.pop()
    return memoryview(mmap.mmap(-1, _STAGE))


def _give_stage(stage: memoryview) -> None:
    with _stages_lock:
        _stages.append(stage)


class FileSink:
    """A new file written piece by piece and hashed on the way: through a page-aligned
    staging buffer with O_DIRECT where the filesystem allows it, else buffered. ``close``
    records (sha256, size) for the manifest; ``abort`` removes the file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.size = 0
        self._h = hashlib.sha256()
        self._stage: memoryview | None = None
        self._fill = 0
        self._flushed = False
        self._fd = -1
        self._file: Any = None
        dev = os.stat(self.path.parent).st_dev
        if _O_DIRECT and dev not in _no_direct:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_DIRECT,
                                   0o644)
                self._stage = _take_stage()
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                _no_direct.add(dev)
        if self._stage is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close/abort

    def write(self, part: bytes | memoryview | np.ndarray) -> None:
        mv = memoryview(part).cast("B")
        self.size += len(mv)
        if self._stage is None:
            self._h.update(mv)
            self._file.write(mv)
            return
        stage = self._stage
        while len(mv):
            n = min(len(mv), _STAGE - self._fill)
            stage[self._fill:self._fill + n] = mv[:n]
            self._fill += n
            mv = mv[n:]
            if self._fill == _STAGE:
                self._h.update(stage)
                self._flush(stage)
                self._fill = 0

    def _flush(self, data: memoryview) -> None:
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            if exc.errno != errno.EINVAL or self._flushed:
                raise
            # the filesystem took the open but refuses direct writes: buffered from here
            _no_direct.add(os.fstat(self._fd).st_dev)
            os.close(self._fd)
            self._fd = -1
            self._file = open(self.path, "wb")  # noqa: SIM115
            self._file.write(data)
            assert self._stage is not None
            stage, self._stage = self._stage, None
            rest = bytes(stage[len(data):self._fill]) if self._fill > len(data) else b""
            _give_stage(stage)
            self._file.write(rest)
            return
        self._flushed = True

    def close(self) -> tuple[str, int]:
        try:
            if self._stage is not None:
                stage = self._stage
                if self._fill:
                    self._h.update(stage[:self._fill])
                    padded = -(-self._fill // _BLOCK) * _BLOCK
                    stage[self._fill:padded] = bytes(padded - self._fill)
                    self._flush(stage[:padded])
                if self._fd >= 0:
                    os.ftruncate(self._fd, self.size)  # drop the padding of the last block
            if self._file is not None:
                self._file.flush()
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
        except BaseException:
            self.abort()
            raise
        self._release()
        digest = self._h.hexdigest()
        rec = _WRITTEN.get()
        if rec is not None:
            rec.hashed(self.path, digest, self.size)
        return digest, self.size

    def abort(self) -> None:
        self._release()
        self.path.unlink(missing_ok=True)

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._stage is not None:
            _give_stage(self._stage)
            self._stage = None


def write_file(path: Path, parts: Sequence[bytes | memoryview]) -> None:
    """Write ``parts`` back to back into a new file ``path``, recorded for the manifest."""
    size = sum(len(p) for p in parts)
    if size >= DIRECT_MIN:
        sink = FileSink(path)
        try:
            for part in parts:
                sink.write(part)
        except BaseException:
            sink.abort()
            raise
        sink.close()
        return
    with open(path, "wb") as f:
        f.writelines(parts)
    rec = _WRITTEN.get()
    if rec is not None:
        rec.submit(path, parts)


def _write_all(fd: int, data: memoryview) -> None:
    while len(data):
        n = os.write(fd, data)
        data = data[n:]


def write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(obj, indent=2).encode()
    path.write_bytes(data)
    _record(path, [data])


def write_group(path: Path, attributes: dict[str, Any] | None = None) -> None:
    write_json(path / "zarr.json", {"zarr_format": 3, "node_type": "group",
                                    "attributes": attributes or {}})


def array_metadata(shape: tuple[int, ...], dtype: np.dtype, chunk_rows: int, shard_rows: int,
                   compress: bool, attributes: dict[str, Any] | None = None) -> dict[str, Any]:
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


class ArrayWriter:
    """Rows appended in order; each full shard is written as one file. ``rows=-1``: the
    count is not known yet, and ``zarr.json`` is written by ``close``."""

    def __init__(self, path: Path, rows: int, tail: tuple[int, ...], dtype: np.dtype | str,
                 chunk_rows: int, shard_rows: int, compress: bool = True,
                 attributes: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.rows, self.tail = rows, tuple(tail)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.chunk_rows, self.shard_rows = chunk_rows, shard_rows
        self.compress = compress
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL) if compress else None
        self._buf: deque[np.ndarray] = deque()
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
            write_json(self.path / "zarr.json", array_metadata(
                (rows, *self.tail), self.dtype, chunk_rows, shard_rows, compress, attributes))

    def append(self, block: np.ndarray) -> None:
        block = np.asarray(block)
        if block.shape[1:] != self.tail:
            raise ValueError(f"{self.path}: block of shape {block.shape[1:]} where rows are "
                             f"{self.tail}")
        if not len(block):
            return
        if self._stream:
            self._stream_in(memoryview(np.ascontiguousarray(block)).cast("B"))
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
                self._sink = FileSink(key)
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
        index = np.full((self.shard_rows // cr, 2), MISSING, dtype="<u8")
        index[:nchunks, 0] = np.arange(nchunks, dtype=np.uint64) * cr
        index[:nchunks, 1] = cr
        ib = index.tobytes()
        self._sink.write(bytes(nchunks * cr - n))
        self._sink.write(ib + struct.pack("<I", google_crc32c.value(ib)))
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
        move(self.path, path)
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
            write_json(self.path / "zarr.json", array_metadata(
                (self.rows, *self.tail), self.dtype, self.chunk_rows, self.shard_rows,
                self.compress, self._attributes))
        if self._written != self.rows:
            raise ValueError(f"{self.path}: {self._written} rows written, {self.rows} declared")

    def _take(self, n: int) -> np.ndarray:
        data = self._buf[0] if len(self._buf) == 1 else np.concatenate(list(self._buf))
        out, rest = data[:n], data[n:]
        self._buf = deque([rest] if len(rest) else [])
        self._buffered = len(rest)
        return out

    def _take_views(self, n: int) -> list[np.ndarray]:
        """The first ``n`` buffered rows as views of the appended blocks (no copy)."""
        out: list[np.ndarray] = []
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
        views = [memoryview(np.ascontiguousarray(v, dtype=self.dtype)).cast("B")
                 for v in self._take_views(n)]
        cr = self.chunk_rows
        chunk_bytes = cr * int(np.prod(self.tail, dtype=np.int64)) * self.dtype.itemsize
        nchunks = -(-n // cr)
        index = np.full((self.shard_rows // cr, 2), MISSING, dtype="<u8")
        index[:nchunks, 0] = np.arange(nchunks, dtype=np.uint64) * chunk_bytes
        index[:nchunks, 1] = chunk_bytes
        pad = nchunks * chunk_bytes - sum(len(v) for v in views)
        ib = index.tobytes()
        parts: list[bytes | memoryview] = [*views, bytes(pad),
                                           ib + struct.pack("<I", google_crc32c.value(ib))]
        self._write_shard(parts)
        self._written += n

    def _write_shard(self, parts: list[bytes | memoryview]) -> None:
        key = self.path.joinpath("c", str(self._shard), *(["0"] * len(self.tail)))
        key.parent.mkdir(parents=True, exist_ok=True)
        write_file(key, parts)
        self._shard += 1

    def _flush(self, n: int) -> None:
        if self._zstd is None:
            self._flush_plain(n)
            return
        data = np.ascontiguousarray(self._take(n), dtype=self.dtype)
        cr = self.chunk_rows
        per_shard = self.shard_rows // cr
        parts: list[bytes | memoryview] = []
        index = np.full((per_shard, 2), MISSING, dtype="<u8")
        offset = 0
        for k in range(per_shard):
            lo = k * cr
            if lo >= len(data):
                break
            chunk = data[lo:lo + cr]
            if len(chunk) < cr:  # edge chunks are stored full size, padded with zeros
                chunk = np.concatenate([chunk, np.zeros((cr - len(chunk), *self.tail), self.dtype)])
            raw = memoryview(chunk).cast("B")  # no copy: zstd, sha256 and write take buffers
            enc = self._zstd.compress(raw) if self._zstd is not None else raw
            parts.append(enc)
            index[k] = (offset, len(enc))
            offset += len(enc)
        ib = index.tobytes()
        parts.append(ib + struct.pack("<I", google_crc32c.value(ib)))
        self._write_shard(parts)
        self._written += len(data)


def write_array(path: Path, data: np.ndarray, chunk_rows: int, shard_rows: int,
                compress: bool = True, attributes: dict[str, Any] | None = None) -> None:
    data = np.asarray(data)
    w = ArrayWriter(path, len(data), data.shape[1:], data.dtype, chunk_rows, shard_rows,
                    compress, attributes)
    w.append(data)
    w.close()


def fsync_tree(root: Path, done: Container[str] = ()) -> None:
    """fsync every file under ``root`` not in ``done`` (already synced by ``recording``),
    then every directory, deepest first, so that the entries themselves are durable."""
    dirs = []
    for dirpath, _, names in os.walk(root):
        dirs.append(dirpath)
        for n in names:
            path = os.path.join(dirpath, n)
            if path not in done:
                fsync_path(path)
    for d in reversed(dirs):
        fsync_path(d)
