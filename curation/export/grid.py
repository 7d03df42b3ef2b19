"""What the exports share: which release fields become which features, the fixed-fps grid
of each episode, and values on that grid (nearest-previous sample, never interpolated)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..loader import LoaderError, ReleaseReader, grid_times, latest_rows, select_episodes
from .errors import ExportError

RESAMPLING = (
    "nearest-previous: each frame at start_ns + k/fps takes, for every stream, the latest "
    "sample at or before the frame time within the episode (the release's sync-index "
    "semantics); before a stream's first sample, its first sample. Nothing is interpolated."
)


@dataclass(frozen=True)
class ExportFeature:
    """One exported feature: a release field under an export name.

    Numeric features are flattened to one dimension (``shape == (D,)``) and floats are
    exported as float32; images are ``(height, width, 3)`` RGB uint8.
    """

    name: str
    stream: str
    field: str
    kind: str  # "numeric" or "image"
    dtype: str
    shape: tuple[int, ...]
    names: list[str] | None
    role: str

    @property
    def source(self) -> str:
        return f"{self.stream}/{self.field}"


def _camera_name(stream: str) -> str:
    name = stream
    for prefix in ("camera.", "cameras."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    for suffix in (".image_raw.compressed", ".compressed", ".image_raw"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.replace(".", "_") or stream.replace(".", "_")


def _numeric(rel: ReleaseReader, name: str, stream: str, field: str) -> ExportFeature:
    reader = rel.field(stream, field)
    info = rel.stream(stream)
    trailing = tuple(int(n) for n in reader.shape[1:])
    size = int(np.prod(trailing)) if trailing else 1
    names: list[str] | None = None
    fields = reader.attributes.get("fields")
    joints = info.attributes.get("joint_names")
    if len(trailing) == 1 and fields and len(fields) == trailing[0]:
        names = [str(f) for f in fields]
    elif len(trailing) == 1 and joints and len(joints) == trailing[0]:
        names = [str(j) for j in joints]
    elif len(trailing) > 1:
        names = [".".join(map(str, ix)) for ix in np.ndindex(*trailing)]
    if reader.dtype is None:
        raise ExportError(f"feature {name!r}: {stream}/{field} has no data type (not an array)")
    kind = reader.dtype.kind
    dtype = "float32" if kind == "f" else "bool" if kind == "b" else str(reader.dtype)
    return ExportFeature(name, stream, field, "numeric", dtype, (size,), names,
                         str(info.attributes.get("role", "unknown")))


def _image(rel: ReleaseReader, name: str, stream: str, field: str) -> ExportFeature:
    cam = rel.stream(stream).attributes.get("camera") or {}
    height, width = cam.get("height"), cam.get("width")
    if not height or not width:  # not in the attributes: look at the first frame
        first = _decode(rel.payload(stream, 0, field), stream, 0)
        height, width = first.shape[:2]
    return ExportFeature(name, stream, field, "image", "uint8", (int(height), int(width), 3),
                         ["height", "width", "channels"], "camera")


def default_features(rel: ReleaseReader) -> list[ExportFeature]:
    """``observation.state`` (the reference JointState positions), ``action`` (the first
    action JointState positions), ``observation.images.<camera>`` for each camera, and every
    other numeric field as ``observation.<stream>.<field>`` or ``action.<stream>.<field>``
    (by the stream's role)."""
    out: list[ExportFeature] = []
    used: set[tuple[str, str]] = set()
    joint_streams = [s for s in rel.streams.values()
                     if str(s.attributes.get("type", "")).endswith("JointState")
                     and "position" in s.fields]
    ref = rel.sync_reference
    state = next((s for s in joint_streams if s.name == ref), None) or next(
        (s for s in joint_streams if s.attributes.get("role") == "observation"), None)
    if state is not None:
        out.append(_numeric(rel, "observation.state", state.name, "position"))
        used.add((state.name, "position"))
    action = next((s for s in joint_streams if s.attributes.get("role") == "action"), None)
    if action is not None:
        out.append(_numeric(rel, "action", action.name, "position"))
        used.add((action.name, "position"))
    for s in rel.streams.values():
        if s.is_camera:
            for field in s.ragged:
                suffix = "" if field == "data" else f".{field}"
                out.append(_image(rel, f"observation.images.{_camera_name(s.name)}{suffix}",
                                  s.name, field))
            continue
        prefix = "action" if s.attributes.get("role") == "action" else "observation"
        for field in s.fields:
            if (s.name, field) not in used:
                out.append(_numeric(rel, f"{prefix}.{s.name}.{field}", s.name, field))
    return out


def resolve_features(
    rel: ReleaseReader, features: Mapping[str, str] | Sequence[ExportFeature] | None
) -> list[ExportFeature]:
    """``features`` as ``{export name: "<stream>/<field>"}`` (None: :func:`default_features`)."""
    if features is None:
        return default_features(rel)
    if not isinstance(features, Mapping):
        if not all(isinstance(f, ExportFeature) for f in features):
            raise ExportError("features: give {export name: '<stream>/<field>'} or a list of "
                              f"ExportFeature, not {type(features).__name__} of other items")
        return list(features)
    out = []
    for name, source in features.items():
        stream, sep, field = str(source).partition("/")
        if not sep:
            raise ExportError(f"feature {name!r}: source {source!r} is not '<stream>/<field>'")
        try:
            info = rel.stream(stream)
            if field in info.ragged and info.is_camera:
                out.append(_image(rel, name, stream, field))
            else:
                out.append(_numeric(rel, name, stream, field))
        except LoaderError as exc:
            raise ExportError(f"feature {name!r}: {exc}") from exc
    if not out:
        raise ExportError("no feature to export")
    return out


@dataclass
class EpisodeGrid:
    """The frames of one exported episode: release index and frame times (int64 ns)."""

    episode: int
    times: np.ndarray


def episode_grids(
    rel: ReleaseReader,
    features: Sequence[ExportFeature],
    fps: float,
    *,
    episodes: Sequence[int] | None = None,
    split: str | Sequence[str] | None = None,
) -> tuple[list[EpisodeGrid], dict[int, str]]:
    """The grid of each selected episode, and the episodes left out (with the reason):
    those in which an exported stream has no sample."""
    try:
        chosen = select_episodes(rel, episodes=episodes, split=split)
    except LoaderError as exc:
        raise ExportError(str(exc)) from exc
    grids, skipped = [], {}
    streams = sorted({f.stream for f in features})
    for e in chosen:
        empty = [s for s in streams if rel.bounds(s)[e, 0] == rel.bounds(s)[e, 1]]
        if empty:
            skipped[e] = f"no samples in {', '.join(empty)}"
            continue
        row = rel.episodes[e]
        grids.append(EpisodeGrid(e, grid_times(int(row["start_ns"]), int(row["end_ns"]), fps)))
    if not grids:
        raise ExportError(f"{rel.path}: no episode to export (left out: {skipped or 'none'})")
    return grids, skipped


def grid_rows(rel: ReleaseReader, stream: str, grid: EpisodeGrid) -> np.ndarray:
    """Global rows of ``stream`` for each frame of ``grid`` (nearest-previous)."""
    b0, b1 = (int(b) for b in rel.bounds(stream)[grid.episode])
    return latest_rows(rel.times(stream)[b0:b1], grid.times) + b0


def numeric_values(rel: ReleaseReader, feature: ExportFeature, grid: EpisodeGrid) -> np.ndarray:
    """``[frames, D]`` values of a numeric feature on the grid, in the export dtype."""
    b0, b1 = (int(b) for b in rel.bounds(feature.stream)[grid.episode])
    values = rel.field(feature.stream, feature.field).read(b0, b1)
    rows = latest_rows(rel.times(feature.stream)[b0:b1], grid.times)
    out: np.ndarray = values[rows].reshape(len(rows), -1).astype(feature.dtype, copy=False)
    return out


def _decode(data: bytes, stream: str, row: int) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise ExportError(f"stream {stream!r} row {row}: {len(data)} bytes OpenCV cannot decode")
    return image


def image_frames(
    rel: ReleaseReader, feature: ExportFeature, grid: EpisodeGrid,
    size: tuple[int, int] | None = None,
) -> Iterator[np.ndarray]:
    """RGB frames of a camera feature on the grid (decoded once per distinct row);
    ``size = (width, height)`` resizes."""
    last_row, last = -1, None
    for row in grid_rows(rel, feature.stream, grid):
        if row != last_row:
            last = _decode(rel.payload(feature.stream, int(row), feature.field), feature.stream,
                           int(row))
            if size is not None and (last.shape[1], last.shape[0]) != tuple(size):
                last = cv2.resize(last, tuple(size), interpolation=cv2.INTER_AREA)
            last_row = int(row)
        assert last is not None
        yield last


def describe_source(rel: ReleaseReader, features: Sequence[ExportFeature], fps: float,
                    skipped: Mapping[int, str]) -> dict[str, Any]:
    """Where an export came from and how it was resampled (kept in the export's metadata)."""
    manifest = rel.path / str(rel.attributes.get("manifest", "manifest.json"))
    release_sha = None
    if manifest.is_file():
        import json

        release_sha = json.loads(manifest.read_text()).get("release_sha256")
    return {
        "release": rel.name, "version": rel.version, "path": str(rel.path),
        "release_sha256": release_sha, "fps": fps, "resampling": RESAMPLING,
        "features": {f.name: f.source for f in features},
        "skipped_episodes": {str(k): v for k, v in skipped.items()},
    }


@contextmanager
def staged_output(final: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary sibling of ``final`` renamed to it once the block succeeds, so an
    interrupted export never leaves a half-written dataset under the final name."""
    if final.exists() and not overwrite:
        raise ExportError(f"{final}: already exists (pass overwrite=True, or --overwrite, "
                          "to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
