"""Training samples from a release: (episode, time) on a clock, ``delta_timestamps``
windows aligned on the int64 clocks, decoded camera frames, episode filters."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LoaderError
from .reader import ReleaseReader, StreamInfo
from .zarrread import ShardedArrayReader

__all__ = ["ReleaseDataset", "grid_times", "latest_rows", "select_episodes"]


@dataclass
class _KeySpec:
    key: str
    stream: str
    field: str
    image: bool
    deltas_ns: np.ndarray  # int64 [T]
    window: bool  # True: value [T, ...] plus "<key>_is_pad"; False: value of delta 0
    sorted: bool  # deltas ascending: rows come out non-decreasing

    def __post_init__(self) -> None:
        self.first = int(self.deltas_ns.min())
        self.last = int(self.deltas_ns.max())
    reader: ShardedArrayReader | None = None
    # per episode: (clock of the stream in the episode, first row, query window t0, t1)
    contexts: dict[int, tuple[np.ndarray, int, int, int]] | None = None



_ALIGN = ("previous", "nearest")


class ReleaseDataset:
    """Map-style dataset of training samples from a release.

    Args:
        release: ``RELEASES/NAME/vN`` or ``RELEASES/NAME`` (newest version), or an open
            :class:`ReleaseReader`.
        clock: what a sample is: a stream name (one sample per row of that stream, at its
            ``time_ns``; default the release's ``sync_reference``) or a rate in Hz (one
            sample every ``1/rate`` s from each episode's ``start_ns`` to its ``end_ns``).
        keys: ``"<stream>/<field>"`` keys returned at the sample time (delta 0). Default:
            every numeric field and every camera when ``delta_timestamps`` is None, else
            only the keys of ``delta_timestamps``.
        delta_timestamps: LeRobot-style ``{key: [seconds, ...]}``: the key is returned as
            ``[T, ...]`` at ``t + delta`` for each delta, with a ``"<key>_is_pad"`` bool
            mask for the offsets outside the episode (clamped to its edges).
        align: ``"previous"`` (the latest sample at or before the query time, as the
            release's sync indices; causal) or ``"nearest"``.
        episodes, split, where, min_quality, exclude_flags, filter: episode selection
            (release indices; split name(s); ``{label: value | [values] | predicate}`` on
            episode-table keys; minimum ``quality_score``; flag names to leave out; any
            predicate on the episode row). All must hold.
        decode_images: decode camera frames (``H x W x 3`` uint8); False returns the
            JPEG bytes as 1-D uint8 arrays.
        color: ``"rgb"`` or ``"bgr"`` channel order of decoded frames.
        transform: called on each sample dict (must be picklable for worker processes).
        cache_mb: decoded-chunk LRU budget per process.

    Episodes in which a requested stream has no rows are left out
    (:attr:`skipped_episodes` says which and why).
    """

    def __init__(
        self,
        release: str | Path | ReleaseReader,
        *,
        clock: str | float | None = None,
        keys: Sequence[str] | None = None,
        delta_timestamps: Mapping[str, Sequence[float]] | None = None,
        align: str = "previous",
        episodes: Iterable[int] | None = None,
        split: str | Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        min_quality: float | None = None,
        exclude_flags: Iterable[str] | None = None,
        filter: Callable[[Mapping[str, Any]], bool] | None = None,  # noqa: A002
        decode_images: bool = True,
        color: str = "rgb",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache_mb: float = 256,
    ) -> None:
        self.release = (
            release if isinstance(release, ReleaseReader) else ReleaseReader(release, cache_mb)
        )
        rel = self.release
        if align not in _ALIGN:
            raise LoaderError(f"align={align!r}: expected one of {', '.join(_ALIGN)}")
        if color not in ("rgb", "bgr"):
            raise LoaderError(f"color={color!r}: expected 'rgb' or 'bgr'")
        self.align = align
        self.decode_images = decode_images
        self.color = color
        self.transform = transform
        self._specs = self._build_specs(keys, delta_timestamps)

        # Clock
        if clock is None:
            clock = rel.sync_reference or next(iter(rel.streams), None)
            if clock is None:
                raise LoaderError(f"{rel.path}: the release has no stream")
        if isinstance(clock, str):
            rel.stream(clock)
            self.clock: str | float = clock
            self.fps: float | None = rel.stream(clock).rate_hz
        else:
            rate = float(clock)
            if not math.isfinite(rate) or rate <= 0:
                raise LoaderError(f"clock={clock!r}: a rate must be a positive number of Hz")
            self.clock = rate
            self.fps = rate

        # Episodes
        selected = select_episodes(
            rel, episodes=episodes, split=split, where=where, min_quality=min_quality,
            exclude_flags=exclude_flags, filter=filter,
        )
        self.skipped_episodes: dict[int, str] = {}
        needed = {spec.stream for spec in self._specs}
        if isinstance(self.clock, str):
            needed.add(self.clock)
        kept = []
        for e in selected:
            empty = sorted(s for s in needed if rel.bounds(s)[e, 0] == rel.bounds(s)[e, 1])
            if empty:
                self.skipped_episodes[e] = f"no rows in {', '.join(empty)}"
            else:
                kept.append(e)
        self.episode_indices: list[int] = kept
        self._tasks = {e: str(rel.episodes[e].get("task", "")) for e in kept}
        self._build_samples()

    # -- construction --------------------------------------------------------------

    def _build_specs(
        self, keys: Sequence[str] | None, deltas: Mapping[str, Sequence[float]] | None
    ) -> list[_KeySpec]:
        rel = self.release
        if keys is None:
            if deltas is None:
                keys = [
                    f"{s.name}/{f}"
                    for s in rel.streams.values()
                    for f in (s.fields + [r for r in s.ragged if s.is_camera])
                ]
            else:
                keys = []
        order = list(dict.fromkeys([*keys, *(deltas or {})]))
        specs = []
        for key in order:
            stream, field = self._split_key(key)
            info = rel.stream(stream)
            image = field in info.ragged
            if not image and field not in info.fields:
                raise LoaderError(
                    f"key {key!r}: stream {stream!r} has no field {field!r}; fields: "
                    f"{', '.join(info.fields + info.ragged) or '(none)'}"
                )
            if image and not info.is_camera and self.decode_images:
                raise LoaderError(
                    f"key {key!r} is a ragged field of a non-camera stream; "
                    "only camera frames are decoded (use ReleaseReader.payload for raw bytes)"
                )
            window = deltas is not None and key in deltas
            if window:
                values = list(deltas[key])  # type: ignore[index]
                if not values:
                    raise LoaderError(f"delta_timestamps[{key!r}] is empty")
                try:
                    ns = np.array([round(float(d) * 1e9) for d in values], dtype=np.int64)
                except (TypeError, ValueError) as exc:
                    raise LoaderError(
                        f"delta_timestamps[{key!r}] = {values!r}: expected seconds as numbers"
                    ) from exc
            else:
                ns = np.zeros(1, dtype=np.int64)
            ascending = bool(np.all(np.diff(ns) >= 0))
            specs.append(_KeySpec(key, stream, field, image, ns, window, ascending))
        return specs

    def _split_key(self, key: str) -> tuple[str, str]:
        stream, sep, field = key.partition("/")
        if not sep or not field:
            raise LoaderError(
                f"key {key!r}: expected '<stream>/<field>', e.g. 'joint_states/position'; "
                f"streams: {', '.join(sorted(self.release.streams))}"
            )
        return stream, field

    def _build_samples(self) -> None:
        rel = self.release
        eps: list[np.ndarray] = []
        times: list[np.ndarray] = []
        # per episode: (t0, t1) window of valid query times
        windows = np.zeros((len(rel.episodes), 2), dtype=np.int64)
        for e in self.episode_indices:
            if isinstance(self.clock, str):
                b0, b1 = rel.bounds(self.clock)[e]
                t = rel.times(self.clock)[b0:b1]
            else:
                row = rel.episodes[e]
                t = grid_times(int(row["start_ns"]), int(row["end_ns"]), self.clock)
            windows[e] = (t[0], t[-1])
            times.append(np.asarray(t, dtype=np.int64))
            eps.append(np.full(len(t), e, dtype=np.int32))
        if not times:
            raise LoaderError(
                f"{rel.path}: the selection holds no episode "
                f"(skipped: {self.skipped_episodes or 'none'})"
            )
        self._sample_episode = np.concatenate(eps)
        self._sample_time = np.concatenate(times)
        self._episode_window = windows
        starts = np.concatenate([[0], np.cumsum([len(t) for t in times])])
        self._episode_first_sample = {e: int(starts[i]) for i, e in enumerate(self.episode_indices)}
        self._episode_sample_range = {
            e: (int(starts[i]), int(starts[i + 1])) for i, e in enumerate(self.episode_indices)
        }

    # -- description ---------------------------------------------------------------

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self._specs]

    @property
    def delta_timestamps(self) -> dict[str, list[float]]:
        return {s.key: [float(d) / 1e9 for d in s.deltas_ns] for s in self._specs if s.window}

    @property
    def episodes(self) -> list[dict[str, Any]]:
        """The episode-table rows of the selected episodes."""
        return [self.release.episodes[e] for e in self.episode_indices]

    def episode_samples(self, episode: int) -> range:
        """Sample indices of release episode ``episode`` (for samplers)."""
        try:
            a, b = self._episode_sample_range[episode]
        except KeyError:
            raise LoaderError(f"episode {episode} is not in this dataset's selection") from None
        return range(a, b)

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        """Per key: dtype, shape of one delta (before the ``[T]`` axis), stream, names."""
        out: dict[str, dict[str, Any]] = {}
        for spec in self._specs:
            info = self.release.stream(spec.stream)
            if spec.image:
                cam = info.attributes.get("camera") or {}
                shape = [cam.get("height"), cam.get("width"), 3]
                out[spec.key] = {"dtype": "uint8", "shape": shape, "kind": "image",
                                 "stream": spec.stream, "names": ["height", "width", "channel"]}
                continue
            reader = self.release.field(spec.stream, spec.field)
            names = _feature_names(info, spec.field, reader)
            out[spec.key] = {"dtype": str(reader.dtype), "shape": list(reader.shape[1:]),
                             "kind": "numeric", "stream": spec.stream, "names": names}
        return out

    def __len__(self) -> int:
        return len(self._sample_time)

    def __repr__(self) -> str:
        return (
            f"ReleaseDataset({str(self.release.path)!r}, clock={self.clock!r}, "
            f"episodes={len(self.episode_indices)}, samples={len(self)}, keys={self.keys})"
        )

    # -- sampling ------------------------------------------------------------------

    def locate(self, index: int) -> tuple[int, int]:
        """(release episode, time_ns) of sample ``index``."""
        n = len(self._sample_time)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"sample {index} out of range for a dataset of {n} samples")
        return int(self._sample_episode[index]), int(self._sample_time[index])

    def rows(self, key: str, episode: int, time_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Global rows of ``key``'s stream and the pad mask for a query at ``time_ns``."""
        for spec in self._specs:
            if spec.key == key:
                return self._align_rows(spec, episode, time_ns)
        raise LoaderError(f"key {key!r} is not one of this dataset's keys: {self.keys}")

    def _context(self, spec: _KeySpec, e: int) -> tuple[np.ndarray, int, int, int]:
        if spec.contexts is None:
            spec.contexts = {}
        ctx = spec.contexts.get(e)
        if ctx is None:
            b0, b1 = (int(b) for b in self.release.bounds(spec.stream)[e])
            t0, t1 = (int(t) for t in self._episode_window[e])
            ctx = (self.release.times(spec.stream)[b0:b1], b0, t0, t1)
            spec.contexts[e] = ctx
        return ctx

    def _align_rows(self, spec: _KeySpec, e: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        ts, b0, t0, t1 = self._context(spec, e)
        q = spec.deltas_ns + t
        if spec.sorted and t + spec.first >= t0 and t + spec.last <= t1:
            qc, pad = q, np.zeros(len(q), dtype=bool)  # the whole window is inside
        else:
            qc = np.minimum(np.maximum(q, t0), t1)
            pad = q != qc
        if self.align == "previous":
            idx = ts.searchsorted(qc, side="right")
            idx -= 1
            if (idx[0] if spec.sorted else idx.min()) < 0:
                pad |= idx < 0
                np.maximum(idx, 0, out=idx)
        else:
            right = np.minimum(ts.searchsorted(qc, side="left"), len(ts) - 1)
            left = np.maximum(right - 1, 0)
            idx = np.where(np.abs(ts[left] - qc) <= np.abs(ts[right] - qc), left, right)
        idx += b0
        return idx, pad

    def _align_row(self, spec: _KeySpec, e: int, t: int) -> int:
        """:meth:`_align_rows` for a single delta, in scalar arithmetic."""
        ts, b0, t0, t1 = self._context(spec, e)
        q = t + int(spec.deltas_ns[0])
        q = t0 if q < t0 else t1 if q > t1 else q
        if self.align == "previous":
            i = int(ts.searchsorted(q, side="right")) - 1
            return b0 + (i if i > 0 else 0)
        right = min(int(ts.searchsorted(q, side="left")), len(ts) - 1)
        left = right - 1 if right > 0 else 0
        return b0 + (left if abs(int(ts[left]) - q) <= abs(int(ts[right]) - q) else right)

    def __getitem__(self, index: int) -> dict[str, Any]:
        e, t = self.locate(int(index))
        sample: dict[str, Any] = {}
        for spec in self._specs:
            if spec.image:
                rows, pad = self._align_rows(spec, e, t)
                frames = [self._frame(spec, int(r), e) for r in rows]
                if spec.window:
                    sample[spec.key] = np.stack(frames) if self.decode_images else frames
                    sample[spec.key + "_is_pad"] = pad
                else:
                    sample[spec.key] = frames[0]
                continue
            reader = spec.reader
            if reader is None:
                reader = spec.reader = self.release.field(spec.stream, spec.field)
            if spec.window:
                rows, pad = self._align_rows(spec, e, t)
                sample[spec.key] = reader.take(rows, spec.sorted)
                sample[spec.key + "_is_pad"] = pad
            else:
                sample[spec.key] = reader.row(self._align_row(spec, e, t))
        sample["episode_index"] = np.int64(e)
        sample["index"] = np.int64(index if index >= 0 else index + len(self))
        sample["time_ns"] = np.int64(t)
        sample["timestamp"] = np.float64((t - int(self._episode_window[e, 0])) / 1e9)
        sample["task"] = self._tasks[e]
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def _frame(self, spec: _KeySpec, row: int, episode: int) -> np.ndarray:
        data = self.release.payload(spec.stream, row, spec.field)
        buf = np.frombuffer(data, dtype=np.uint8)
        if not self.decode_images:
            return buf
        import cv2

        flag = cv2.IMREAD_COLOR_RGB if self.color == "rgb" else cv2.IMREAD_COLOR
        image = cv2.imdecode(buf, flag)
        if image is None:
            raise LoaderError(
                f"{self.release.path}: stream {spec.stream!r} row {row} (episode {episode}): "
                f"{len(data)} bytes that OpenCV cannot decode as an image"
            )
        return image

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_specs"] = [
            _KeySpec(s.key, s.stream, s.field, s.image, s.deltas_ns, s.window, s.sorted)
            for s in self._specs
        ]
        return state


def grid_times(start_ns: int, end_ns: int, rate_hz: float) -> np.ndarray:
    """A fixed-rate clock: ``start_ns + round(k * 1e9 / rate_hz)`` for every k that stays
    at or before ``end_ns`` (the sample times of ``ReleaseDataset(clock=rate_hz)``)."""
    period = 1e9 / rate_hz
    n = int(math.floor((end_ns - start_ns) / period + 1e-9)) + 1
    return start_ns + np.round(np.arange(max(n, 1)) * period).astype(np.int64)


def latest_rows(times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For each query time, the index of the latest of ``times`` (sorted) at or before it,
    or 0 when none is (the first sample stands in, as the loader pads)."""
    idx = np.searchsorted(times, query, side="right") - 1
    return np.maximum(idx, 0)


def _feature_names(info: StreamInfo, field: str, reader: ShardedArrayReader) -> list[str] | None:
    fields = reader.attributes.get("fields")
    if fields:
        return [str(f) for f in fields]
    joints = info.attributes.get("joint_names")
    if joints and len(reader.shape) == 2 and reader.shape[1] == len(joints):
        return [str(j) for j in joints]
    return None


def select_episodes(
    rel: ReleaseReader,
    *,
    episodes: Iterable[int] | None = None,
    split: str | Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    min_quality: float | None = None,
    exclude_flags: Iterable[str] | None = None,
    filter: Callable[[Mapping[str, Any]], bool] | None = None,  # noqa: A002
) -> list[int]:
    """Release indices of the episodes that pass every filter (see :class:`ReleaseDataset`)."""
    predicate = filter
    count = len(rel.episodes)
    if episodes is None:
        chosen = list(range(count))
    else:
        chosen = sorted({int(e) for e in episodes})
        bad = [e for e in chosen if not 0 <= e < count]
        if bad:
            raise LoaderError(f"episodes {bad}: out of range, the release has {count} episodes")
    splits = {split} if isinstance(split, str) else set(split) if split is not None else None
    mask = 0
    if exclude_flags is not None:
        bits = rel.attributes.get("flag_bits") or {}
        for name in exclude_flags:
            if name not in bits:
                raise LoaderError(f"flag {name!r} unknown; flags: {', '.join(bits)}")
            mask |= 1 << int(bits[name])
    out = []
    for e in chosen:
        row = rel.episodes[e]
        if splits is not None and row.get("split") not in splits:
            continue
        if min_quality is not None and not (row.get("quality_score") or 0.0) >= min_quality:
            continue
        if mask and int(row.get("flags") or 0) & mask:
            continue
        if where and not all(_matches(row, k, v, rel) for k, v in where.items()):
            continue
        if predicate is not None and not predicate(row):
            continue
        out.append(e)
    return out


def _matches(row: Mapping[str, Any], key: str, wanted: Any, rel: ReleaseReader) -> bool:
    if key not in row:
        known = ", ".join(sorted(rel.episodes[0])) if rel.episodes else ""
        raise LoaderError(f"where: episode table has no column {key!r}; columns: {known}")
    value = row[key]
    if callable(wanted):
        return bool(wanted(value))
    if isinstance(wanted, list | tuple | set | frozenset):
        return value in wanted
    return bool(value == wanted)
