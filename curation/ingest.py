"""Ingest: one MCAP file -> its streams as columns, its events and facts, cached by sha256.

The cache (``RELEASES_DIR/NAME/.work/files/<sha256>.vN/``) holds ``meta.json`` and
``arrays.bin`` (every array, 64-byte aligned, located by the index in meta.json). An
entry appears by an atomic rename once complete, so an interrupted run leaves no half
entry, and a repeated or resumed run reads finished files from it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recorder.contract import EPISODE_EVENT_TYPE, EVENTS_TOPIC, EventKind
from recorder.errors import RecorderError

from .decode import BLOBS_MIN, Blobs, StreamData, decode_channel
from .inputs import InputFile, sha256_bytes
from .mcapread import read_mcap

INGEST_VERSION = 2  # 2: a damaged chunk costs only itself (mcapread resumes after it)


def event_name(kind: EventKind) -> str:
    """The name an event of ``kind`` has in a FileRecord (and the cache): ``"start"``..."""
    return kind.name.lower()


EVENT_KINDS = {int(k): event_name(k) for k in EventKind}


@dataclass
class FileRecord:
    """Everything curation needs from one recording file."""

    path: str
    session: str
    sha256: str
    size: int
    streams: dict[str, StreamData]
    events: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    attachments: dict[str, str] = field(default_factory=dict)  # text attachments (URDF)
    truncated_at: int | None = None
    damage: str = ""
    problems: list[tuple[str, str]] = field(default_factory=list)
    from_cache: bool = False


def ingest_file(inp: InputFile, buf: bytes | memoryview | None = None, digest: str = "",
                only: set[str] | None = None, *, borrowed: bool = False,
                views: bool = True) -> FileRecord:
    """Read and decode one file (never raises on damaged content; see problems).
    ``only``: decode just these topics (used to reload payloads left out of the cache).
    ``borrowed``: ``buf`` is reused afterwards (see ``read_file``); nothing points into it."""
    if buf is None:
        with open(inp.path, "rb") as f:
            buf = f.read()
    digest = digest or sha256_bytes(buf)
    content = read_mcap(buf, borrowed=borrowed, views=views)
    # each damaged span costs only itself; one that by the chunk index held no message (a
    # record between chunks) costs nothing
    costly = [lost for lost in content.lost if lost.chunks != 0]
    rec = FileRecord(str(inp.path), inp.session, digest, len(buf), {},
                     metadata=content.metadata,
                     truncated_at=costly[0].start if costly else None,
                     damage=costly[0].reason if costly else "")
    del buf
    for lost in costly:
        rec.problems.append(("truncated", f"{inp.path}: {lost.reason} at byte offset "
                                          f"{lost.start} (bytes {lost.start}..{lost.end}): lost "
                                          f"{lost.what()}; kept every intact chunk"))
    if content.unknown_channel_messages:
        rec.problems.append(("decode_error", f"{inp.path}: {content.unknown_channel_messages} "
                                             "messages on undeclared channels"))
    for name, blob in content.attachments.items():
        if name.endswith((".urdf", ".xml", ".mjcf")):
            rec.attachments[name] = blob.decode("utf-8", "replace")
    by_topic: dict[str, list[Any]] = {}
    for ch in content.channels.values():
        by_topic.setdefault(ch.topic, []).append(ch)
    for topic, chans in by_topic.items():
        if only is not None and topic not in only:
            continue
        ch = chans[0]
        data, log = list(ch.data), list(ch.log_times)
        for other in chans[1:]:  # the same topic on several channels
            if other.type != ch.type:
                rec.problems.append(("decode_error", f"{inp.path}: topic {topic} has types "
                                     f"{ch.type} and {other.type}; kept {ch.type} only "
                                     f"({len(other.data)} messages of the other left out)"))
                continue
            data += other.data
            log += other.log_times
        if topic == EVENTS_TOPIC and ch.type == EPISODE_EVENT_TYPE:
            rec.events = _events(ch, data, log, rec)
            continue
        sd = decode_channel(topic, ch.type, ch.message_encoding, ch.schema_encoding,
                            ch.schema, data, np.array(log, dtype=np.int64))
        rec.streams[topic] = sort_stream(sd)
    return rec


_reader = threading.local()


def read_file(path: str | Path) -> memoryview:
    """The whole file, read into a buffer this thread reuses for its next file: reading
    hundreds of MB into fresh memory costs more (page faults) than the read itself. Valid
    until this thread's next call; pass ``borrowed=True`` to ``ingest_file``."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        buf = getattr(_reader, "buf", None)
        if buf is None or len(buf) < size:
            buf = _reader.buf = bytearray(max(size, 1 << 20))
        view = memoryview(buf)
        n = 0
        while n < size:
            got = f.readinto(view[n:size])
            if not got:
                break  # the file shrank since fstat: what was read is what there is
            n += got
        return view[:n]


