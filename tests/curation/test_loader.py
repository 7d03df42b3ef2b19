"""The release loader: its Zarr v3 reader against zarr-python and tensorstore, delta_timestamps
alignment against the raw int64 clocks, decoded JPEG frames, filters, pickling and worker
processes. The release here is written with zarr-python following docs/release-format.md,
with small chunks and shards so that every read crosses chunk and shard boundaries."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zarr
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    ShardingCodec,
    TransposeCodec,
    ZstdCodec,
)

from curation.errors import ReleaseError
from curation.loader import LoaderError, ReleaseDataset, ReleaseReader, ShardedArrayReader

T0 = 1_750_000_000_000_000_000
JOINTS = ["j0", "j1", "j2", "j3", "j4"]
CAM = "camera.head.image_raw.compressed"
FLAG_BITS = {"truncated": 0, "decode_error": 1, "frozen": 8, "failed": 17}


# --------------------------------------------------------------------------------------
# A release written by hand with zarr-python, following docs/release-format.md
# --------------------------------------------------------------------------------------


def _times(rng: np.random.Generator, start: int, seconds: float, rate: float,
           phase_s: float = 0.0) -> np.ndarray:
    period = 1e9 / rate
    n = int(seconds * rate)
    jitter = rng.uniform(-0.2, 0.2, n) * period
    return np.sort(start + np.round(phase_s * 1e9 + np.arange(n) * period + jitter)).astype(np.int64)


def _jpeg(frame: int, cam: int) -> bytes:
    img = np.zeros((24, 32, 3), np.uint8)
    img[..., 0] = (frame * 7) % 256
    img[..., 1] = np.arange(32, dtype=np.uint8)[None, :] * 8
    img[..., 2] = cam * 60 + np.arange(24, dtype=np.uint8)[:, None] * 4
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _array(group_path: Path, name: str, data: np.ndarray, rows: int, shard_rows: int,
           compress: bool = True, attributes: dict | None = None) -> None:
    chunks = (rows, *data.shape[1:])
    shards = (shard_rows, *data.shape[1:])
    zarr.create_array(
        store=str(group_path / name), data=data, chunks=chunks, shards=shards,
        compressors=ZstdCodec(level=3) if compress else None, fill_value=0,
        attributes=attributes or {},
    )


def _group(path: Path, attributes: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "zarr.json").write_text(json.dumps(
        {"zarr_format": 3, "node_type": "group", "attributes": attributes}))


EPISODES = [
    dict(task="pick up the box", success=True, operator="ana", split="train",
         quality_score=0.9, flags=0),
    dict(task="place the box", success=False, operator="bo", split="val",
         quality_score=0.4, flags=(1 << 17) | (1 << 8)),
    dict(task="pick up the box", success=True, operator="ana", split="train",
         quality_score=0.7, flags=0),
    dict(task="wave", success=None, operator="cy", split="test",
         quality_score=0.8, flags=0),
]


def build_release(root: Path, *, seconds: float = 1.0, rows: int = 64, shard_rows: int = 256,
                  byte_chunk: int = 4096, byte_shard: int = 65536, seed: int = 0) -> Path:
    """RELEASES/demo/v1 with joint_states (500 Hz, reference), joint_commands (500 Hz),
    teleop.left_hand.pose (90 Hz) and a camera (30 Hz, starting 5 ms after the joints)."""
    rng = np.random.default_rng(seed)
    path = root / "demo" / "v1"
    specs = {
        "joint_states": dict(rate=500.0, phase=0.0, type="sensor_msgs/msg/JointState",
                             role="observation"),
        "joint_commands": dict(rate=500.0, phase=0.0007, type="sensor_msgs/msg/JointState",
                               role="action"),
        "teleop.left_hand.pose": dict(rate=90.0, phase=0.002,
                                      type="geometry_msgs/msg/PoseStamped", role="action"),
        CAM: dict(rate=30.0, phase=0.005, type="sensor_msgs/msg/CompressedImage",
                  role="camera"),
    }
    starts = [T0 + e * 10_000_000_000 for e in range(len(EPISODES))]
    per_stream: dict[str, list[np.ndarray]] = {s: [] for s in specs}
    for start in starts:
        for s, spec in specs.items():
            per_stream[s].append(_times(rng, start, seconds, spec["rate"], spec["phase"]))
    times = {s: np.concatenate(v) for s, v in per_stream.items()}
    bounds = {}
    for s, parts in per_stream.items():
        ends = np.cumsum([len(p) for p in parts])
        bounds[s] = np.stack([ends - [len(p) for p in parts], ends], axis=1).astype(np.int64)

    _group(path / "streams", {})
    _group(path / "sync", {})
    for s, spec in specs.items():
        t = times[s]
        n = len(t)
        attrs: dict[str, Any] = {
            "topic": "/" + s.replace(".", "/"), "type": spec["type"], "role": spec["role"],
            "clock": "header_stamp", "count": n, "rate_hz": spec["rate"],
            "measured_rate_hz": spec["rate"], "fields": [], "ragged": [], "constants": {},
        }
        g = path / "streams" / s
        g.mkdir(parents=True)
        _array(g, "time_ns", t, rows, shard_rows)
        _array(g, "log_time_ns", t + 1_000_000, rows, shard_rows)
        _array(g, "episode_bounds", bounds[s], rows, shard_rows)
        secs = (t - T0) / 1e9
        if spec["type"].endswith("JointState"):
            position = secs[:, None] * 10 + np.arange(len(JOINTS))[None, :]
            _array(g, "position", position, rows, shard_rows)
            _array(g, "velocity", np.cos(position), rows, shard_rows)
            attrs["fields"] = ["position", "velocity"]
            attrs["joint_names"] = JOINTS
        elif spec["type"].endswith("PoseStamped"):
            _array(g, "pose.position", np.stack([secs, -secs, secs * 2], 1), rows, shard_rows,
                   attributes={"fields": ["x", "y", "z"]})
            quat = np.tile([0.0, 0.0, 0.0, 1.0], (n, 1))
            _array(g, "pose.orientation", quat, rows, shard_rows,
                   attributes={"fields": ["x", "y", "z", "w"]})
            attrs["fields"] = ["pose.position", "pose.orientation"]
        else:
            frames = [_jpeg(i, 0) for i in range(n)]
            offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])]).astype(np.int64)
            (g / "data").mkdir()
            _group(g / "data", {})
            _array(g / "data", "values", np.frombuffer(b"".join(frames), np.uint8),
                   byte_chunk, byte_shard, compress=False)
            _array(g / "data", "offsets", offsets, rows, shard_rows)
            attrs["ragged"] = ["data"]
            attrs["constants"] = {"format": "jpeg"}
            attrs["camera"] = {"format": "jpeg", "width": 32, "height": 24}
        _group(g, attrs)
    ref = "joint_states"
    for s in specs:
        if s == ref:
            continue
        for a, b in ((s, ref), (ref, s)):
            out = np.empty(len(times[a]), np.int64)
            for e in range(len(EPISODES)):
                a0, a1 = bounds[a][e]
                b0, b1 = bounds[b][e]
                idx = np.searchsorted(times[b][b0:b1], times[a][a0:a1], side="right") - 1
                out[a0:a1] = np.where(idx >= 0, idx + b0, -1)
            _array(path / "sync", f"{a}__to__{b}", out, rows, shard_rows)

    table = []
    for e, (row, start) in enumerate(zip(EPISODES, starts, strict=True)):
        end = max(int(times[s][bounds[s][e][1] - 1]) for s in specs)
        table.append({
            "index": e, "episode_id": f"ep{e}", "key": f"{'ab' * 32}:{e}", **row,
            "outcome": {True: "success", False: "failure", None: "unknown"}[row["success"]],
            "session": "s1", "robot": "demofab_humanoid",
            "flag_names": [n for n, b in FLAG_BITS.items() if row["flags"] >> b & 1],
            "flag_reasons": [], "interventions": 0, "notes": [],
            "start_ns": start, "end_ns": end, "duration_s": (end - start) / 1e9,
            "streams": {s: int(bounds[s][e][1] - bounds[s][e][0]) for s in specs},
            "annotations": [], "labels_source": {},
            "provenance": {"kind": "recording", "source_file": f"/data/episode_{e:04d}.mcap"},
        })
    (path / "episodes.json").write_text(json.dumps({"format_version": 1, "episodes": table}))
    stats: dict[str, Any] = {"format_version": 1, "quantiles": [0.01, 0.5, 0.99], "streams": {}}
    for s in ("joint_states", "joint_commands"):
        pos = zarr.open_array(str(path / "streams" / s / "position"), mode="r")[:]
        stats["streams"][s] = {"position": {
            "dtype": "float64", "shape": [len(JOINTS)], "count": [len(pos)] * len(JOINTS),
            "mean": pos.mean(0).tolist(), "std": pos.std(0).tolist(),
            "min": pos.min(0).tolist(), "max": pos.max(0).tolist(),
            "q": {str(q): np.quantile(pos, q, axis=0).tolist() for q in (0.01, 0.5, 0.99)}}}
    (path / "stats.json").write_text(json.dumps(stats))
    _group(path, {"demofab": {
        "format": "demofab.release", "format_version": 1, "name": "demo", "version": 1,
        "parent_version": None, "created_at": "2025-01-01T00:00:00Z", "fingerprint": "0" * 64,
        "software": {}, "streams": sorted(specs), "sync_reference": ref,
        "episodes": len(EPISODES), "episode_table": "episodes.json", "stats": "stats.json",
        "manifest": "manifest.json", "flag_bits": FLAG_BITS, "config": {},
    }})
    files = {
        str(p.relative_to(path)): {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                                   "size": p.stat().st_size}
        for p in sorted(path.rglob("*")) if p.is_file()
    }
    (path / "manifest.json").write_text(json.dumps(
        {"format_version": 1, "name": "demo", "version": 1, "files": files,
         "release_sha256": "0" * 64}))
    return path


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_release(tmp_path_factory.mktemp("releases"))


def zread(path: Path) -> np.ndarray:
    return zarr.open_array(str(path), mode="r")[...]


def true_rows(times: np.ndarray, b0: int, b1: int, q: np.ndarray) -> np.ndarray:
    """Reference alignment, written the slow way: latest row at or before q in [b0, b1)."""
    out = []
    for qi in q:
        cand = [r for r in range(b0, b1) if times[r] <= qi]
        out.append(cand[-1] if cand else b0)
    return np.array(out)


# --------------------------------------------------------------------------------------
# ShardedArrayReader
# --------------------------------------------------------------------------------------

CODEC_CASES = {
    "sharded-zstd": dict(shards=(96, 3), compressors=ZstdCodec(level=3)),
    "sharded-raw": dict(shards=(96, 3), compressors=None),
    "sharded-gzip": dict(shards=(96, 3), compressors=GzipCodec(level=5)),
    "sharded-blosc": dict(shards=(96, 3), compressors=BloscCodec(cname="lz4", shuffle="shuffle")),
    "sharded-crc32c": dict(shards=(96, 3), compressors=[ZstdCodec(level=1), Crc32cCodec()]),
    "big-endian": dict(shards=(96, 3), serializer=BytesCodec(endian="big")),
    "transpose": dict(shards=(96, 3), filters=[TransposeCodec(order=(1, 0))]),
    "not-sharded": dict(compressors=ZstdCodec(level=3)),
    "v2-keys": dict(chunk_key_encoding={"name": "v2", "separator": "."},
                    compressors=ZstdCodec(level=3)),
    "dot-separator": dict(shards=(96, 3), chunk_key_encoding={"name": "default", "separator": "."}),
}


@pytest.mark.parametrize("case", sorted(CODEC_CASES))
def test_reader_returns_what_zarr_python_returns(tmp_path: Path, case: str) -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(1000, 3))
    arr = zarr.create_array(store=str(tmp_path / "a"), shape=data.shape, dtype="float64",
                            chunks=(32, 3), fill_value=0, **CODEC_CASES[case])
    arr[:] = data
    reader = ShardedArrayReader(tmp_path / "a")
    assert reader.native, f"{case} should be decoded natively"
    rows = rng.integers(0, 1000, 200)
    np.testing.assert_array_equal(reader.take(rows), arr.oindex[rows])
    np.testing.assert_array_equal(reader.take(np.array([5, 6, 7])), data[5:8])
    np.testing.assert_array_equal(reader.read(), data)
    np.testing.assert_array_equal(reader.read(31, 977), data[31:977])


def test_reader_index_at_start_of_shard(tmp_path: Path) -> None:
    data = np.arange(500 * 2, dtype=np.int32).reshape(500, 2)
    codec = ShardingCodec(chunk_shape=(16, 2), codecs=[BytesCodec(), ZstdCodec()],
                          index_location="start")
    arr = zarr.create_array(store=str(tmp_path / "a"), shape=data.shape, dtype="int32",
                            chunks=(64, 2), serializer=codec, compressors=None, filters=None)
    arr[:] = data
    reader = ShardedArrayReader(tmp_path / "a")
    assert reader.native
    np.testing.assert_array_equal(reader.take(np.array([499, 0, 250])), data[[499, 0, 250]])


def test_reader_fills_chunks_that_were_never_written(tmp_path: Path) -> None:
    arr = zarr.create_array(store=str(tmp_path / "a"), shape=(300,), dtype="float32",
                            chunks=(10,), shards=(100,), fill_value=-1.5)
    arr[120:130] = 7.0  # one chunk of the second shard; shards 0 and 2 never exist
    reader = ShardedArrayReader(tmp_path / "a")
    np.testing.assert_array_equal(reader.read(), arr[:])
    assert reader.read()[0] == -1.5 and reader.read()[125] == 7.0


def test_reader_reads_byte_ranges_across_chunks_and_shards(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(0, 256, 10_000, dtype=np.uint8)
    zarr.create_array(store=str(tmp_path / "v"), data=data, chunks=(256,), shards=(1024,),
                      compressors=None)
    reader = ShardedArrayReader(tmp_path / "v")
    for a, b in [(0, 1), (250, 260), (1000, 1100), (0, 10_000), (9_999, 10_000), (700, 3000)]:
        assert reader.read_bytes(a, b) == data[a:b].tobytes()


def test_reader_refuses_a_damaged_shard_index(tmp_path: Path) -> None:
    arr = zarr.create_array(store=str(tmp_path / "a"), shape=(100,), dtype="int64",
                            chunks=(10,), shards=(50,))
    arr[:] = np.arange(100)
    shard = tmp_path / "a" / "c" / "1"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # inside the index
    shard.write_bytes(bytes(raw))
    reader = ShardedArrayReader(tmp_path / "a")
    np.testing.assert_array_equal(reader.read(0, 50), np.arange(50))
    with pytest.raises(ReleaseError, match=r"c/1: shard index crc32c mismatch"):
        reader.read(50, 100)


def test_reader_falls_back_to_zarr_python_for_unknown_codecs(tmp_path: Path) -> None:
    from zarr.codecs.numcodecs import Delta

    data = np.arange(400, dtype=np.int64) * 3
    arr = zarr.create_array(store=str(tmp_path / "a"), data=data, chunks=(40,),
                            filters=[Delta(dtype="int64")])
    reader = ShardedArrayReader(tmp_path / "a")
    assert not reader.native
    np.testing.assert_array_equal(reader.take(np.array([399, 3])), arr[[399, 3]])


def test_every_release_array_reads_as_tensorstore_reads_it(release: Path) -> None:
    ts = pytest.importorskip("tensorstore")
    arrays = [p.parent for p in release.rglob("zarr.json")
              if json.loads(p.read_text())["node_type"] == "array"]
    assert len(arrays) > 20
    for path in arrays:
        expected = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}},
                           open=True).result().read().result()
        np.testing.assert_array_equal(ShardedArrayReader(path).read(), expected, err_msg=str(path))


# --------------------------------------------------------------------------------------
# ReleaseReader
# --------------------------------------------------------------------------------------


def test_release_opens_from_its_name_directory_at_the_newest_version(release: Path) -> None:
    import shutil

    shutil.copytree(release, release.parent / "v2")
    newer = json.loads((release.parent / "v2" / "zarr.json").read_text())
    newer["attributes"]["demofab"]["version"] = 2
    (release.parent / "v2" / "zarr.json").write_text(json.dumps(newer))
    try:
        assert ReleaseReader(release.parent).version == 2
        assert ReleaseReader(release).version == 1
    finally:
        shutil.rmtree(release.parent / "v2")


def test_release_with_an_unknown_format_version_is_refused(tmp_path: Path, release: Path) -> None:
    import shutil

    copy = tmp_path / "demo" / "v1"
    shutil.copytree(release, copy)
    meta = json.loads((copy / "zarr.json").read_text())
    meta["attributes"]["demofab"]["format_version"] = 99
    (copy / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(ReleaseError, match=r"format_version 99 is not supported"):
        ReleaseReader(copy)


def test_missing_release_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="neither a release version"):
        ReleaseReader(tmp_path / "nope")


def test_frames_are_the_recorded_jpeg_bytes(release: Path) -> None:
    rel = ReleaseReader(release)
    values = zread(release / "streams" / CAM / "data" / "values")
    offsets = zread(release / "streams" / CAM / "data" / "offsets")
    for row in (0, 1, 29, 30, len(offsets) - 2):
        assert rel.payload(CAM, row) == values[offsets[row]:offsets[row + 1]].tobytes()


# --------------------------------------------------------------------------------------
# ReleaseDataset
# --------------------------------------------------------------------------------------

ACTIONS = [i / 50 for i in range(16)]


def test_samples_follow_the_reference_stream_rows(release: Path) -> None:
    ds = ReleaseDataset(release, keys=["joint_states/position"])
    t = zread(release / "streams" / "joint_states" / "time_ns")
    pos = zread(release / "streams" / "joint_states" / "position")
    assert ds.clock == "joint_states" and len(ds) == len(t)
    for i in (0, 1, 499, 500, len(ds) - 1):
        s = ds[i]
        assert s["time_ns"] == t[i]
        np.testing.assert_array_equal(s["joint_states/position"], pos[i])
    first_of_ep1 = 500
    assert ds[first_of_ep1]["episode_index"] == 1 and ds[first_of_ep1]["timestamp"] == 0.0
    assert ds[first_of_ep1]["task"] == "place the box"
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_delta_timestamps_pick_the_latest_sample_at_or_before_each_query(release: Path) -> None:
    ds = ReleaseDataset(release, delta_timestamps={
        "joint_commands/position": ACTIONS,
        "teleop.left_hand.pose/pose.position": [-0.1, -0.05, 0.0],
        "joint_states/velocity": [-0.01, 0.0],  # delta 0 lands exactly on a sample
    })
    streams = {s: (zread(release / "streams" / s / "time_ns"),
                   zread(release / "streams" / s / "episode_bounds"))
               for s in ("joint_states", "joint_commands", "teleop.left_hand.pose")}
    cmd = zread(release / "streams" / "joint_commands" / "position")
    pose = zread(release / "streams" / "teleop.left_hand.pose" / "pose.position")
    vel = zread(release / "streams" / "joint_states" / "velocity")
    rng = np.random.default_rng(3)
    ref_t, ref_b = streams["joint_states"]
    for i in [0, 3, 499, 480, *rng.integers(0, len(ds), 40)]:
        s = ds[int(i)]
        e = int(s["episode_index"])
        t = int(ref_t[i])
        t0, t1 = ref_t[ref_b[e][0]], ref_t[ref_b[e][1] - 1]
        for key, deltas, values in (("joint_commands/position", ACTIONS, cmd),
                                    ("teleop.left_hand.pose/pose.position", [-0.1, -0.05, 0.0],
                                     pose),
                                    ("joint_states/velocity", [-0.01, 0.0], vel)):
            times, bounds = streams[key.split("/")[0]]
            q = t + np.round(np.array(deltas) * 1e9).astype(np.int64)
            rows = true_rows(times, *bounds[e], np.clip(q, t0, t1))
            np.testing.assert_array_equal(s[key], values[rows], err_msg=f"{key} sample {i}")
            assert s[key].shape == (len(deltas), values.shape[1])
            expected_pad = (q < t0) | (q > t1) | (np.clip(q, t0, t1) < times[bounds[e][0]])
            np.testing.assert_array_equal(s[f"{key}_is_pad"], expected_pad)


def test_windows_running_past_the_episode_end_are_padded_with_its_last_sample(
    release: Path,
) -> None:
    ds = ReleaseDataset(release, delta_timestamps={"joint_commands/position": ACTIONS})
    last = len(ReleaseDataset(release, episodes=[0], keys=["joint_states/position"])) - 1
    s = ds[last]
    assert s["episode_index"] == 0
    assert s["joint_commands/position_is_pad"][1:].all()
    np.testing.assert_array_equal(s["joint_commands/position"][-1], s["joint_commands/position"][1])


def test_current_rows_match_the_stored_sync_index(release: Path) -> None:
    ds = ReleaseDataset(release, keys=["teleop.left_hand.pose/pose.position"])
    sync = zread(release / "sync" / "joint_states__to__teleop.left_hand.pose")
    for i in range(0, len(ds), 37):
        rows, pad = ds.rows("teleop.left_hand.pose/pose.position", *ds.locate(i))
        assert rows[0] == sync[i] or (sync[i] == -1 and pad[0])


def test_nearest_alignment_picks_the_closest_sample(release: Path) -> None:
    ds = ReleaseDataset(release, keys=["teleop.left_hand.pose/pose.position"], align="nearest")
    times = zread(release / "streams" / "teleop.left_hand.pose" / "time_ns")
    bounds = zread(release / "streams" / "teleop.left_hand.pose" / "episode_bounds")
    for i in range(10, len(ds), 53):
        e, t = ds.locate(i)
        (row,), _ = ds.rows("teleop.left_hand.pose/pose.position", e, t)
        ep_times = times[bounds[e][0]:bounds[e][1]]
        assert abs(times[row] - t) == np.abs(ep_times - t).min()


def test_camera_frames_decode_to_what_opencv_decodes_from_the_stored_bytes(release: Path) -> None:
    ds = ReleaseDataset(release, delta_timestamps={f"{CAM}/data": [-1 / 30, 0.0]})
    values = zread(release / "streams" / CAM / "data" / "values")
    offsets = zread(release / "streams" / CAM / "data" / "offsets")
    for i in (0, 17, 1000, len(ds) - 1):
        s = ds[i]
        rows, _ = ds.rows(f"{CAM}/data", *ds.locate(i))
        frames = s[f"{CAM}/data"]
        assert frames.shape == (2, 24, 32, 3) and frames.dtype == np.uint8
        for frame, row in zip(frames, rows, strict=True):
            raw = values[offsets[row]:offsets[row + 1]]
            bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR)
            np.testing.assert_array_equal(frame, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    # The camera starts 5 ms after the joints: the first sample has no frame yet.
    assert ds[0][f"{CAM}/data_is_pad"].tolist() == [True, True]
    bgr = ReleaseDataset(release, keys=[f"{CAM}/data"], color="bgr")[40][f"{CAM}/data"]
    rows, _ = ds.rows(f"{CAM}/data", *ds.locate(40))
    raw = values[offsets[rows[-1]]:offsets[rows[-1] + 1]]
    np.testing.assert_array_equal(bgr, cv2.imdecode(raw, cv2.IMREAD_COLOR))


def test_fixed_rate_clock_samples_each_episode_from_start_to_end(release: Path) -> None:
    ds = ReleaseDataset(release, clock=50.0, keys=["joint_states/position"])
    table = ReleaseReader(release).episodes
    expected = sum(int((r["end_ns"] - r["start_ns"]) // 20_000_000) + 1 for r in table)
    assert len(ds) == expected
    for e, row in enumerate(table):
        samples = ds.episode_samples(e)
        times = [ds.locate(i)[1] for i in samples]
        assert times[0] == row["start_ns"] and times[-1] <= row["end_ns"]
        assert set(np.diff(times)) == {20_000_000}
    assert ds.fps == 50.0


def test_default_keys_are_every_numeric_field_and_every_camera(release: Path) -> None:
    ds = ReleaseDataset(release)
    assert set(ds.keys) == {
        "joint_states/position", "joint_states/velocity", "joint_commands/position",
        "joint_commands/velocity", "teleop.left_hand.pose/pose.position",
        "teleop.left_hand.pose/pose.orientation", f"{CAM}/data"}
    feats = ds.features
    assert feats["joint_states/position"]["names"] == JOINTS
    assert feats["teleop.left_hand.pose/pose.position"]["names"] == ["x", "y", "z"]
    assert feats[f"{CAM}/data"]["shape"] == [24, 32, 3]


@pytest.mark.parametrize(("kwargs", "episodes"), [
    (dict(split="train"), [0, 2]),
    (dict(split=["val", "test"]), [1, 3]),
    (dict(where={"task": "pick up the box", "success": True}), [0, 2]),
    (dict(where={"operator": ["bo", "cy"]}), [1, 3]),
    (dict(where={"quality_score": lambda q: q > 0.75}), [0, 3]),
    (dict(min_quality=0.75), [0, 3]),
    (dict(exclude_flags=["failed"]), [0, 2, 3]),
    (dict(episodes=[3, 1], split="val"), [1]),
    (dict(filter=lambda row: row["episode_id"] != "ep0"), [1, 2, 3]),
])
def test_filters_select_episodes(release: Path, kwargs: dict, episodes: list[int]) -> None:
    ds = ReleaseDataset(release, keys=["joint_states/position"], **kwargs)
    assert ds.episode_indices == episodes
    seen = {int(ds[i]["episode_index"]) for i in range(0, len(ds), 50)}
    assert seen == set(episodes)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(keys=["joint_states/torque"]), r"no field 'torque'; fields: position, velocity"),
    (dict(keys=["nope/position"]), r"no stream 'nope'; streams: .*joint_states"),
    (dict(keys=["joint_states"]), r"expected '<stream>/<field>'"),
    (dict(where={"colour": "red"}), r"no column 'colour'"),
    (dict(exclude_flags=["wobbly"]), r"flag 'wobbly' unknown; flags: truncated"),
    (dict(split="holdout"), r"holds no episode"),
    (dict(clock=-5), r"positive number of Hz"),
    (dict(align="linear"), r"expected one of previous, nearest"),
    (dict(delta_timestamps={"joint_states/position": []}), r"is empty"),
])
def test_bad_arguments_are_refused_with_what_was_expected(
    release: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(LoaderError, match=message):
        ReleaseDataset(release, **{"keys": ["joint_states/position"], **kwargs})


def _sample_in_child(args: tuple[bytes, list[int]]) -> list[dict[str, Any]]:
    ds = pickle.loads(args[0])
    return [ds[i] for i in args[1]]


def _assert_same_samples(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataset_pickles_and_reads_the_same_in_worker_processes(
    release: Path, method: str
) -> None:
    ds = ReleaseDataset(release, delta_timestamps={
        "joint_commands/position": ACTIONS, f"{CAM}/data": [0.0]},
        keys=["joint_states/position"])
    indices = [0, 5, 600, 1200, len(ds) - 1]
    expected = [ds[i] for i in indices]  # opens descriptors in the parent before forking
    blob = pickle.dumps(ds)
    assert len(blob) < 2_000_000
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        results = pool.map(_sample_in_child, [(blob, indices[:3]), (blob, indices[3:])])
    _assert_same_samples(expected, results[0] + results[1])
    _assert_same_samples(expected, [pickle.loads(blob)[i] for i in indices])


# --------------------------------------------------------------------------------------
# A release from the real writer
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curation import curate

    from .conftest import record_session

    base = tmp_path_factory.mktemp("real")
    session = record_session(base / "session", episodes=2, seconds=1.0, task="pick",
                             seed=2, start_ns=1_700_000_000_000_000_000)
    return curate([session], base / "releases", "real").release


def test_real_release_reads_natively_and_as_zarr_python_reads_it(real_release: Path) -> None:
    arrays = [p.parent for p in real_release.rglob("zarr.json")
              if json.loads(p.read_text())["node_type"] == "array"]
    for path in arrays:
        reader = ShardedArrayReader(path)
        assert reader.native, f"{path} went through zarr-python"
        np.testing.assert_array_equal(reader.read(), zread(path), err_msg=str(path))


def test_real_release_samples_align_with_its_sync_indices(real_release: Path) -> None:
    cams = [s for s in ReleaseReader(real_release).streams if s.startswith("camera.")]
    ds = ReleaseDataset(real_release, keys=["joint_states/position"] + [f"{c}/data" for c in cams],
                        delta_timestamps={"joint_commands/position": ACTIONS})
    assert len(ds) == 1000 and len(cams) == 3
    for c in cams:
        sync = zread(real_release / "sync" / f"joint_states__to__{c}")
        values = zread(real_release / "streams" / c / "data" / "values")
        offsets = zread(real_release / "streams" / c / "data" / "offsets")
        for i in (40, 510, 999):
            image = ds[i][f"{c}/data"]
            row = sync[i]
            raw = values[offsets[row]:offsets[row + 1]]
            np.testing.assert_array_equal(image, cv2.imdecode(raw, cv2.IMREAD_COLOR_RGB))
            assert image.shape == (480, 640, 3)
    sync = zread(real_release / "sync" / "joint_states__to__joint_commands")
    cmd = zread(real_release / "streams" / "joint_commands" / "position")
    s = ds[100]
    np.testing.assert_array_equal(s["joint_commands/position"][0], cmd[sync[100]])


def test_public_names_import() -> None:
    import curation.export
    import curation.loader

    for module in (curation.loader, curation.export):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"
