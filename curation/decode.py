"""Decode one channel's CDR messages in bulk into columns (see docs/release-format.md).

Types come from the schema text embedded in the channel, so foreign recordings decode
without their packages installed. Messages are grouped by CDR layout (``cdr.layout``);
each group is sliced out of a byte matrix with numpy. A channel that cannot be decoded at
all keeps its payloads as the ragged field ``raw``; single messages that do not decode
are counted and reported, never silently lost.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recorder.errors import RecorderError
from recorder.types import SchemaStore, schema_store

from . import cdr

JOINT_STATE = "sensor_msgs/msg/JointState"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
MAX_GROUPS = 8  # layouts searched over all rows; later rows are laid out one by one


@dataclass
class StreamData:
    """One stream's rows (in receive order) as columns."""

    topic: str
    type: str
    time_ns: np.ndarray
    log_time_ns: np.ndarray
    clock: str = "header_stamp"
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    # name -> (values, offsets): row i is values[offsets[i]:offsets[i + 1]]
    ragged: dict[str, tuple[Any, np.ndarray]] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (flag, detail)
    order: np.ndarray | None = None  # position of each row in the file (receive order)

    def __len__(self) -> int:
        return len(self.time_ns)


def type_store(typename: str, encoding: str, schema: bytes | str) -> SchemaStore:
    """The typestore of a channel's embedded schema (``recorder.types.schema_store``: one
    place for it, which also finds rosbags' renamed service types). Raises
    ``RecorderError`` when the schema does not parse or lacks the type."""
    return schema_store(typename, encoding, schema)


class Blobs:
    """Variable-length byte strings kept as the pieces they were read as (views of the
    decompressed chunks): the release writer copies them once, straight into its output,
    instead of joining hundreds of MB of camera frames into one array first. Anything else
    that needs one array gets it through ``np.asarray`` (joined on first use)."""

    def __init__(self, parts: list[bytes | memoryview], size: int) -> None:
        self.parts, self.size = parts, size
        self._joined: np.ndarray | None = None

    def __len__(self) -> int:
        return self.size

    def rows(self, a: int, b: int) -> list[bytes | memoryview]:
        return self.parts[a:b]

    def take(self, order: np.ndarray) -> Blobs:
        return Blobs([self.parts[int(i)] for i in order], self.size)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self._joined is None:
            self._joined = np.frombuffer(b"".join(self.parts), dtype=np.uint8)
        return self._joined if dtype is None else self._joined.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        part: np.ndarray = np.asarray(self)[key]
        return part


BLOBS_MIN = 1 << 20  # ragged fields this large stay in pieces


def ragged_from(parts: Sequence[bytes | memoryview]) -> tuple[np.ndarray | Blobs, np.ndarray]:
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    if parts:
        np.cumsum([len(p) for p in parts], out=offsets[1:])
    if offsets[-1] >= BLOBS_MIN:
        return Blobs(list(parts), int(offsets[-1])), offsets
    return np.frombuffer(b"".join(parts), dtype=np.uint8), offsets


def ragged_rows(values: np.ndarray | Blobs, offsets: np.ndarray, a: int, b: int
                ) -> list[Any]:
    """The bytes of rows a..b of a ragged field, as buffers to write one after another."""
    if isinstance(values, Blobs):
        return values.rows(a, b)
    return [np.asarray(values[int(offsets[a]):int(offsets[b])])]


def decode_channel(topic: str, typename: str, message_encoding: str, schema_encoding: str,
                   schema: bytes, data: list[bytes], log_times: np.ndarray) -> StreamData:
    """Decode all messages of one channel; problems are recorded on the result."""
    log_times = np.asarray(log_times, dtype=np.int64)
    why = ""
    store = None
    if message_encoding != "cdr":
        why = f"message encoding {message_encoding!r} is not CDR"
    elif not typename:
        why = "channel has no schema"
    else:
        try:
            store = type_store(typename, schema_encoding, schema)
        except RecorderError as exc:  # reported on the stream, the payloads kept
            why = f"cannot build type {typename} from the embedded schema: {exc}"
    if store is None:
        return _undecoded(topic, typename, data, log_times, why)
    sd = _Decoder(store, topic, typename, data, log_times).run()
    if data and not len(sd):  # nothing fits the schema: keep the payloads as they are
        return _undecoded(topic, typename, data, log_times,
                          f"no message decodes as {typename} with the embedded schema")
    return sd