def sort_stream(sd: StreamData) -> StreamData:
    """Rows in receive order -> rows sorted by time_ns (stable)."""
    order = np.argsort(sd.time_ns, kind="stable")
    sd.order = order
    if np.array_equal(order, np.arange(len(order))):
        return sd
    sd.time_ns = sd.time_ns[order]
    sd.log_time_ns = sd.log_time_ns[order]
    sd.fields = {k: v[order] for k, v in sd.fields.items()}
    for k, (values, offsets) in list(sd.ragged.items()):
        if isinstance(values, Blobs):
            sd.ragged[k] = (values.take(order), _reordered_offsets(offsets, order))
            continue
        parts = [values[offsets[i]:offsets[i + 1]] for i in order]
        new_off = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=new_off[1:])
        sd.ragged[k] = (np.concatenate(parts) if parts else values[:0], new_off)
    return sd


def _reordered_offsets(offsets: np.ndarray, order: np.ndarray) -> np.ndarray:
    new_off = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(np.diff(offsets)[order], out=new_off[1:])
    return new_off


def _events(ch: Any, data: list[bytes], log: list[int], rec: FileRecord) -> list[dict[str, Any]]:
    from .decode import type_store

    try:
        store = type_store(ch.type, ch.schema_encoding, ch.schema)
    except RecorderError as exc:
        rec.problems.append(("decode_error", f"{rec.path}: events not decodable: {exc}"))
        return []
    out = []
    for d, lt in zip(data, log, strict=True):
        try:
            m = store.deserialize(d)
        except Exception as exc:  # noqa: BLE001
            rec.problems.append(("decode_error", f"{rec.path}: event at log time {lt} "
                                                 f"does not decode: {exc}"))
            continue
        st = m.header.stamp
        out.append({"kind": EVENT_KINDS.get(int(m.kind), f"kind_{int(m.kind)}"),
                    "time_ns": int(st.sec) * 1_000_000_000 + int(st.nanosec),
                    "log_time_ns": int(lt), "label": str(m.label), "outcome": str(m.outcome),
                    "task": str(m.task),
                    # "operator_id"; recordings made before the rename say "operator"
                    "operator": str(getattr(m, "operator_id", getattr(m, "operator", ""))),
                    "episode_id": str(m.episode_id), "episode_index": int(m.episode_index)})
    out.sort(key=lambda e: (e["log_time_ns"], e["time_ns"]))
    return out


# -- the cache ----------------------------------------------------------------------------
EXTERNAL_BYTES = BLOBS_MIN  # ragged payloads this large (camera frames) stay in the source


