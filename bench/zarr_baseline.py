"""zarr-python as the baseline of DemoFab's own Zarr v3 writer and reader.

``curation.zwrite`` and ``curation.loader.zarrread`` replace zarr-python on the hot paths
(see their docstrings); these helpers time both on the same arrays of a release, with the
same shards, inner chunks, codecs and fill values, for the ``vs_zarr_python`` keys of
``bench curate`` and ``bench load``. Both sides are checked to give the same values.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .timing import best_of


@dataclass
class Spec:
    """One array of a release: where it is, its data, and how it is chunked."""

    rel: str
    data: np.ndarray[Any, Any]
    chunk_rows: int
    shard_rows: int
    compress: bool
    attributes: dict[str, Any]


def release_arrays(release: Path) -> list[Spec]:
    """Every array of a release (``streams/`` and ``sync/``), read into memory."""
    from curation.loader import ShardedArrayReader

    out = []
    for meta_path in sorted(release.rglob("zarr.json")):
        meta = json.loads(meta_path.read_text())
        if meta.get("node_type") != "array":
            continue
        cfg = meta["codecs"][0]["configuration"]
        path = meta_path.parent
        out.append(Spec(path.relative_to(release).as_posix(),
                        ShardedArrayReader(path).read(), int(cfg["chunk_shape"][0]),
                        int(meta["chunk_grid"]["configuration"]["chunk_shape"][0]),
                        any(c["name"] == "zstd" for c in cfg["codecs"]),
                        meta.get("attributes") or {}))
    return out


def write_zwrite(specs: list[Spec], root: Path) -> None:
    """The arrays written by ``curation.zwrite``, each file hashed and fsynced through the
    release's record of written files (as a release is written)."""
    from curation.manifest import WrittenFiles
    from curation.zwrite import write_array

    with WrittenFiles() as record:
        for s in specs:
            write_array(root / s.rel, s.data, s.chunk_rows, s.shard_rows, s.compress,
                        s.attributes, record)


def write_zarr_python(specs: list[Spec], root: Path) -> None:
    """The same arrays written by zarr-python (same shards, chunks, codecs), then fsynced."""
    import zarr
    from zarr.codecs import ZstdCodec

    from curation.zwrite import ZSTD_LEVEL, fsync_tree

    for s in specs:
        tail = tuple(s.data.shape[1:])
        arr = zarr.create_array(
            str(root / s.rel), shape=s.data.shape, dtype=s.data.dtype,
            chunks=(s.chunk_rows, *tail), shards=(s.shard_rows, *tail),
            compressors=[ZstdCodec(level=ZSTD_LEVEL, checksum=False)] if s.compress else None,
            filters=None, fill_value=False if s.data.dtype.kind == "b" else 0,
            attributes=s.attributes, zarr_format=3)
        if len(s.data):
            arr[...] = s.data
    fsync_tree(root)


def compare_writes(release: Path, work: Path, repeat: int) -> dict[str, Any]:
    """Best-of-``repeat`` time to write every array of ``release`` with zwrite and with
    zarr-python, taking turns; ``vs_zarr_python`` is zarr-python's time over ours."""
    import zarr

    specs = release_arrays(release)
    total = sum(s.data.nbytes for s in specs)
    dirs = {"ours": work / "zwrite", "zarr": work / "zarr-python"}

    def side(name: str, fn: Callable[[list[Spec], Path], None]) -> Callable[[], None]:
        def run() -> None:
            shutil.rmtree(dirs[name], ignore_errors=True)
            fn(specs, dirs[name])
        return run

    try:
        ours_s, zarr_s = best_of([side("ours", write_zwrite), side("zarr", write_zarr_python)],
                               max(1, repeat))
        for s in specs:  # same values, or the comparison means nothing
            for d in dirs.values():
                got = zarr.open_array(str(d / s.rel), mode="r")[...]
                np.testing.assert_array_equal(np.asarray(got), s.data, err_msg=s.rel)
    finally:
        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)
    return {"arrays": len(specs), "array_mb": round(total / 1e6, 2),
            "zwrite_s": round(ours_s, 3), "zarr_python_s": round(zarr_s, 3),
            "vs_zarr_python": round(zarr_s / ours_s, 2)}


def compare_reads(release: Path, reads: int, repeat: int, seed: int) -> dict[str, Any]:
    """Random single rows of every numeric array under the release's ``streams/`` (clocks,
    fields, offsets), read with ``ShardedArrayReader`` and with zarr-python, taking turns,
    best of ``repeat``. ``vs_zarr_python``: our rows per second over zarr-python's with our
    chunk cache off (every read fetches and decodes its chunk, as zarr-python's does);
    ``vs_zarr_python_cached``: with the loader's LRU of decoded chunks (its default use)."""
    import zarr

    from curation.loader import ChunkCache, ShardedArrayReader

    paths = [p.parent for p in sorted((release / "streams").rglob("zarr.json"))
             if json.loads(p.read_text()).get("node_type") == "array"
             and p.parent.name != "values"]  # camera bytes: read by byte range, not rows
    cold = [ShardedArrayReader(p, ChunkCache(0)) for p in paths]
    warm = [ShardedArrayReader(p, ChunkCache(256 << 20)) for p in paths]
    theirs = [zarr.open_array(str(p), mode="r") for p in paths]
    rng = np.random.default_rng(seed)
    picks = [(int(a), int(rng.integers(0, len(cold[a]))))
             for a in rng.integers(0, len(paths), reads) if len(cold[a])]
    for a, i in picks[:200]:  # same values, or the comparison means nothing
        want = np.asarray(theirs[a][i])
        np.testing.assert_array_equal(cold[a].row(i), want)
        np.testing.assert_array_equal(warm[a].row(i), want)

    def reader(arrays: list[Any]) -> Callable[[], None]:
        def run() -> None:
            for a, i in picks:
                arrays[a].row(i)
        return run

    def run_zarr() -> None:
        for a, i in picks:
            theirs[a][i]

    reader(warm)()  # the cache filled, the files in the page cache
    cold_s, warm_s, zarr_s = best_of([reader(cold), reader(warm), run_zarr], max(1, repeat))
    n = len(picks)
    return {"zarr_arrays": len(paths), "zarr_reads": n,
            "reader_rows_per_s": round(n / cold_s), "reader_cached_rows_per_s": round(n / warm_s),
            "zarr_python_rows_per_s": round(n / zarr_s),
            "vs_zarr_python": round(zarr_s / cold_s, 2),
            "vs_zarr_python_cached": round(zarr_s / warm_s, 2)}