def _undecoded(topic: str, typename: str, data: list[bytes], log_times: np.ndarray,
               why: str) -> StreamData:
    sd = StreamData(topic, typename or "unknown", log_times.copy(), log_times, clock="log_time")
    sd.ragged["raw"] = ragged_from(data)
    sd.attrs["undecoded"] = why
    sd.problems.append(("decode_error", f"{topic}: {why}; {len(data)} payloads kept as raw bytes"))
    return sd


@dataclass
class _Group:
    rows: np.ndarray
    lay: cdr.Layout
    num: dict[tuple[str, ...], np.ndarray]
    strs: dict[tuple[str, ...], Any]
    tail: tuple[np.ndarray, np.ndarray] | None  # (start, length) per row


class _Decoder:
    def __init__(self, store: SchemaStore, topic: str, typename: str, data: list[bytes],
                 log_times: np.ndarray) -> None:
        self.store, self.topic, self.type = store, topic, typename
        self.data, self.log = data, log_times
        self.allow_tail = True
        self.keep = np.arange(len(data))

    def run(self) -> StreamData:
        groups, bad, first_error = self._groups()
        n = len(self.data)
        good = np.ones(n, dtype=bool)
        good[bad] = False
        keep = np.flatnonzero(good)
        self.keep = keep
        remap = np.full(n, -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        for g in groups:
            g.rows = remap[g.rows]
        sd = StreamData(self.topic, self.type, np.zeros(len(keep), np.int64),
                        self.log[keep].copy())
        if bad:
            sd.problems.append((
                "decode_error",
                f"{self.topic}: {len(bad)} of {n} messages do not decode as {self.type} "
                f"(first at log time {int(self.log[bad[0]])}: {first_error}); left out"))
        self._time(sd, groups)
        self._numeric(sd, groups)
        self._strings(sd, groups)
        self._tail(sd, groups)
        return sd

    # -- grouping rows by layout ------------------------------------------------------
    def _groups(self) -> tuple[list[_Group], list[int], str]:
        data = self.data
        lengths = np.fromiter((len(d) for d in data), dtype=np.int64, count=len(data))
        remaining = np.arange(len(data))
        groups: list[_Group] = []
        bad: list[int] = []
        first_error = ""
        while len(remaining):
            r = int(remaining[0])
            try:
                lay = cdr.layout(self.store.store, self.store.name, data[r],
                                 allow_tail=self.allow_tail)
            except cdr.LayoutError as exc:
                bad.append(r)
                first_error = first_error or str(exc)
                remaining = remaining[1:]
                continue
            size = lay.size
            cand = remaining if len(groups) < MAX_GROUPS else remaining[:1]
            ln = lengths[cand]
            cand = cand[(ln >= size) if lay.tail is not None else (ln == size)]
            mat = _matrix([data[i] for i in cand], size)
            ok = cdr.matches(lay, mat)
            tail = None
            if lay.tail is not None:
                o = lay.tail[1]
                tl = np.ascontiguousarray(mat[:, o:o + 4]).view(
                    "<u4" if lay.little else ">u4")[:, 0].astype(np.int64)
                ok &= lengths[cand] >= size + tl
                tail = (np.full(int(ok.sum()), size, dtype=np.int64), tl[ok])
            rows = cand[ok]
            if not len(rows) or rows[0] != r:  # the row that defined the layout must fit
                bad.append(r)
                first_error = first_error or "inconsistent lengths"
                remaining = remaining[1:]
                continue
            mat = mat[ok]
            groups.append(_Group(rows, lay, cdr.extract(lay, mat), cdr.strings(lay, mat), tail))
            remaining = np.setdiff1d(remaining, rows, assume_unique=True)
        return groups, sorted(bad), first_error

    # -- columns ------------------------------------------------------------------------
    def _time(self, sd: StreamData, groups: list[_Group]) -> None:
        sec_p: tuple[str, ...] = ("header", "stamp", "sec")
        ns_p: tuple[str, ...] = ("header", "stamp", "nanosec")
        tf = self.type == TF_MESSAGE
        if tf:
            sec_p, ns_p = ("transforms",) + sec_p, ("transforms",) + ns_p
        if not groups or any(sec_p not in g.num for g in groups):
            sd.time_ns, sd.clock = sd.log_time_ns.copy(), "log_time"
            return
        t = sd.log_time_ns.copy()
        for g in groups:
            sec, nsec = g.num[sec_p], g.num[ns_p]
            if tf:
                if sec.shape[1] == 0:
                    continue  # an empty TF message: keep its log time
                sec, nsec = sec[:, 0], nsec[:, 0]
            t[g.rows] = sec.astype(np.int64) * 1_000_000_000 + nsec.astype(np.int64)
        sd.time_ns = t
        if not tf:
            for g in groups:
                g.num.pop(sec_p, None)
                g.num.pop(ns_p, None)

    def _numeric(self, sd: StreamData, groups: list[_Group]) -> None:
        n = len(sd.time_ns)
        paths: list[tuple[str, ...]] = []
        for g in groups:
            paths.extend(p for p in g.num if p not in paths)
        names = self._joint_names(sd, groups) if self.type == JOINT_STATE else None
        cols: dict[tuple[str, ...], np.ndarray] = {}
        for path in paths:
            parts = [(g, g.num.get(path)) for g in groups]
            if names is not None and path in (("position",), ("velocity",), ("effort",)):
                arr = self._by_name(sd, path, parts, names, n)
                if arr is not None:
                    cols[path] = arr
                continue
            shapes = {a.shape[1:] for _, a in parts if a is not None}
            dtypes = {a.dtype for _, a in parts if a is not None}
            if len(shapes) == 1 and len(dtypes) == 1:
                shape, dt = shapes.pop(), dtypes.pop()
                if 0 in shape:
                    continue  # empty in every message: not stored
                arr = np.zeros((n, *shape), dtype=dt)
                if dt.kind == "f":
                    arr[:] = np.nan
                for g, a in parts:
                    if a is not None:
                        arr[g.rows] = a
                cols[path] = arr
            else:
                rows: list[bytes] = [b""] * n
                dt = np.result_type(*dtypes)
                for g, a in parts:
                    if a is not None:
                        for i, row in zip(g.rows, a, strict=True):
                            rows[i] = np.ascontiguousarray(row, dtype=dt).tobytes()
                name = ".".join(path)
                sd.ragged[name] = ragged_from(rows)
                sd.attrs.setdefault("ragged_dtypes", {})[name] = dt.str
        self._merge_structs(sd, groups, cols)

    def _merge_structs(self, sd: StreamData, groups: list[_Group],
                       cols: dict[tuple[str, ...], np.ndarray]) -> None:
        structs = groups[0].lay.structs if groups else {}
        done: set[tuple[str, ...]] = set()
        field_names: dict[str, list[str]] = {}
        for parent, children in structs.items():
            if not parent:
                continue
            kids = [parent + (c,) for c in children]
            if any(k not in cols for k in kids) or len(kids) < 2:
                continue
            arrs = [cols[k] for k in kids]
            if len({a.dtype for a in arrs}) != 1 or len({a.shape for a in arrs}) != 1:
                continue
            if any(k in done for k in kids):
                continue
            name = ".".join(parent)
            sd.fields[name] = np.stack(arrs, axis=-1)
            field_names[name] = list(children)
            done.update(kids)
        for path, arr in cols.items():
            if path in done:
                continue
            if path[-2:] in (("stamp", "sec"), ("stamp", "nanosec")):
                continue  # folded into the *.stamp ns field below
            sd.fields[".".join(path)] = arr
        for path in cols:
            if path[-2:] == ("stamp", "sec") and path[:-1] + ("nanosec",) in cols:
                sec, ns = cols[path], cols[path[:-1] + ("nanosec",)]
                sd.fields[".".join(path[:-1]) + "_ns"] = (
                    sec.astype(np.int64) * 1_000_000_000 + ns.astype(np.int64))
        if field_names:
            sd.attrs["field_names"] = field_names

    def _joint_names(self, sd: StreamData, groups: list[_Group]) -> list[str]:
        canon: list[str] = []
        for g in groups:
            for names in g.strs.get(("name",), [[]]):
                canon.extend(nm for nm in names if nm not in canon)
        sd.attrs["joint_names"] = canon
        return canon

    def _by_name(self, sd: StreamData, path: tuple[str, ...], parts: list[tuple[_Group, Any]],
                 names: list[str], n: int) -> np.ndarray | None:
        if all(a is None or a.shape[1] == 0 for _, a in parts):
            return None
        out = np.full((n, len(names)), np.nan)
        pos = {nm: i for i, nm in enumerate(names)}
        for g, a in parts:
            if a is None or a.shape[1] == 0:
                continue
            per_row = g.strs.get(("name",), [[]])
            row_names = per_row if len(per_row) == len(g.rows) else per_row * len(g.rows)
            if len(per_row) == 1 or len({tuple(r) for r in row_names}) == 1:
                cols = np.array([pos[nm] for nm in row_names[0]], dtype=np.int64)
                if len(cols) == a.shape[1]:
                    out[np.ix_(g.rows, cols)] = a
                    continue
            for i, (row, nm) in enumerate(zip(a, row_names, strict=True)):
                if len(nm) == len(row):
                    out[g.rows[i], [pos[x] for x in nm]] = row
        missing = int(np.isnan(out).any(axis=1).sum())
        if missing:
            sd.problems.append(("decode_error", f"{self.topic}: {'.'.join(path)} lacks joints "
                                f"in {missing} of {n} messages (stored as NaN)"))
        return out

    def _strings(self, sd: StreamData, groups: list[_Group]) -> None:
        n = len(sd.time_ns)
        paths: list[tuple[str, ...]] = []
        for g in groups:
            paths.extend(p for p in g.strs if p not in paths)
        for path in paths:
            if path == ("name",) and self.type == JOINT_STATE:
                continue
            values = [g.strs.get(path, [""]) for g in groups]
            flat = {repr(v) for vs in values for v in vs}
            name = ".".join(path)
            if len(flat) == 1:
                sd.constants[name] = values[0][0]
                continue
            rows: list[bytes] = [b""] * n
            for g, vs in zip(groups, values, strict=True):
                per = vs if len(vs) == len(g.rows) else vs * len(g.rows)
                for i, v in zip(g.rows, per, strict=True):
                    rows[i] = (v if isinstance(v, str) else json.dumps(v)).encode()
            sd.ragged[name] = ragged_from(rows)
        tf_frames = sd.constants.get("transforms.child_frame_id")
        if isinstance(tf_frames, list):
            sd.attrs["child_frame_ids"] = tf_frames
            sd.attrs["frame_ids"] = sd.constants.get("transforms.header.frame_id", [])

    def _tail(self, sd: StreamData, groups: list[_Group]) -> None:
        tails = [(g, g.tail) for g in groups if g.tail is not None]
        if not tails:
            return
        name = ".".join(groups[0].lay.tail[0]) if groups[0].lay.tail else "data"
        n = len(sd.time_ns)
        start = np.zeros(n, dtype=np.int64)
        length = np.zeros(n, dtype=np.int64)
        for g, (s, ln) in tails:
            start[g.rows], length[g.rows] = s, ln
        data = self.data
        parts = [data[int(i)][int(a):int(a) + int(b)]
                 for i, a, b in zip(self.keep, start, length, strict=True)]
        sd.ragged[name] = ragged_from(parts)
        if self.type == COMPRESSED_IMAGE and parts:
            sd.attrs["camera"] = _camera_info(sd.constants.get("format", ""), parts[0])


def _matrix(rows: list[bytes], width: int) -> np.ndarray:
    if not rows:
        return np.zeros((0, width), dtype=np.uint8)
    if all(len(r) == width for r in rows):
        buf = b"".join(rows)
    else:
        buf = b"".join(r[:width] for r in rows)
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(rows), width)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(frame: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, without decoding it."""
    b = bytes(frame[:65536])
    if b[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(b):
        if b[pos] != 0xFF:
            return None
        marker = b[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        (seg,) = struct.unpack_from(">H", b, pos + 2)
        if marker in _SOF and pos + 9 <= len(b):
            h, w = struct.unpack_from(">HH", b, pos + 5)
            return (w, h) if w and h else None
        pos += 2 + seg
    return None


def _camera_info(fmt: str, frame: bytes) -> dict[str, Any]:
    info: dict[str, Any] = {"format": fmt.split(";")[0].strip() or "jpeg"}
    size = jpeg_size(frame)
    if size is not None:
        info.update(width=size[0], height=size[1])
        return info
    try:
        import cv2

        img = cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is not None:
            info.update(width=int(img.shape[1]), height=int(img.shape[0]))
    except Exception:  # noqa: BLE001, S110 - the size is informative only
        pass
    return info
