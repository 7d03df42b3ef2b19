"""LeRobot v3.0 export: parquet frames, H.264 videos per camera, ``meta/`` as
``LeRobotDataset`` reads it (codebase_version ``v3.0``; layout of ``lerobot.datasets.utils``)::

    data/chunk-CCC/file-FFF.parquet               frames of whole episodes, episode after episode
    videos/<key>/chunk-CCC/file-FFF.mp4           episodes back to back, each from a keyframe
    meta/info.json  meta/stats.json  meta/tasks.parquet
    meta/episodes/chunk-CCC/file-FFF.parquet      one row per episode: where its rows and
                                                  frames are, its statistics, DemoFab labels

Files are split by size as LeRobot's own writer splits them (``LeRobotDataset.save_episode``):
an episode is never split; the next episode starts a new file when the current file holds
at least one episode and its size plus the episode's would reach ``data_files_size_in_mb``
(data and ``meta/episodes``, the episode's size estimated from the bytes per frame of the file
so far) or ``video_files_size_in_mb`` (videos, the episode's own encoded size); a chunk
directory holds ``chunks_size`` files. ``meta/episodes`` gives each episode's
``data/chunk_index``, ``data/file_index``, ``dataset_from_index``/``dataset_to_index`` (global
frame rows) and, per camera, ``videos/<key>/chunk_index``, ``file_index`` and
``from_timestamp``/``to_timestamp``: where the episode starts and ends in its video file (frame
``k`` of the episode is at ``from_timestamp + k / fps``).

LeRobot needs one frame rate, so every stream is put on a ``fps`` grid per episode by the
nearest previous sample (see :data:`grid.RESAMPLING`; ``info.json["demofab"]`` says so).
Episodes are ordered by split (train, val, test, others) so that each split is one range
of ``info.json["splits"]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..loader import ReleaseReader
from .errors import ExportError
from .grid import (
    EpisodeGrid,
    ExportFeature,
    describe_source,
    episode_grids,
    image_frames,
    numeric_values,
    resolve_features,
    staged_output,
)

if TYPE_CHECKING:  # av is imported where a video is written
    from av.container import OutputContainer
    from av.video.stream import VideoStream

CODEBASE_VERSION = "v3.0"
# LeRobot's defaults (lerobot.datasets.utils: DEFAULT_CHUNK_SIZE, DEFAULT_DATA_FILE_SIZE_IN_MB,
# DEFAULT_VIDEO_FILE_SIZE_IN_MB).
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
SPLIT_ORDER = ("train", "val", "test")
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
VIDEO_CODECS = ("libx264", "h264", "libsvtav1", "mpeg4")
DEFAULT_COLUMNS = (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                   ("index", "int64"), ("task_index", "int64"))
_MB = 1024 * 1024
_PA_TYPES = {
    "float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(),
    "int32": pa.int32(), "int16": pa.int16(), "int8": pa.int8(), "uint8": pa.uint8(),
    "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(), "bool": pa.bool_(),
}  # fmt: skip


@dataclass(frozen=True)
class _Layout:
    chunks_size: int
    data_mb: float
    video_mb: float


def export_lerobot(
    release_path: str | Path | ReleaseReader,
    out_dir: str | Path,
    *,
    fps: int = 30,
    features: Mapping[str, str] | Sequence[ExportFeature] | None = None,
    episodes: Sequence[int] | None = None,
    split: str | Sequence[str] | None = None,
    vcodec: str | None = None,
    crf: int = 23,
    gop: int = 2,
    robot_type: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
    chunks_size: int = CHUNKS_SIZE,
    data_files_size_in_mb: float = DATA_FILES_SIZE_IN_MB,
    video_files_size_in_mb: float = VIDEO_FILES_SIZE_IN_MB,
) -> Path:
    """Write the release as a LeRobot v3.0 dataset under ``out_dir``; returns its root
    (``out_dir/<name>-v<N>-lerobot`` unless ``name`` is given). ``gop`` is the keyframe
    interval (LeRobot uses 2 so that random frames decode fast); ``vcodec`` defaults to
    the first of libx264, h264, libsvtav1, mpeg4 this PyAV build can encode.
    ``chunks_size``, ``data_files_size_in_mb`` and ``video_files_size_in_mb`` split the
    files as LeRobot does (its defaults: 1000 files per chunk, 100 MB, 200 MB)."""
    rel = release_path if isinstance(release_path, ReleaseReader) else ReleaseReader(release_path)
    if int(fps) != fps or fps <= 0:
        raise ExportError(f"fps={fps!r}: LeRobot needs a positive whole number of frames/s")
    if isinstance(chunks_size, bool) or int(chunks_size) != chunks_size or chunks_size < 1:
        raise ExportError(f"chunks_size={chunks_size!r}: needs a whole number of files >= 1")
    for key, mb in (("data_files_size_in_mb", data_files_size_in_mb),
                    ("video_files_size_in_mb", video_files_size_in_mb)):
        if not mb > 0:
            raise ExportError(f"{key}={mb!r}: needs a size in MB > 0")
    layout = _Layout(int(chunks_size), float(data_files_size_in_mb),
                     float(video_files_size_in_mb))
    fps = int(fps)
    codec = _pick_codec(vcodec)
    feats = resolve_features(rel, features)
    grids, skipped = episode_grids(rel, feats, fps, episodes=episodes, split=split)
    order = {s: i for i, s in enumerate(SPLIT_ORDER)}
    grids.sort(key=lambda g: (order.get(str(rel.episodes[g.episode].get("split")), 99),
                              g.episode))
    root = Path(out_dir) / (name or f"{rel.name}-v{rel.version}-lerobot")
    with staged_output(root, overwrite) as tmp:
        _write(rel, tmp, feats, grids, skipped, fps, codec, crf, gop, robot_type, layout)
    return root


def _pick_codec(vcodec: str | None) -> str:
    import av

    available = av.codecs_available
    if vcodec is not None:
        if vcodec not in available:
            raise ExportError(f"video codec {vcodec!r} is not in this PyAV build")
        return vcodec
    for name in VIDEO_CODECS:
        if name in available:
            try:
                av.CodecContext.create(name, "w")
            except Exception:  # noqa: BLE001 - a decoder-only entry: try the next one
                continue
            return name
    raise ExportError(f"none of the video encoders {', '.join(VIDEO_CODECS)} is in PyAV")


class _FileSequence:
    """The chunk and file index of the file being filled, rolled over as LeRobot does: a
    file that holds at least one episode is closed when its size plus the next episode's
    would reach the limit; after ``chunks_size`` files the next chunk starts at file 0."""

    def __init__(self, limit_mb: float, chunks_size: int) -> None:
        self.limit = limit_mb * _MB
        self.chunks_size = chunks_size
        self.chunk = self.file = 0
        self.size = 0  # bytes in the current file
        self.episodes = 0  # episodes in the current file
        self.frames = 0  # frames in the current file

    def needs_new_file(self, episode_bytes: float) -> bool:
        return self.episodes > 0 and self.size + episode_bytes >= self.limit

    def estimate(self, frames: int) -> float:
        """An episode's size from the bytes per frame of the current file (LeRobot's rule
        for parquet files, whose size is only known once written)."""
        return self.size / self.frames * frames if self.frames else 0.0

    def next_file(self) -> None:
        self.file += 1
        if self.file == self.chunks_size:
            self.chunk, self.file = self.chunk + 1, 0
        self.size = self.episodes = self.frames = 0

    def added(self, size: int, frames: int) -> None:
        self.size, self.episodes, self.frames = size, self.episodes + 1, self.frames + frames


def _write(rel: ReleaseReader, root: Path, feats: list[ExportFeature], grids: list[EpisodeGrid],
           skipped: Mapping[int, str], fps: int, codec: str, crf: int, gop: int,
           robot_type: str | None, layout: _Layout) -> None:
    numeric = [f for f in feats if f.kind == "numeric"]
    images = [f for f in feats if f.kind == "image"]
    tasks: dict[str, int] = {}
    for g in grids:
        tasks.setdefault(str(rel.episodes[g.episode].get("task", "")), len(tasks))

    ep_cols: dict[str, list[Any]] = {
        "episode_index": list(range(len(grids))),
        "tasks": [[str(rel.episodes[g.episode].get("task", ""))] for g in grids],
        "length": [len(g.times) for g in grids],
    }
    stats, ep_stats = _write_data(rel, root, numeric, grids, tasks, fps, layout, ep_cols)

    video_info = {}
    for f in images:
        video_info[f.name], stats[f.name], ep_stats[f.name] = _write_videos(
            rel, root, f, grids, fps, codec, crf, gop, layout, ep_cols)

    for key, per_episode in ep_stats.items():
        for stat in per_episode[0]:
            ep_cols[f"stats/{key}/{stat}"] = [s[stat] for s in per_episode]
    labels = ("episode_id", "key", "success", "operator", "split", "quality_score", "flags")
    for label in labels:
        ep_cols[f"demofab/{label}"] = [rel.episodes[g.episode].get(label) for g in grids]
    ep_cols["demofab/release_index"] = [g.episode for g in grids]
    _write_episodes(root, ep_cols, layout)

    _write_tasks(root / "meta" / "tasks.parquet", tasks)
    (root / "meta" / "stats.json").write_text(json.dumps(stats, indent=2))

    splits: dict[str, str] = {}
    for i, g in enumerate(grids):
        s = str(rel.episodes[g.episode].get("split") or "train")
        first = int(splits[s].split(":")[0]) if s in splits else i
        splits[s] = f"{first}:{i + 1}"
    info_features: dict[str, Any] = {}
    for f in numeric:
        info_features[f.name] = {"dtype": f.dtype, "shape": list(f.shape), "names": f.names}
    for f in images:
        info_features[f.name] = {"dtype": "video", "shape": list(f.shape),
                                 "names": ["height", "width", "channels"],
                                 "info": video_info[f.name]}
    for key, dtype in DEFAULT_COLUMNS:
        info_features[key] = {"dtype": dtype, "shape": [1], "names": None}
    robot = robot_type or next((str(r["robot"]) for r in rel.episodes if r.get("robot")), None)
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": robot,
        "total_episodes": len(grids), "total_frames": sum(ep_cols["length"]),
        "total_tasks": len(tasks), "chunks_size": layout.chunks_size,
        "data_files_size_in_mb": _mb(layout.data_mb),
        "video_files_size_in_mb": _mb(layout.video_mb), "fps": fps, "splits": splits,
        "data_path": DATA_PATH, "video_path": VIDEO_PATH if images else None,
        "features": info_features,
        "demofab": describe_source(rel, [*numeric, *images], fps, skipped),
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))


def _mb(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _write_data(rel: ReleaseReader, root: Path, numeric: list[ExportFeature],
                grids: list[EpisodeGrid], tasks: Mapping[str, int], fps: int, layout: _Layout,
                ep_cols: dict[str, list[Any]],
                ) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Frames as parquet files of whole episodes (one row group per episode); returns the
    statistics of every column over all frames and per episode."""
    files = _FileSequence(layout.data_mb, layout.chunks_size)
    columns: dict[str, list[np.ndarray]] = {f.name: [] for f in numeric}
    columns |= {key: [] for key, _ in DEFAULT_COLUMNS}
    ep_stats: dict[str, list[dict[str, Any]]] = {key: [] for key in columns}
    for key in ("data/chunk_index", "data/file_index", "dataset_from_index", "dataset_to_index"):
        ep_cols[key] = []
    sink: pa.NativeFile | None = None
    writer: pq.ParquetWriter | None = None
    start = 0
    try:
        for i, g in enumerate(grids):
            n = len(g.times)
            task = tasks[str(rel.episodes[g.episode].get("task", ""))]
            values: dict[str, np.ndarray] = {f.name: numeric_values(rel, f, g) for f in numeric}
            values |= {
                "timestamp": (np.arange(n) / fps).astype(np.float32),
                "frame_index": np.arange(n, dtype=np.int64),
                "episode_index": np.full(n, i, dtype=np.int64),
                "index": np.arange(start, start + n, dtype=np.int64),
                "task_index": np.full(n, task, dtype=np.int64),
            }
            arrays = [_fixed_list(values[f.name], f.dtype) for f in numeric]
            arrays += [pa.array(values[key]) for key, _ in DEFAULT_COLUMNS]
            table = pa.Table.from_arrays(arrays, names=list(values))
            if files.needs_new_file(files.estimate(n)):
                assert writer is not None and sink is not None
                writer.close()
                sink.close()
                writer = sink = None
                files.next_file()
            if writer is None:
                path = root / DATA_PATH.format(chunk_index=files.chunk, file_index=files.file)
                path.parent.mkdir(parents=True, exist_ok=True)
                sink = pa.OSFile(str(path), "wb")
                writer = pq.ParquetWriter(sink, table.schema, compression="snappy")
            assert sink is not None
            writer.write_table(table)
            files.added(sink.tell(), n)
            ep_cols["data/chunk_index"].append(files.chunk)
            ep_cols["data/file_index"].append(files.file)
            ep_cols["dataset_from_index"].append(start)
            ep_cols["dataset_to_index"].append(start + n)
            for key, v in values.items():
                columns[key].append(v)
                ep_stats[key].append(_stats(v.reshape(n, -1)))
            start += n
    finally:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
    stats = {key: _stats(np.concatenate(parts).reshape(start, -1))
             for key, parts in columns.items()}
    return stats, ep_stats


