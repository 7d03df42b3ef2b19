"""Durable file I/O (``demofab.durable``): direct-I/O writes and their fallback give the
bytes and hashes of plain writes, failures leave no partial file, atomic replacement
keeps the old file when the new one cannot be written."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from curation.manifest import WrittenFiles
from demofab import durable


def _parts(total: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, total, dtype=np.uint8).tobytes()
    cuts = sorted({0, total, *rng.integers(0, total, 7).tolist()})
    return [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


@pytest.mark.parametrize("total", [durable.DIRECT_MIN - 1, durable.DIRECT_MIN,
                                   durable._STAGE + 4095, 3 * durable._STAGE, 5_000_001])
def test_shard_files_hold_the_parts_and_their_sha256(tmp_path: Path, total: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = durable._take_stage

    def take() -> memoryview:
        calls.append(1)
        return real()

    monkeypatch.setattr(durable, "_take_stage", take)
    parts = _parts(total)
    path = tmp_path / "shard"
    with WrittenFiles() as written:
        durable.write_file(path, parts, written)
    data = b"".join(parts)
    assert path.read_bytes() == data
    assert written[str(path)] == (hashlib.sha256(data).hexdigest(), total)
    direct_here = os.stat(tmp_path).st_dev not in durable._no_direct and durable._O_DIRECT
    assert bool(calls) == bool(direct_here and total >= durable.DIRECT_MIN)


def test_a_filesystem_that_refuses_direct_io_gets_buffered_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = os.O_DIRECT if hasattr(os, "O_DIRECT") else 1 << 30
    real_open = os.open

    def refuse(path: str, flags: int, *a: int) -> int:
        if flags & direct:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", refuse)  # durable.os is os
    monkeypatch.setattr(durable, "_O_DIRECT", direct)
    monkeypatch.setattr(durable, "_no_direct", set())
    parts = _parts(2 * durable.DIRECT_MIN)
    with WrittenFiles() as written:
        durable.write_file(tmp_path / "a", parts, written)
    assert (tmp_path / "a").read_bytes() == b"".join(parts)
    assert written[str(tmp_path / "a")][0] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert os.stat(tmp_path).st_dev in durable._no_direct  # not tried again on this disk


def test_a_failed_direct_write_leaves_no_partial_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if not durable._O_DIRECT or os.stat(tmp_path).st_dev in durable._no_direct:
        pytest.skip("this filesystem has no O_DIRECT")

    def full(_fd: int, _data: memoryview) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(durable, "_write_all", full)
    with pytest.raises(OSError, match="No space left"), WrittenFiles() as written:
        durable.write_file(tmp_path / "a", _parts(2 * durable.DIRECT_MIN), written)
    assert not (tmp_path / "a").exists()
    assert str(tmp_path / "a") not in written


def test_a_sink_reports_what_it_wrote_to_its_log(tmp_path: Path) -> None:
    seen: list[tuple[Path, str, int]] = []

    class Log:
        def hashed(self, path: Path, digest: str, size: int) -> None:
            seen.append((path, digest, size))

        def written(self, path: Path, parts: Sequence[bytes | memoryview]) -> None:
            raise AssertionError("a sink hashes its own file")

    sink = durable.FileSink(tmp_path / "f", Log())
    sink.write(b"abc")
    sink.write(np.arange(4, dtype=np.uint8))
    assert sink.close() == (hashlib.sha256(b"abc\0\1\2\3").hexdigest(), 7)
    assert seen == [(tmp_path / "f", hashlib.sha256(b"abc\0\1\2\3").hexdigest(), 7)]


def test_atomic_write_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    durable.atomic_write(path, "old\n")
    durable.atomic_write(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state.yaml"]


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.yaml"
    durable.atomic_write(path, "old\n")

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        durable.atomic_write(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state.yaml"]  # no .tmp left


def test_fsync_by_path_reports_a_missing_file(tmp_path: Path) -> None:
    durable.fsync_path(tmp_path)
    durable.fsync_parent(tmp_path / "anything")
    with pytest.raises(FileNotFoundError):
        durable.fsync_path(tmp_path / "missing")
