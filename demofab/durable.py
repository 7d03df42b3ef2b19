"""Durable file I/O: fsync by path, atomic replacement, and new files written in pieces
(through O_DIRECT where the filesystem allows it) and hashed on the way.

Shared by the recorder's episode writer and curation's release writer. A writer that
keeps a record of what it wrote (curation's manifest) passes a :class:`WriteLog`; this
module reports every file it closes to it and holds no state about them itself.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

import numpy as np

__all__ = ["DIRECT_MIN", "FileSink", "WriteLog", "atomic_write", "fsync_parent", "fsync_path",
           "move_dir", "write_file"]

Buffer = bytes | memoryview


class WriteLog(Protocol):
    """Where the writers of this module report each file they close."""

    def hashed(self, path: Path, digest: str, size: int) -> None:
        """``path`` is closed and its sha256 is ``digest``; only its fsync is left."""

    def written(self, path: Path, parts: Sequence[Buffer]) -> None:
        """``path`` is closed and holds ``parts`` back to back; hash and fsync are left."""


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_parent(path: str | Path) -> None:
    """fsync the directory that holds ``path``, so that its entry (a new name) is durable."""
    fsync_path(Path(path).parent)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new one:
    written to ``path.tmp``, fsynced, renamed over ``path``, and the directory fsynced.
    On failure (a full disk) the temporary file goes and ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    raw = data.encode() if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_parent(path)


def move_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` (creating ``dst``'s parent); nothing to do if ``src`` is
    not there yet."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.exists():
        os.rename(src, dst)


# -- direct I/O ---------------------------------------------------------------------------
# Large files are written with O_DIRECT through a reused, page-aligned staging buffer per
# thread: the bytes are copied once into memory that is already mapped and hot, hashed
# there, and go to the disk without passing through the page cache. Buffered writes of
# hundreds of MB into fresh page-cache pages cost more CPU than all of curation's decoding
# here (see docs/architecture.md, "Writing a release"). Filesystems that refuse O_DIRECT
# (tmpfs, some overlays) get the buffered path.
DIRECT_MIN = 1 << 20        # files smaller than this are written buffered
_STAGE = 8 << 20            # staging buffer per thread (a multiple of the block size)
_BLOCK = 4096               # O_DIRECT alignment of offsets and lengths
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_no_direct: set[int] = set()  # st_dev of filesystems that refused O_DIRECT
_stages: list[memoryview] = []  # free staging buffers, reused (their pages stay mapped)
_stages_lock = threading.Lock()


def _take_stage() -> memoryview:
    with _stages_lock:
        if _stages:
            return _stages.pop()
    return memoryview(mmap.mmap(-1, _STAGE))


def _give_stage(stage: memoryview) -> None:
    with _stages_lock:
        _stages.append(stage)


def _write_all(fd: int, data: memoryview) -> None:
    while len(data):
        n = os.write(fd, data)
        data = data[n:]


class FileSink:
    """A new file written piece by piece and hashed on the way: through a page-aligned
    staging buffer with O_DIRECT where the filesystem allows it, else buffered. ``close``
    returns (sha256, size) and reports them to ``log``; ``abort`` removes the file."""

    def __init__(self, path: Path, log: WriteLog | None = None) -> None:
        self.path = Path(path)
        self.log = log
        self.size = 0
        self._h = hashlib.sha256()
        self._stage: memoryview | None = None
        self._fill = 0
        self._flushed = False
        self._fd = -1
        self._file: IO[bytes] | None = None
        dev = os.stat(self.path.parent).st_dev
        if _O_DIRECT and dev not in _no_direct:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_DIRECT,
                                   0o644)
                self._stage = _take_stage()
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                _no_direct.add(dev)
        if self._stage is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close/abort

    def write(self, part: bytes | memoryview | np.ndarray) -> None:
        mv = (part.data if isinstance(part, np.ndarray) else memoryview(part)).cast("B")
        self.size += len(mv)
        if self._stage is None:
            assert self._file is not None
            self._h.update(mv)
            self._file.write(mv)
            return
        stage = self._stage
        while len(mv):
            n = min(len(mv), _STAGE - self._fill)
            stage[self._fill:self._fill + n] = mv[:n]
            self._fill += n
            mv = mv[n:]
            if self._fill == _STAGE:
                self._h.update(stage)
                self._flush(stage)
                self._fill = 0

    def _flush(self, data: memoryview) -> None:
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            if exc.errno != errno.EINVAL or self._flushed:
                raise
            # the filesystem took the open but refuses direct writes: buffered from here
            _no_direct.add(os.fstat(self._fd).st_dev)
            os.close(self._fd)
            self._fd = -1
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close/abort
            self._file.write(data)
            assert self._stage is not None
            stage, self._stage = self._stage, None
            rest = bytes(stage[len(data):self._fill]) if self._fill > len(data) else b""
            _give_stage(stage)
            self._file.write(rest)
            return
        self._flushed = True

    def close(self) -> tuple[str, int]:
        try:
            if self._stage is not None:
                stage = self._stage
                if self._fill:
                    self._h.update(stage[:self._fill])
                    padded = -(-self._fill // _BLOCK) * _BLOCK
                    stage[self._fill:padded] = bytes(padded - self._fill)
                    self._flush(stage[:padded])
                if self._fd >= 0:
                    os.ftruncate(self._fd, self.size)  # drop the padding of the last block
            if self._file is not None:
                self._file.flush()
        except BaseException:
            self.abort()
            raise
        self._release()
        digest = self._h.hexdigest()
        if self.log is not None:
            self.log.hashed(self.path, digest, self.size)
        return digest, self.size

    def abort(self) -> None:
        self._release()
        self.path.unlink(missing_ok=True)

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._stage is not None:
            _give_stage(self._stage)
            self._stage = None


def write_file(path: Path, parts: Sequence[Buffer], log: WriteLog | None = None) -> None:
    """Write ``parts`` back to back into a new file ``path``, reported to ``log``. Large
    files go through a :class:`FileSink` (direct I/O), small ones are written buffered.
    Neither is fsynced here: that is the log's job (or the caller's, see fsync_path)."""
    size = sum(len(p) for p in parts)
    if size >= DIRECT_MIN:
        sink = FileSink(path, log)
        try:
            for part in parts:
                sink.write(part)
        except BaseException:
            sink.abort()
            raise
        sink.close()
        return
    with open(path, "wb") as f:
        f.writelines(parts)
    if log is not None:
        log.written(path, parts)