class _Payloads(dict[str, tuple[Any, np.ndarray]]):
    """Ragged fields of a cached stream; large ones are re-read from the source file on
    first access (decoding only that topic), so the cache never copies camera frames."""

    def __init__(self, cache: Cache, meta: dict[str, Any], topic: str,
                 inp: InputFile | None) -> None:
        super().__init__()
        self.cache, self.meta, self.topic, self.inp = cache, meta, topic, inp
        self.external: dict[str, np.ndarray] = {}  # name -> offsets, values left in the source
        self.spillable: set[str] = set()

    def _fill(self) -> None:
        from .errors import InputError

        path = Path(self.inp.path if self.inp else self.meta["path"])
        try:
            buf = read_file(path)
        except OSError as exc:
            raise InputError(f"{path}: camera payloads of {self.topic} are read from the "
                             f"recording, which cannot be read: {exc}") from exc
        try:
            if sha256_bytes(buf) != self.meta["sha256"]:
                raise InputError(f"{path}: changed since it was ingested (sha256 differs); "
                                 f"give it again as an input")
            # copies of this topic's payloads only: views would keep every chunk alive
            rec = ingest_file(InputFile(path, self.meta["session"]), buf, self.meta["sha256"],
                              only={self.topic}, borrowed=True, views=False)
        finally:
            buf.release()
        sd = rec.streams[self.topic]
        for n in list(self.external):
            super().__setitem__(n, sd.ragged[n])
            self.spillable.add(n)
        self.external.clear()

    def __getitem__(self, key: str) -> tuple[Any, np.ndarray]:
        if key in self.external:
            self._fill()
        return super().__getitem__(key)

    def offsets(self, key: str) -> np.ndarray:
        """A field's offsets, without reading its payloads."""
        if key in self.external:
            return self.external[key]
        offsets: np.ndarray = super().__getitem__(key)[1]
        return offsets

    def release(self, key: str) -> None:
        """Drop a re-read field again (it is read once more if asked for)."""
        if key in self.spillable and super().__contains__(key):
            self.external[key] = super().pop(key)[1]

    def __contains__(self, key: object) -> bool:
        return key in self.external or super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().keys()) + list(self.external))

    def keys(self) -> list[str]:  # type: ignore[override]  # a list, so it may be changed while walked
        return list(self)

    def items(self) -> list[tuple[str, tuple[Any, np.ndarray]]]:  # type: ignore[override]  # as keys()
        return [(k, self[k]) for k in self]


def held_bytes(rec: FileRecord) -> int:
    """Bytes of large payloads (camera frames) this record holds in memory."""
    return sum(len(v) for sd in rec.streams.values() if not isinstance(sd.ragged, _Payloads)
               for v, _ in sd.ragged.values() if len(v) >= EXTERNAL_BYTES)


def spill(rec: FileRecord, cache: Cache, inp: InputFile | None = None) -> int:
    """Let go of the record's large payloads: they are read again from the source file
    (checked against its sha256) when the release writer gets to them. Returns the bytes
    let go. Keeps curation's memory bounded however much is curated at once."""
    freed = 0
    meta = {"path": rec.path, "session": rec.session, "sha256": rec.sha256}
    for sd in rec.streams.values():
        if isinstance(sd.ragged, _Payloads):
            continue
        big = [n for n, (v, _) in sd.ragged.items() if len(v) >= EXTERNAL_BYTES]
        if not big:
            continue
        lazy = _Payloads(cache, meta, sd.topic, inp)
        for n, (v, o) in sd.ragged.items():
            if n in big:
                lazy.external[n] = o
                freed += len(v)
            else:
                dict.__setitem__(lazy, n, (v, o))
        sd.ragged = lazy
    return freed


