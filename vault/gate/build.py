"""Building an :class:`~vault.gate.index.InputIndex` from a release: frames read in slabs of
the stored bytes, numeric fields in runs of rows, every step vectorised with numpy (frame
decoding for the fingerprints in a thread pool: OpenCV releases the GIL)."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np

from .errors import GateError
from .hashing import block_hashes, informative, quantise, sequence_hashes
from .phash import fingerprint, oriented_hashes
from .policy import IndexConfig

__all__ = ["Progress", "build_index", "frame_blocks", "frame_fingerprint"]

_SLAB = 64 << 20          # bytes of frames read at once
_ROWS = 1 << 16           # rows of a numeric field read at once
Progress = Callable[[str, int, int], None]  # (what, done, total), called as the build goes


def frame_fingerprint(data: bytes, thumb: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(hashes, thumbnail, decoded)`` of a stored JPEG frame, decoded at a quarter size:
    its DCT hash in each of the eight orientations, and its thumbnail as stored."""
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_4)
    if img is None or img.size == 0:
        return np.zeros(8, np.uint64), np.zeros((thumb, thumb), np.uint8), False
    _, th = fingerprint(img, thumb)
    return oriented_hashes(img), th, True


def frame_blocks(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                 cfg: IndexConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hashes, which frame, offset in frame)`` of the indexed blocks of the frames laid at
    ``starts`` in ``data``: every ``block_stride`` bytes, and the last block of each."""
    b, s = cfg.block_bytes, cfg.block_stride
    counts = np.where(lengths >= b, (lengths - b) // s + 1, 0)
    which = np.repeat(np.arange(len(starts)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    offs = (np.arange(len(which)) - first) * s
    tail = np.flatnonzero((lengths >= b) & ((lengths - b) % s != 0))
    which = np.concatenate((which, tail))
    offs = np.concatenate((offs, lengths[tail] - b)).astype(np.int64)
    order = np.lexsort((offs, which))
    which, offs = which[order], offs[order]
    hashes = block_hashes(data, starts[which] + offs, b)
    return hashes, which, offs


def _selected_ranges(bounds: np.ndarray, rows: int, episodes: Sequence[int] | None,
                     stream: str) -> list[tuple[int, int]]:
    if episodes is None:
        return [(0, rows)] if rows else []
    out: list[tuple[int, int]] = []
    for e in sorted(set(int(e) for e in episodes)):
        if not 0 <= e < len(bounds):
            raise GateError(f"stream {stream}: no episode {e} (the release has {len(bounds)})")
        a, b = int(bounds[e, 0]), int(bounds[e, 1])
        if a >= b:
            continue
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


class _Builder:
    def __init__(self, reader: Any, cfg: IndexConfig, progress: Progress | None,
                 pool: ThreadPoolExecutor) -> None:
        self.reader, self.cfg, self.progress, self.pool = reader, cfg, progress, pool
        self.streams: list[dict[str, Any]] = []
        self.frames: dict[str, list[Any]] = {k: [] for k in (
            "stream", "row", "episode", "size", "sha", "phash", "decoded", "thumb")}
        self.copies: list[int] = []
        self.seen: dict[bytes, int] = {}
        self.blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.columns: list[str] = []
        self.col_stream: list[int] = []
        self.windows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add_stream(self, name: str, kind: str, bounds: np.ndarray, rows: int) -> int:
        info = self.reader.streams[name].attributes
        self.streams.append({"name": name, "kind": kind, "topic": info.get("topic"), "rows": rows,
                             "episode_bounds": bounds.tolist(),
                             "episode_rows": (bounds[:, 1] - bounds[:, 0]).tolist()})
        return len(self.streams) - 1

    # -- frames ----------------------------------------------------------------------

    def camera(self, name: str, episodes: Sequence[int] | None) -> None:
        r = self.reader
        offsets = np.asarray(r.offsets(name, "data"), dtype=np.int64)
        bounds = np.asarray(r.bounds(name), dtype=np.int64)
        sid = self.add_stream(name, "camera", bounds, len(offsets) - 1)
        values = r.array(f"streams/{name}/data/values")
        ranges = _selected_ranges(bounds, len(offsets) - 1, episodes, name)
        total = sum(b - a for a, b in ranges)
        done = 0
        for a, b in ranges:
            r0 = a
            while r0 < b:
                r1 = int(np.searchsorted(offsets, offsets[r0] + _SLAB, side="right")) - 1
                r1 = min(b, max(r1, r0 + 1))
                self._slab(sid, values.read_bytes(int(offsets[r0]), int(offsets[r1])),
                           offsets[r0:r1 + 1] - offsets[r0], r0, bounds)
                done += r1 - r0
                if self.progress:
                    self.progress(f"frames {name}", done, total)
                r0 = r1

    def _slab(self, sid: int, buf: bytes, rel: np.ndarray, row0: int, bounds: np.ndarray) -> None:
        view = memoryview(buf)
        new: list[int] = []
        for i in range(len(rel) - 1):
            digest = hashlib.sha256(view[rel[i]:rel[i + 1]]).digest()
            fid = self.seen.get(digest)
            if fid is not None:
                self.copies[fid] += 1
                continue
            fid = self.seen[digest] = len(self.copies)
            self.copies.append(1)
            new.append(i)
            f = self.frames
            f["stream"].append(sid)
            f["row"].append(row0 + i)
            f["episode"].append(int(np.searchsorted(bounds[:, 1], row0 + i, side="right")))
            f["size"].append(int(rel[i + 1] - rel[i]))
            f["sha"].append(np.frombuffer(digest, np.uint8))
        if not new:
            return
        first = len(self.copies) - len(new)
        idx = np.asarray(new, dtype=np.int64)
        starts, lengths = rel[idx], rel[idx + 1] - rel[idx]
        data = np.frombuffer(buf, dtype=np.uint8)
        hashes, which, offs = frame_blocks(data, starts, lengths, self.cfg)
        self.blocks.append((hashes, (which + first).astype(np.uint32), offs.astype(np.uint32)))
        prints = self.pool.map(lambda i: frame_fingerprint(bytes(view[rel[i]:rel[i + 1]]), self.cfg.thumb),
                               new)
        for value, th, ok in prints:
            self.frames["phash"].append(value)
            self.frames["thumb"].append(th)
            self.frames["decoded"].append(ok)

    # -- numeric streams -------------------------------------------------------------

    def numeric_fields(self, name: str) -> list[tuple[str, Any]]:
        out = []
        for fname in self.reader.streams[name].fields:
            arr = self.reader.field(name, fname)
            if arr.dtype.kind in "iuf" and len(arr.shape) >= 1:
                out.append((fname, arr))
        return out

    def labels(self, name: str, fname: str, arr: Any) -> list[str]:
        trailing = tuple(arr.shape[1:])
        if not trailing:
            return [fname]
        joints = self.reader.streams[name].attributes.get("joint_names") or []
        last = arr.attributes.get("fields") or []
        out = []
        for idx in np.ndindex(*trailing):
            parts = [str(i) for i in idx]
            if len(trailing) == 1 and len(joints) == trailing[0]:
                parts = [str(joints[idx[0]])]
            elif len(last) == trailing[-1]:
                parts[-1] = str(last[idx[-1]])
            out.append(f"{fname}[{','.join(parts)}]")
        return out

    def numeric(self, name: str, fields: list[tuple[str, Any]], episodes: Sequence[int] | None,
                stride: int) -> None:
        r, cfg = self.reader, self.cfg
        bounds = np.asarray(r.bounds(name), dtype=np.int64)
        rows = len(fields[0][1])
        sid = self.add_stream(name, "numeric", bounds, rows)
        ranges = _selected_ranges(bounds, rows, episodes, name)
        for fname, arr in fields:
            labels = self.labels(name, fname, arr)
            c0 = len(self.columns)
            self.columns += [f"{name}.{label}" for label in labels]
            self.col_stream += [sid] * len(labels)
            for a, b in ranges:
                for start in range(a, b, _ROWS):
                    stop = min(b, start + _ROWS)
                    block = np.asarray(arr.read(start, min(b, stop + cfg.window - 1)))
                    block = block.reshape(len(block), -1)
                    for j in range(block.shape[1]):
                        codes = quantise(block[:, j], cfg.digits, cfg.zero_below)
                        h = sequence_hashes(codes, cfg.window)[:stop - start]
                        keep = informative(codes, cfg.window, cfg.min_distinct)[:stop - start]
                        rws = np.arange(start, start + len(h), dtype=np.int64)
                        keep &= rws % stride == 0
                        self.windows.append((h[keep], np.full(int(keep.sum()), c0 + j, np.uint32),
                                             rws[keep]))
            if self.progress:
                self.progress(f"stream {name}", len(self.columns), len(self.columns))

    # -- the arrays ------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        f, t = self.frames, self.cfg.thumb
        out: dict[str, np.ndarray] = {
            "frame_stream": np.asarray(f["stream"], np.int32), "frame_row": np.asarray(f["row"], np.int64),
            "frame_episode": np.asarray(f["episode"], np.int32),
            "frame_size": np.asarray(f["size"], np.int64), "frame_copies": np.asarray(self.copies, np.int32),
            "frame_sha": np.asarray(f["sha"], np.uint8).reshape(-1, 32),
            "frame_phash": np.asarray(f["phash"], np.uint64).reshape(-1, 8),
            "frame_decoded": np.asarray(f["decoded"], bool),
            "frame_thumb": np.asarray(f["thumb"], np.uint8).reshape(-1, t, t),
            "col_stream": np.asarray(self.col_stream, np.int32)}
        out |= _distinct_blocks(self.blocks)
        out |= _first_windows(self.windows)
        return out


def _distinct_blocks(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Blocks whose hash belongs to one frame only, once each."""
    if not parts:
        return {"block_hash": np.zeros(0, np.uint64), "block_frame": np.zeros(0, np.uint32),
                "block_offset": np.zeros(0, np.uint32)}
    h = np.concatenate([p[0] for p in parts])
    fr = np.concatenate([p[1] for p in parts])
    off = np.concatenate([p[2] for p in parts])
    order = np.argsort(h, kind="stable")
    h, fr, off = h[order], fr[order], off[order]
    starts = np.flatnonzero(np.concatenate(([True], h[1:] != h[:-1])))
    lo, hi = np.minimum.reduceat(fr, starts), np.maximum.reduceat(fr, starts)
    single = starts[lo == hi]
    return {"block_hash": h[single], "block_frame": fr[single], "block_offset": off[single]}


