"""The review page's HTTP API against a small release built here: the list, filters and
sorting, thumbnails, frames, joints, stats, and the curator's labels round trip."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from curation import curate
from curation.labels import load_labels
from curation.loader import ReleaseReader
from curation.review import create_app, outliers, robust_z
from curation.review.catalog import _downscale
from curation.review.metrics import Motion

from .conftest import T0, record_session

fastapi_testclient = pytest.importorskip("fastapi.testclient")
CAM = "camera.head.image_raw.compressed"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, clean_session: Path,
            lossy_session: Path) -> list[Path]:
    long = record_session(tmp_path_factory.mktemp("long") / "s_dave", episodes=1, seconds=6.0,
                          operator="dave", task="pour water", seed=9, start_ns=T0 + 400 * 10**9)
    return [clean_session, lossy_session, long]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, sources: list[Path]) -> Path:
    out = tmp_path_factory.mktemp("releases")
    return curate(sources, out, "pick").release


def _client(release: Path, tmp_path: Path, labels: Path | None = None):  # type: ignore[no-untyped-def]
    app = create_app(release.parent, labels or tmp_path / "labels.yaml", cache_dir=tmp_path / "cache")
    return fastapi_testclient.TestClient(app)


def test_the_list_shows_every_episode_with_its_labels_quality_and_outliers(release: Path,
                                                                           tmp_path: Path) -> None:
    eps = ReleaseReader(release).episodes
    with _client(release, tmp_path) as c:
        info = c.get("/api/release").json()
        body = c.get("/api/episodes").json()
    assert info["name"] == "pick" and info["version"] == 1 and info["episodes"] == len(eps) == 4
    assert CAM in info["cameras"] and info["thumb_camera"] == CAM
    assert body["total"] == body["shown"] == 4
    rows = {r["key"]: r for r in body["episodes"]}
    for ep in eps:
        r = rows[ep["key"]]
        for k in ("episode_id", "task", "success", "operator", "split", "duration_s",
                  "quality_score", "flag_names"):
            assert r[k] == ep[k]
        assert r["thumbs"]["first"] == f"/api/episodes/{ep['index']}/thumbs/{CAM}/first"
        assert r["jerk"] > 0 and r["motion"] > 0
    by_op = {r["operator"]: r for r in body["episodes"]}
    assert "gaps" in by_op["carol"]["outliers"]          # the lossy session's gaps
    assert "length" in by_op["dave"]["outliers"]         # 6 s among 1.5 s episodes
    assert by_op["dave"]["z_length"] > 3.5
    assert not by_op["alice"]["outliers"]


def test_robust_z_scores_mark_one_odd_episode_and_not_a_uniform_release() -> None:
    assert robust_z([2.0, 2.0, 2.0]) == [0.0, 0.0, 0.0]
    z = robust_z([1.5, 1.5, 1.6, 1.5, 6.0])
    assert z[-1] is not None and z[-1] > 3.5 and all(abs(v or 0) < 3.5 for v in z[:-1])
    rows = [{"duration_s": 1.5, "flag_names": []} for _ in range(6)]
    rows[5]["flag_names"] = ["dropped_frames"]
    marks = outliers(rows, [Motion(1e5, 3.0), Motion(1.1e5, 3.2), Motion(0.9e5, 2.9),
                            Motion(1e5, 0.001), Motion(5e6, 0.6), Motion(1e5, 3.0)])
    assert [m["outliers"] for m in marks] == [[], [], [], ["motionless"], ["jerk", "motionless"],
                                              ["gaps"]]
    # a 10% faster or jerkier episode is not an outlier (log-scale floor)
    marks = outliers(rows[:3], [Motion(1e5, 3.0), Motion(1e5, 3.0), Motion(1.1e5, 3.3)])
    assert all(not m["outliers"] for m in marks)


def test_filters_and_sorting_narrow_and_order_the_list(release: Path, tmp_path: Path) -> None:
    with _client(release, tmp_path) as c:
        def keys(**params: str) -> list[str]:
            r = c.get("/api/episodes", params=params)
            assert r.status_code == 200, r.text
            return [e["operator"] for e in r.json()["episodes"]]

        assert keys(task="pour water") == ["dave"]
        assert sorted(keys(flag="gaps")) == ["carol"]
        assert "carol" not in keys(flag="none")
        assert sorted(keys(flag="outlier")) == ["carol", "dave"]
        assert keys(q="DAVE") == ["dave"]
        assert sorted(keys(success="true")) == ["alice", "alice", "carol", "dave"]
        assert keys(success="false") == []
        def column(name: str, **params: str) -> list[Any]:
            return [e[name] for e in c.get("/api/episodes", params=params).json()["episodes"]]

        split = str(column("split")[0])
        assert set(column("split", split=split)) == {split}
        durations = column("duration_s", sort="duration_s", desc="1")
        assert durations == sorted(durations, reverse=True) and durations[0] > 5
        scores = column("quality_score", sort="quality_score")
        assert scores == sorted(scores)
        bad = c.get("/api/episodes", params={"sort": "colour"})
        assert bad.status_code == 422 and "colour" in bad.json()["detail"]
        bad = c.get("/api/episodes", params={"flag": "wobbly"})
        assert bad.status_code == 422 and "wobbly" in bad.json()["detail"]


def test_thumbnails_are_downscaled_once_into_the_cache_outside_the_release(release: Path,
                                                                           tmp_path: Path) -> None:
    reader = ReleaseReader(release)
    with _client(release, tmp_path) as c:
        cache = Path(c.get("/api/release").json()["cache_dir"])
        r = c.get(f"/api/episodes/1/thumbs/{CAM}/last")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape[1] == 160
        files = list(cache.rglob("*.jpg"))
        assert len(files) == 1 and files[0].read_bytes() == r.content
        assert not str(files[0]).startswith(str(release))
        before = files[0].stat().st_mtime_ns
        assert c.get(f"/api/episodes/1/thumbs/{CAM}/last").content == r.content
        assert files[0].stat().st_mtime_ns == before
        # the last frame of the episode, downscaled (not the first)
        a, b = (int(x) for x in reader.bounds(CAM)[1])
        assert r.content == _downscale(reader.payload(CAM, b - 1), "last")
        assert r.content != _downscale(reader.payload(CAM, a), "first")
        assert c.get(f"/api/episodes/1/thumbs/{CAM}/first").content == \
            _downscale(reader.payload(CAM, a), "first")
        assert c.get(f"/api/episodes/1/thumbs/{CAM}/middle").status_code == 404


def test_camera_frames_by_index_and_by_time_are_the_stored_jpeg_bytes(release: Path,
                                                                      tmp_path: Path) -> None:
    reader = ReleaseReader(release)
    a, b = (int(x) for x in reader.bounds(CAM)[2])
    start = reader.episodes[2]["start_ns"]
    with _client(release, tmp_path) as c:
        detail = c.get("/api/episodes/2").json()
        cam = next(x for x in detail["cameras"] if x["name"] == CAM)
        assert cam["frames"] == b - a
        for k in (0, 7, b - a - 1):
            r = c.get(f"/api/episodes/2/cameras/{CAM}/frames/{k}")
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
            assert r.content == reader.payload(CAM, a + k) and r.headers["x-frame-row"] == str(a + k)
        times = reader.times(CAM)[a:b]
        for t_s in (0.0, 0.5, 1.234):
            r = c.get(f"/api/episodes/2/cameras/{CAM}/at", params={"t": t_s})
            k = int(r.headers["x-frame-index"])
            # the frame shown at t is the latest at or before t (within one reference step)
            assert times[k] <= start + t_s * 1e9 + 2e6
            assert k == b - a - 1 or times[k + 1] > start + t_s * 1e9 - 2e6
            assert r.content == reader.payload(CAM, a + k)
        lossy = next(r["index"] for r in c.get("/api/episodes").json()["episodes"]
                     if r["operator"] == "carol")
        gaps = c.get(f"/api/episodes/{lossy}").json()["gaps"]
        head = [g for g in gaps if g["stream"] == "/camera/head/image_raw/compressed"]
        assert head and head[0]["length_s"] >= 0.4  # the head camera was unplugged for 0.5 s
        assert 0.4 <= head[0]["t_s"] <= 0.6
        missing = c.get(f"/api/episodes/2/cameras/{CAM}/frames/{b - a}")
        assert missing.status_code == 404 and f"no frame {b - a}" in missing.json()["detail"]
        nocam = c.get("/api/episodes/2/cameras/camera.tail/frames/0")
        assert nocam.status_code == 404 and "camera.tail" in nocam.json()["detail"]


def test_joint_data_and_events_are_on_the_episode_time_line(release: Path, tmp_path: Path) -> None:
    reader = ReleaseReader(release)
    stream = reader.sync_reference
    assert stream is not None
    a, b = (int(x) for x in reader.bounds(stream)[0])
    pos = reader.field(stream, "position").read(a, b)
    with _client(release, tmp_path) as c:
        full = c.get("/api/episodes/0/joints", params={"points": 20000}).json()
        few = c.get("/api/episodes/0/joints", params={"points": 50}).json()
        detail = c.get("/api/episodes/0").json()
        bad = c.get("/api/episodes/0/joints", params={"field": "colour"})
    assert full["names"] == reader.stream(stream).attributes["joint_names"]
    assert np.allclose(np.array(full["values"]).T, pos, atol=1e-5)
    t0 = (reader.times(stream)[a] - reader.episodes[0]["start_ns"]) / 1e9
    assert full["t_s"][0] == pytest.approx(t0, abs=1e-4)
    v = np.array(few["values"])
    assert v.shape == (pos.shape[1], 100)  # a (min, max) pair per bucket
    assert np.allclose(v.max(axis=1), pos.max(axis=0), atol=1e-5)
    assert np.allclose(v.min(axis=1), pos.min(axis=0), atol=1e-5)
    assert bad.status_code == 422 or bad.status_code == 404
    assert "colour" in bad.json()["detail"]
    assert detail["duration_s"] == reader.episodes[0]["duration_s"]
    assert detail["joints"][0]["stream"] == stream
    assert detail["next"] == 1 and detail["previous"] is None
    anns = reader.episodes[0]["annotations"]
    assert len(detail["events"]) == len(anns)


def test_labels_are_written_atomically_beside_the_other_entries(release: Path, tmp_path: Path) -> None:
    eps = ReleaseReader(release).episodes
    labels = tmp_path / "labels.yaml"
    labels.write_text("episodes:\n  - session: s_lossy\n    notes: [checked by hand]\n"
                      "  - key: 'abc:0'\n    success: false\n")
    with _client(release, tmp_path, labels) as c:
        r = c.post("/api/episodes/1/labels", json={"set": {"success": False, "task": "stack two cups"}})
        assert r.status_code == 200, r.text
        assert r.json()["entry"] == {"success": False, "task": "stack two cups"}
        c.post("/api/episodes/2/labels", json={"set": {"task": "two\nlines: # not a comment"}})
        r = c.post("/api/episodes/1/labels", json={"set": {"exclude": True}, "unset": ["task"]})
        assert r.json()["entry"] == {"success": False, "exclude": True}
        assert c.get("/api/labels").json()["entries"][eps[1]["key"]] == {"success": False,
                                                                         "exclude": True}
        assert c.get("/api/episodes/1").json()["labels"] == {"success": False, "exclude": True}
    doc = yaml.safe_load(labels.read_text())
    assert doc["episodes"][:2] == [{"session": "s_lossy", "notes": ["checked by hand"]},
                                   {"key": "abc:0", "success": False}]
    assert doc["episodes"][2] == {"key": eps[1]["key"], "success": False, "exclude": True}
    assert f"# {eps[1]['episode_id']}" in labels.read_text()
    assert not list(tmp_path.glob("labels.yaml.*"))  # no temporary file left behind
    assert len(load_labels(labels).rules) == 4
    assert load_labels(labels).rules[3].values == {"task": "two\nlines: # not a comment"}


def test_a_csv_labels_file_stays_csv(release: Path, tmp_path: Path) -> None:
    eps = ReleaseReader(release).episodes
    labels = tmp_path / "labels.csv"
    with _client(release, tmp_path, labels) as c:
        c.post("/api/episodes/0/labels", json={"set": {"flags_add": ["frozen", "gaps"],
                                                       "notes": ["a", "b"]}})
    rule = load_labels(labels).rules[0]
    assert rule.select == {"key": eps[0]["key"]}
    assert rule.values == {"flags_add": ["frozen", "gaps"], "notes": ["a", "b"]}


def test_unknown_episodes_and_bad_labels_get_clear_errors_and_change_nothing(release: Path,
                                                                            tmp_path: Path) -> None:
    labels = tmp_path / "labels.yaml"
    with _client(release, tmp_path, labels) as c:
        r = c.get("/api/episodes/99")
        assert r.status_code == 404 and "no episode 99" in r.json()["detail"]
        assert c.get("/episodes/99").status_code == 404
        assert c.post("/api/episodes/99/labels", json={"set": {"success": True}}).status_code == 404
        r = c.post("/api/episodes/0/labels", json={"set": {"success": "maybe"}})
        assert r.status_code == 422 and "success" in r.json()["detail"] and "maybe" in r.json()["detail"]
        r = c.post("/api/episodes/0/labels", json={"set": {"flags_add": ["wobbly"]}})
        assert r.status_code == 422 and "wobbly" in r.json()["detail"]
        r = c.post("/api/episodes/0/labels", json={"set": {"colour": "red"}})
        assert r.status_code == 422 and "colour" in r.json()["detail"]
        r = c.post("/api/episodes/0/labels", json={"sett": {}})
        assert r.status_code == 422 and "sett" in r.json()["detail"]
    assert not labels.exists()


def test_a_malformed_labels_file_is_refused_before_anything_is_written(release: Path,
                                                                       tmp_path: Path) -> None:
    from curation.errors import LabelError

    labels = tmp_path / "labels.yaml"
    labels.write_text("episodes:\n  - key: 'a:0'\n    success: perhaps\n")
    with pytest.raises(LabelError, match="perhaps"):
        create_app(release, labels, cache_dir=tmp_path / "cache")
    assert "perhaps" in labels.read_text()


def test_review_decisions_round_trip_into_the_next_version(release: Path, sources: list[Path],
                                                           tmp_path: Path) -> None:
    import shutil

    shutil.copytree(release.parent, tmp_path / "releases" / "pick")  # v2 goes into the copy
    release = tmp_path / "releases" / "pick" / release.name
    eps = ReleaseReader(release).episodes
    labels = tmp_path / "labels.yaml"
    lossy = next(e for e in eps if e["operator"] == "carol")
    with _client(release, tmp_path, labels) as c:
        for change in ({"success": False}, {"task": "stack the red cups"},
                       {"notes": ["slipped at the end"]}, {"flags_add": ["jerk_spike"]}):
            assert c.post("/api/episodes/0/labels", json={"set": change}).status_code == 200
        assert c.post("/api/episodes/1/labels", json={"set": {"exclude": True}}).status_code == 200
        assert c.post(f"/api/episodes/{lossy['index']}/labels",
                      json={"set": {"flags_clear": ["gaps"]}}).status_code == 200
    out = release.parent.parent
    r = curate(sources, out, "pick", labels=load_labels(labels))
    assert r.created and r.version == 2
    v2 = {e["key"]: e for e in ReleaseReader(r.release).episodes}
    assert eps[1]["key"] not in v2 and len(v2) == 3
    first = v2[eps[0]["key"]]
    assert first["success"] is False
    assert first["task"] == "stack the red cups" and first["notes"] == ["slipped at the end"]
    assert "jerk_spike" in first["flag_names"] and first["labels_source"]["success"] == "labels_file"
    assert "gaps" not in v2[lossy["key"]]["flag_names"]
    # the next version is reviewed with the same decisions shown
    with fastapi_testclient.TestClient(create_app(r.release.parent, labels,
                                                  cache_dir=tmp_path / "c2")) as c:
        assert c.get("/api/release").json()["version"] == 2
        row = next(e for e in c.get("/api/episodes").json()["episodes"] if e["key"] == eps[0]["key"])
        assert row["task"] == "stack the red cups" and row["success"] is False


def test_sessions_not_yet_in_the_release_are_listed_after_it_and_labelled_for_the_next_version(
        release: Path, sources: list[Path], tmp_path: Path) -> None:
    import shutil

    shutil.copytree(release.parent, tmp_path / "releases" / "pick")
    release = tmp_path / "releases" / "pick" / release.name
    new = record_session(tmp_path / "s_erin", episodes=1, operator="erin", task="wipe",
                         seed=11, start_ns=T0 + 800 * 10**9)
    labels = tmp_path / "labels.yaml"
    app = create_app(release.parent, labels, cache_dir=tmp_path / "cache",
                     sessions=[sources[0], new])  # the first session is in the release already
    with fastapi_testclient.TestClient(app) as c:
        rows = c.get("/api/episodes").json()["episodes"]
        assert [r["source"] for r in rows] == ["release"] * 4 + ["session"]
        erin = rows[4]
        assert erin["operator"] == "erin" and erin["index"] == 4 and erin["task"] == "wipe"
        assert c.get("/api/episodes", params={"sort": "source", "desc": "1"}).json()["episodes"][0] == erin
        assert c.get(f"/api/episodes/4/cameras/{CAM}/frames/0").headers["content-type"] == "image/jpeg"
        assert c.get(f"/api/episodes/4/thumbs/{CAM}/first").status_code == 200
        assert c.get("/api/episodes/4/joints").json()["values"]
        assert c.get("/api/episodes/4").json()["episode"]["index"] == 4
        assert c.post("/api/episodes/4/labels", json={"set": {"success": False,
                                                               "task": "wipe the table"}}).status_code == 200
        assert c.get("/api/episodes/5").status_code == 404
    r = curate([*sources, new], release.parent.parent, "pick", labels=load_labels(labels))
    v2 = {e["key"]: e for e in ReleaseReader(r.release).episodes}
    assert v2[erin["key"]]["success"] is False and v2[erin["key"]]["task"] == "wipe the table"


def test_pages_stats_and_static_files_are_served(release: Path, tmp_path: Path) -> None:
    with _client(release, tmp_path) as c:
        for url, testid in (("/", "episode-table"), ("/episodes/0", "joint-plot"),
                            ("/stats", "stats-stream")):
            r = c.get(url)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert f'data-testid="{testid}"' in r.text
            for src in ("/static/common.js", "/static/review.css"):
                assert src in r.text and c.get(src).status_code == 200
        assert "https://" not in c.get("/static/episode.js").text  # nothing from outside
        stats = c.get("/api/stats").json()
        ref = ReleaseReader(release).sync_reference
        assert stats["stats"]["streams"][ref]["position"]["q"]["0.5"]
        assert stats["streams"][ref]["joint_names"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_demofab_review_prints_its_url_and_serves_on_localhost(release: Path, tmp_path: Path) -> None:
    import httpx

    port = _free_port()
    env = os.environ | {"DEMOFAB_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "demofab.cli", "review", str(release.parent),
                             "--port", str(port), "--labels", str(tmp_path / "l.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line + (proc.stderr.read() if proc.stderr else "")
        deadline = time.monotonic() + 20
        while True:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/release", timeout=2).json()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert info["name"] == "pick" and info["labels_file"] == str(tmp_path / "l.yaml")
        assert json.loads(httpx.get(f"http://127.0.0.1:{port}/api/episodes").text)["total"] == 4
    finally:
        proc.terminate()
        proc.wait(10)


def test_without_fastapi_the_review_page_says_which_extra_to_install(
        release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import curation.review
    from curation.errors import CurationError

    monkeypatch.delitem(sys.modules, "curation.review.app", raising=False)
    monkeypatch.delattr(curation.review, "app", raising=False)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now raises ImportError
    with pytest.raises(CurationError, match=r"pip install 'demofab\[view\]'"):
        create_app(release, tmp_path / "labels.yaml", cache_dir=tmp_path / "cache")


def test_a_release_of_a_foreign_bag_without_cameras_is_reviewed_too(tmp_path: Path) -> None:
    from .conftest import write_foreign_bag

    bag = write_foreign_bag(tmp_path / "bag", pattern=[(1.0, True), (1.0, False), (1.0, True)])
    rel = curate([bag], tmp_path / "rel", "arm").release
    with fastapi_testclient.TestClient(create_app(rel, tmp_path / "l.yaml",
                                                  cache_dir=tmp_path / "cache")) as c:
        info = c.get("/api/release").json()
        assert info["cameras"] == [] and info["joint_stream"] == "robot.joint_states"
        rows = c.get("/api/episodes").json()["episodes"]
        assert rows and all(r["thumbs"] is None for r in rows)
        detail = c.get("/api/episodes/0").json()
        assert detail["cameras"] == [] and detail["joints"][0]["stream"] == "robot.joint_states"
        joints = c.get("/api/episodes/0/joints").json()
        assert joints["names"] == ["arm_joint_1", "arm_joint_2", "gripper_finger_joint"]
        r = c.get("/api/episodes/0/cameras/camera.head.image_raw.compressed/frames/0")
        assert r.status_code == 404 and "cameras: none" in r.json()["detail"]
        assert c.get("/").status_code == 200


def test_nan_in_the_release_files_is_served_as_null(release: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "pick" / release.name
    shutil.copytree(release, copy)
    stats = copy / "stats.json"
    stats.chmod(0o644)
    doc = json.loads(stats.read_text())
    ref = ReleaseReader(release).sync_reference
    doc["streams"][ref]["position"]["mean"][0] = float("nan")  # an all-NaN joint's statistics
    stats.write_text(json.dumps(doc))
    with fastapi_testclient.TestClient(create_app(copy, tmp_path / "l.yaml",
                                                  cache_dir=tmp_path / "cache")) as c:
        r = c.get("/api/stats")
    assert r.status_code == 200
    assert r.json()["stats"]["streams"][ref]["position"]["mean"][0] is None
    assert "NaN" not in r.text


def test_a_non_loopback_host_is_told_apart_for_the_warning() -> None:
    from curation.review.cli import _loopback

    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("localhost")
    assert not _loopback("0.0.0.0") and not _loopback("::") and not _loopback("192.168.1.20")
