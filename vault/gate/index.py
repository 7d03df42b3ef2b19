"""The input index: what the gate knows of the inputs a job was granted, built once per
release version (and subset) and kept in one ``.npz`` file.

For camera streams, per distinct stored JPEG frame: its SHA-256, the hashes of its bytes
in blocks (:mod:`.hashing`), its perceptual fingerprint (:mod:`.phash`) and where it is
(stream, episode, first row, how many rows hold the same bytes). Blocks that two different
frames share (JPEG headers, tables) are left out: they say "a JPEG", not "this frame".
For numeric streams, per column (one element of one field): hashed windows of consecutive
rounded values. Memory: about 16 bytes per ``block_stride`` bytes of frames, 272 bytes per
distinct frame, and 16 bytes per kept window (at most ``max_windows``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .build import Progress, build_index
from .errors import GateError
from .hashing import HashSet
from .phash import unit
from .policy import IndexConfig

__all__ = ["INDEX_FORMAT_VERSION", "InputIndex"]

INDEX_FORMAT_VERSION = 3  # 2: window hashes without a final mix; 3: a DCT hash per orientation

_ARRAYS = ("frame_stream", "frame_row", "frame_episode", "frame_size", "frame_copies", "frame_sha",
           "frame_phash", "frame_decoded", "frame_thumb", "block_hash", "block_frame", "block_offset",
           "col_stream", "win_hash", "win_col", "win_row")


def _empty(dtype: Any, *shape: int) -> np.ndarray:
    return np.zeros((0, *shape), dtype=dtype)


@dataclass
class InputIndex:
    """See the module docstring. Build with :meth:`build` or :meth:`cached`, open with :meth:`load`."""

    meta: dict[str, Any]
    frame_stream: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    frame_row: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    frame_episode: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    frame_size: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    frame_copies: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    frame_sha: np.ndarray = field(default_factory=lambda: _empty(np.uint8, 32))
    frame_phash: np.ndarray = field(default_factory=lambda: _empty(np.uint64, 8))  # per orientation
    frame_decoded: np.ndarray = field(default_factory=lambda: _empty(bool))
    frame_thumb: np.ndarray = field(default_factory=lambda: _empty(np.uint8, 16, 16))
    block_hash: np.ndarray = field(default_factory=lambda: _empty(np.uint64))
    block_frame: np.ndarray = field(default_factory=lambda: _empty(np.uint32))
    block_offset: np.ndarray = field(default_factory=lambda: _empty(np.uint32))
    col_stream: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    win_hash: np.ndarray = field(default_factory=lambda: _empty(np.uint64))
    win_col: np.ndarray = field(default_factory=lambda: _empty(np.uint32))
    win_row: np.ndarray = field(default_factory=lambda: _empty(np.int64))

    def __post_init__(self) -> None:
        self.config = IndexConfig.from_mapping(self.meta.get("config"))
        self._blocks: HashSet | None = None
        self._windows: HashSet | None = None
        self._sha: dict[bytes, int] | None = None
        self._units: np.ndarray | None = None
        self._frame_blocks: np.ndarray | None = None

    # -- what it holds -------------------------------------------------------------

    @property
    def streams(self) -> list[dict[str, Any]]:
        """Per stream: ``name``, ``kind`` (camera or numeric), ``rows``, ``episode_rows``."""
        return list(self.meta["streams"])

    @property
    def frames(self) -> int:
        return len(self.frame_row)

    @property
    def columns(self) -> int:
        return len(self.col_stream)

    @property
    def blocks(self) -> HashSet:
        if self._blocks is None:
            self._blocks = HashSet(self.block_hash)
        return self._blocks

    @property
    def frame_blocks(self) -> np.ndarray:
        """Indexed blocks per frame."""
        if self._frame_blocks is None:
            self._frame_blocks = np.bincount(self.block_frame, minlength=self.frames).astype(np.int64)
        return self._frame_blocks

    @property
    def windows(self) -> HashSet:
        if self._windows is None:
            self._windows = HashSet(self.win_hash)
        return self._windows

    @property
    def thumb_units(self) -> np.ndarray:
        if self._units is None:
            self._units = unit(self.frame_thumb)
        return self._units

    def frame_of_sha(self, digest: bytes) -> int | None:
        if self._sha is None:
            self._sha = {bytes(s): i for i, s in enumerate(self.frame_sha)}
        return self._sha.get(digest)

    def describe(self) -> dict[str, Any]:
        """Which inputs this index covers (for the report's ``index`` field)."""
        keep = ("release", "version", "release_sha256", "subset_streams", "subset_episodes")
        return {k: self.meta.get(k) for k in keep} | {
            "frames": self.frames, "columns": self.columns, "windows": len(self.win_hash),
            "window_stride": self.meta.get("window_stride")}

    def frame_input(self, frame: int) -> dict[str, Any]:
        """The input a frame is, for a finding: stream, episode, row, size, sha256."""
        s = self.meta["streams"][int(self.frame_stream[frame])]
        return {"stream": s["name"], "topic": s.get("topic"), "episode": int(self.frame_episode[frame]),
                "row": int(self.frame_row[frame]), "rows_with_same_bytes": int(self.frame_copies[frame]),
                "frame_bytes": int(self.frame_size[frame]), "sha256": bytes(self.frame_sha[frame]).hex()}

    def frame_text(self, frame: int) -> str:
        d = self.frame_input(frame)
        return f"frame {d['row']} of {d['stream']} (episode {d['episode']}, sha256 {d['sha256'][:12]})"

    def column_input(self, col: int, rows: tuple[int, int]) -> dict[str, Any]:
        s = self.meta["streams"][int(self.col_stream[col])]
        lo, hi = rows
        bounds = np.asarray(s.get("episode_bounds") or [[0, s["rows"]]], dtype=np.int64)
        episode = int(np.searchsorted(bounds[:, 1], lo, side="right"))
        return {"stream": s["name"], "topic": s.get("topic"), "column": self.meta["columns"][col],
                "rows": [int(lo), int(hi)], "episode": episode, "stream_rows": int(s["rows"])}

    # -- files ---------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` (atomically: a temporary file renamed)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        meta = np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8)
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=meta, **{name: getattr(self, name) for name in _ARRAYS})
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> InputIndex:
        """Open an index file; refuses one of another format or an unknown format version."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                if meta.get("format") != "demofab.gate_index":
                    raise GateError(f"{path}: not a gate index (format {meta.get('format')!r})")
                if meta.get("format_version") != INDEX_FORMAT_VERSION:
                    raise GateError(f"{path}: gate index format_version {meta.get('format_version')!r} "
                                    f"unknown (this vault reads {INDEX_FORMAT_VERSION})")
                arrays = {name: data[name] for name in _ARRAYS}
            _check_shapes(path, arrays)
        except GateError:
            raise
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise GateError(f"{path}: unreadable gate index: {exc}") from exc
        return cls(meta=meta, **arrays)

    @classmethod
    def cached(cls, release: Any, cache_dir: str | Path, *, streams: Sequence[str] | None = None,
               episodes: Sequence[int] | None = None, config: IndexConfig | None = None,
               progress: Progress | None = None) -> InputIndex:
        """The index of ``release`` (and subset) from ``cache_dir``, built and saved there first
        if it is not there yet. The file name carries the release's content hash, the subset
        and the config, so a new release version or subset gets its own index."""
        reader = _reader(release)
        cfg = config or IndexConfig()
        key = json.dumps({"content": content_sha256(reader), "format": INDEX_FORMAT_VERSION,
                          "streams": sorted(streams) if streams is not None else None,
                          "episodes": sorted(episodes) if episodes is not None else None,
                          "config": cfg.to_dict()}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        cache = Path(cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        path = cache / f"{reader.name}-v{reader.version}-{digest}.gateindex.npz"
        if path.is_file():
            try:
                index = cls.load(path)
            except GateError:
                index = None  # another format version, or damaged: build it again
            if index is not None and index.meta.get("content_sha256") == content_sha256(reader):
                return index
            path.unlink()
        index = cls.build(reader, streams=streams, episodes=episodes, config=cfg, progress=progress)
        index.save(path)
        return index

    # -- building ------------------------------------------------------------------

    @classmethod
    def build(cls, release: Any, *, streams: Sequence[str] | None = None,
              episodes: Sequence[int] | None = None, config: IndexConfig | None = None,
              progress: Progress | None = None) -> InputIndex:
        """Index ``release`` (a release directory or a ``curation.loader.ReleaseReader``): all
        its streams and episodes, or those named."""
        reader = _reader(release)
        arrays, meta = build_index(reader, streams=streams, episodes=episodes,
                                   config=config or IndexConfig(), progress=progress)
        meta = {"format": "demofab.gate_index", "format_version": INDEX_FORMAT_VERSION,
                "release": reader.name, "version": reader.version,
                "release_sha256": _release_sha256(reader), "content_sha256": content_sha256(reader),
                "path": str(reader.path),
                "subset_streams": list(streams) if streams is not None else None,
                "subset_episodes": [int(e) for e in episodes] if episodes is not None else None} | meta
        return cls(meta=meta, **arrays)


def _check_shapes(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Refuse an index whose arrays do not fit together (a damaged or hand-made file)."""
    for prefix in ("frame_", "block_", "win_"):
        lengths = {name: len(a) for name, a in arrays.items() if name.startswith(prefix)}
        if len(set(lengths.values())) > 1:
            raise GateError(f"{path}: damaged gate index: the {prefix}* arrays differ in length ({lengths})")
    if arrays["frame_phash"].ndim != 2 or arrays["frame_phash"].shape[1:] != (8,):
        raise GateError(f"{path}: damaged gate index: frame_phash is {arrays['frame_phash'].shape}, "
                        "expected [frames, 8]")


