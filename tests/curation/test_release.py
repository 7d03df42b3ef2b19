"""A curated release: layout, readback with tensorstore, bytes, sync, stats, manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from mcap.reader import make_reader

from curation import curate, release_summary
from curation.decode import ragged_from
from curation.errors import ReleaseError
from curation.manifest import verify
from curation.release import open_release
from recorder.types import deserialize

CAM = "camera.head.image_raw.compressed"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, clean_session: Path) -> Path:
    return curate([clean_session], tmp_path_factory.mktemp("rel"), "cups").release


def test_release_is_version_one_with_the_documented_groups(release: Path) -> None:
    assert release.name == "v1"
    assert release.stat().st_mode & 0o755 == 0o755  # readable by the labs, not only the owner
    attrs = zarr.open_group(str(release), mode="r").attrs["demofab"]
    assert attrs["format_version"] == 1 and attrs["episodes"] == 2
    assert attrs["sync_reference"] == "joint_states"
    for f in ("episodes.json", "stats.json", "manifest.json", "streams/joint_states/position/zarr.json",
              f"streams/{CAM}/data/values/zarr.json", "sync/joint_states__to__imu/zarr.json"):
        assert (release / f).exists(), f


def test_every_array_reads_the_same_with_tensorstore(release: Path) -> None:
    import tensorstore as ts

    g = zarr.open_group(str(release), mode="r")
    checked = 0
    for meta in release.rglob("zarr.json"):
        if json.loads(meta.read_text())["node_type"] != "array":
            continue
        rel = meta.parent.relative_to(release).as_posix()
        t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(meta.parent)}},
                    read=True).result()
        np.testing.assert_array_equal(t.read().result(), g[rel][...])
        checked += 1
    assert checked > 40


def test_camera_frames_are_the_recorded_jpeg_bytes(release: Path, clean_session: Path) -> None:
    first = sorted(clean_session.glob("episode_*.mcap"))[0]
    with open(first, "rb") as f:
        recorded = [bytes(deserialize(m.data, s.name).data) for s, c, m in
                    make_reader(f).iter_messages(topics=["/camera/head/image_raw/compressed"])]
    g = open_release(release)
    a, b = g[f"streams/{CAM}/episode_bounds"][0]
    off = g[f"streams/{CAM}/data/offsets"][:]
    values = g[f"streams/{CAM}/data/values"]
    got = [bytes(values[off[i]:off[i + 1]]) for i in range(a, b)]
    assert got == recorded and got[0][:2] == b"\xff\xd8"


def test_episode_bounds_cover_every_row_once(release: Path) -> None:
    g = open_release(release)
    for name in g["streams"].group_keys():
        b = g[f"streams/{name}/episode_bounds"][:]
        n = g[f"streams/{name}/time_ns"].shape[0]
        assert b[0, 0] == 0 and b[-1, 1] == n and (b[1:, 0] == b[:-1, 1]).all()


def test_sync_index_is_the_latest_sample_at_or_before(release: Path) -> None:
    g = open_release(release)
    t_cam = g[f"streams/{CAM}/time_ns"][:]
    t_js = g["streams/joint_states/time_ns"][:]
    idx = g[f"sync/{CAM}__to__joint_states"][:]
    assert len(idx) == len(t_cam)
    ok = idx >= 0
    assert ok.mean() > 0.9
    assert (t_js[idx[ok]] <= t_cam[ok]).all()
    nxt = np.minimum(idx[ok] + 1, len(t_js) - 1)
    assert ((t_js[nxt] > t_cam[ok]) | (nxt == idx[ok])).all()


def test_quantiles_are_exact_over_all_rows(release: Path) -> None:
    stats = json.loads((release / "stats.json").read_text())
    pos = open_release(release)["streams/joint_states/position"][:]
    got = np.array(stats["streams"]["joint_states"]["position"]["q"]["0.05"])
    np.testing.assert_allclose(got, np.quantile(pos, 0.05, axis=0))
    assert stats["streams"]["joint_states"]["position"]["count"][0] == len(pos)


def test_episode_table_carries_labels_and_provenance(release: Path, clean_session: Path) -> None:
    eps = json.loads((release / "episodes.json").read_text())["episodes"]
    assert [e["index"] for e in eps] == [0, 1]
    e = eps[0]
    assert e["task"] == "stack cups" and e["operator"] == "alice" and e["success"] is True
    assert e["flags"] == 0 and e["quality_score"] == 1.0
    src = Path(e["provenance"]["source_file"])
    assert src.parent == clean_session.resolve()
    import hashlib

    assert e["provenance"]["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert e["provenance"]["segmentation"] == "events"


def test_manifest_hashes_every_file_and_detects_tampering(release: Path, tmp_path: Path) -> None:
    assert verify(release) == []
    import shutil

    copy = tmp_path / "v1"
    shutil.copytree(release, copy)
    target = copy / "episodes.json"
    target.chmod(0o644)
    target.write_text(target.read_text().replace("stack cups", "stack cupz"))
    assert verify(copy) == ["episodes.json: sha256 differs"]


def test_show_json_lists_streams_with_type_count_rate_and_array_paths(release: Path) -> None:
    s = release_summary(release)
    js = next(x for x in s["streams"] if x["name"] == "joint_states")
    assert js["type"] == "sensor_msgs/msg/JointState" and js["count"] > 1000
    assert js["rate_hz"] == 500.0 and 450 < js["measured_rate_hz"] < 550
    assert js["arrays"]["position"] == "streams/joint_states/position"
    assert len(s["episodes"]) == 2


def test_unknown_format_version_is_refused(release: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "v1"
    shutil.copytree(release, copy)
    meta = json.loads((copy / "zarr.json").read_text())
    meta["attributes"]["demofab"]["format_version"] = 99
    (copy / "zarr.json").chmod(0o644)
    (copy / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(ReleaseError, match="format_version 99 is not supported"):
        open_release(copy)


def test_ragged_offsets_round_trip() -> None:
    v, o = ragged_from([b"ab", b"", b"cde"])
    assert o.tolist() == [0, 2, 2, 5] and bytes(v) == b"abcde"


def test_public_api_exports_every_name() -> None:
    import curation

    for name in curation.__all__:
        assert getattr(curation, name) is not None, name
