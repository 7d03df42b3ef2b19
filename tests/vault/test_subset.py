"""A derived release for an episode-subset grant: the granted episodes' rows re-written as
a release of the same format, opened by curation's loader, holding nothing of the others."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from curation.loader import ReleaseDataset, ReleaseReader
from tests.vault.pgserver import release_dir, serve_on_localhost  # noqa: F401
from tests.vault.test_service import make_vault
from vault.api import create_app
from vault.client import TOKEN_ENV
from vault.db import Forbidden, NotFound
from vault.errors import VaultError
from vault.identities import SCOPES
from vault.service import Vault
from vault.subset import derive_subset

HEAD = "camera.head.image_raw.compressed"


def _files(base: Path) -> list[str]:
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())


def _derive(base: Path, episodes: list[int], streams: list[str] | None = None
            ) -> dict[str, bytes]:
    return derive_subset(lambda rel: (base / rel).read_bytes(), _files(base), episodes, streams)


def _write(files: dict[str, bytes], out: Path) -> Path:
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    return out


def test_a_derived_release_holds_exactly_the_granted_episodes(
        release_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    src = ReleaseReader(release_dir)
    sub = ReleaseReader(_write(_derive(release_dir, [2, 0]), tmp_path / "v1"))
    assert [r["index"] for r in sub.episodes] == [0, 1]
    assert [r["source_index"] for r in sub.episodes] == [0, 2]
    assert [r["episode_id"] for r in sub.episodes] == [src.episodes[0]["episode_id"],
                                                       src.episodes[2]["episode_id"]]
    assert sub.attributes["episodes"] == 2 and sub.attributes["stats"] is None
    assert set(sub.streams) == set(src.streams)
    for name in src.streams:
        sb, nb = src.bounds(name), sub.bounds(name)
        assert nb.shape == (2, 2) and nb[0, 0] == 0
        for k, e in enumerate((0, 2)):
            lo, hi = sb[e]
            nlo, nhi = nb[k]
            assert nhi - nlo == hi - lo
            assert np.array_equal(sub.times(name)[nlo:nhi], src.times(name)[lo:hi])
            for f in src.stream(name).fields:
                assert np.array_equal(sub.field(name, f).take(np.arange(nlo, nhi), True),
                                      src.field(name, f).take(np.arange(lo, hi), True),
                                      equal_nan=True), (name, f)
            if src.stream(name).is_camera:
                for i in range(hi - lo):
                    assert sub.payload(name, nlo + i) == src.payload(name, lo + i)
    ref = src.sync_reference
    assert ref is not None and sub.sync_reference == ref
    for name in src.streams:
        if name == ref:
            continue
        for a, b in ((name, ref), (ref, name)):
            old, new = src.sync(a, b), sub.sync(a, b)
            assert old is not None and new is not None
            for k, e in enumerate((0, 2)):
                (lo, hi), (nlo, nhi) = src.bounds(a)[e], sub.bounds(a)[k]
                want = old[lo:hi]
                got = new[nlo:nhi]
                shift = int(sub.bounds(b)[k, 0]) - int(src.bounds(b)[e, 0])
                assert np.array_equal(got, np.where(want >= 0, want + shift, -1)), (a, b)
                ok = got >= 0  # a synced row is the same sample as the original's
                assert np.array_equal(sub.times(b)[got[ok]], src.times(b)[want[ok]])


def test_a_derived_release_has_its_own_release_sha256(release_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    from curation.manifest import build_manifest

    out = _write(_derive(release_dir, [1]), tmp_path / "v1")
    manifest = json.loads((out / "manifest.json").read_text())
    source = json.loads((release_dir / "manifest.json").read_text())
    assert manifest["release_sha256"] != source["release_sha256"]
    assert manifest["release_sha256"] == build_manifest(out, "x", 1)["release_sha256"]


def test_the_loader_yields_the_same_samples_from_a_derived_release(
        release_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    sub = ReleaseDataset(_write(_derive(release_dir, [1]), tmp_path / "v1"),
                         decode_images=False)
    full = ReleaseDataset(release_dir, episodes=[1], decode_images=False)
    assert len(sub) == len(full) > 0
    for i in (0, len(sub) // 2, len(sub) - 1):
        a, b = sub[i], full[i]
        assert a["time_ns"] == b["time_ns"] and a["episode_index"] == 0
        for key in full.keys:
            if isinstance(b[key], np.ndarray):
                assert np.array_equal(a[key], b[key], equal_nan=True), key
            else:
                assert a[key] == b[key], key


def test_a_stream_and_episode_subset_leaves_out_the_other_streams(
        release_dir: Path) -> None:  # noqa: F811
    files = _derive(release_dir, [0], ["joint_states", "imu"])
    assert not any(HEAD in p for p in files)
    assert {p.split("/")[1] for p in files if p.startswith("streams/") and p.count("/") > 1} \
        == {"joint_states", "imu"}
    assert all(set(p[5:].split("/")[0].split("__to__")) <= {"joint_states", "imu"}
               for p in files if p.startswith("sync/") and p != "sync/zarr.json")


def test_nothing_of_another_episode_is_in_a_derived_release(release_dir: Path) -> None:  # noqa: F811
    src = ReleaseReader(release_dir)
    files = _derive(release_dir, [0])
    blob = b"".join(files.values())
    lo, hi = src.bounds(HEAD)[1]
    granted = {src.payload(HEAD, r) for r in range(*src.bounds(HEAD)[0])}
    frames = [f for f in (src.payload(HEAD, r) for r in range(lo, hi)) if f not in granted]
    assert frames and not any(f in blob for f in frames)
    assert src.episodes[1]["episode_id"].encode() not in blob


def test_an_unknown_episode_is_refused(release_dir: Path) -> None:  # noqa: F811
    with pytest.raises(VaultError, match=r"episodes \[7\]"):
        _derive(release_dir, [0, 7])


# -- served by the vault ------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, release_dir: Path  # noqa: F811
           ) -> Iterator[tuple[Vault, str, dict[str, str]]]:
    """The vault of test_service.make_vault (dave: episodes 0 and 1) behind vault.api,
    served by uvicorn on 127.0.0.1 in a thread."""
    v = make_vault(tmp_path_factory.mktemp("subset"), release_dir)
    tokens = {n: v.identities.create_token(n, sorted(SCOPES)).token for n in ("dave", "prov")}
    with serve_on_localhost(create_app(v)) as host:
        yield v, host, tokens
    v.close()


def test_an_episode_subset_grant_loads_through_the_loader_over_vault(
        served: tuple[Vault, str, dict[str, str]], release_dir: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    v, host, tokens = served
    monkeypatch.setenv(TOKEN_ENV, tokens["dave"])
    keys = ["joint_states/position", "imu/orientation", f"{HEAD}/data"]
    delta = {"joint_states/position": [-0.01, 0.0]}
    remote = ReleaseDataset(f"vault://{host}/pick/1", keys=keys, delta_timestamps=delta)
    local = ReleaseDataset(release_dir, keys=keys, delta_timestamps=delta, episodes=[0, 1])
    assert [r["source_index"] for r in remote.release.episodes] == [0, 1]
    assert len(remote) == len(local) > 0
    for i in range(0, len(local), max(1, len(local) // 20)):
        a, b = local[i], remote[i]
        for k in keys + ["time_ns", "joint_states/position_is_pad"]:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_nothing_served_or_stored_holds_what_the_grant_does_not(
        served: tuple[Vault, str, dict[str, str]], release_dir: Path) -> None:  # noqa: F811
    v, _, _ = served
    dave = v.identities.get("dave")
    src = ReleaseReader(release_dir)
    served_bytes = []
    for f in v.list_files(dave, "pick", 1):
        assert f.ranges is None
        with v.open_file(dave, "pick", 1, f.path) as r:
            served_bytes.append(r.read_range(0, r.size))
    blob = b"".join(served_bytes)
    granted = {src.payload(HEAD, r) for r in range(int(src.bounds(HEAD)[0, 0]),
                                                     int(src.bounds(HEAD)[1, 1]))}
    other = [p for p in (src.payload(HEAD, r) for r in range(*src.bounds(HEAD)[2]))
             if p not in granted]
    assert other and not any(p in blob for p in other)
    assert src.episodes[2]["episode_id"].encode() not in blob
    with pytest.raises(NotFound):
        v.open_file(dave, "pick", 1, "stats.json")
    stored = [e for e in v.audit.entries(0) if e.action == "grant_release_stored"]
    assert len(stored) == 1 and stored[0].details["episodes"] == [0, 1]  # derived once
    # no plaintext under the root: neither a served frame nor the derived table
    frames = sorted(granted, key=len)[-3:]
    with v.open_file(dave, "pick", 1, "episodes.json") as r:
        table = r.read_range(0, r.size)
    for path in v.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(fr[100:400] in data for fr in frames), path
            assert table[:200] not in data, path


def test_a_revoked_subset_grant_serves_nothing(
        served: tuple[Vault, str, dict[str, str]]) -> None:
    v, _, _ = served
    dave = v.identities.get("dave")
    (g,) = v.grants.list(lab="lab-d", dataset="pick", live=True)
    v.grants.revoke(g.id, v.identities.get("prov"), "study over")
    with pytest.raises(Forbidden):
        v.open_file(dave, "pick", 1, "episodes.json")
    with pytest.raises(Forbidden):
        v.list_files(dave, "pick", 1)


def test_derived_arrays_keep_the_source_codecs_and_read_with_zarr_python(
        release_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    import zarr

    files = _derive(release_dir, [1, 2])
    out = _write(files, tmp_path / "v1")
    src = ReleaseReader(release_dir)
    arrays = [p[:-len("/zarr.json")] for p in files if p.endswith("/zarr.json")
              and json.loads(files[p]).get("node_type") == "array"]
    assert arrays
    for rel in arrays:
        mine, theirs = json.loads(files[f"{rel}/zarr.json"]), json.loads(
            (release_dir / rel / "zarr.json").read_bytes())
        assert mine["codecs"] == theirs["codecs"] and mine["chunk_grid"] == theirs["chunk_grid"]
        data = np.asarray(zarr.open_array(str(out / rel), mode="r")[:])
        assert list(data.shape) == mine["shape"]
    lo = int(src.bounds("joint_states")[1, 0])
    hi = int(src.bounds("joint_states")[2, 1])
    got = zarr.open_array(str(out / "streams/joint_states/position"), mode="r")[:]
    assert np.array_equal(got, src.field("joint_states", "position").take(np.arange(lo, hi), True))
    manifest = json.loads(files["manifest.json"])["files"]
    assert set(manifest) == set(files) - {"manifest.json"}
    assert all(manifest[p]["sha256"] == hashlib.sha256(files[p]).hexdigest() for p in manifest)


def test_a_grant_of_no_episode_derives_an_empty_release(
        release_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    sub = ReleaseReader(_write(_derive(release_dir, []), tmp_path / "v1"))
    assert sub.episodes == [] and sub.attributes["episodes"] == 0
    assert all(sub.bounds(s).shape == (0, 2) and len(sub.times(s)) == 0 for s in sub.streams)
