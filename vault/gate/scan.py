"""The matchers: an output's bytes, numbers and images against the input index.

* :func:`scan_bytes`: the hash of the ``block_bytes`` bytes at every offset, looked up among
  the frames' indexed blocks; a frame is found when ``frame_min_blocks`` of its blocks sit
  at the same distance from each other as in the frame (one offset of the frame in the
  output).
* :func:`scan_sequences`: every window of consecutive numbers of every sequence, rounded
  and hashed as the index's were, looked up among the streams' windows; a column is found
  when ``stream_min_windows`` of its windows are in one sequence at one alignment (the
  same distance between output position and input row: a copy, not chance). Sequences go through in
  batches of about four million numbers, so memory stays flat.
* :func:`match_images`: every candidate rectangle's fingerprint against all frames'."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .content import Image, Sequence
from .hashing import SEGMENT, quantise, sequence_hashes, window_hashes
from .index import InputIndex
from .phash import INVERSE, ORIENTATIONS, candidate_regions, fingerprint, hamming, unit
from .policy import GatePolicy

__all__ = ["FrameHit", "ImageHit", "StreamHit", "scan_bytes", "scan_sequences", "match_images"]

_BATCH = 1 << 22
_SENTINEL = np.int64(-(1 << 62) + 7)  # never a code quantise() makes: windows never cross it


@dataclass(frozen=True)
class FrameHit:
    frame: int
    start: int           # byte offset in the scanned data where the frame's byte 0 would be
    first: int           # first and last matched byte (end exclusive)
    end: int
    blocks: int          # indexed blocks of the frame found
    of_blocks: int


@dataclass(frozen=True)
class StreamHit:
    sequence: int
    column: int
    first: int           # first and last+1 element of the sequence in matched windows
    end: int
    rows: tuple[int, int]  # input rows [first, end) the matched windows came from
    windows: int


@dataclass(frozen=True)
class ImageHit:
    image: int
    frame: int
    region: tuple[int, int, int, int]
    distance: int
    correlation: float
    similar_frames: int  # frames that pass the same test (a static camera repeats itself)
    orientation: int = 0  # index in phash.ORIENTATIONS: how the frame was flipped or turned


def scan_bytes(index: InputIndex, data: bytes | memoryview, policy: GatePolicy) -> list[FrameHit]:
    """Input frames whose bytes (a run of at least two indexed blocks) are in ``data``."""
    b = index.config.block_bytes
    if len(index.block_hash) == 0 or len(data) < b:
        return []
    arr = np.frombuffer(data, dtype=np.uint8)
    offs, rows = [], []
    for s in range(0, len(arr) - b + 1, SEGMENT):
        where, r = index.blocks.lookup(window_hashes(arr[s:s + SEGMENT + b - 1], b))
        offs.append(where + s)
        rows.append(r)
    off = np.concatenate(offs)
    if len(off) == 0:
        return []
    row = np.concatenate(rows)
    frame = index.block_frame[row].astype(np.int64)
    foff = index.block_offset[row].astype(np.int64)
    delta = off - foff
    raw = (frame << 40) | (delta + (1 << 39))  # one key per (frame, offset of the frame in data)
    order = np.argsort(raw, kind="stable")
    key, fsorted = raw[order], foff[order]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    counts = np.diff(np.concatenate((starts, [len(key)])))
    lo, hi = np.minimum.reduceat(fsorted, starts), np.maximum.reduceat(fsorted, starts)
    g_frame = key[starts] >> 40
    g_delta = (key[starts] & ((1 << 40) - 1)) - (1 << 39)
    totals = index.frame_blocks
    need = np.minimum(policy.frame_min_blocks, totals[g_frame])
    ok = np.flatnonzero(counts >= need)
    ok = ok[np.lexsort((-counts[ok], g_frame[ok]))]
    first = ok[np.concatenate(([True], g_frame[ok][1:] != g_frame[ok][:-1]))] if len(ok) else ok
    hits = [FrameHit(frame=int(g_frame[g]), start=int(g_delta[g]), first=int(g_delta[g] + lo[g]),
                     end=int(g_delta[g] + hi[g] + b), blocks=int(counts[g]),
                     of_blocks=int(totals[g_frame[g]])) for g in first]
    return sorted(hits, key=lambda h: (h.first, h.frame))


_Piece = tuple[int, int, np.ndarray, bool]  # sequence, start, values or codes, codes?


def _pieces(seqs: list[Sequence], k: int) -> list[_Piece]:
    """``(sequence, start, values or codes, are codes)`` pieces of at most :data:`_BATCH`
    windows each."""
    out = []
    for i, s in enumerate(seqs):
        data, coded = (s.values, False) if s.codes is None else (s.codes, True)
        n = len(data)
        for a in range(0, n - k + 1, _BATCH):
            out.append((i, a, data[a:min(n, a + _BATCH + k - 1)], coded))
    return out


def scan_sequences(index: InputIndex, seqs: list[Sequence], policy: GatePolicy) -> list[StreamHit]:
    """Input stream columns whose windows of values are in the sequences."""
    cfg = index.config
    k = cfg.window
    if len(index.win_hash) == 0:
        return []
    found: list[np.ndarray] = []  # rows of (sequence, position, column, input row)
    batch: list[_Piece] = []
    size = 0
    pieces = _pieces(seqs, k)
    for n, piece in enumerate(pieces):
        batch.append(piece)
        size += len(piece[2]) + k - 1
        if size >= _BATCH or n == len(pieces) - 1:
            found.append(_scan_batch(index, batch, k, cfg.digits, cfg.zero_below))
            batch, size = [], 0
    if not found:
        return []
    hits = np.concatenate(found)
    if len(hits) == 0:
        return []
    delta = hits[:, 3] - hits[:, 1]  # input row minus output position: constant along a copy
    hits = hits[np.lexsort((hits[:, 1], delta, hits[:, 2], hits[:, 0]))]
    delta = hits[:, 3] - hits[:, 1]
    same = (hits[1:, 0] == hits[:-1, 0]) & (hits[1:, 2] == hits[:-1, 2]) & (delta[1:] == delta[:-1])
    edges = np.flatnonzero(np.concatenate(([True], ~same, [True])))
    best: dict[tuple[int, int], StreamHit] = {}
    for a, e in zip(edges[:-1], edges[1:], strict=True):
        group = hits[a:e]  # one sequence, one input column, one alignment
        windows = 1 + int(np.count_nonzero(np.diff(group[:, 1])))
        key = (int(group[0, 0]), int(group[0, 2]))
        if windows < policy.stream_min_windows or (key in best and best[key].windows >= windows):
            continue
        best[key] = StreamHit(sequence=key[0], column=key[1], first=int(group[:, 1].min()),
                              end=int(group[:, 1].max()) + k,
                              rows=(int(group[:, 3].min()), int(group[:, 3].max()) + k), windows=windows)
    out = [h for h in best.values() if _distinct(seqs[h.sequence], h, cfg.digits, cfg.zero_below)
           >= policy.stream_min_distinct]
    return sorted(out, key=lambda h: (h.sequence, -h.windows))


def _distinct(seq: Sequence, hit: StreamHit, digits: int, zero_below: float) -> int:
    """Distinct rounded values in the matched span: a few windows of a value that barely
    moves can match by chance, a copy of a moving signal carries many values."""
    codes = seq.codes[hit.first:hit.end] if seq.codes is not None else \
        quantise(seq.values[hit.first:hit.end], digits, zero_below)
    return len(np.unique(codes))


def _scan_batch(index: InputIndex, batch: list[_Piece], k: int, digits: int, zero_below: float) -> np.ndarray:
    lengths = np.asarray([len(p[2]) for p in batch], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths + k - 1)[:-1])).astype(np.int64)
    codes = np.full(int(lengths.sum()) + len(batch) * (k - 1), _SENTINEL, dtype=np.int64)
    raw = [i for i, p in enumerate(batch) if not p[3]]
    if raw:  # one quantise call for all the pieces that are values
        q = quantise(np.concatenate([np.asarray(batch[i][2], dtype=np.float64) for i in raw]), digits,
                     zero_below)
        at = 0
        for i in raw:
            codes[starts[i]:starts[i] + lengths[i]] = q[at:at + lengths[i]]
            at += int(lengths[i])
    for i, p in enumerate(batch):
        if p[3]:
            codes[starts[i]:starts[i] + lengths[i]] = p[2]
    where, rows = index.windows.lookup(sequence_hashes(codes, k))
    if len(where) == 0:
        return np.zeros((0, 4), dtype=np.int64)
    piece = np.searchsorted(starts, where, side="right") - 1
    seq = np.asarray([p[0] for p in batch], dtype=np.int64)[piece]
    pos = where - starts[piece] + np.asarray([p[1] for p in batch])[piece]
    return np.stack([seq, pos, index.win_col[rows].astype(np.int64), index.win_row[rows]], axis=1)


def match_images(index: InputIndex, images: list[Image], policy: GatePolicy) -> list[ImageHit]:
    """Input frames that an image, or a rectangle of it, looks like."""
    if index.frames == 0:
        return []
    units = index.thumb_units
    hashes = index.frame_phash.ravel()  # frame f in orientation o at f * 8 + o
    usable = np.repeat(index.frame_decoded, 8)
    out: list[ImageHit] = []
    for i, img in enumerate(images):
        best: dict[int, ImageHit] = {}
        for box in candidate_regions(img.gray, min_side=policy.region_min_side, limit=policy.max_regions):
            x, y, w, h = box
            value, th = fingerprint(img.gray[y:y + h, x:x + w], index.config.thumb)
            dist = hamming(hashes, value)
            cand = np.flatnonzero((dist <= policy.phash_max_distance) & usable)
            if len(cand) == 0:
                continue
            frames, turns = cand // 8, cand % 8
            corr = np.empty(len(cand), dtype=np.float32)
            for o in np.unique(turns):  # the region turned back the way the frame was stored
                sel = turns == o
                corr[sel] = units[frames[sel]] @ unit(np.ascontiguousarray(ORIENTATIONS[INVERSE[o]](th)))
            ok = corr >= policy.thumb_min_corr
            if not ok.any():
                continue
            j = int(np.argmax(np.where(ok, corr, -2.0)))
            fr = int(frames[j])
            hit = ImageHit(image=i, frame=fr, region=box, distance=int(dist[cand[j]]),
                           correlation=float(corr[j]), similar_frames=len(set(frames[ok].tolist())) - 1,
                           orientation=int(turns[j]))
            if fr not in best or best[fr].correlation < hit.correlation:
                best[fr] = hit
        out += _distinct_regions(list(best.values()))
    return out


def _distinct_regions(hits: list[ImageHit]) -> list[ImageHit]:
    """One hit per region of the image (the best-correlated frame), most certain first."""
    hits = sorted(hits, key=lambda h: -h.correlation)
    kept: list[ImageHit] = []
    for h in hits:
        if not any(_overlap(h.region, k.region) > 0.5 for k in kept):
            kept.append(h)
    return kept


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / max(1, min(aw * ah, bw * bh))
