"""The lean Zarr v3 writer: shards read back by zarr-python and tensorstore."""

from __future__ import annotations

import numpy as np
import pytest
import tensorstore as ts
import zarr

from curation import zwrite


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("tail", [(), (3,)])
def test_blocks_across_chunk_and_shard_edges_read_back(tmp_path, compress, tail):
    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, 255, size=(n, *tail), dtype=np.uint8) for n in (5, 30, 2, 13, 1)]
    data = np.concatenate(blocks)
    path = tmp_path / "a"
    with zwrite.recording() as written:
        w = zwrite.ArrayWriter(path, len(data), tail, np.uint8, chunk_rows=7, shard_rows=21,
                               compress=compress)
        for b in blocks:
            w.append(b)
        w.close()
    assert np.array_equal(zarr.open_array(str(path), mode="r")[:], data)
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}).result()
    assert np.array_equal(store.read().result(), data)
    shards = sorted(p for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")
    assert len(shards) == 3  # 51 rows in shards of 21
    assert {str(p) for p in shards} <= set(written)  # every shard hashed for the manifest
