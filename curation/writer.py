"""The release writer: curated episodes -> one Zarr v3 group (docs/release-format.md)."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Container
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import CurateConfig
from .decode import JOINT_STATE, Blobs, StreamData, ragged_rows
from .flags import FLAG_BITS, flag_mask, flag_names, score
from .ingest import FileRecord
from .manifest import WrittenFiles
from .segment import Segment
from .stats import QUANTILES, describe
from .zwrite import ArrayWriter, write_array, write_group

_WRITE_THREADS = 3  # two cores, plus one to cover the waits on direct writes
_INFLIGHT_BYTES = 1 << 30  # assembled columns waiting to be written, at most


class _Jobs:
    """Array writes on a pool; submitting waits while too many bytes are queued."""

    def __init__(self, pool: ThreadPoolExecutor, limit: int) -> None:
        self.pool, self.limit = pool, limit
        self.all: list[Future[Any]] = []
        self._queued: deque[tuple[Future[Any], int]] = deque()
        self._bytes = 0

    def submit(self, fn: Any, *args: Any, size: int = 0, **kwargs: Any) -> Future[Any]:
        while self._bytes > self.limit and self._queued:
            fut, n = self._queued.popleft()
            fut.result()
            self._bytes -= n
        fut = self.pool.submit(fn, *args, **kwargs)
        self.all.append(fut)
        self._queued.append((fut, size))
        self._bytes += size
        return fut

    def wait(self) -> None:
        for fut in self.all:
            fut.result()  # the first failed write raises here

FORMAT = "demofab.release"
FORMAT_VERSION = 1
TABLE_VERSION = 1


@dataclass
class Planned:
    """One episode of the release: where its rows are, and its table row."""

    rec: FileRecord
    seg: Segment
    row: dict[str, Any]
    extra_flags: list[dict[str, str]] = field(default_factory=list)


def stream_name(topic: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", topic.lstrip("/").replace("/", "."))
    if not name or name.startswith("__") or name in (".", ".."):
        name = "stream" + name
    return name


@dataclass
class _Stream:
    name: str
    topic: str
    type: str
    parts: list[tuple[int, StreamData, int, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(b - a for _, _, a, b in self.parts)

    @property
    def nbytes(self) -> int:
        """About how many bytes this stream writes (to start the biggest first)."""
        n = 0
        for _, sd, a, b in self.parts:
            rows = max(len(sd), 1)
            n += sum(v.nbytes for v in sd.fields.values()) * (b - a) // rows
            n += sum(int(o[b] - o[a]) for _, o in sd.ragged.values())
        return n


def _new_stream_name(topic: str, typ: str, taken: Container[str]) -> str:
    """The stream's name; the same topic with another type (in another file) gets the
    type's name appended."""
    name = stream_name(topic)
    return f"{name}.{stream_name(typ.split('/')[-1])}" if name in taken else name


def _streams(plans: list[Planned]) -> dict[str, _Stream]:
    out: dict[str, _Stream] = {}
    by_topic: dict[tuple[str, str], str] = {}
    for e, p in enumerate(plans):
        for topic, sd in p.rec.streams.items():
            key = (topic, sd.type)
            name = by_topic.get(key)
            if name is None:
                name = by_topic[key] = _new_stream_name(topic, sd.type, out)
                out[name] = _Stream(name, topic, sd.type)
            a, b = p.seg.rows(sd)
            out[name].parts.append((e, sd, a, b))
    return dict(sorted(out.items()))


