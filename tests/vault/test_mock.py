"""Mock releases: the real release's layout, the simulator's content, none of the provider's
bytes, and curation's loader opens them as it opens the real one."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from curation.loader import ReleaseDataset, ReleaseReader
from curation.manifest import verify
from curation.pipeline import curate

_CONFTEST = Path(__file__).resolve().parents[1] / "curation" / "conftest.py"


def _conftest() -> Any:
    """tests/curation/conftest.py (record_session, write_foreign_bag), loaded once."""
    name = "_curation_conftest_for_mock"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _CONFTEST)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def _record_session(out: Path, **kwargs: Any) -> Path:
    path: Path = _conftest().record_session(out, **kwargs)
    return path


@pytest.fixture(scope="module")
def real_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mock_real")
    session = _record_session(root / "s_alice", episodes=2, seconds=0.4, operator="alice",
                              task="fold the secret towel")
    release: Path = curate([session], root / "rel", "towels").release
    return release


@pytest.fixture(scope="module")
def mock_release(real_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vault.mock import build_mock

    return build_mock(real_release, tmp_path_factory.mktemp("mock_out"), seed=1,
                      frames_per_camera=2)


def _tree(root: Path) -> dict[str, dict[str, Any]]:
    return {m.parent.relative_to(root).as_posix(): json.loads(m.read_text())
            for m in root.rglob("zarr.json")}


def test_layout_is_the_real_release_layout(real_release: Path, mock_release: Path) -> None:
    real, mock = _tree(real_release), _tree(mock_release)
    assert sorted(real) == sorted(mock)
    for rel, doc in real.items():
        if doc["node_type"] == "array":
            other = dict(mock[rel])
            if rel.endswith("/values"):  # payload bytes: the total differs, nothing else
                assert other.pop("shape") != [] and dict(doc, shape=None) == dict(other, shape=None)
            else:
                assert other == doc, rel
    r, m = ReleaseReader(real_release), ReleaseReader(mock_release)
    assert list(m.streams) == list(r.streams)
    for name, info in r.streams.items():
        mi = m.streams[name].attributes
        for key in ("topic", "type", "role", "clock", "count", "rate_hz", "fields", "ragged",
                    "constants", "joint_names", "camera"):
            assert mi.get(key) == info.attributes.get(key), (name, key)
        np.testing.assert_array_equal(m.bounds(name), r.bounds(name))
    assert len(m.episodes) == len(r.episodes) == 2
    for re_, me in zip(r.episodes, m.episodes, strict=True):
        assert list(me) == list(re_)
        assert me["duration_s"] == pytest.approx(re_["duration_s"], abs=1e-6)
        assert me["streams"] == re_["streams"]
    assert {s: sorted(f) for s, f in m.stats["streams"].items()} == \
        {s: sorted(f) for s, f in r.stats["streams"].items()}
    assert m.attributes["sync_reference"] == r.attributes["sync_reference"]
    assert m.attributes["mock"]["of"] == {"name": "towels", "version": 1}
    assert verify(mock_release) == []


def test_no_byte_of_the_real_release_is_in_the_mock(real_release: Path,
                                                    mock_release: Path) -> None:
    r, m = ReleaseReader(real_release), ReleaseReader(mock_release)
    blob = b"".join(p.read_bytes() for p in sorted(mock_release.rglob("*")) if p.is_file())
    text = blob.decode("latin-1")
    for row in r.episodes:
        for word in ("fold the secret towel", "alice", row["episode_id"], row["key"]):
            assert word not in text
    for name, info in r.streams.items():
        for k in info.ragged:  # every real frame: not in any mock file
            for i in range(int(info.attributes["count"])):
                assert r.payload(name, i, k) not in blob, (name, i)
        for k in [*info.fields, "time_ns", "log_time_ns"]:
            real_rows = r.array(f"streams/{name}/{k}").read()
            mock_rows = m.array(f"streams/{name}/{k}").read()
            assert mock_rows.shape == real_rows.shape and mock_rows.dtype == real_rows.dtype
            flat_real = {row.tobytes() for row in real_rows.reshape(len(real_rows), -1)
                         if np.any(row != 0)}
            flat_mock = {row.tobytes() for row in mock_rows.reshape(len(mock_rows), -1)}
            assert not flat_real & flat_mock, (name, k)


def test_mock_content_is_simulated_motion_and_frames(mock_release: Path) -> None:
    import cv2

    from sim.scenes import profile_joint_names

    m = ReleaseReader(mock_release)
    q = m.field("joint_states", "position").read()
    names = m.streams["joint_states"].attributes["joint_names"]
    assert names == profile_joint_names()
    assert np.isfinite(q).all() and np.ptp(q, axis=0).max() > 0.01   # it moves
    cam = m.streams["camera.head.image_raw.compressed"].attributes["camera"]
    img = cv2.imdecode(np.frombuffer(m.payload("camera.head.image_raw.compressed", 0),
                                     np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (cam["height"], cam["width"], 3) and img.std() > 1
    tasks = {e["task"] for e in m.episodes}
    assert tasks == {"mock task 1"} and {e["operator"] for e in m.episodes} == {"mock-operator-1"}


def test_the_loader_reads_the_mock_like_the_real_release(real_release: Path,
                                                         mock_release: Path) -> None:
    keys = ["joint_states/position", "imu/orientation", "camera.head.image_raw.compressed/data",
            "tf/transforms.transform.translation"]
    real = ReleaseDataset(real_release, keys=keys, delta_timestamps={
        "joint_states/position": [-0.02, 0.0]})
    mock = ReleaseDataset(mock_release, keys=keys, delta_timestamps={
        "joint_states/position": [-0.02, 0.0]})
    assert len(mock) == len(real) > 0
    assert mock.features == real.features
    for i in (0, len(real) // 2, len(real) - 1):
        a, b = real[i], mock[i]
        assert sorted(a) == sorted(b)
        for k, v in a.items():
            w = b[k]
            if isinstance(v, np.ndarray):
                assert w.shape == v.shape and w.dtype == v.dtype, k


def test_a_seed_gives_the_same_mock_and_another_seed_another(
        real_release: Path, mock_release: Path, tmp_path: Path) -> None:
    from vault.mock import build_mock

    again = build_mock(real_release, tmp_path / "again", seed=1, frames_per_camera=2)
    other = build_mock(real_release, tmp_path / "other", seed=2, frames_per_camera=2)
    m, a, o = (ReleaseReader(p) for p in (mock_release, again, other))
    q = m.field("joint_states", "position").read()
    np.testing.assert_array_equal(a.field("joint_states", "position").read(), q)
    assert a.payload("camera.head.image_raw.compressed", 0) == \
        m.payload("camera.head.image_raw.compressed", 0)
    assert not np.array_equal(o.field("joint_states", "position").read(), q)
    assert again.name == "v1" and (again / "manifest.json").is_file()


def test_a_foreign_robots_release_gets_a_mock_of_its_own_layout(tmp_path: Path) -> None:
    """A rosbag2 recording of another robot (3 joints at 100 Hz, no cameras, no events):
    joints the G1 lacks take simulated joints of the G1, the layout stays the release's."""
    from vault.mock import build_mock

    bag = _conftest().write_foreign_bag(tmp_path / "bag", pattern=[(0.3, False), (0.6, True),
                                                           (0.3, False), (0.6, True)])
    real = curate([bag], tmp_path / "rel", "arm").release
    mock = build_mock(real, tmp_path / "mock", frames_per_camera=1)
    assert sorted(_tree(real)) == sorted(_tree(mock))
    r, m = ReleaseReader(real), ReleaseReader(mock)
    (name,) = r.streams
    assert m.streams[name].attributes["joint_names"] == r.streams[name].attributes["joint_names"]
    for k in r.streams[name].fields:
        a, b = r.field(name, k).read(), m.field(name, k).read()
        assert a.shape == b.shape and a.dtype == b.dtype
        assert not {row.tobytes() for row in a if np.any(row != 0)} & {row.tobytes() for row in b}
    assert len(m.episodes) == len(r.episodes) >= 1
    assert ReleaseDataset(mock, keys=[f"{name}/position"])[0][f"{name}/position"].shape == (3,)
