"""Fingerprinted exports: the provider's policy decides, a grant is needed, each lab's copy
carries its own pattern, and every export, refusal and identification is audited."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from curation.loader import ReleaseReader
from tests.vault.pgserver import database_url, postgres_server, release_dir  # noqa: F401
from tests.vault.test_service import HEAD, make_vault
from vault.db import Forbidden
from vault.errors import KeyFileError
from vault.fingerprint import FingerprintError, Fingerprints, NotExportable
from vault.fingerprint.mark import frame_change
from vault.fingerprint.release import camera_streams, frames_of
from vault.service import Vault
from vault.subset import ReadFile

__all__ = ["Env", "download", "reader_of"]


@dataclass
class Env:
    """A vault (make_vault's labs and grants) with pick marked exportable; alice's copy
    stored (and downloaded to ``alice``), lab-d's (episodes 0 and 1) and lab-c's (no head
    camera) written by the provider to ``dave`` and ``carol``."""

    vault: Vault
    fp: Fingerprints
    release: Path
    alice: Path
    dave: Path
    carol: Path


def reader_of(base: Path) -> ReadFile:
    def read(rel: str) -> bytes:
        if not (base / rel).is_file():
            raise FileNotFoundError(rel)
        return (base / rel).read_bytes()
    return read


def download(fp: Fingerprints, who: str, out: Path) -> Path:
    """Every file of ``who``'s lab's stored export of pick 1, as the API serves them."""
    me = fp.vault.identities.get(who)
    _, files = fp.export_for(me, "pick", 1)
    for f in files:
        with fp.open_export_file(me, "pick", 1, f["path"]) as r:
            (out / f["path"]).parent.mkdir(parents=True, exist_ok=True)
            (out / f["path"]).write_bytes(r.read_all())
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, release_dir: Path) -> Iterator[Env]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("fingerprint")
    v = make_vault(tmp, release_dir)
    fp = Fingerprints(v)
    fp.set_exportable("pick", True, v.identities.get("prov"))
    fp.export("pick", 1, by=v.identities.get("alice"))
    fp.export("pick", 1, lab="lab-d", out=tmp / "dave")
    fp.export("pick", 1, lab="lab-c", out=tmp / "carol")
    yield Env(v, fp, release_dir, download(fp, "alice", tmp / "alice"), tmp / "dave",
              tmp / "carol")
    v.close()


def _actions(v: Vault, action: str) -> list[dict[str, object]]:
    return [dict(e.details) | {"actor": e.actor} for e in v.audit.show("pick")
            if e.action == action]


def test_a_dataset_is_not_exportable_until_its_provider_says_so(
        tmp_path: Path, release_dir: Path) -> None:  # noqa: F811
    v = make_vault(tmp_path, release_dir)
    try:
        fp = Fingerprints(v)
        assert not fp.policy("pick").exportable
        with pytest.raises(NotExportable, match="not exportable"):
            fp.export("pick", 1, by=v.identities.get("alice"))
        refused = _actions(v, "fingerprint_export_refused")
        assert refused and refused[-1]["actor"] == "alice" and "not exportable" in str(
            refused[-1]["reason"])
        with pytest.raises(Forbidden, match="only a provider"):
            fp.set_exportable("pick", True, v.identities.get("rev1"))
        assert not fp.policy("pick").exportable
        assert fp.set_exportable("pick", True, v.identities.get("prov")).set_by == "prov"
        assert _actions(v, "fingerprint_policy")[-1] == {"exportable": True, "actor": "prov"}
        assert not list(tmp_path.rglob("export-*"))  # nothing was written by the refusal
        nothing = fp.identify([release_dir])  # no export yet: no candidate, no key needed
        assert not nothing.identified and nothing.candidates == 0
    finally:
        v.close()


def test_an_export_needs_a_live_grant_and_the_refusal_is_audited(env: Env, tmp_path: Path) -> None:
    with pytest.raises(Forbidden, match="no live grant"):
        env.fp.export("pick", 1, by=env.vault.identities.get("bob"))
    with pytest.raises(Forbidden, match="no live grant"):
        env.fp.export("pick", 1, lab="lab-b", out=tmp_path / "b")
    assert not (tmp_path / "b").exists()
    assert [r["actor"] for r in _actions(env.vault, "fingerprint_export_refused")][-2:] == \
        ["bob", "local"]
    with pytest.raises(Forbidden, match="not a member"):
        env.fp.export("pick", 1, by=env.vault.identities.get("bob"), lab="lab-a")


def test_each_export_is_recorded_and_audited_before_it_is_served(env: Env) -> None:
    rows = {e.lab: e for e in env.fp.exports(dataset="pick")}
    assert set(rows) == {"lab-a", "lab-c", "lab-d"}
    assert rows["lab-a"].stored and not rows["lab-d"].stored
    assert len({e.export_id for e in rows.values()}) == 3
    done = {d["lab"]: d for d in _actions(env.vault, "fingerprint_export")}
    assert set(done) == {"lab-a", "lab-c", "lab-d"}
    assert done["lab-a"]["actor"] == "alice" and done["lab-d"]["actor"] == "local"
    assert done["lab-a"]["release_sha256"] == rows["lab-a"].release_sha256
    assert len(_actions(env.vault, "export_pull")) >= len(list(env.alice.rglob("*.json")))
    # the same grant gets the same copy back, not a second pattern
    again = env.fp.export("pick", 1, by=env.vault.identities.get("alice"))
    assert again.export_id == rows["lab-a"].export_id
    assert len(env.fp.exports(lab="lab-a")) == 1


def test_a_copy_holds_the_grant_s_episodes_and_streams_with_every_frame_changed(env: Env) -> None:
    src = ReleaseReader(env.release)
    for base, episodes, streams in ((env.alice, 3, set(src.streams)), (env.dave, 2, set(src.streams)),
                                    (env.carol, 3, set(src.streams) - {HEAD})):
        copy = ReleaseReader(base)
        assert len(copy.episodes) == episodes and set(copy.streams) == streams
        assert copy.attributes["fingerprinted"]["format"] == "demofab.fingerprint/1"
        for name in copy.streams:
            if not copy.stream(name).is_camera:
                continue
            lo, hi = src.bounds(name)[0]
            before = [src.payload(name, r) for r in range(lo, hi)]
            after = [copy.payload(name, r) for r in range(lo, hi)]
            assert all(a != b for a, b in zip(before, after, strict=True)), name
            ch = frame_change(before, after)
            assert ch.psnr_db >= 40 and ch.ssim >= 0.99 and abs(ch.mean_shift) < 0.5, ch
    manifest = json.loads((env.alice / "manifest.json").read_text())
    listed = {p for p in manifest["files"]} | {"manifest.json"}
    on_disk = {p.relative_to(env.alice).as_posix() for p in env.alice.rglob("*") if p.is_file()}
    assert listed == on_disk
    for rel in (f"streams/{HEAD}/data/values/c/0", "episodes.json"):
        import hashlib
        assert manifest["files"][rel]["sha256"] == hashlib.sha256(
            (env.alice / rel).read_bytes()).hexdigest()


def test_everything_but_the_frames_of_a_full_copy_is_the_original_s_bytes(env: Env) -> None:
    files = [p.relative_to(env.release).as_posix() for p in env.release.rglob("*") if p.is_file()]
    changed = [rel for rel in files
               if (env.alice / rel).read_bytes() != (env.release / rel).read_bytes()]
    cams = sorted(camera_streams(reader_of(env.release)))
    assert len(cams) == 3
    # the frames, their offsets, and the values' shape (the re-encoded frames' total size)
    assert sorted(changed) == sorted(["zarr.json", "manifest.json"] + [
        f"streams/{c}/data/{f}" for c in cams
        for f in ("values/c/0", "values/zarr.json", "offsets/c/0")])
    src, copy = ReleaseReader(env.release), ReleaseReader(env.alice)
    for name in src.streams:
        assert np.array_equal(src.times(name), copy.times(name))
        assert np.array_equal(src.bounds(name), copy.bounds(name))


def test_the_copies_of_two_labs_carry_different_patterns(env: Env) -> None:
    a = frames_of(reader_of(env.alice), HEAD)
    d = frames_of(reader_of(env.dave), HEAD)
    ya = cv2.imdecode(np.frombuffer(a[0], np.uint8), cv2.IMREAD_GRAYSCALE).astype(float)
    yd = cv2.imdecode(np.frombuffer(d[0], np.uint8), cv2.IMREAD_GRAYSCALE).astype(float)
    yo = cv2.imdecode(np.frombuffer(frames_of(reader_of(env.release), HEAD)[0],
                                    np.uint8), cv2.IMREAD_GRAYSCALE).astype(float)
    da, dd = cv2.resize(ya - yo, (32, 24), interpolation=cv2.INTER_AREA), \
        cv2.resize(yd - yo, (32, 24), interpolation=cv2.INTER_AREA)
    corr = float(np.corrcoef(da.ravel(), dd.ravel())[0, 1])
    assert abs(corr) < 0.2  # independent patterns; each copy against itself is 1


def test_an_export_into_a_non_empty_directory_is_refused(env: Env, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(FingerprintError, match="not empty"):
        env.fp.export("pick", 1, lab="lab-d", out=tmp_path / "x")
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_the_fingerprint_key_lives_outside_the_root_with_mode_0600(env: Env, tmp_path: Path) -> None:
    assert env.fp.key_file.exists() and not env.fp.key_file.is_relative_to(env.vault.root)
    assert os.stat(env.fp.key_file).st_mode & 0o777 == 0o600
    loose = tmp_path / "fp.key"
    shutil.copy(env.fp.key_file, loose)
    os.chmod(loose, 0o644)
    with pytest.raises(KeyFileError, match="0644"):
        Fingerprints(env.vault, key_file=loose).key()
    with pytest.raises(KeyFileError, match="does not exist"):
        Fingerprints(env.vault, key_file=tmp_path / "none").identify([env.dave])


def test_a_release_without_camera_streams_cannot_carry_a_fingerprint(env: Env) -> None:
    files = {"zarr.json": json.dumps({"attributes": {"demofab": {"streams": []}}}).encode()}
    from vault.fingerprint import fingerprint_release
    from vault.fingerprint.mark import code
    with pytest.raises(FingerprintError, match="no camera stream"):
        fingerprint_release(files.__getitem__, code(b"k", "x"))
    assert camera_streams(files.__getitem__) == {}


def test_the_pattern_averages_out_over_a_stream_s_frames(env: Env) -> None:
    """Each frame carries the pattern with a keyed sign: no pixel of the copy is brighter
    or darker on average than the original (a model sees no constant offset)."""
    src = frames_of(reader_of(env.release), HEAD)
    copy = frames_of(reader_of(env.alice), HEAD)
    deltas = np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE).astype(float)
                       - cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_GRAYSCALE)
                       for a, b in zip(src, copy, strict=True)])
    cells = np.stack([cv2.resize(d, (32, 24), interpolation=cv2.INTER_AREA) for d in deltas])
    one = float(np.sqrt(np.mean(cells ** 2)))  # a frame's pattern, cell by cell
    mean = float(np.sqrt(np.mean(cells.mean(axis=0) ** 2)))  # what stays on average
    assert one > 0.8 and mean < one / 3, (one, mean)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_exports_and_identification_with_the_catalog_on_postgresql(
        tmp_path: Path, release_dir: Path, database_url: str) -> None:  # noqa: F811
    v = make_vault(tmp_path, release_dir, catalog_url=database_url)
    try:
        fp = Fingerprints(v)
        fp.set_exportable("pick", True)
        fp.export("pick", 1, lab="lab-d", out=tmp_path / "d")
        first = fp.export("pick", 1, by=v.identities.get("dave"))
        assert [e.export_id for e in fp.exports(lab="lab-d")] == [first.export_id]
        result = fp.identify([tmp_path / "d"])
        assert [m.export.lab for m in result.matches] == ["lab-d"]
    finally:
        v.close()


def test_the_package_exports_every_public_name() -> None:
    import vault.fingerprint as pkg

    for name in pkg.__all__:
        assert getattr(pkg, name) is not None, name
