"""The manifest of a release version: sha256 and size of every file, and the record of
the files written into a new version (:class:`WrittenFiles`), from which it takes them."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from demofab.durable import fsync_path, move_dir

from .errors import ReleaseError
from .inputs import sha256_file

__all__ = ["MANIFEST", "MANIFEST_VERSION", "WrittenFiles", "build_manifest", "verify",
           "write_manifest"]

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class WrittenFiles(Mapping[str, tuple[str, int]]):
    """sha256 and size of every file the release writers report, by path, so that the
    manifest takes them from here instead of reading the files back.

    Passed explicitly to the writers (``zwrite``, ``durable``), which report each file as
    they close it, from several threads at once. One background thread hashes the files
    whose writers did not, and fsyncs each file (hashlib and fsync release the GIL), so
    that work overlaps the encoding of the next array on the second core. Use it as a
    context manager: leaving the block waits for every hash and fsync and re-raises the
    first failure; a mapping of the files after that."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[str, int]] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="manifest-hash")
        self._jobs: list[Future[None]] = []
        self._lock = threading.Lock()  # writers on several threads report files

    # -- the WriteLog protocol of demofab.durable ------------------------------------------
    def hashed(self, path: Path, digest: str, size: int) -> None:
        """A file whose writer computed its hash: only the fsync is left."""
        with self._lock:
            self._files[str(path)] = (digest, size)
            self._jobs.append(self._pool.submit(fsync_path, path))

    def written(self, path: Path, parts: Sequence[bytes | memoryview]) -> None:
        """A file holding ``parts``: hashed and fsynced in the background."""
        with self._lock:
            self._jobs.append(self._pool.submit(self._hash_and_sync, path, parts))

    def _hash_and_sync(self, path: Path, parts: Sequence[bytes | memoryview]) -> None:
        h = hashlib.sha256()
        for p in parts:
            h.update(p)
        entry = (h.hexdigest(), sum(len(p) for p in parts))
        with self._lock:
            self._files[str(path)] = entry
        fsync_path(path)

    # -- changes to what was written -------------------------------------------------------
    def drain(self) -> None:
        """Wait for the hashes and fsyncs queued so far (re-raising a failure)."""
        with self._lock:
            jobs, self._jobs = self._jobs, []
        for job in jobs:
            job.result()

    def forget(self, root: Path) -> None:
        """Files under ``root`` (about to be deleted) leave the record."""
        self.drain()
        prefix = str(root) + os.sep
        with self._lock:
            for key in [k for k in self._files if k.startswith(prefix) or k == str(root)]:
                del self._files[key]

    def move(self, src: Path, dst: Path) -> None:
        """Rename a written directory; its files keep their place in the record under
        their new paths."""
        self.drain()  # no queued fsync may look for a file under the old name
        move_dir(src, dst)
        old, new = str(src) + os.sep, str(dst) + os.sep
        with self._lock:
            for key in [k for k in self._files if k.startswith(old)]:
                self._files[new + key[len(old):]] = self._files.pop(key)

    def close(self) -> None:
        """Wait for every hash and fsync (re-raising the first failure), then stop."""
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> WrittenFiles:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- Mapping -----------------------------------------------------------------------------
    def __getitem__(self, path: str) -> tuple[str, int]:
        with self._lock:
            return self._files[path]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._files))

    def __len__(self) -> int:
        return len(self._files)


def build_manifest(root: Path, name: str, version: int,
                   known: Mapping[str, tuple[str, int]] | None = None) -> dict[str, Any]:
    """``known``: sha256 and size of files by path, as written (checked against the size)."""
    files = {}
    known = known if known is not None else {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(root).as_posix()
            size = p.stat().st_size
            k = known.get(str(p))
            files[rel] = {"sha256": k[0] if k and k[1] == size else sha256_file(p), "size": size}
    lines = "".join(f"{v['sha256']}  {k}\n" for k, v in sorted(files.items()))
    return {"format_version": MANIFEST_VERSION, "name": name, "version": version,
            "files": files, "release_sha256": hashlib.sha256(lines.encode()).hexdigest()}


def write_manifest(root: Path, name: str, version: int,
                   known: Mapping[str, tuple[str, int]] | None = None) -> dict[str, Any]:
    m = build_manifest(root, name, version, known)
    (root / MANIFEST).write_text(json.dumps(m, indent=1, sort_keys=True))
    return m


def verify(root: Path) -> list[str]:
    """Files that differ from the manifest (empty when the version is intact)."""
    try:
        m = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{root / MANIFEST}: cannot read the manifest: {exc}") from exc
    bad = []
    for rel, info in m["files"].items():
        p = root / rel
        if not p.is_file():
            bad.append(f"{rel}: missing")
        elif sha256_file(p) != info["sha256"]:
            bad.append(f"{rel}: sha256 differs")
    extra = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    extra -= set(m["files"]) | {MANIFEST}
    bad.extend(f"{rel}: not in the manifest" for rel in sorted(extra))
    return bad