def write_release(root: Path, plans: list[Planned], cfg: CurateConfig,
                  release_attrs: dict[str, Any], roles: dict[str, tuple[str, float | None]],
                  early: EarlyPayloads | None = None,
                  record: WrittenFiles | None = None) -> dict[str, Any]:
    """Write the whole version into ``root`` (a fresh directory). Returns the root attrs.
    Every array file written is reported to ``record`` (the manifest takes the hashes
    from there); ``early`` must report to the same record."""
    streams = _streams(plans)
    ne = len(plans)
    write_group(root / "streams", record=record)
    times: dict[str, np.ndarray] = {}
    bounds_all: dict[str, np.ndarray] = {}
    stats: dict[str, Any] = {}
    # Every array is its own job on a small pool (compressing, hashing and writing release
    # the GIL), so one big stream (joint states: three wide fields plus their statistics)
    # no longer bounds the whole write. The main thread assembles the columns, biggest
    # streams first, while the pool writes.
    with ThreadPoolExecutor(_WRITE_THREADS, thread_name_prefix="release-write") as pool:
        jobs = _Jobs(pool, _INFLIGHT_BYTES)
        pending = {}
        for st in sorted(streams.values(), key=lambda s: -s.nbytes):
            times[st.name], bounds_all[st.name], pending[st.name] = _write_stream(
                root / "streams" / st.name, st, plans, ne, cfg, roles.get(st.topic), jobs,
                early, record)
        # the sync indices need only the clocks: computed here while the pool writes
        ref = _reference(streams, cfg)
        write_group(root / "sync", {"reference": ref}, record)
        if ref:
            for other in streams:
                if other == ref:
                    continue
                for a, b in ((other, ref), (ref, other)):
                    idx = sync_index(times[a], bounds_all[a], times[b], bounds_all[b])
                    jobs.submit(write_array, root / "sync" / f"{a}__to__{b}", idx,
                                cfg.chunk_rows, cfg.shard_rows,
                                attributes={"from": a, "to": b, "rule": "latest_at_or_before"},
                                record=record)
        jobs.wait()
        if early is not None:
            early.discard_unclaimed()
        for name in streams:
            stats[name] = {k: d for k, job in pending[name].items()
                           if (d := job.result()) is not None}
    rows = []
    for e, p in enumerate(plans):
        row = p.row
        if p.extra_flags:
            for r in sorted(p.extra_flags, key=lambda r: (r["stream"], r["detail"])):
                row["flag_reasons"].append(r)
            names = set(row["flag_names"]) | {r["flag"] for r in p.extra_flags}
            row["flag_names"] = [n for n in FLAG_BITS if n in names]
            if row["labels_source"].get("flags") not in ("labels_file", "cli"):
                row["flags"] = flag_mask(names)
            if row["labels_source"].get("quality_score") not in ("labels_file", "cli"):
                row["quality_score"] = score(names)
        row["index"] = e
        row["streams"] = {name: int(bounds_all[name][e, 1] - bounds_all[name][e, 0])
                          for name in streams}
        rows.append(row)
    _write_text(root / "episodes.json", json.dumps(
        {"format_version": TABLE_VERSION, "episodes": rows}, indent=1), record)
    _write_text(root / "stats.json", json.dumps(
        {"format_version": 1, "quantiles": list(QUANTILES), "streams": stats}), record)
    attrs = dict(release_attrs)
    attrs.update(format=FORMAT, format_version=FORMAT_VERSION, streams=list(streams),
                 sync_reference=ref, episodes=ne, episode_table="episodes.json",
                 stats="stats.json", manifest="manifest.json", flag_bits=FLAG_BITS,
                 config=cfg.to_dict())
    write_group(root, {"demofab": attrs}, record)
    return attrs


def _write_text(path: Path, text: str, record: WrittenFiles | None) -> None:
    data = text.encode()
    path.write_bytes(data)
    if record is not None:
        record.written(path, [data])


def _reference(streams: dict[str, _Stream], cfg: CurateConfig) -> str:
    if cfg.sync_reference:
        if cfg.sync_reference in streams:
            return cfg.sync_reference
        from .errors import CurationError

        raise CurationError(f"sync_reference {cfg.sync_reference!r} is not a stream of the "
                            f"release (streams: {', '.join(streams)})")
    js = [s for s in streams.values() if s.type == JOINT_STATE
          and not re.search("command|action|target", s.topic)]
    if js:
        return max(js, key=lambda s: s.count).name
    return max(streams.values(), key=lambda s: s.count).name if streams else ""


def sync_index(ta: np.ndarray, ba: np.ndarray, tb: np.ndarray, bb: np.ndarray) -> np.ndarray:
    """For each row of a: the row of b with the latest stamp at or before it, same episode."""
    out = np.full(len(ta), -1, dtype=np.int64)
    for e in range(len(ba)):
        a0, a1 = ba[e]
        b0, b1 = bb[e]
        if a1 == a0 or b1 == b0:
            continue
        i = np.searchsorted(tb[b0:b1], ta[a0:a1], side="right") - 1
        out[a0:a1] = np.where(i >= 0, i + b0, -1)
    return out