def _first_windows(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each window hash once, at its first column and row."""
    if not parts:
        return {"win_hash": np.zeros(0, np.uint64), "win_col": np.zeros(0, np.uint32),
                "win_row": np.zeros(0, np.int64)}
    h = np.concatenate([p[0] for p in parts])
    col = np.concatenate([p[1] for p in parts])
    row = np.concatenate([p[2] for p in parts])
    _, first = np.unique(h, return_index=True)
    return {"win_hash": h[first], "win_col": col[first], "win_row": row[first]}


def build_index(reader: Any, *, streams: Sequence[str] | None, episodes: Sequence[int] | None,
                config: IndexConfig, progress: Progress | None = None,
                ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the metadata of the index of ``reader``'s streams (all, or ``streams``)
    and episodes (all, or ``episodes``)."""
    names = list(reader.streams) if streams is None else list(streams)
    missing = [n for n in names if n not in reader.streams]
    if missing:
        raise GateError(f"release {reader.path}: no stream {', '.join(missing)}; "
                        f"streams: {', '.join(reader.streams)}")
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        b = _Builder(reader, config, progress, pool)
        cameras = [n for n in names if reader.streams[n].is_camera and "data" in reader.streams[n].ragged]
        numeric = {n: b.numeric_fields(n) for n in names if n not in cameras}
        numeric = {n: f for n, f in numeric.items() if f}
        cells = 0
        for n, fields in numeric.items():
            rows = sum(e - s for s, e in _selected_ranges(np.asarray(reader.bounds(n)), len(fields[0][1]),
                                                          episodes, n))
            cells += rows * sum(math.prod(arr.shape[1:]) for _, arr in fields)
        stride = max(config.window_stride, math.ceil(cells / max(1, config.max_windows)))
        for n in cameras:
            b.camera(n, episodes)
        for n, fields in numeric.items():
            b.numeric(n, fields, episodes, stride)
        arrays = b.arrays()
    meta = {"config": config.to_dict(), "streams": b.streams, "columns": b.columns,
            "window_stride": stride, "undecodable_frames": int((~arrays["frame_decoded"]).sum())}
    return arrays, meta