class Cache:
    """Per-file ingest results keyed by content hash."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "files"

    def entry(self, sha: str) -> Path:
        return self.root / f"{sha}.v{INGEST_VERSION}"

    def has(self, sha: str) -> bool:
        return (self.entry(sha) / "meta.json").exists()

    def save(self, rec: FileRecord) -> None:
        """One data file of concatenated arrays and one meta.json per entry."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.entry(rec.sha256)
        if final.exists():
            return
        tmp = Path(tempfile.mkdtemp(prefix=f".{rec.sha256[:16]}.", dir=self.root))
        try:
            streams = []
            index: dict[str, list[Any]] = {}
            pos = 0
            with open(tmp / "arrays.bin", "wb") as f:
                for k, sd in enumerate(rec.streams.values()):
                    arrays = {"time_ns": sd.time_ns, "log_time_ns": sd.log_time_ns}
                    if sd.order is not None:
                        arrays["order"] = sd.order
                    arrays.update({f"f.{n}": a for n, a in sd.fields.items()})
                    external = []
                    for n, (v, o) in sd.ragged.items():
                        arrays[f"r.{n}.offsets"] = o
                        if len(v) >= EXTERNAL_BYTES:
                            external.append(n)  # re-read from the source when needed
                        else:
                            arrays[f"r.{n}.values"] = v
                    for name, arr in arrays.items():
                        arr = np.ascontiguousarray(arr)
                        pad = -pos % 64
                        f.write(b"\0" * pad)
                        pos += pad
                        index[f"s{k}.{name}"] = [pos, arr.dtype.str, list(arr.shape)]
                        f.write(arr.data.cast("B") if arr.size else b"")
                        pos += arr.nbytes
                    streams.append({"topic": sd.topic, "type": sd.type, "clock": sd.clock,
                                    "fields": list(sd.fields), "ragged": list(sd.ragged),
                                    "constants": sd.constants, "attrs": sd.attrs,
                                    "has_order": sd.order is not None,
                                    "external": external, "problems": sd.problems})
            meta = {"ingest_version": INGEST_VERSION, "path": rec.path, "session": rec.session,
                    "sha256": rec.sha256, "size": rec.size, "events": rec.events,
                    "metadata": rec.metadata, "attachments": rec.attachments,
                    "truncated_at": rec.truncated_at, "damage": rec.damage,
                    "problems": rec.problems, "streams": streams, "index": index}
            (tmp / "meta.json").write_text(json.dumps(meta))
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def load(self, sha: str, inp: InputFile | None = None) -> FileRecord:
        d = self.entry(sha)
        meta = json.loads((d / "meta.json").read_text())
        index = meta["index"]
        size = (d / "arrays.bin").stat().st_size
        blob = np.memmap(d / "arrays.bin", dtype=np.uint8, mode="r") if size else \
            np.zeros(0, np.uint8)
        streams: dict[str, StreamData] = {}
        for k, s in enumerate(meta["streams"]):
            def ld(name: str, k: int = k) -> np.ndarray:
                off, dt, shape = index[f"s{k}.{name}"]
                dtype = np.dtype(dt)
                n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                arr: np.ndarray = blob[off:off + n].view(dtype).reshape(shape)
                return arr

            ext = set(s.get("external", []))
            ragged: dict[str, Any] = _Payloads(self, meta, s["topic"], inp) if ext else {}
            for n in s["ragged"]:
                if n in ext:
                    ragged.external[n] = ld(f"r.{n}.offsets")  # type: ignore[attr-defined]
                else:
                    ragged[n] = (ld(f"r.{n}.values"), ld(f"r.{n}.offsets"))
            sd = StreamData(s["topic"], s["type"], ld("time_ns"), ld("log_time_ns"), s["clock"],
                            {n: ld(f"f.{n}") for n in s["fields"]}, ragged,
                            s["constants"], s["attrs"], [tuple(p) for p in s["problems"]],
                            ld("order") if s.get("has_order") else None)
            streams[sd.topic] = sd
        return FileRecord(
            str(inp.path) if inp else meta["path"], inp.session if inp else meta["session"],
            meta["sha256"], meta["size"], streams, meta["events"], meta["metadata"],
            meta["attachments"], meta["truncated_at"], meta["damage"],
            [tuple(p) for p in meta["problems"]], from_cache=True)

    def clean_partial(self) -> None:
        if self.root.exists():
            for p in self.root.glob(".*"):
                shutil.rmtree(p, ignore_errors=True)