def _reader(release: Any) -> Any:
    from curation.errors import CurationError
    from curation.loader import ReleaseReader

    if isinstance(release, ReleaseReader):
        return release
    try:
        return ReleaseReader(release)
    except CurationError as exc:
        raise GateError(f"cannot index release {release}: {exc}") from exc


def _manifest(reader: Any) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = reader._json(str(reader.attributes.get("manifest", "manifest.json")))  # noqa: SLF001
    except Exception:  # noqa: BLE001 - a release without a manifest is indexed all the same
        return {}
    return doc


def _release_sha256(reader: Any) -> str | None:
    value = _manifest(reader).get("release_sha256")
    return str(value) if value else None


def content_sha256(reader: Any) -> str:
    """A hash of what the release holds: of its manifest's file list (path and sha256 of
    every file) when it has one, else of every file's bytes. Not ``release_sha256`` alone:
    derived releases (episode or stream subsets) used to carry their source's, and two
    inputs must never share an index."""
    files = _manifest(reader).get("files")
    h = hashlib.sha256()
    if isinstance(files, dict) and files:
        for path in sorted(files):
            h.update(f"{files[path].get('sha256')}  {path}\n".encode())
        return h.hexdigest()
    root = Path(reader.path)
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(root).as_posix()}\n".encode())
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()
