"""The lean Zarr v3 writer: every array it writes reads back with zarr-python and
tensorstore, and every file it closes is in the record the manifest takes hashes from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorstore as ts
import zarr

import curation.zwrite
from curation.manifest import WrittenFiles, build_manifest
from curation.zwrite import ArrayWriter, write_array, write_group


def _read_all(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The array as zarr-python and as tensorstore read it."""
    with_zarr = zarr.open_array(str(path), mode="r")[:]
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}).result()
    return np.asarray(with_zarr), np.asarray(store.read().result())


def _files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("tail", [(), (3,)])
def test_blocks_across_chunk_and_shard_edges_read_back(tmp_path: Path, compress: bool,
                                                       tail: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, 255, size=(n, *tail), dtype=np.uint8) for n in (5, 30, 2, 13, 1)]
    data = np.concatenate(blocks)
    path = tmp_path / "a"
    with WrittenFiles() as written:
        w = ArrayWriter(path, len(data), tail, np.uint8, chunk_rows=7, shard_rows=21,
                        compress=compress, record=written)
        for b in blocks:
            w.append(b)
        w.close()
    for got in _read_all(path):
        assert np.array_equal(got, data)
    shards = sorted(p for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")
    assert len(shards) == 3  # 51 rows in shards of 21
    assert set(written) == _files(path)  # every file, metadata too, hashed for the manifest


@pytest.mark.parametrize("dtype", ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                                   "uint32", "uint64", "float32", "float64"])
@pytest.mark.parametrize("compress", [False, True])
def test_every_dtype_reads_back_with_both_readers(tmp_path: Path, dtype: str,
                                                  compress: bool) -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(45, 2, 3)) * 1000
    data = (raw > 0) if dtype == "bool" else raw.astype(dtype)
    write_array(tmp_path / "a", data, chunk_rows=4, shard_rows=16, compress=compress,
                attributes={"unit": "m"})
    for got in _read_all(tmp_path / "a"):
        assert got.dtype == data.dtype and np.array_equal(got, data)
    assert zarr.open_array(str(tmp_path / "a"), mode="r").attrs["unit"] == "m"


def test_empty_arrays_and_groups_open_with_zarr_python(tmp_path: Path) -> None:
    write_group(tmp_path, {"name": "r"})
    write_array(tmp_path / "empty", np.zeros((0, 4), np.float32), chunk_rows=8, shard_rows=64)
    g = zarr.open_group(str(tmp_path), mode="r")
    assert g.attrs["name"] == "r"
    arr = g["empty"]
    assert isinstance(arr, zarr.Array) and arr.shape == (0, 4)
    store = ts.open({"driver": "zarr3",
                     "kvstore": {"driver": "file", "path": str(tmp_path / "empty")}}).result()
    assert store.shape == (0, 4)


def test_rows_counted_as_they_come_write_the_metadata_last(tmp_path: Path) -> None:
    frames = [bytes([i]) * (100 + i) for i in range(40)]
    w = ArrayWriter(tmp_path / "v", -1, (), np.uint8, chunk_rows=64, shard_rows=1024,
                    compress=False)
    for f in frames:
        w.append(np.frombuffer(f, np.uint8))
    assert not (tmp_path / "v" / "zarr.json").exists()
    w.close()
    for got in _read_all(tmp_path / "v"):
        assert got.tobytes() == b"".join(frames)


def test_a_moved_array_keeps_its_files_in_the_record(tmp_path: Path) -> None:
    """Camera frames written early are moved into place: the record follows them, and the
    manifest built from it equals one that reads every file back."""
    data = np.arange(5000, dtype=np.uint8)
    with WrittenFiles() as written:
        w = ArrayWriter(tmp_path / ".early" / "v", -1, (), np.uint8, chunk_rows=100,
                        shard_rows=2000, compress=False, record=written)
        w.append(data[:3000])
        w.move_to(tmp_path / "final" / "v")
        w.append(data[3000:])
        w.close()
    assert not (tmp_path / ".early" / "v").exists()
    assert set(written) == _files(tmp_path)
    for got in _read_all(tmp_path / "final" / "v"):
        assert np.array_equal(got, data)
    assert build_manifest(tmp_path, "r", 1, written) == build_manifest(tmp_path, "r", 1)


def test_forgotten_files_leave_the_record(tmp_path: Path) -> None:
    with WrittenFiles() as written:
        write_array(tmp_path / "keep", np.arange(10), 4, 8, record=written)
        write_array(tmp_path / "gone", np.arange(10), 4, 8, record=written)
        written.forget(tmp_path / "gone")
    assert written and all(k.startswith(str(tmp_path / "keep")) for k in written)


def test_the_record_holds_each_files_sha256_and_size(tmp_path: Path) -> None:
    with WrittenFiles() as written:
        write_array(tmp_path / "a", np.arange(3000, dtype=np.float64).reshape(-1, 3), 100, 400,
                    record=written)
    for path, (digest, size) in written.items():
        raw = Path(path).read_bytes()
        assert (digest, size) == (hashlib.sha256(raw).hexdigest(), len(raw))


def test_writers_on_several_threads_share_one_record(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(2)
    arrays = {f"a{i}": rng.normal(size=(int(rng.integers(1, 3000)), 4)) for i in range(24)}
    with WrittenFiles() as written, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda kv: write_array(tmp_path / kv[0], kv[1], 64, 512, record=written),
                      arrays.items()))
    assert set(written) == _files(tmp_path)
    for name, data in arrays.items():
        assert np.array_equal(zarr.open_array(str(tmp_path / name), mode="r")[:], data)


def test_a_failed_fsync_is_raised_when_the_record_closes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    import curation.manifest

    def eio(_path: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(curation.manifest, "fsync_path", eio)
    with pytest.raises(OSError, match="Input/output"), WrittenFiles() as written:
        write_array(tmp_path / "a", np.arange(10), 4, 8, record=written)
    assert os.path.exists(tmp_path / "a" / "zarr.json")


def test_the_old_module_names_still_import() -> None:
    from demofab import durable

    for name in curation.zwrite.__all__:
        assert hasattr(curation.zwrite, name), name
    assert curation.zwrite.write_file is durable.write_file
    assert curation.zwrite.fsync_path is durable.fsync_path


def test_metadata_is_what_the_sharding_spec_says(tmp_path: Path) -> None:
    write_array(tmp_path / "a", np.zeros((10, 2), "<f4"), chunk_rows=4, shard_rows=8)
    meta = json.loads((tmp_path / "a" / "zarr.json").read_text())
    shard = meta["codecs"][0]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [8, 2]
    assert shard["name"] == "sharding_indexed"
    assert shard["configuration"]["chunk_shape"] == [4, 2]
    assert shard["configuration"]["index_location"] == "end"
    assert [c["name"] for c in shard["configuration"]["index_codecs"]] == ["bytes", "crc32c"]


def test_shards_that_do_not_hold_whole_chunks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shards of 100 rows do not hold whole chunks of 30"):
        ArrayWriter(tmp_path / "a", 10, (), np.uint8, chunk_rows=30, shard_rows=100)
    assert not (tmp_path / "a").exists()
