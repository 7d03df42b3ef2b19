"""A Zarr v3 array reader without zarr-python's per-call overhead.

It parses ``zarr.json``, reads each shard's index once (``sharding_indexed``: ``nchunks x
(offset, nbytes)`` little-endian uint64, then a crc32c when the index codecs say so; the
empty-chunk marker is ``2**64 - 1``), fetches inner chunks with ``os.pread`` and decodes
them with the declared codecs (``bytes``, ``transpose``, ``zstd``, ``gzip``, ``blosc``,
``crc32c``), keeping decoded chunks in a byte-budgeted LRU. Arrays it does not understand
are read through zarr-python. File descriptors are per process: a forked child reopens
them on first use (decoded chunks are immutable and stay valid).
"""

from __future__ import annotations

import json
import math
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ReleaseError

__all__ = ["ChunkCache", "ShardedArrayReader"]

_MAX_U64 = np.uint64(2**64 - 1)
_FORK_GENERATION = [0]


def _after_fork_in_child() -> None:
    _FORK_GENERATION[0] += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


class ChunkCache:
    """A byte-budgeted LRU of decoded chunks shared by the readers of one process."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[int, int]) -> np.ndarray | None:
        item = self._items.get(key)
        if item is not None:
            self.hits += 1
            try:
                self._items.move_to_end(key)
            except KeyError:  # evicted by another thread in between
                pass
        else:
            self.misses += 1
        return item

    def put(self, key: tuple[int, int], value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._items[key] = value
            self.nbytes += value.nbytes
            while self.nbytes > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self.nbytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


def _crc32c(data: bytes | memoryview) -> int:
    import google_crc32c

    return int(google_crc32c.value(bytes(data)))


@dataclass(frozen=True)
class _Pipeline:
    """The codecs of one chunk: array->array transposes, ``bytes``, bytes->bytes codecs."""

    chunk_shape: tuple[int, ...]
    dtype: np.dtype
    transposes: tuple[tuple[int, ...], ...]
    endian: Literal["<", ">", "|"]
    bytes_codecs: tuple[tuple[str, Mapping[str, Any]], ...]

    @property
    def raw(self) -> bool:
        """True when a chunk is stored as plain bytes (a byte range can be read in place)."""
        return not self.transposes and not self.bytes_codecs

    def decode(self, data: bytes, where: str) -> np.ndarray:
        buf: Any = data
        for name, _config in reversed(self.bytes_codecs):
            if name == "crc32c":
                if len(buf) < 4:
                    raise ReleaseError(f"{where}: chunk too short for its crc32c")
                body, stored = buf[:-4], struct.unpack("<I", bytes(buf[-4:]))[0]
                if _crc32c(body) != stored:
                    raise ReleaseError(f"{where}: crc32c mismatch, the chunk is damaged")
                buf = body
            else:
                buf = _numcodec(name).decode(buf)
        stored_shape = self.chunk_shape
        for order in self.transposes:
            stored_shape = tuple(stored_shape[i] for i in order)
        dtype = self.dtype if self.endian == "|" else self.dtype.newbyteorder(self.endian)
        arr = np.frombuffer(buf, dtype=dtype)
        expected = math.prod(stored_shape)
        if arr.size != expected:
            raise ReleaseError(
                f"{where}: decoded chunk has {arr.size} elements, expected {expected} "
                f"(shape {list(stored_shape)})"
            )
        arr = arr.reshape(stored_shape)
        for order in reversed(self.transposes):
            arr = arr.transpose(np.argsort(order))
        if arr.dtype != self.dtype or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=self.dtype)
        return arr


_NUMCODECS: dict[str, Any] = {}


def _numcodec(name: str) -> Any:
    codec = _NUMCODECS.get(name)
    if codec is None:
        import numcodecs

        codec = {"zstd": numcodecs.Zstd, "gzip": numcodecs.GZip, "blosc": numcodecs.Blosc}[name]()
        _NUMCODECS[name] = codec
    return codec


_SUPPORTED_BYTES_CODECS = {"zstd", "gzip", "blosc", "crc32c"}


def _parse_pipeline(
    codecs: Sequence[Mapping[str, Any]], chunk_shape: tuple[int, ...], dtype: np.dtype
) -> _Pipeline | None:
    """The pipeline for ``codecs``, or None when a codec is one this reader does not know."""
    transposes: list[tuple[int, ...]] = []
    endian: Literal["<", ">", "|"] | None = None
    bytes_codecs: list[tuple[str, Mapping[str, Any]]] = []
    for codec in codecs:
        name = codec.get("name")
        config = codec.get("configuration") or {}
        if endian is None:
            if name == "transpose":
                transposes.append(tuple(int(i) for i in config["order"]))
                continue
            if name != "bytes":
                return None
            declared = config.get("endian")
            if declared not in ("little", "big", None):
                return None
            endian = "<" if declared == "little" else ">" if declared == "big" else "|"
            if dtype.itemsize == 1:
                endian = "|"
            continue
        if name not in _SUPPORTED_BYTES_CODECS:
            return None
        bytes_codecs.append((str(name), config))
    if endian is None:
        return None
    return _Pipeline(chunk_shape, dtype, tuple(transposes), endian, tuple(bytes_codecs))


_DTYPES = {
    "bool": "bool", "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "float16": "float16", "float32": "float32", "float64": "float64",
}  # fmt: skip

_READER_IDS = iter(range(1, 2**62))


class ShardedArrayReader:
    """Reads a Zarr v3 array (sharded or not) with ``os.pread`` and an LRU of chunks.

    The read unit is the inner chunk. Fast paths: :meth:`take` (rows along the first
    axis, when chunks hold whole trailing dimensions), :meth:`read` (a row range) and
    :meth:`read_bytes` (a byte range of a raw 1-D uint8 array, read in place without
    loading whole chunks). Anything this reader does not support (an unknown codec or
    data type, nested sharding) goes through zarr-python.
    """

    def __init__(self, path: str | Path, cache: ChunkCache | None = None, *,
                 files: Any = None, rel: str | None = None) -> None:
        #: ``files``/``rel``: the array is ``rel`` of a remote release (``release.open_url``)
        self.path = Path(path)
        self.files, self._rel = files, rel
        meta_path = self.path / "zarr.json"
        try:
            meta = json.loads(files.read(f"{rel}/zarr.json")
                              if files is not None else meta_path.read_text())
        except FileNotFoundError as exc:
            raise ReleaseError(f"{meta_path}: no such Zarr array") from exc
        except (OSError, ValueError) as exc:
            raise ReleaseError(f"{meta_path}: unreadable Zarr metadata: {exc}") from exc
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
            raise ReleaseError(f"{meta_path}: not a Zarr v3 array")
        self.meta = meta
        self.shape: tuple[int, ...] = tuple(int(n) for n in meta["shape"])
        self.attributes: dict[str, Any] = meta.get("attributes") or {}
        self._uid = next(_READER_IDS)
        self._cache = cache if cache is not None else ChunkCache(64 << 20)
        self._fds: dict[str, int] = {}
        self._gen = _FORK_GENERATION[0]
        self._index: dict[str, np.ndarray | None] = {}
        self._zarr: Any = None
        self._native = self._parse(meta)

    # -- metadata ------------------------------------------------------------------

    def _parse(self, meta: Mapping[str, Any]) -> bool:
        dtype_name = meta.get("data_type")
        self.dtype = np.dtype(_DTYPES.get(dtype_name, "V1")) if isinstance(dtype_name, str) else None
        grid = meta.get("chunk_grid") or {}
        encoding = meta.get("chunk_key_encoding") or {"name": "default"}
        if (
            self.dtype is None
            or dtype_name not in _DTYPES
            or grid.get("name") != "regular"
            or encoding.get("name") not in ("default", "v2")
        ):
            self.dtype = np.dtype(self._zarr_array().dtype)
            return False
        enc_config = encoding.get("configuration") or {}
        self._key_prefix = "c" if encoding["name"] == "default" else ""
        self._key_sep = str(enc_config.get("separator",
                                           "/" if encoding["name"] == "default" else "."))
        self.fill_value = _fill_value(meta.get("fill_value"), self.dtype)
        outer = tuple(int(n) for n in grid["configuration"]["chunk_shape"])
        codecs = meta.get("codecs") or []
        self.sharded = len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed"
        if self.sharded:
            config = codecs[0]["configuration"]
            inner = tuple(int(n) for n in config["chunk_shape"])
            if len(inner) != len(outer) or any(o % i for o, i in zip(outer, inner, strict=True)):
                return False
            self.shard_shape = outer
            self.chunk_shape = inner
            self.chunks_per_shard = tuple(o // i for o, i in zip(outer, inner, strict=True))
            pipeline = _parse_pipeline(config.get("codecs") or [], inner, self.dtype)
            index_codecs = config.get("index_codecs") or []
            names = [c.get("name") for c in index_codecs]
            endian = ((index_codecs[0].get("configuration") or {}).get("endian")) if names else None
            if names not in (["bytes"], ["bytes", "crc32c"]) or endian not in ("little", None):
                return False
            self._index_crc = names == ["bytes", "crc32c"]
            self._index_at_end = config.get("index_location", "end") == "end"
            nchunks = math.prod(self.chunks_per_shard)
            self._index_nbytes = nchunks * 16 + (4 if self._index_crc else 0)
        else:
            self.shard_shape = outer
            self.chunk_shape = outer
            self.chunks_per_shard = tuple(1 for _ in outer)
            pipeline = _parse_pipeline(codecs, outer, self.dtype)
        if pipeline is None:
            return False
        self._pipeline = pipeline
        self.chunk_rows = self.chunk_shape[0] if self.chunk_shape else 1
        self.rows_chunked_only = self.chunk_shape[1:] == self.shape[1:]
        self._zeros = (0,) * (len(self.shape) - 1)
        return True

    @property
    def native(self) -> bool:
        """True when this reader decodes the array itself (False: zarr-python fallback)."""
        return self._native

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 1

    def __repr__(self) -> str:
        mode = "native" if self._native else "zarr-python"
        return f"ShardedArrayReader({str(self.path)!r}, shape={self.shape}, {self.dtype}, {mode})"

    # -- process-local state -------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fds"] = {}
        state["_index"] = {}
        state["_zarr"] = None
        state["_cache"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._gen = _FORK_GENERATION[0]
        self._cache = ChunkCache(64 << 20)
        self._uid = next(_READER_IDS)

    def attach_cache(self, cache: ChunkCache) -> None:
        self._cache = cache

    def _check_fork(self) -> None:
        if self._gen != _FORK_GENERATION[0]:
            # Forked: the descriptors belong to the parent; decoded chunks are immutable
            # data and stay valid (copy-on-write).
            self._fds = {}
            self._index = {}
            self._zarr = None
            self._gen = _FORK_GENERATION[0]

    def close(self) -> None:
        if self._gen == _FORK_GENERATION[0]:
            for fd in self._fds.values():
                if fd < 0:
                    continue
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fds = {}
        self._index = {}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass

    def _size(self, fd: int, key: str) -> int:
        if self.files is not None:
            return int(self.files.size(f"{self._rel}/{key}"))
        return os.fstat(fd).st_size

    def _fd(self, key: str) -> int | None:
        fd = self._fds.get(key)
        if fd is None and self.files is not None:
            if self.files.size(f"{self._rel}/{key}") is None:
                return None
            self._fds[key] = fd = -1  # no descriptor: reads go through ``files``
        elif fd is None:
            try:
                fd = os.open(self.path / key, os.O_RDONLY)
            except FileNotFoundError:
                return None
            self._fds[key] = fd
        return fd

    def _pread(self, fd: int, nbytes: int, offset: int, key: str) -> bytes:
        data = (self.files.read_range(f"{self._rel}/{key}", offset, nbytes)
                if self.files is not None else os.pread(fd, nbytes, offset))
        if len(data) != nbytes:
            raise ReleaseError(
                f"{self.path / key}: short read, {len(data)} of {nbytes} bytes at offset {offset}"
            )
        return data

    def _zarr_array(self) -> Any:
        if self._zarr is None:
            import zarr

            self._zarr = (zarr.open_array(store=self.files.zarr_store(), path=self._rel or "", mode="r")
                          if self.files is not None
                          else zarr.open_array(store=str(self.path), mode="r"))
        return self._zarr

    # -- chunks --------------------------------------------------------------------

    def _shard_key(self, shard_coords: Sequence[int]) -> str:
        parts = [str(int(c)) for c in shard_coords] or ["0"]
        if self._key_prefix:
            return self._key_sep.join([self._key_prefix, *parts])
        return self._key_sep.join(parts)

    def _shard_index(self, key: str) -> np.ndarray | None:
        if key in self._index:
            return self._index[key]
        fd = self._fd(key)
        index: np.ndarray | None = None
        if fd is not None:
            size = self._size(fd, key)
            if size < self._index_nbytes:
                raise ReleaseError(
                    f"{self.path / key}: shard of {size} bytes is shorter than its index "
                    f"({self._index_nbytes} bytes)"
                )
            offset = size - self._index_nbytes if self._index_at_end else 0
            raw = self._pread(fd, self._index_nbytes, offset, key)
            if self._index_crc:
                body, stored = raw[:-4], struct.unpack("<I", raw[-4:])[0]
                if _crc32c(body) != stored:
                    raise ReleaseError(f"{self.path / key}: shard index crc32c mismatch")
                raw = body
            index = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)
        self._index[key] = index
        return index

    def _locate(self, chunk: Sequence[int]) -> tuple[str, int, int] | None:
        """(file key, offset, nbytes) of an inner chunk, None when it is not stored."""
        if not self.sharded:
            key = self._shard_key(chunk)
            fd = self._fd(key)
            if fd is None:
                return None
            return key, 0, self._size(fd, key)
        cps = self.chunks_per_shard
        shard = [c // n for c, n in zip(chunk, cps, strict=True)]
        local = [c % n for c, n in zip(chunk, cps, strict=True)]
        key = self._shard_key(shard)
        index = self._shard_index(key)
        if index is None:
            return None
        offset, nbytes = index[int(np.ravel_multi_index(local, cps))] if local else index[0]
        if offset == _MAX_U64 and nbytes == _MAX_U64:
            return None
        return key, int(offset), int(nbytes)

    def chunk(self, coords: Sequence[int]) -> np.ndarray:
        """The decoded inner chunk at ``coords`` (full chunk shape, edge chunks padded)."""
        grid = tuple(-(-s // c) for s, c in zip(self.shape, self.chunk_shape, strict=True))
        linear = int(np.ravel_multi_index(tuple(coords), grid)) if coords else 0
        return self._chunk_at(linear, tuple(int(c) for c in coords))

    def _chunk_at(self, linear: int, coords: tuple[int, ...]) -> np.ndarray:
        if self._gen != _FORK_GENERATION[0]:
            self._check_fork()
        ckey = (self._uid, linear)
        hit = self._cache.get(ckey)
        if hit is not None:
            return hit
        where = self._locate(coords)
        if where is None:
            arr = np.full(self.chunk_shape, self.fill_value, dtype=self.dtype)
        else:
            key, offset, nbytes = where
            data = self._pread(self._fds[key], nbytes, offset, key)
            arr = self._pipeline.decode(data, f"{self.path / key} chunk {list(coords)}")
        arr.flags.writeable = False
        self._cache.put(ckey, arr)
        return arr

    def _row_chunk(self, cid: int) -> np.ndarray:
        """Chunk ``cid`` along the first axis (chunks hold whole trailing dimensions)."""
        hit = self._cache.get((self._uid, cid))
        if hit is not None and self._gen == _FORK_GENERATION[0]:
            return hit
        return self._chunk_at(cid, (cid,) + self._zeros)

    # -- reads ---------------------------------------------------------------------

    def take(self, rows: np.ndarray, sorted_rows: bool = False) -> np.ndarray:
        """Rows ``rows`` (int array, in range; ``sorted_rows`` when non-decreasing) along
        the first axis."""
        if not self._native or not self.rows_chunked_only:
            return np.asarray(self._zarr_array().oindex[np.asarray(rows, dtype=np.int64)])
        cr = self.chunk_rows
        if sorted_rows:
            lo, hi = int(rows[0]) // cr, int(rows[-1]) // cr
        else:
            lo, hi = int(rows.min()) // cr, int(rows.max()) // cr
        if lo == hi:
            picked: np.ndarray = self._row_chunk(lo)[rows - lo * cr]  # fancy indexing: a copy
            return picked
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        cids = rows // cr
        for cid in range(lo, hi + 1):
            mask = cids == cid
            if mask.any():
                out[mask] = self._row_chunk(cid)[rows[mask] - cid * cr]
        return out

    def row(self, row: int) -> np.ndarray:
        """Row ``row`` along the first axis (a copy)."""
        if not self._native or not self.rows_chunked_only:
            return np.asarray(self._zarr_array()[row])
        cid = row // self.chunk_rows
        out: np.ndarray = self._row_chunk(cid)[row - cid * self.chunk_rows].copy()
        return out

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` along the first axis (all of the array by default)."""
        n = len(self)
        stop = n if stop is None else min(stop, n)
        start = max(0, start)
        if not self.shape:
            return np.asarray(self._zarr_array()[...]) if not self._native else self.chunk(())
        if not self._native or not self.rows_chunked_only:
            return np.asarray(self._zarr_array()[start:stop])
        out = np.empty((max(0, stop - start), *self.shape[1:]), dtype=self.dtype)
        cr = self.chunk_rows
        for cid in range(start // cr, -(-stop // cr)):
            c0 = cid * cr
            a, b = max(start, c0), min(stop, c0 + cr)
            if a < b:
                out[a - start : b - start] = self._row_chunk(cid)[a - c0 : b - c0]
        return out

    def read_bytes(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of a 1-D uint8 array; read in place when chunks are raw."""
        if stop <= start:
            return b""
        if not (self._native and len(self.shape) == 1 and self._pipeline.raw):
            return self.read(start, stop).tobytes()
        self._check_fork()
        cr = self.chunk_rows
        pieces: list[bytes] = []
        run: tuple[str, int, int] | None = None  # (key, file offset, length) being merged
        for cid in range(start // cr, (stop - 1) // cr + 1):
            c0 = cid * cr
            a, b = max(start, c0), min(stop, c0 + cr)
            where = self._locate((cid,))
            if where is None:
                if run is not None:
                    pieces.append(self._pread(self._fds[run[0]], run[2], run[1], run[0]))
                    run = None
                pieces.append(bytes([int(self.fill_value)]) * (b - a))
                continue
            key, offset, _ = where
            piece = (key, offset + (a - c0), b - a)
            if run is not None and run[0] == key and run[1] + run[2] == piece[1]:
                run = (key, run[1], run[2] + piece[2])
            else:
                if run is not None:
                    pieces.append(self._pread(self._fds[run[0]], run[2], run[1], run[0]))
                run = piece
        if run is not None:
            pieces.append(self._pread(self._fds[run[0]], run[2], run[1], run[0]))
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _fill_value(value: Any, dtype: np.dtype) -> Any:
    if value is None:
        return 0
    if isinstance(value, str):
        special = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}
        if value in special:
            return special[value]
        if value.startswith("0x"):
            return np.frombuffer(int(value, 16).to_bytes(dtype.itemsize, "big"), dtype=">" + dtype.str[1:])[0]
    return value