def _write_stream(path: Path, st: _Stream, plans: list[Planned], ne: int, cfg: CurateConfig,
                  role: tuple[str, float | None] | None, jobs: _Jobs,
                  early: EarlyPayloads | None = None, record: WrittenFiles | None = None
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, Future[Any]]]:
    """Assemble one stream's columns and queue their writes; returns its clock, its episode
    bounds, and the pending statistics per field."""
    counts = np.zeros(ne, dtype=np.int64)
    for e, _, a, b in st.parts:
        counts[e] = b - a
    ends = np.cumsum(counts)
    bounds = np.stack([ends - counts, ends], axis=1)
    n = int(ends[-1]) if ne else 0
    cr, sr = cfg.chunk_rows, cfg.shard_rows
    t = np.concatenate([np.asarray(sd.time_ns[a:b]) for _, sd, a, b in st.parts]) \
        if st.parts else np.zeros(0, np.int64)
    lt = np.concatenate([np.asarray(sd.log_time_ns[a:b]) for _, sd, a, b in st.parts]) \
        if st.parts else np.zeros(0, np.int64)
    t, lt = t.astype(np.int64, copy=False), lt.astype(np.int64, copy=False)
    jobs.submit(write_array, path / "time_ns", t, cr, sr, record=record, size=t.nbytes)
    jobs.submit(write_array, path / "log_time_ns", lt, cr, sr, record=record, size=lt.nbytes)
    jobs.submit(write_array, path / "episode_bounds", bounds, cr, sr, record=record)
    first = st.parts[0][1]
    attrs: dict[str, Any] = {
        "topic": st.topic, "type": st.type, "role": role[0] if role else "unknown",
        "clock": first.clock, "count": n, "rate_hz": role[1] if role else None,
        "measured_rate_hz": measured_rate_hz(t, bounds), "constants": first.constants,
    }
    for k in ("camera", "child_frame_ids", "frame_ids", "undecoded"):
        if k in first.attrs:
            attrs[k] = first.attrs[k]
    stats: dict[str, Future[Any]] = {}
    names = _union_joint_names(st) if st.type == JOINT_STATE else None
    if names is not None:
        attrs["joint_names"] = names
    fields_out = []
    field_names = first.attrs.get("field_names", {})
    all_fields: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for _, sd, _, _ in st.parts:
        for k, v in sd.fields.items():
            if k not in all_fields:
                shape = (len(names),) if names is not None and k in (
                    "position", "velocity", "effort") else tuple(v.shape[1:])
                all_fields[k] = (shape, v.dtype)
    for k, (shape, dt) in all_fields.items():
        arr = np.zeros((n, *shape), dtype=dt)
        if dt.kind == "f":
            arr[:] = np.nan
        for e, sd, a, b in st.parts:
            lo, hi = bounds[e]
            col = sd.fields.get(k)
            if col is None or b == a:
                if col is None and b > a:
                    plans[e].extra_flags.append({"flag": "decode_error", "stream": st.topic,
                                                 "detail": f"{st.topic}: field {k} absent "
                                                           "in this episode (stored as fill)"})
                continue
            if names is not None and k in ("position", "velocity", "effort"):
                cols = [names.index(j) for j in sd.attrs.get("joint_names", [])]
                if len(cols) == col.shape[1]:
                    arr[lo:hi][:, cols] = col[a:b]
                    continue
            if tuple(col.shape[1:]) != shape:
                plans[e].extra_flags.append({"flag": "decode_error", "stream": st.topic,
                                             "detail": f"{st.topic}: field {k} has shape "
                                             f"{tuple(col.shape[1:])}, release has {shape}"})
                continue
            arr[lo:hi] = col[a:b]
        fa = {"fields": field_names[k]} if k in field_names else {}
        stats[k] = jobs.submit(_write_field, path / k, arr, cr, sr, fa, record, size=arr.nbytes)
        fields_out.append(k)
    ragged_out = []
    rnames: list[str] = []
    for _, sd, _, _ in st.parts:
        rnames.extend(k for k in sd.ragged if k not in rnames)
    for k in rnames:
        done = early.claim(st, k) if early is not None else None
        jobs.submit(_write_ragged, path / k, k, st, plans, n, cfg, done, record)
        ragged_out.append(k)
    attrs.update(fields=fields_out, ragged=ragged_out)
    if "ragged_dtypes" in first.attrs:
        attrs["ragged_dtypes"] = first.attrs["ragged_dtypes"]
    write_group(path, attrs, record)
    return t, bounds, stats