def _write_episodes(root: Path, ep_cols: dict[str, list[Any]], layout: _Layout) -> None:
    """``meta/episodes`` files, split by ``data_files_size_in_mb`` like the data files."""
    table = pa.table(ep_cols)
    per_row = table.nbytes / max(table.num_rows, 1)
    files = _FileSequence(layout.data_mb, layout.chunks_size)
    where = []
    for _ in range(table.num_rows):
        if files.needs_new_file(per_row):
            files.next_file()
        files.added(files.size + int(per_row), 1)
        where.append((files.chunk, files.file))
    table = table.append_column("meta/episodes/chunk_index", pa.array([c for c, _ in where]))
    table = table.append_column("meta/episodes/file_index", pa.array([f for _, f in where]))
    start = 0
    for (chunk, file_index), rows in _runs(where):
        path = root / EPISODES_PATH.format(chunk_index=chunk, file_index=file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(start, rows), path)
        start += rows


def _runs(items: list[tuple[int, int]]) -> list[tuple[tuple[int, int], int]]:
    out: list[tuple[tuple[int, int], int]] = []
    for item in items:
        if out and out[-1][0] == item:
            out[-1] = (item, out[-1][1] + 1)
        else:
            out.append((item, 1))
    return out


def _fixed_list(values: np.ndarray, dtype: str) -> pa.Array:
    flat = pa.array(values.reshape(-1), type=_PA_TYPES[dtype])
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _write_tasks(path: Path, tasks: Mapping[str, int]) -> None:
    """``meta/tasks.parquet`` as pandas writes a frame indexed by task text (LeRobot reads it
    with ``pd.read_parquet`` and looks tasks up by index), without needing pandas here."""
    table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()),
                      "task": pa.array(list(tasks), pa.string())})
    pandas_meta = {
        "index_columns": ["task"], "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    pq.write_table(table, path)


def _stats(values: np.ndarray) -> dict[str, list[Any]]:
    v = values.astype(np.float64).reshape(len(values), -1)
    out: dict[str, list[Any]] = {
        "min": v.min(0).tolist(), "max": v.max(0).tolist(), "mean": v.mean(0).tolist(),
        "std": v.std(0).tolist(), "count": [len(v)],
    }
    for key, q in QUANTILES.items():
        out[key] = np.quantile(v, q, axis=0).tolist()
    return out


class _ImageStats:
    """Per-channel statistics of frames in [0, 1], shaped ``[3, 1, 1]`` as LeRobot keeps
    them; exact quantiles from 256-bin histograms of every 4th pixel of every frame."""

    def __init__(self) -> None:
        self.hist = np.zeros((3, 256), dtype=np.int64)
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        sub = rgb[::4, ::4].reshape(-1, 3)
        for c in range(3):
            self.hist[c] += np.bincount(sub[:, c], minlength=256)
        self.frames += 1

    def merge(self, other: _ImageStats) -> None:
        self.hist += other.hist
        self.frames += other.frames

    def result(self) -> dict[str, Any]:
        levels = np.arange(256) / 255.0
        n = self.hist.sum(1, keepdims=True)
        mean = (self.hist * levels).sum(1) / n[:, 0]
        var = (self.hist * levels**2).sum(1) / n[:, 0] - mean**2
        cdf = np.cumsum(self.hist, axis=1) / n

        def shaped(x: np.ndarray | list[Any]) -> list[Any]:
            values: list[Any] = np.asarray(x, dtype=np.float64).reshape(3, 1, 1).tolist()
            return values

        out = {
            "min": shaped([levels[np.nonzero(h)[0][0]] for h in self.hist]),
            "max": shaped([levels[np.nonzero(h)[0][-1]] for h in self.hist]),
            "mean": shaped(mean), "std": shaped(np.sqrt(np.maximum(var, 0))),
            "count": [self.frames],
        }
        for key, q in QUANTILES.items():
            out[key] = shaped([levels[np.searchsorted(c, q)] for c in cdf])
        return out


def _write_videos(rel: ReleaseReader, root: Path, feature: ExportFeature,
                  grids: list[EpisodeGrid], fps: int, codec: str, crf: int, gop: int,
                  layout: _Layout, ep_cols: dict[str, list[Any]],
                  ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """One camera's video files. Each episode is encoded on its own (from a keyframe at
    pts 0, as LeRobot encodes episodes) and its packets are then copied into the current
    file behind the episodes already there; returns the ``info.json`` video info, the
    statistics over all frames and those of each episode."""
    import av

    key = feature.name
    for col in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
        ep_cols[f"videos/{key}/{col}"] = []
    files = _FileSequence(layout.video_mb, layout.chunks_size)
    total, per_episode = _ImageStats(), []
    scratch = root / ".episode.mp4"
    out: OutputContainer | None = None
    stream: VideoStream | None = None
    codec_name = codec
    try:
        for g in grids:
            stats = _ImageStats()
            codec_name = _encode_episode(rel, feature, g, scratch, fps, codec, crf, gop, stats)
            size = scratch.stat().st_size
            if files.needs_new_file(size):  # a file is open: it holds an episode
                if out is not None:
                    out.close()
                out = stream = None
                files.next_file()
            if out is None:
                path = root / VIDEO_PATH.format(video_key=key, chunk_index=files.chunk,
                                                file_index=files.file)
                path.parent.mkdir(parents=True, exist_ok=True)
                out = av.open(str(path), "w")
            stream = _append_video(out, stream, scratch, Fraction(files.frames, fps))
            n = len(g.times)
            ep_cols[f"videos/{key}/chunk_index"].append(files.chunk)
            ep_cols[f"videos/{key}/file_index"].append(files.file)
            ep_cols[f"videos/{key}/from_timestamp"].append(files.frames / fps)
            ep_cols[f"videos/{key}/to_timestamp"].append((files.frames + n) / fps)
            files.added(files.size + size, n)
            total.merge(stats)
            per_episode.append(stats.result())
    finally:
        if out is not None:
            out.close()
        scratch.unlink(missing_ok=True)
    height, width = feature.shape[:2]
    info = {
        "video.height": height, "video.width": width,
        "video.codec": {"libx264": "h264", "libsvtav1": "av1"}.get(codec_name, codec_name),
        "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
        "video.channels": 3, "has_audio": False,
    }
    return info, total.result(), per_episode


def _encode_episode(rel: ReleaseReader, feature: ExportFeature, grid: EpisodeGrid, path: Path,
                    fps: int, codec: str, crf: int, gop: int, stats: _ImageStats) -> str:
    """Encode one episode's frames as an MP4 of their own (frame ``k`` at ``k / fps``);
    returns the encoder's name."""
    import av

    height, width = feature.shape[:2]
    options = {"g": str(gop)}
    if codec in ("libx264", "h264"):
        options.update({"crf": str(crf), "preset": "veryfast", "bf": "0"})
    elif codec == "libsvtav1":
        options.update({"crf": str(crf), "preset": "12"})
    elif codec == "mpeg4":
        options.update({"qscale": "3"})
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        if not isinstance(stream, av.VideoStream):
            raise ExportError(f"codec {codec!r} does not make a video stream")
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        for pts, rgb in enumerate(image_frames(rel, feature, grid, size=(width, height))):
            stats.add(rgb)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = pts
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        return str(stream.codec_context.name)


def _append_video(out: OutputContainer, stream: VideoStream | None, episode: Path,
                  offset_s: Fraction) -> VideoStream:
    """Copy the packets of the episode's MP4 into ``out`` (no re-encoding), ``offset_s``
    later; returns the output stream (made from the first episode's on the first call)."""
    import av

    with av.open(str(episode)) as src:
        src_stream = src.streams.video[0]
        base = src_stream.time_base
        if base is None:
            raise ExportError(f"{episode}: its video stream has no time base")
        if stream is None:
            stream = out.add_stream_from_template(src_stream, opaque=True)
            stream.time_base = base
        shift = offset_s / base
        if shift.denominator != 1:
            raise ExportError(f"{offset_s} s is not a whole number of {base} "
                              "ticks of the video time base")
        for packet in src.demux(src_stream):
            if packet.dts is None or packet.pts is None:  # the demuxer's flush packet
                continue
            if packet.pts is not None:
                packet.pts += int(shift)
            packet.dts += int(shift)
            packet.stream = stream
            out.mux(packet)
    return stream
