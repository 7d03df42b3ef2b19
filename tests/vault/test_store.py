"""The object store under the vault root: whole release trees in and out, names that
never become paths, immutability of a stored version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vault.crypto import ObjectRef
from vault.errors import TamperError, VaultError
from vault.store import SUFFIX, ObjectStore

KEY = os.urandom(32)


def release(tmp_path: Path) -> Path:
    src = tmp_path / "release" / "v3"
    (src / "data" / "cameras" / "head").mkdir(parents=True)
    (src / "manifest.json").write_text('{"episodes": 3, "task": "pick up the box"}\n')
    (src / "data" / "cameras" / "head" / "values").write_bytes(os.urandom(5000))
    (src / "data" / "zarr.json").write_text('{"zarr_format": 3}\n')
    return src


def test_a_release_tree_goes_in_and_comes_out_file_by_file(tmp_path: Path) -> None:
    src = release(tmp_path)
    store = ObjectStore(tmp_path / "vault")
    infos = store.put_tree("kitchen", "v3", KEY, src, chunk_size=1024)
    names = [i.ref.name for i in infos]
    assert names == ["data/cameras/head/values", "data/zarr.json", "manifest.json"]
    for info in infos:
        with store.open(info.ref, KEY) as r:
            assert r.read_all() == (src / info.ref.name).read_bytes()
    stored = sorted(p.name for p in (tmp_path / "vault" / "objects" / "kitchen").iterdir())
    assert len(stored) == 3 and all(n.endswith(SUFFIX) for n in stored)
    assert not any("manifest" in n or "values" in n for n in stored)


def test_a_name_never_becomes_a_path(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "vault")
    ref = ObjectRef("kitchen", "v1", "../../../../etc/passwd")
    store.put(ref, KEY, b"not a password file")
    path = store.path(ref)
    assert path.parent == tmp_path / "vault" / "objects" / "kitchen"
    with store.open(ref, KEY) as r:
        assert r.read_all() == b"not a password file"
    with pytest.raises(VaultError, match="dataset id"):
        ObjectRef("../kitchen", "v1", "x")


def test_a_stored_version_is_immutable_unless_replaced_on_purpose(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "vault")
    ref = ObjectRef("kitchen", "v1", "episodes/ep_1.mcap")
    store.put(ref, KEY, b"first")
    with pytest.raises(VaultError, match="stored already"):
        store.put(ref, KEY, b"second")
    store.put(ref, KEY, b"second", replace=True)
    with store.open(ref, KEY) as r:
        assert r.read_all() == b"second"
    assert store.exists(ref)
    store.remove(ref)
    assert not store.exists(ref)
    with pytest.raises(VaultError, match="not stored"):
        store.open(ref, KEY)


def test_an_object_copied_over_another_is_detected(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "vault")
    a, b = (ObjectRef("kitchen", "v1", n) for n in ("a.bin", "b.bin"))
    store.put(a, KEY, b"the content of a")
    store.put(b, KEY, b"the content of b")
    store.path(b).write_bytes(store.path(a).read_bytes())
    with pytest.raises(TamperError, match="holds object kitchen/v1/a.bin, not kitchen/v1/b.bin"):
        store.open(b, KEY)


def test_a_tree_with_a_symlink_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    src = release(tmp_path)
    (src / "link").symlink_to(src / "manifest.json")
    store = ObjectStore(tmp_path / "vault")
    with pytest.raises(VaultError, match="symlink"):
        store.put_tree("kitchen", "v3", KEY, src)
    assert not (tmp_path / "vault" / "objects").exists()