class EarlyPayloads:
    """Camera payloads written into the release while later files are still loading.

    The release orders episodes by session and start time, which is known only once every
    file is in; but recordings usually come in that order already. So each file's large
    payloads (camera frames) are appended, in input order, by one background thread as soon
    as the file is loaded and segmented, and let go from memory. When the release is
    written, a field whose final order of parts is the order they were appended in is
    ``claim``ed (only its offsets are left to write); any other is deleted and written the
    usual way (its frames read again from the recordings). Its files are reported to
    ``record``, the release's."""

    def __init__(self, root: Path, cfg: CurateConfig, record: WrittenFiles | None = None) -> None:
        self.root, self.cfg, self.record = root, cfg, record
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="release-early")
        self._jobs: list[Future[Any]] = []
        self._writers: dict[tuple[str, str, str], ArrayWriter] = {}
        self._parts: dict[tuple[str, str, str], list[tuple[int, int, int]]] = {}
        self._names: dict[tuple[str, str], str] = {}
        self._claimed: set[tuple[str, str, str]] = set()

    def add(self, rec: FileRecord, segments: list[Segment]) -> bool:
        """Queue the file's large payloads, segment by segment; False: nothing queued."""
        queued = False
        for topic, sd in rec.streams.items():
            for k, (values, offsets) in list(sd.ragged.items()):
                if not isinstance(values, Blobs):
                    continue
                rows = [seg.rows(sd) for seg in segments if not seg.discarded]
                self._jobs.append(self._pool.submit(
                    self._append, topic, sd.type, k, id(sd), values, offsets, rows))
                queued = True
        return queued

    def _append(self, topic: str, typ: str, k: str, sd_id: int, values: Blobs,
                offsets: np.ndarray, rows: list[tuple[int, int]]) -> None:
        key = (topic, typ, k)
        w = self._writers.get(key)
        if w is None:
            name = self._names.get((topic, typ))
            if name is None:
                name = self._names[(topic, typ)] = _new_stream_name(
                    topic, typ, set(self._names.values()))
            path = self.root / ".early" / name / k / "values"  # moved into place if claimed
            w = self._writers[key] = ArrayWriter(path, -1, (), np.uint8, self.cfg.bytes_chunk,
                                                 self.cfg.bytes_shard, compress=False,
                                                 record=self.record)
            self._parts[key] = []
        for a, b in rows:
            if b > a:
                for piece in ragged_rows(values, offsets, a, b):
                    w.append(np.frombuffer(piece, dtype=np.uint8))
                self._parts[key].append((sd_id, a, b))

    def claim(self, st: _Stream, k: str) -> ArrayWriter | None:
        """The field's early writer, if it holds exactly the release's parts in order."""
        for job in self._jobs:
            job.result()
        key = (st.topic, st.type, k)
        if key not in self._writers or self._names.get((st.topic, st.type)) != st.name:
            return None
        want = [(id(sd), a, b) for _, sd, a, b in st.parts if b > a]
        if any(k not in sd.ragged for _, sd, a, b in st.parts if b > a):
            return None
        if want != self._parts[key]:
            return None
        self._claimed.add(key)
        return self._writers[key]

    def discard_unclaimed(self) -> None:
        """Delete what was written early but not claimed (the order came out different)."""
        import shutil

        for job in self._jobs:
            job.result()
        self._pool.shutdown()
        for key, w in self._writers.items():
            if key not in self._claimed:
                w.abort()
        if self.record is not None:
            self.record.forget(self.root / ".early")
        shutil.rmtree(self.root / ".early", ignore_errors=True)

    def close(self) -> None:
        """Stop (after a failure elsewhere): the directory is about to be removed."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        for w in self._writers.values():
            w.abort()


def _write_field(path: Path, arr: np.ndarray, chunk_rows: int, shard_rows: int,
                 attributes: dict[str, Any], record: WrittenFiles | None = None
                 ) -> dict[str, Any] | None:
    """Write one column; returns its statistics (None for booleans and non-numbers)."""
    write_array(path, arr, chunk_rows, shard_rows, attributes=attributes, record=record)
    return describe(arr) if arr.dtype.kind != "b" else None


def _write_ragged(path: Path, k: str, st: _Stream, plans: list[Planned], n: int,
                  cfg: CurateConfig, early: ArrayWriter | None = None,
                  record: WrittenFiles | None = None) -> None:
    """The field's values and offsets; ``early``: its values were already written, in this
    order, while the files loaded (see ``EarlyPayloads``): only the offsets are left."""
    write_group(path, record=record)
    if early is None:
        total = sum(int(sd.ragged[k][1][b] - sd.ragged[k][1][a])
                    for _, sd, a, b in st.parts if k in sd.ragged)
        values = ArrayWriter(path / "values", total, (), np.uint8, cfg.bytes_chunk,
                             cfg.bytes_shard, compress=False, record=record)
    else:
        values = early
        values.move_to(path / "values")
    offsets = np.zeros(n + 1, dtype=np.int64)
    pos = 0
    row = 0
    last_part = {id(sd): (e, a) for e, sd, a, _ in st.parts}
    for e, sd, a, b in st.parts:
        if k not in sd.ragged:
            if b > a:
                plans[e].extra_flags.append({"flag": "decode_error", "stream": st.topic,
                                             "detail": f"{st.topic}: {k} absent in this "
                                                       "episode (empty payloads)"})
            offsets[row + 1:row + 1 + b - a] = pos
            row += b - a
            continue
        if early is not None:  # only the offsets are needed: no payloads read
            off = sd.ragged.offsets(k) if hasattr(sd.ragged, "offsets") else sd.ragged[k][1]
            o = np.asarray(off[a:b + 1])
            offsets[row + 1:row + 1 + b - a] = o[1:] - o[0] + pos
            pos += int(o[-1] - o[0])
            row += b - a
            continue
        vals, off = sd.ragged[k]
        o = np.asarray(off[a:b + 1])
        for piece in ragged_rows(vals, off, a, b):
            values.append(np.frombuffer(piece, dtype=np.uint8))
        del vals
        if last_part[id(sd)] == (e, a) and hasattr(sd.ragged, "release"):
            sd.ragged.release(k)  # payloads read again from the source: let them go
        offsets[row + 1:row + 1 + b - a] = o[1:] - o[0] + pos
        pos += int(o[-1] - o[0])
        row += b - a
    values.close()
    write_array(path / "offsets", offsets, cfg.chunk_rows, cfg.shard_rows, record=record)


def _union_joint_names(st: _Stream) -> list[str]:
    names: list[str] = []
    for _, sd, _, _ in st.parts:
        names.extend(j for j in sd.attrs.get("joint_names", []) if j not in names)
    return names


def measured_rate_hz(t: np.ndarray, bounds: np.ndarray) -> float | None:
    """A stream's measured rate over its episodes (``bounds``: row ranges), as a release's
    ``measured_rate_hz`` attribute holds it; None with fewer than two rows in every episode."""
    n, span = 0, 0
    for lo, hi in bounds:
        if hi - lo > 1:
            n += int(hi - lo - 1)
            span += int(t[hi - 1] - t[lo])
    return round(n * 1e9 / span, 3) if span > 0 else None


def finish_row(row: dict[str, Any], q_flags: set[str], reasons: list[dict[str, str]]) -> None:
    """Quality results into a table row (labels may override score and flags)."""
    if row["labels_source"].get("flags") not in ("labels_file", "cli"):
        row["flags"] = flag_mask(q_flags)
        row["labels_source"]["flags"] = "quality"
    row["flag_names"] = flag_names(row["flags"])
    row["flag_reasons"] = reasons
    if row["labels_source"].get("quality_score") not in ("labels_file", "cli"):
        row["quality_score"] = score(q_flags)
        row["labels_source"]["quality_score"] = "quality"
