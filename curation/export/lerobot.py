"""LeRobot v3.0 export: parquet frames, one MP4 per camera, ``meta/`` as ``LeRobotDataset``
reads it (codebase_version ``v3.0``; layout of ``lerobot.datasets.utils``)::

    data/chunk-000/file-000.parquet               one row per frame, all episodes
    videos/<key>/chunk-000/file-000.mp4           all episodes back to back
    meta/info.json  meta/stats.json  meta/tasks.parquet
    meta/episodes/chunk-000/file-000.parquet      one row per episode

LeRobot needs one frame rate, so every stream is put on a ``fps`` grid per episode by the
nearest previous sample (see :data:`grid.RESAMPLING`; ``info.json["demofab"]`` says so).
Episodes are ordered by split (train, val, test, others) so that each split is one range
of ``info.json["splits"]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

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

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
SPLIT_ORDER = ("train", "val", "test")
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
VIDEO_CODECS = ("libx264", "h264", "libsvtav1", "mpeg4")
_PA_TYPES = {
    "float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(),
    "int32": pa.int32(), "int16": pa.int16(), "int8": pa.int8(), "uint8": pa.uint8(),
    "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(), "bool": pa.bool_(),
}  # fmt: skip


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
) -> Path:
    """Write the release as a LeRobot v3.0 dataset under ``out_dir``; returns its root
    (``out_dir/<name>-v<N>-lerobot`` unless ``name`` is given). ``gop`` is the keyframe
    interval (LeRobot uses 2 so that random frames decode fast); ``vcodec`` defaults to
    the first of libx264, h264, libsvtav1, mpeg4 this PyAV build can encode."""
    rel = release_path if isinstance(release_path, ReleaseReader) else ReleaseReader(release_path)
    if int(fps) != fps or fps <= 0:
        raise ExportError(f"fps={fps!r}: LeRobot needs a positive whole number of frames/s")
    fps = int(fps)
    codec = _pick_codec(vcodec)
    feats = resolve_features(rel, features)
    grids, skipped = episode_grids(rel, feats, fps, episodes=episodes, split=split)
    order = {s: i for i, s in enumerate(SPLIT_ORDER)}
    grids.sort(key=lambda g: (order.get(rel.episodes[g.episode].get("split"), 99), g.episode))
    root = Path(out_dir) / (name or f"{rel.name}-v{rel.version}-lerobot")
    with staged_output(root, overwrite) as tmp:
        _write(rel, tmp, feats, grids, skipped, fps, codec, crf, gop, robot_type)
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


def _write(rel: ReleaseReader, root: Path, feats: list[ExportFeature], grids: list[EpisodeGrid],
           skipped: Mapping[int, str], fps: int, codec: str, crf: int, gop: int,
           robot_type: str | None) -> None:
    numeric = [f for f in feats if f.kind == "numeric"]
    images = [f for f in feats if f.kind == "image"]
    tasks: dict[str, int] = {}
    for g in grids:
        tasks.setdefault(str(rel.episodes[g.episode].get("task", "")), len(tasks))

    # Frames: one parquet file.
    columns: dict[str, list[np.ndarray]] = {f.name: [] for f in numeric}
    defaults: dict[str, list[np.ndarray]] = {
        k: [] for k in ("timestamp", "frame_index", "episode_index", "index", "task_index")}
    lengths, start = [], 0
    for i, g in enumerate(grids):
        n = len(g.times)
        for f in numeric:
            columns[f.name].append(numeric_values(rel, f, g))
        defaults["timestamp"].append((np.arange(n) / fps).astype(np.float32))
        defaults["frame_index"].append(np.arange(n, dtype=np.int64))
        defaults["episode_index"].append(np.full(n, i, dtype=np.int64))
        defaults["index"].append(np.arange(start, start + n, dtype=np.int64))
        task = tasks[str(rel.episodes[g.episode].get("task", ""))]
        defaults["task_index"].append(np.full(n, task, dtype=np.int64))
        lengths.append(n)
        start += n
    total = start
    arrays, names, stats = [], [], {}
    for f in numeric:
        values = np.concatenate(columns[f.name])
        arrays.append(_fixed_list(values, f.dtype))
        names.append(f.name)
        stats[f.name] = _stats(values)
    for key, parts in defaults.items():
        values = np.concatenate(parts)
        arrays.append(pa.array(values))
        names.append(key)
        stats[key] = _stats(values.reshape(-1, 1))
    data_file = root / DATA_PATH.format(chunk_index=0, file_index=0)
    data_file.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_arrays(arrays, names=names), data_file, compression="snappy")

    # Videos: one MP4 per camera, episodes back to back.
    video_info = {}
    for f in images:
        path = root / VIDEO_PATH.format(video_key=f.name, chunk_index=0, file_index=0)
        video_info[f.name], stats[f.name] = _encode_video(rel, f, grids, path, fps, codec,
                                                          crf, gop)

    # Episodes table.
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ep_cols: dict[str, list[Any]] = {
        "episode_index": list(range(len(grids))),
        "tasks": [[str(rel.episodes[g.episode].get("task", ""))] for g in grids],
        "length": lengths,
        "data/chunk_index": [0] * len(grids), "data/file_index": [0] * len(grids),
        "dataset_from_index": offsets[:-1].tolist(), "dataset_to_index": offsets[1:].tolist(),
    }
    for f in images:
        ep_cols[f"videos/{f.name}/chunk_index"] = [0] * len(grids)
        ep_cols[f"videos/{f.name}/file_index"] = [0] * len(grids)
        ep_cols[f"videos/{f.name}/from_timestamp"] = (offsets[:-1] / fps).tolist()
        ep_cols[f"videos/{f.name}/to_timestamp"] = (offsets[1:] / fps).tolist()
    ep_cols["meta/episodes/chunk_index"] = [0] * len(grids)
    ep_cols["meta/episodes/file_index"] = [0] * len(grids)
    labels = ("episode_id", "key", "success", "operator", "split", "quality_score", "flags")
    for label in labels:
        ep_cols[f"demofab/{label}"] = [rel.episodes[g.episode].get(label) for g in grids]
    ep_cols["demofab/release_index"] = [g.episode for g in grids]
    ep_file = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    ep_file.parent.mkdir(parents=True)
    pq.write_table(pa.table(ep_cols), ep_file)

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
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"),
                       ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
        info_features[key] = {"dtype": dtype, "shape": [1], "names": None}
    robot = robot_type or next((str(r["robot"]) for r in rel.episodes if r.get("robot")), None)
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": robot,
        "total_episodes": len(grids), "total_frames": total, "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB, "fps": fps, "splits": splits,
        "data_path": DATA_PATH, "video_path": VIDEO_PATH if images else None,
        "features": info_features,
        "demofab": describe_source(rel, [*numeric, *images], fps, skipped),
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))


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

    def result(self) -> dict[str, Any]:
        levels = np.arange(256) / 255.0
        n = self.hist.sum(1, keepdims=True)
        mean = (self.hist * levels).sum(1) / n[:, 0]
        var = (self.hist * levels**2).sum(1) / n[:, 0] - mean**2
        cdf = np.cumsum(self.hist, axis=1) / n

        def shaped(x: np.ndarray) -> list[Any]:
            return np.asarray(x, dtype=np.float64).reshape(3, 1, 1).tolist()

        out = {
            "min": shaped([levels[np.nonzero(h)[0][0]] for h in self.hist]),
            "max": shaped([levels[np.nonzero(h)[0][-1]] for h in self.hist]),
            "mean": shaped(mean), "std": shaped(np.sqrt(np.maximum(var, 0))),
            "count": [self.frames],
        }
        for key, q in QUANTILES.items():
            out[key] = shaped([levels[np.searchsorted(c, q)] for c in cdf])
        return out


def _encode_video(rel: ReleaseReader, feature: ExportFeature, grids: list[EpisodeGrid],
                  path: Path, fps: int, codec: str, crf: int, gop: int,
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    import av

    height, width = feature.shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = _ImageStats()
    options = {"g": str(gop)}
    if codec in ("libx264", "h264"):
        options.update({"crf": str(crf), "preset": "veryfast", "bf": "0"})
    elif codec == "libsvtav1":
        options.update({"crf": str(crf), "preset": "12"})
    elif codec == "mpeg4":
        options.update({"qscale": "3"})
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        pts = 0
        for g in grids:
            for rgb in image_frames(rel, feature, g, size=(width, height)):
                stats.add(rgb)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts = pts
                frame.time_base = Fraction(1, fps)
                pts += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        codec_name = stream.codec_context.name
    info = {
        "video.height": height, "video.width": width,
        "video.codec": {"libx264": "h264", "libsvtav1": "av1"}.get(codec_name, codec_name),
        "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
        "video.channels": 3, "has_audio": False,
    }
    return info, stats.result()
