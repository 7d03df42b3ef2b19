"""A derived release for an episode-subset grant: the granted episodes' rows (of the
granted streams only) re-written, in memory, as a release of the same format.

A chunk of a stored release holds thousands of rows of several episodes, so a grant of
some episodes cannot be served by refusing byte ranges (nothing numeric would be
readable in a release of short episodes). :func:`derive_subset` reads the source release
through ``read_file`` (plaintext bytes of a release file, e.g. decrypted from the object
store) and returns every file of the derived release as ``{path: bytes}``; nothing is
written anywhere. The caller encrypts them into the store.

What changes (see docs/release-format.md):

* every per-row array (``time_ns``, ``log_time_ns``, numeric fields, ``sync/*``) keeps the
  granted episodes' rows, episode after episode in the source order; ragged fields keep
  their payload bytes exactly and get new ``offsets``; ``episode_bounds`` is recomputed;
* sync indices are remapped to the new row numbers of their target stream (``-1`` stays);
* ``episodes.json`` lists the granted rows renumbered ``0..k-1``, the source row in
  ``source_index``;
* ``stats.json`` is left out (its statistics mix in every episode); the root attributes
  say ``stats: null``, ``episodes: k``, the granted ``streams`` and ``derived_from``;
* ``manifest.json`` has the sha256 and size of every derived file.

Arrays keep their source ``zarr.json`` (codecs, chunk and shard shapes, attributes), only
the shape changes. The codec chain understood is the one releases use:
``sharding_indexed`` (index at the end, ``bytes`` + ``crc32c``) over ``bytes`` (+ ``zstd``);
anything else is refused with a VaultError naming the array.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable
from typing import Any

import google_crc32c
import numpy as np
import zstandard

from curation.writer import measured_rate_hz

from .errors import VaultError

__all__ = ["ReadFile", "derive_subset"]

#: plaintext bytes of a release file by its relative path (FileNotFoundError when absent)
ReadFile = Callable[[str], bytes]

_MISSING = 0xFFFF_FFFF_FFFF_FFFF
_DTYPES = {"bool": "b1", "int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8",
           "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8",
           "float32": "f4", "float64": "f8"}


class _Array:
    """One sharded array of the source: its metadata and a decoder of its rows."""

    def __init__(self, path: str, meta: dict[str, Any], read_file: ReadFile) -> None:
        self.path, self.meta, self._read = path, meta, read_file
        where = f"array {path}"
        try:
            self.shape = tuple(int(n) for n in meta["shape"])
            self.dtype = np.dtype("<" + _DTYPES[meta["data_type"]])
            self.shard = [int(n) for n in meta["chunk_grid"]["configuration"]["chunk_shape"]]
            codec = meta["codecs"][0]
            conf = codec["configuration"]
            self.inner = [int(n) for n in conf["chunk_shape"]]
            inner_codecs = [c["name"] for c in conf["codecs"]]
            index_codecs = [c["name"] for c in conf["index_codecs"]]
            sep = meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise VaultError(f"{where}: metadata not understood ({exc!r})") from exc
        if (codec["name"] != "sharding_indexed" or len(meta["codecs"]) != 1
                or conf.get("index_location", "end") != "end"
                or index_codecs != ["bytes", "crc32c"]
                or inner_codecs not in (["bytes"], ["bytes", "zstd"])
                or meta["chunk_key_encoding"].get("name") != "default" or sep != "/"
                or self.shard[1:] != list(self.shape[1:]) or self.inner[1:] != self.shard[1:]
                or self.shard[0] % self.inner[0]):
            raise VaultError(f"{where}: codecs/chunking not of a DemoFab release "
                             f"({meta['codecs']}); cannot derive a subset")
        self.compress = inner_codecs == ["bytes", "zstd"]
        self.level = int(conf["codecs"][1].get("configuration", {}).get("level", 3)) \
            if self.compress else 0
        self.tail = tuple(self.shape[1:])
        self.per_shard = self.shard[0] // self.inner[0]
        self._shards: dict[int, bytes | None] = {}

    def _shard_bytes(self, i: int) -> bytes | None:
        if i not in self._shards:
            self._shards.clear()  # one shard in memory at a time (256 MiB at most)
            key = "/".join(["c", str(i)] + ["0"] * len(self.tail))
            try:
                self._shards[i] = self._read(f"{self.path}/{key}")
            except FileNotFoundError:
                self._shards[i] = None
        return self._shards[i]

    def _chunk(self, c: int) -> np.ndarray:
        rows = self.inner[0]
        shard = self._shard_bytes(c // self.per_shard)
        out = np.zeros((rows, *self.tail), dtype=self.dtype)
        if shard is None:
            return out
        n_index = self.per_shard * 16 + 4
        raw = shard[len(shard) - n_index:]
        if google_crc32c.value(raw[:-4]) != struct.unpack("<I", raw[-4:])[0]:
            raise VaultError(f"array {self.path}: shard {c // self.per_shard} index crc32c "
                             f"mismatch")
        off, nbytes = struct.unpack_from("<QQ", raw, (c % self.per_shard) * 16)
        if off == _MISSING:
            return out
        body = shard[off:off + nbytes]
        if self.compress:
            body = zstandard.ZstdDecompressor().decompress(
                body, max_output_size=out.nbytes)
        return np.frombuffer(body, dtype=self.dtype).reshape(out.shape)

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``[lo, hi)`` decoded."""
        if not 0 <= lo <= hi <= self.shape[0]:
            raise VaultError(f"array {self.path}: rows {lo}..{hi} outside 0..{self.shape[0]}")
        step = self.inner[0]
        parts = [self._chunk(c)[max(lo - c * step, 0):min(hi - c * step, step)]
                 for c in range(lo // step, -(-hi // step))]
        if not parts:
            return np.zeros((0, *self.tail), dtype=self.dtype)
        return np.concatenate(parts)

    def encode(self, data: np.ndarray, out: dict[str, bytes]) -> None:
        """``data`` written as this array (same metadata, new shape) into ``out``."""
        meta = dict(self.meta, shape=[int(data.shape[0]), *self.tail])
        out[f"{self.path}/zarr.json"] = json.dumps(meta, indent=2).encode()
        data = np.ascontiguousarray(data, dtype=self.dtype)
        step = self.inner[0]
        comp = zstandard.ZstdCompressor(level=self.level)
        n = data.shape[0]
        for s in range(-(-n // self.shard[0])):
            parts: list[bytes] = []
            index = np.full((self.per_shard, 2), _MISSING, dtype="<u8")
            at = 0
            for j in range(self.per_shard):
                lo = s * self.shard[0] + j * step
                if lo >= n:
                    break
                block = np.zeros((step, *self.tail), dtype=self.dtype)
                block[:min(step, n - lo)] = data[lo:lo + step]
                body = block.tobytes()
                if self.compress:
                    body = comp.compress(body)
                parts.append(body)
                index[j] = (at, len(body))
                at += len(body)
            ib = index.tobytes()
            key = "/".join(["c", str(s)] + ["0"] * len(self.tail))
            out[f"{self.path}/{key}"] = (b"".join(parts) + ib
                                         + struct.pack("<I", google_crc32c.value(ib)))


def _json(read_file: ReadFile, path: str) -> dict[str, Any]:
    try:
        doc = json.loads(read_file(path))
    except FileNotFoundError:
        raise VaultError(f"release file {path} is missing; cannot derive a subset") from None
    except ValueError as exc:
        raise VaultError(f"release file {path} is malformed: {exc}") from exc
    if not isinstance(doc, dict):
        raise VaultError(f"release file {path} is not a JSON object")
    return doc


def _ranges_of(bounds: np.ndarray, episodes: list[int]) -> list[tuple[int, int]]:
    return [(int(bounds[e, 0]), int(bounds[e, 1])) for e in episodes]


def _take(arr: _Array, ranges: Iterable[tuple[int, int]]) -> np.ndarray:
    parts = [arr.rows(lo, hi) for lo, hi in ranges]
    return np.concatenate(parts) if parts else np.zeros((0, *arr.tail), dtype=arr.dtype)


def _new_bounds(ranges: list[tuple[int, int]]) -> np.ndarray:
    sizes = np.array([hi - lo for lo, hi in ranges], dtype=np.int64)
    ends = np.cumsum(sizes)
    return np.stack([ends - sizes, ends], axis=1).astype(np.int64).reshape(len(ranges), 2)


def derive_subset(read_file: ReadFile, files: list[str], episodes: Iterable[int],
                  streams: Iterable[str] | None = None, *,
                  source: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The files of the release made of ``episodes`` (source episode-table indices) and
    ``streams`` (None: all) of the release whose files are ``files`` (relative paths),
    read through ``read_file``. ``source``: extra provenance put in the root attribute
    ``derived_from`` (e.g. dataset, release, grant). All in memory."""
    chosen = sorted(set(int(e) for e in episodes))
    root = _json(read_file, "zarr.json")
    attrs = (root.get("attributes") or {}).get("demofab")
    if not isinstance(attrs, dict):
        raise VaultError("zarr.json: not a DemoFab release (no attributes.demofab)")
    table = _json(read_file, str(attrs.get("episode_table") or "episodes.json"))
    rows = list(table.get("episodes") or [])
    bad = [e for e in chosen if not 0 <= e < len(rows)]
    if bad:
        raise VaultError(f"episodes {bad} are not in the release (it has {len(rows)})")
    names = [s for s in attrs.get("streams") or []
             if streams is None or s in set(streams)]
    fileset = set(files)
    out: dict[str, bytes] = {}

    def group(path: str) -> dict[str, Any]:
        return _json(read_file, f"{path}/zarr.json")

    def copy(path: str) -> None:
        out[path] = read_file(path)

    def arrays_under(prefix: str) -> list[str]:
        return sorted(p[:-len("/zarr.json")] for p in fileset
                      if p.startswith(prefix) and p.endswith("/zarr.json")
                      and p != f"{prefix}zarr.json")

    copy("streams/zarr.json")
    old_bounds: dict[str, np.ndarray] = {}
    new_bounds: dict[str, np.ndarray] = {}
    for s in names:
        base = f"streams/{s}"
        meta = group(base)
        b_arr = _Array(f"{base}/episode_bounds", group(f"{base}/episode_bounds"), read_file)
        bounds = b_arr.rows(0, b_arr.shape[0])
        if bounds.shape[0] != len(rows):
            raise VaultError(f"{base}/episode_bounds: {bounds.shape[0]} episodes, the table "
                             f"has {len(rows)}")
        ranges = _ranges_of(bounds, chosen)
        nb = _new_bounds(ranges)
        old_bounds[s], new_bounds[s] = bounds, nb
        b_arr.encode(nb, out)
        n_old = int(bounds[-1, 1]) if len(rows) else 0
        times: np.ndarray | None = None
        for path in arrays_under(f"{base}/"):
            node = group(path)
            rel = path[len(base) + 1:]
            if node.get("node_type") != "array":
                out[f"{path}/zarr.json"] = json.dumps(node, indent=2).encode()
                continue
            if rel == "episode_bounds":
                continue
            arr = _Array(path, node, read_file)
            if path.endswith("/values") and f"{path[:-7]}/offsets/zarr.json" in fileset:
                off = _Array(f"{path[:-7]}/offsets", group(f"{path[:-7]}/offsets"), read_file)
                offsets = off.rows(0, off.shape[0])
                parts = [(int(offsets[lo]), int(offsets[hi])) for lo, hi in ranges]
                values = _take(arr, parts)
                sizes = [np.diff(offsets[lo:hi + 1]) for lo, hi in ranges]
                new_off = np.concatenate([[0], np.cumsum(np.concatenate(sizes))
                                          if sizes else []]).astype(np.int64)
                arr.encode(values, out)
                off.encode(new_off, out)
                continue
            if path.endswith("/offsets") and f"{path[:-8]}/values/zarr.json" in fileset:
                continue  # written with its values
            if arr.shape[0] != n_old:
                raise VaultError(f"{path}: {arr.shape[0]} rows, the stream has {n_old}")
            data = _take(arr, ranges)
            arr.encode(data, out)
            if rel == "time_ns":
                times = data
        sattrs = dict(meta.get("attributes") or {})
        sattrs["count"] = int(nb[-1, 1]) if len(nb) else 0
        if "measured_rate_hz" in sattrs and times is not None:
            sattrs["measured_rate_hz"] = measured_rate_hz(times, nb)
        out[f"{base}/zarr.json"] = json.dumps(dict(meta, attributes=sattrs), indent=2).encode()

    if "sync/zarr.json" in fileset:
        copy("sync/zarr.json")
    for path in arrays_under("sync/"):
        a, _, b = path[len("sync/"):].partition("__to__")
        if a not in new_bounds or b not in new_bounds:
            continue
        arr = _Array(path, group(path), read_file)
        remapped: list[np.ndarray] = []
        for k, e in enumerate(chosen):
            lo, hi = old_bounds[a][e]
            v = arr.rows(int(lo), int(hi)).astype(np.int64)
            shift = int(new_bounds[b][k, 0]) - int(old_bounds[b][e, 0])
            remapped.append(np.where(v >= 0, v + shift, v))
        arr.encode(np.concatenate(remapped) if remapped else np.zeros(0, np.int64), out)

    new_rows = []
    for k, e in enumerate(chosen):
        r = dict(rows[e], index=k, source_index=e)
        if isinstance(r.get("streams"), dict):
            r["streams"] = {s: n for s, n in r["streams"].items() if s in new_bounds}
        new_rows.append(r)
    table_name = str(attrs.get("episode_table") or "episodes.json")
    out[table_name] = json.dumps(dict(table, episodes=new_rows), indent=1).encode()

    ref = attrs.get("sync_reference")
    attrs = dict(attrs, streams=names, episodes=len(chosen), stats=None,
                 sync_reference=ref if ref in new_bounds else None,
                 derived_from=dict(source or {}, episodes=chosen))
    root = dict(root, attributes=dict(root.get("attributes") or {}, demofab=attrs))
    out["zarr.json"] = json.dumps(root, indent=2).encode()
    manifest_name = str(attrs.get("manifest") or "manifest.json")
    try:
        manifest = json.loads(read_file(manifest_name))
    except FileNotFoundError:
        manifest = {}
    manifest["files"] = {p: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                         for p, d in sorted(out.items())}
    # the derived release's own identity (as curation.manifest computes it), never the source's
    lines = "".join(f"{v['sha256']}  {k}\n" for k, v in sorted(manifest["files"].items()))
    manifest["release_sha256"] = hashlib.sha256(lines.encode()).hexdigest()
    out[manifest_name] = json.dumps(manifest, indent=1).encode()
    return out
