"""A release version opened for reading: metadata, episode table, streams and arrays."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ReleaseError
from ..release import check_attrs, open_url, release_attrs, url_scheme
from ..release import resolve as resolve_release
from .errors import LoaderError
from .zarrread import ChunkCache, ShardedArrayReader

__all__ = ["ReleaseReader", "StreamInfo"]

KNOWN_TABLE_VERSIONS = (1,)


@dataclass(frozen=True)
class StreamInfo:
    """A stream of a release, from its group attributes."""

    name: str
    attributes: dict[str, Any]

    @property
    def fields(self) -> list[str]:
        return list(self.attributes.get("fields") or [])

    @property
    def ragged(self) -> list[str]:
        return list(self.attributes.get("ragged") or [])

    @property
    def is_camera(self) -> bool:
        return "camera" in self.attributes or self.attributes.get("role") == "camera"

    @property
    def rate_hz(self) -> float | None:
        rate = self.attributes.get("rate_hz")
        return float(rate) if rate else None


class ReleaseReader:
    """A release version opened for reading: metadata, episode table, stats, arrays.

    Arrays are read by :class:`ShardedArrayReader` (one per array, created on first use,
    sharing one chunk LRU of ``cache_mb``). Clocks, episode bounds and ragged offsets are
    small and kept in memory once read. Safe to pickle and to use after ``fork``.
    """

    def __init__(self, path: str | Path, cache_mb: float = 256) -> None:
        #: the release files of a ``scheme://`` release (see ``release.open_url``), else None
        self.files: Any = None
        if url_scheme(path) is not None:
            self.files = open_url(str(path))
            self.path = Path(str(path).split("://", 1)[1])  # for messages and array keys
            attrs = check_attrs(self._json("zarr.json"), str(path))
        else:
            self.path = resolve_release(path)
            attrs = release_attrs(self.path)  # refuses other formats and unknown versions
        self.attributes: dict[str, Any] = attrs
        table = self._json(str(attrs.get("episode_table", "episodes.json")))
        if table.get("format_version") not in KNOWN_TABLE_VERSIONS:
            raise ReleaseError(
                f"{self.path}: episode table format_version {table.get('format_version')!r} unknown"
            )
        self.episodes: list[dict[str, Any]] = list(table["episodes"])
        self.cache_mb = cache_mb
        self.streams: dict[str, StreamInfo] = {}
        #: streams of the release that a remote release's grant does not reach
        self.withheld: list[str] = []
        for name in attrs.get("streams") or []:
            if self.files is not None and self.files.size(f"streams/{name}/zarr.json") is None:
                self.withheld.append(name)
                continue
            meta = self._json(f"streams/{name}/zarr.json")
            self.streams[name] = StreamInfo(name, dict(meta.get("attributes") or {}))
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._cache = ChunkCache(int(self.cache_mb * (1 << 20)))
        self._arrays: dict[str, ShardedArrayReader] = {}
        self._memo: dict[tuple[str, ...], np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_cache", "_arrays", "_memo"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_process_state()

    def close(self) -> None:
        for arr in self._arrays.values():
            arr.close()
        self._arrays = {}

    @property
    def name(self) -> str:
        return str(self.attributes.get("name", self.path.parent.name))

    @property
    def version(self) -> int:
        return int(self.attributes.get("version", 0))

    @property
    def sync_reference(self) -> str | None:
        return self.attributes.get("sync_reference")

    def _json(self, rel: str) -> dict[str, Any]:
        if self.files is None:
            return _read_json(self.path / rel)
        where = f"{self.files.url}/{rel}"
        try:
            doc: dict[str, Any] = json.loads(self.files.read(rel))
            return doc
        except FileNotFoundError as exc:
            raise ReleaseError(f"{where}: missing from the release") from exc
        except ValueError as exc:
            raise ReleaseError(f"{where}: unreadable: {exc}") from exc

    @property
    def stats(self) -> dict[str, Any]:
        return self._json(str(self.attributes.get("stats", "stats.json")))

    def stream(self, name: str) -> StreamInfo:
        try:
            return self.streams[name]
        except KeyError:
            raise LoaderError(
                f"{self.path}: no stream {name!r}; streams: {', '.join(sorted(self.streams))}"
            ) from None

    def array(self, relpath: str) -> ShardedArrayReader:
        """The reader of the array at ``relpath`` (e.g. ``streams/imu/orientation``)."""
        reader = self._arrays.get(relpath)
        if reader is None:
            reader = ShardedArrayReader(self.path / relpath, self._cache, files=self.files,
                                        rel=relpath)
            self._arrays[relpath] = reader
        return reader

    def field(self, stream: str, field: str) -> ShardedArrayReader:
        info = self.stream(stream)
        if field not in info.fields:
            raise LoaderError(
                f"{self.path}: stream {stream!r} has no numeric field {field!r}; "
                f"fields: {', '.join(info.fields) or '(none)'}"
            )
        return self.array(f"streams/{stream}/{field}")

    def _memoized(self, key: tuple[str, ...], relpath: str) -> np.ndarray:
        value = self._memo.get(key)
        if value is None:
            value = self.array(relpath).read()
            value.flags.writeable = False
            self._memo[key] = value
        return value

    def times(self, stream: str, clock: str = "time_ns") -> np.ndarray:
        """The stream's int64 clock (``time_ns`` or ``log_time_ns``), all rows, in memory."""
        self.stream(stream)
        return self._memoized(("t", stream, clock), f"streams/{stream}/{clock}")

    def bounds(self, stream: str) -> np.ndarray:
        """``[E, 2]`` rows ``[start, end)`` of each episode in ``stream``."""
        self.stream(stream)
        return self._memoized(("b", stream), f"streams/{stream}/episode_bounds")

    def offsets(self, stream: str, field: str = "data") -> np.ndarray:
        if field not in self.stream(stream).ragged:
            raise LoaderError(f"{self.path}: stream {stream!r} has no ragged field {field!r}")
        return self._memoized(("o", stream, field), f"streams/{stream}/{field}/offsets")

    def sync(self, a: str, b: str) -> np.ndarray | None:
        """``sync/<a>__to__<b>`` (for each row of a, the latest row of b at or before it)."""
        rel = f"sync/{a}__to__{b}"
        exists = (self.files.size(f"{rel}/zarr.json") is not None if self.files is not None
                  else (self.path / rel / "zarr.json").is_file())
        if not exists:
            return None
        return self._memoized(("s", a, b), rel)

    def payload(self, stream: str, row: int, field: str = "data") -> bytes:
        """The bytes of row ``row`` of a ragged field (a camera frame's JPEG, as recorded)."""
        offsets = self.offsets(stream, field)
        return self.array(f"streams/{stream}/{field}/values").read_bytes(
            int(offsets[row]), int(offsets[row + 1])
        )

    def episode_of_rows(self, stream: str, rows: np.ndarray) -> np.ndarray:
        """The episode index of each row of ``stream``."""
        return np.searchsorted(self.bounds(stream)[:, 1], rows, side="right")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc
    except FileNotFoundError as exc:
        raise ReleaseError(f"{path}: missing from the release") from exc
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{path}: unreadable: {exc}") from exc
