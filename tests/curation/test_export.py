"""Exports read back as their users read them: LeRobot v3 with pyarrow and PyAV, robomimic
with h5py. Values are checked against the release's raw clocks (nearest previous sample on
the fps grid) and against the loader; one export runs on a release from the real writer."""

from __future__ import annotations

import importlib.util
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr

from curation.export import ExportError, export_release
from curation.loader import ReleaseDataset, ReleaseReader

_spec = importlib.util.spec_from_file_location(
    "_release_fixture", Path(__file__).with_name("test_loader.py"))
assert _spec is not None and _spec.loader is not None
_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixture)
build_release = _fixture.build_release
CAM = _fixture.CAM
EPISODES = _fixture.EPISODES
FPS = 30


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_release(tmp_path_factory.mktemp("releases"))


@pytest.fixture(scope="module")
def lerobot(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_release(release, "lerobot", tmp_path_factory.mktemp("out"), fps=FPS)


@pytest.fixture(scope="module")
def robomimic(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_release(release, "robomimic", tmp_path_factory.mktemp("out"), fps=FPS,
                          image_size=None)


def _grid(row: dict[str, Any]) -> np.ndarray:
    start, end = row["start_ns"], row["end_ns"]
    n = int((end - start) * FPS // 1_000_000_000) + 1
    return start + np.round(np.arange(n) * 1e9 / FPS).astype(np.int64)


def _expected(release: Path, stream: str, field: str, episode: int) -> np.ndarray:
    """What a frame should hold: the latest sample at or before the frame time."""
    times = zarr.open_array(str(release / "streams" / stream / "time_ns"), mode="r")[:]
    bounds = zarr.open_array(str(release / "streams" / stream / "episode_bounds"), mode="r")[:]
    values = zarr.open_array(str(release / "streams" / stream / field), mode="r")[:]
    b0, b1 = bounds[episode]
    grid = _grid(ReleaseReader(release).episodes[episode])
    rows = [max([r for r in range(b0, b1) if times[r] <= t], default=b0) for t in grid]
    return values[rows]


def _info(root: Path) -> dict[str, Any]:
    return json.loads((root / "meta" / "info.json").read_text())


# --------------------------------------------------------------------------------------
# LeRobot v3
# --------------------------------------------------------------------------------------


def test_lerobot_info_describes_the_dataset(lerobot: Path, release: Path) -> None:
    info = _info(lerobot)
    data = pq.read_table(lerobot / "data" / "chunk-000" / "file-000.parquet")
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert info["total_episodes"] == len(EPISODES)
    assert info["total_frames"] == data.num_rows == sum(len(_grid(r)) for r in
                                                         ReleaseReader(release).episodes)
    assert info["total_tasks"] == 3
    assert info["data_path"].format(chunk_index=0, file_index=0) == \
        "data/chunk-000/file-000.parquet"
    feats = info["features"]
    assert feats["observation.state"] == {"dtype": "float32", "shape": [5],
                                          "names": ["j0", "j1", "j2", "j3", "j4"]}
    assert feats["observation.images.head"]["dtype"] == "video"
    assert feats["observation.images.head"]["shape"] == [24, 32, 3]
    assert {"timestamp", "frame_index", "episode_index", "index", "task_index"} <= set(feats)
    non_video = {k for k, v in feats.items() if v["dtype"] != "video"}
    assert set(data.column_names) == non_video
    assert "nearest-previous" in info["demofab"]["resampling"]
    assert info["demofab"]["features"]["action"] == "joint_commands/position"


def test_lerobot_splits_are_ranges_of_episodes_with_that_split(lerobot: Path) -> None:
    info = _info(lerobot)
    episodes = pq.read_table(lerobot / "meta" / "episodes" / "chunk-000" /
                             "file-000.parquet").to_pylist()
    for split, span in info["splits"].items():
        a, b = (int(x) for x in span.split(":"))
        assert {episodes[i]["demofab/split"] for i in range(a, b)} == {split}
    assert sorted(info["splits"]) == ["test", "train", "val"]


def test_lerobot_frames_hold_the_latest_sample_at_or_before_each_frame_time(
    lerobot: Path, release: Path,
) -> None:
    data = pq.read_table(lerobot / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    episodes = pq.read_table(lerobot / "meta" / "episodes" / "chunk-000" /
                             "file-000.parquet").to_pylist()
    tasks = pq.read_table(lerobot / "meta" / "tasks.parquet").to_pydict()
    task_text = dict(zip(tasks["task_index"], tasks["task"], strict=True))
    assert data["index"] == list(range(len(data["index"])))
    for ep in episodes:
        a, b = ep["dataset_from_index"], ep["dataset_to_index"]
        e = ep["demofab/release_index"]
        assert b - a == ep["length"]
        assert data["episode_index"][a:b] == [ep["episode_index"]] * (b - a)
        assert data["frame_index"][a:b] == list(range(b - a))
        np.testing.assert_allclose(data["timestamp"][a:b], np.arange(b - a) / FPS, atol=1e-6)
        assert {task_text[t] for t in data["task_index"][a:b]} == {EPISODES[e]["task"]}
        assert ep["tasks"] == [EPISODES[e]["task"]]
        for key, (stream, field) in {"observation.state": ("joint_states", "position"),
                                     "action": ("joint_commands", "position")}.items():
            np.testing.assert_array_equal(
                np.array(data[key][a:b], np.float32),
                _expected(release, stream, field, e).astype(np.float32), err_msg=key)


def test_lerobot_frames_equal_the_loader_on_a_fixed_rate_clock(
    lerobot: Path, release: Path,
) -> None:
    data = pq.read_table(lerobot / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    episodes = pq.read_table(lerobot / "meta" / "episodes" / "chunk-000" /
                             "file-000.parquet").to_pylist()
    ds = ReleaseDataset(release, clock=float(FPS),
                        keys=["teleop.left_hand.pose/pose.position"])
    for ep in episodes:
        samples = ds.episode_samples(ep["demofab/release_index"])
        assert len(samples) == ep["length"]
        ours = np.stack([ds[i]["teleop.left_hand.pose/pose.position"] for i in samples])
        a, b = ep["dataset_from_index"], ep["dataset_to_index"]
        exported = np.array(data["action.teleop.left_hand.pose.pose.position"][a:b])
        np.testing.assert_array_equal(exported, ours.astype(np.float32))


def test_lerobot_video_has_one_frame_per_row_at_the_episode_timestamps(
    lerobot: Path, release: Path,
) -> None:
    info = _info(lerobot)
    episodes = pq.read_table(lerobot / "meta" / "episodes" / "chunk-000" /
                             "file-000.parquet").to_pylist()
    path = lerobot / info["video_path"].format(video_key="observation.images.head",
                                               chunk_index=0, file_index=0)
    with av.open(str(path)) as container:
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24"))
                  for f in container.decode(video=0)]
    assert len(frames) == info["total_frames"]
    ds = ReleaseDataset(release, clock=float(FPS), keys=[f"{CAM}/data"])
    for ep in episodes:
        start = ep["videos/observation.images.head/from_timestamp"]
        assert ep["videos/observation.images.head/to_timestamp"] == pytest.approx(
            start + ep["length"] / FPS)
        a = ep["dataset_from_index"]
        samples = ds.episode_samples(ep["demofab/release_index"])
        for k in (0, ep["length"] // 2, ep["length"] - 1):
            t, pixels = frames[a + k]
            assert abs(t - (start + k / FPS)) < 1e-4  # LeRobot's default tolerance_s
            jpeg = ds[samples[k]][f"{CAM}/data"].astype(np.float64)
            mse = np.mean((pixels.astype(np.float64) - jpeg) ** 2)
            assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 28, "video frame is not the JPEG"


def test_lerobot_stats_describe_the_exported_columns(lerobot: Path) -> None:
    stats = json.loads((lerobot / "meta" / "stats.json").read_text())
    data = pq.read_table(lerobot / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    state = np.array(data["observation.state"], np.float64)
    np.testing.assert_allclose(stats["observation.state"]["mean"], state.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["q50"], np.median(state, 0),
                               rtol=1e-6)
    assert stats["observation.state"]["count"] == [len(state)]
    head = stats["observation.images.head"]
    assert np.array(head["mean"]).shape == (3, 1, 1)
    assert all(0 <= v <= 1 for v in np.ravel(head["q99"]))


def test_lerobot_episode_rows_hold_each_episodes_own_statistics(lerobot: Path) -> None:
    data = pq.read_table(lerobot / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    episodes = _episodes(lerobot)
    for ep in episodes:
        a, b = ep["dataset_from_index"], ep["dataset_to_index"]
        state = np.array(data["observation.state"][a:b], np.float64)
        np.testing.assert_allclose(ep["stats/observation.state/mean"], state.mean(0), rtol=1e-6)
        np.testing.assert_allclose(ep["stats/observation.state/max"], state.max(0))
        assert ep["stats/observation.state/count"] == [b - a]
        assert ep["stats/index/min"] == [a] and ep["stats/index/max"] == [b - 1]
        assert np.array(ep["stats/observation.images.head/mean"]).shape == (3, 1, 1)
        assert ep["stats/observation.images.head/count"] == [b - a]
    # Pooled over the episodes they give the dataset's statistics (as LeRobot aggregates).
    stats = json.loads((lerobot / "meta" / "stats.json").read_text())
    counts = np.array([ep["length"] for ep in episodes], np.float64)
    for key in ("observation.state", "observation.images.head"):
        means = np.array([np.ravel(ep[f"stats/{key}/mean"]) for ep in episodes])
        np.testing.assert_allclose(counts @ means / counts.sum(), np.ravel(stats[key]["mean"]),
                                   rtol=1e-6)


def test_lerobot_tasks_parquet_is_indexed_by_task_text_for_pandas(lerobot: Path) -> None:
    table = pq.read_table(lerobot / "meta" / "tasks.parquet")
    meta = json.loads(table.schema.metadata[b"pandas"])
    assert meta["index_columns"] == ["task"]
    assert sorted(table.column("task").to_pylist()) == [
        "pick up the box", "place the box", "wave"]


def test_lerobot_selected_episodes_only(release: Path, tmp_path: Path) -> None:
    root = export_release(release, "lerobot", tmp_path, split="train",
                          features={"observation.state": "joint_states/position"})
    info = _info(root)
    assert info["total_episodes"] == 2 and info["splits"] == {"train": "0:2"}
    assert info["video_path"] is None and set(info["features"]) == {
        "observation.state", "timestamp", "frame_index", "episode_index", "index", "task_index"}


# --------------------------------------------------------------------------------------
# LeRobot v3: files split by size
# --------------------------------------------------------------------------------------


def _episodes(root: Path) -> list[dict[str, Any]]:
    paths = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    rows = [r for p in paths for r in pq.read_table(p).to_pylist()]
    assert [r["episode_index"] for r in rows] == list(range(len(rows)))
    return rows


def _decode(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24"))
                for f in container.decode(video=0)]


def _read_back(root: Path, release: Path) -> dict[str, list[tuple[int, int]]]:
    """Read every episode of an export as LeRobot does: its rows from the data file that
    ``meta/episodes`` names, its frames from each camera's file from ``from_timestamp`` on;
    check them against the release; returns each episode's (chunk, file) per file kind."""
    info = _info(root)
    episodes = _episodes(root)
    videos = [k for k, v in info["features"].items() if v["dtype"] == "video"]
    ds = ReleaseDataset(release, clock=float(FPS), keys=[f"{CAM}/data"])
    tables: dict[Path, dict[str, list[Any]]] = {}
    decoded: dict[Path, list[tuple[float, np.ndarray]]] = {}
    used: dict[Path, int] = {}
    where: dict[str, list[tuple[int, int]]] = {"data": [], "meta": [], **{k: [] for k in videos}}
    for ep in episodes:
        e, n = ep["demofab/release_index"], ep["length"]
        a, b = ep["dataset_from_index"], ep["dataset_to_index"]
        where["meta"].append((ep["meta/episodes/chunk_index"], ep["meta/episodes/file_index"]))
        where["data"].append((ep["data/chunk_index"], ep["data/file_index"]))
        path = root / info["data_path"].format(chunk_index=ep["data/chunk_index"],
                                               file_index=ep["data/file_index"])
        table = tables.setdefault(path, pq.read_table(path).to_pydict())
        rows = [r for r, x in enumerate(table["episode_index"]) if x == ep["episode_index"]]
        assert len(rows) == n == b - a
        used[path] = used.get(path, 0) + n
        assert [table["index"][r] for r in rows] == list(range(a, b))
        assert [table["frame_index"][r] for r in rows] == list(range(n))
        for key, (stream, field) in {"observation.state": ("joint_states", "position"),
                                     "action": ("joint_commands", "position")}.items():
            np.testing.assert_array_equal(
                np.array([table[key][r] for r in rows], np.float32),
                _expected(release, stream, field, e).astype(np.float32), err_msg=key)
        samples = ds.episode_samples(e)
        for key in videos:
            where[key].append((ep[f"videos/{key}/chunk_index"], ep[f"videos/{key}/file_index"]))
            path = root / info["video_path"].format(video_key=key, **dict(zip(
                ("chunk_index", "file_index"), where[key][-1], strict=True)))
            frames = decoded.setdefault(path, _decode(path))
            start, end = ep[f"videos/{key}/from_timestamp"], ep[f"videos/{key}/to_timestamp"]
            assert end == pytest.approx(start + n / FPS)
            mine = [(t, px) for t, px in frames if start - 1e-4 < t < end - 1e-4]
            assert len(mine) == n, (key, e)
            used[path] = used.get(path, 0) + n
            for k, (t, pixels) in enumerate(mine):
                assert abs(t - (start + k / FPS)) < 1e-4  # LeRobot's default tolerance_s
                jpeg = ds[samples[k]][f"{CAM}/data"].astype(np.float64)
                mse = np.mean((pixels.astype(np.float64) - jpeg) ** 2)
                assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 28, (key, e, k)
    # Every file holds whole episodes and nothing else; in path order the files are the
    # dataset's frames in order (LeRobot concatenates data/*/*.parquet sorted by path).
    data_files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    assert sorted(tables) == data_files
    assert all(pq.read_metadata(p).num_rows == used[p] for p in data_files)
    indices = [i for p in data_files for i in pq.read_table(p, columns=["index"])["index"]
               .to_pylist()]
    assert indices == list(range(info["total_frames"]))
    for key in videos:
        files = sorted((root / "videos" / key).glob("chunk-*/file-*.mp4"))
        assert sorted(p for p in decoded if key in p.parts) == files
        assert all(len(decoded[p]) == used[p] for p in files)
    return where


@pytest.fixture(scope="module")
def lerobot_tiny_files(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_release(release, "lerobot", tmp_path_factory.mktemp("out"), fps=FPS,
                          name="tiny", chunks_size=3, data_files_size_in_mb=1e-6,
                          video_files_size_in_mb=1e-6)


def test_lerobot_unsplit_export_reads_back_from_one_file_each(
    lerobot: Path, release: Path,
) -> None:
    where = _read_back(lerobot, release)
    assert set(where) == {"data", "meta", "observation.images.head"}
    assert all(loc == [(0, 0)] * len(EPISODES) for loc in where.values())
    info = _info(lerobot)
    assert (info["chunks_size"], info["data_files_size_in_mb"],
            info["video_files_size_in_mb"]) == (1000, 100, 200)  # LeRobot's defaults


def test_lerobot_files_over_the_size_limit_start_new_files_and_chunks(
    lerobot_tiny_files: Path, lerobot: Path, release: Path,
) -> None:
    # A limit below one episode: each episode alone in its files, 3 files per chunk.
    where = _read_back(lerobot_tiny_files, release)
    expected = [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert where == {key: expected for key in ("data", "meta", "observation.images.head")}
    info = _info(lerobot_tiny_files)
    assert (info["chunks_size"], info["data_files_size_in_mb"],
            info["video_files_size_in_mb"]) == (3, 1e-6, 1e-6)
    # The same frames as the export in one file, only cut differently.
    whole = pq.read_table(lerobot / "data" / "chunk-000" / "file-000.parquet")
    parts = [pq.read_table(p) for p in sorted((lerobot_tiny_files / "data")
                                              .glob("chunk-*/file-*.parquet"))]
    assert pa.concat_tables(parts).equals(whole)


def test_lerobot_a_video_file_takes_episodes_until_the_next_would_reach_the_limit(
    lerobot_tiny_files: Path, release: Path, tmp_path: Path,
) -> None:
    # LeRobot's rule: the next episode goes to a new file when the file's size plus the
    # episode's would reach video_files_size_in_mb. Episode sizes from the one-per-file export.
    info = _info(lerobot_tiny_files)
    sizes = [(lerobot_tiny_files / info["video_path"].format(
        video_key="observation.images.head", chunk_index=c, file_index=f)).stat().st_size
        for c, f in [(0, 0), (0, 1), (0, 2), (1, 0)]]
    limit = sizes[0] + sizes[1] + sizes[2] / 2
    expected, size, file_index = [], 0, 0
    for s in sizes:
        if size and size + s >= limit:
            file_index, size = file_index + 1, 0
        size += s
        expected.append((0, file_index))
    assert expected[:3] == [(0, 0), (0, 0), (0, 1)]
    root = export_release(release, "lerobot", tmp_path, fps=FPS,
                          video_files_size_in_mb=limit / 1024**2)
    where = _read_back(root, release)
    assert where["observation.images.head"] == expected
    assert where["data"] == where["meta"] == [(0, 0)] * len(EPISODES)
    episodes = _episodes(root)
    assert episodes[1]["videos/observation.images.head/from_timestamp"] == pytest.approx(
        episodes[0]["length"] / FPS)


# --------------------------------------------------------------------------------------
# robomimic
# --------------------------------------------------------------------------------------


def test_robomimic_file_has_the_layout_robomimic_reads(robomimic: Path, release: Path) -> None:
    with h5py.File(robomimic, "r") as f:
        demos = sorted(f["data"], key=lambda k: int(k.split("_")[1]))
        assert demos == [f"demo_{i}" for i in range(len(EPISODES))]
        assert f["data"].attrs["total"] == sum(f[f"data/{d}"].attrs["num_samples"] for d in demos)
        env = json.loads(f["data"].attrs["env_args"])
        assert env["env_name"] == "demofab_humanoid"
        assert [m.decode() for m in f["mask/train"][:]] == ["demo_0", "demo_2"]
        assert [m.decode() for m in f["mask/val"][:]] == ["demo_1"]
        assert [m.decode() for m in f["mask/valid"][:]] == ["demo_1"]
        for i, d in enumerate(demos):
            g = f[f"data/{d}"]
            n = g.attrs["num_samples"]
            assert g["actions"].shape[0] == n and g["actions"].dtype == np.float32
            assert g["obs/state"].shape == (n, 5)
            assert g[f"obs/{'head_image'}"].shape == (n, 24, 32, 3)
            assert g["obs/head_image"].dtype == np.uint8
            np.testing.assert_array_equal(g["next_obs/state"][:-1], g["obs/state"][1:])
            assert g["dones"][-1] == 1 and g["dones"][:-1].sum() == 0
            assert g["rewards"][-1] == (1.0 if EPISODES[i]["success"] else 0.0)
            np.testing.assert_array_equal(
                g["obs/state"][:], _expected(release, "joint_states", "position", i)
                .astype(np.float32))
            np.testing.assert_array_equal(
                g["actions"][:],
                _expected(release, "joint_commands", "position", i).astype(np.float32))
            # The other action-role fields go to action_dict, never to the observations.
            assert set(g["action_dict"]) == {"action", "joint_commands.velocity",
                                             "teleop.left_hand.pose.pose.position",
                                             "teleop.left_hand.pose.pose.orientation"}
            assert not any(k.startswith("teleop") or "commands" in k for k in g["obs"])


def test_robomimic_images_are_the_decoded_camera_frames(robomimic: Path, release: Path) -> None:
    ds = ReleaseDataset(release, clock=float(FPS), keys=[f"{CAM}/data"])
    with h5py.File(robomimic, "r") as f:
        images = f["data/demo_1/obs/head_image"][:]
    samples = ds.episode_samples(1)
    for k in (0, 7, len(samples) - 1):
        np.testing.assert_array_equal(images[k], ds[samples[k]][f"{CAM}/data"])


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_unknown_format_lists_the_formats(release: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"unknown export format 'rlds'; formats: lerobot, "
                                          r"rerun, robomimic"):
        export_release(release, "rlds", tmp_path)


def test_an_existing_export_is_not_overwritten_unless_asked(
    release: Path, tmp_path: Path,
) -> None:
    feats = {"observation.state": "joint_states/position", "action": "joint_commands/position"}
    first = export_release(release, "robomimic", tmp_path, features=feats)
    with pytest.raises(ExportError, match="already exists"):
        export_release(release, "robomimic", tmp_path, features=feats)
    again = export_release(release, "robomimic", tmp_path, features=feats, overwrite=True)
    assert again == first and h5py.is_hdf5(again)


def test_bad_options_are_refused_before_anything_is_written(
    release: Path, tmp_path: Path,
) -> None:
    with pytest.raises(ExportError, match=r"feature 'action': .*no numeric field 'torque'"):
        export_release(release, "lerobot", tmp_path,
                       features={"action": "joint_commands/torque"})
    with pytest.raises(ExportError, match=r"fps=29.97"):
        export_release(release, "lerobot", tmp_path, fps=29.97)
    with pytest.raises(ExportError, match=r"chunks_size=0"):
        export_release(release, "lerobot", tmp_path, chunks_size=0)
    with pytest.raises(ExportError, match=r"video_files_size_in_mb=0"):
        export_release(release, "lerobot", tmp_path, video_files_size_in_mb=0)
    assert list(tmp_path.iterdir()) == []


def test_an_export_that_fails_halfway_leaves_nothing_behind(
    release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import curation.export.lerobot as lerobot_export

    real = lerobot_export.image_frames

    def failing(*args: Any, **kwargs: Any) -> Any:
        for i, frame in enumerate(real(*args, **kwargs)):
            if i == 5:
                raise ExportError("camera frame damaged")
            yield frame

    monkeypatch.setattr(lerobot_export, "image_frames", failing)
    with pytest.raises(ExportError, match="camera frame damaged"):
        export_release(release, "lerobot", tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# A release from the real writer
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curation import curate

    from .conftest import record_session

    base = tmp_path_factory.mktemp("real")
    session = record_session(base / "session", episodes=2, seconds=1.0, task="pick",
                             seed=1, start_ns=1_700_000_000_000_000_000)
    return curate([session], base / "releases", "real").release


def test_real_release_exports_every_camera_with_one_frame_per_row(
    real_release: Path, tmp_path: Path,
) -> None:
    root = export_release(real_release, "lerobot", tmp_path)
    info = _info(root)
    cams = [k for k, v in info["features"].items() if v["dtype"] == "video"]
    assert sorted(cams) == ["observation.images.head", "observation.images.left_wrist",
                            "observation.images.right_wrist"]
    assert info["features"]["observation.state"]["shape"] == [43]
    for cam in cams:
        path = root / info["video_path"].format(video_key=cam, chunk_index=0, file_index=0)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == (640, 480)
            times = [f.pts * f.time_base for f in container.decode(stream)]
        assert len(times) == info["total_frames"]
        assert times == [Fraction(i, FPS) for i in range(len(times))]
    h5 = export_release(real_release, "robomimic", tmp_path)
    with h5py.File(h5, "r") as f:
        assert f["data"].attrs["total"] == info["total_frames"]
        assert f["data/demo_0/obs/head_image"].shape[1:] == (84, 84, 3)


def test_export_out_naming_a_file_writes_that_file(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from demofab.cli import main

    out = tmp_path / "exports" / "demos.hdf5"
    assert main(["export", str(release), "--format", "robomimic", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"to {out}")
    assert [p.name for p in out.parent.iterdir()] == ["demos.hdf5"] and h5py.is_hdf5(out)
    with h5py.File(out) as h5:
        assert len(h5["data"]) == len(ReleaseReader(release).episodes)
    assert main(["export", str(release), "--format", "robomimic", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(release), "--format", "robomimic", "--out", str(out),
                 "--overwrite"]) == 0 and h5py.is_hdf5(out)


def test_export_out_naming_a_directory_writes_a_directory_of_that_name(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from demofab.cli import main

    rel = ReleaseReader(release)
    ds = tmp_path / "lerobot_ds"
    assert main(["export", str(release), "--format", "lerobot", "--out", str(ds)]) == 0
    info = json.loads((ds / "meta" / "info.json").read_text())
    assert info["total_episodes"] == len(rel.episodes)
    assert [p.name for p in tmp_path.iterdir()] == ["lerobot_ds"]
    demos = tmp_path / "robomimic_out"
    assert main(["export", str(release), "--format", "robomimic", "--out", str(demos)]) == 0
    assert [p.name for p in demos.iterdir()] == [f"{rel.name}-v{rel.version}.hdf5"]
    capsys.readouterr()
    assert main(["export", str(release), "--format", "lerobot", "--out",
                 str(tmp_path / "x.hdf5")]) == 2
    assert "a LeRobot dataset is a directory" in capsys.readouterr().err
    assert not (tmp_path / "x.hdf5").exists()
