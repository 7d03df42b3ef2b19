"""Where encrypted objects live under the vault root.

``ROOT/objects/<dataset>/<id>.dfv``: the dataset id is checked to be a plain file name,
and ``<id>`` is a hash of the object's version and name, so no name a caller passes (an
episode's relative path, a release file's, or ``../../etc/passwd``) ever becomes a path
on disk, and the file names reveal nothing of the names they hold. What an object is
stays in its (authenticated) header.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from .crypto import DEFAULT_CHUNK_SIZE, ObjectInfo, ObjectReader, ObjectRef, encrypt_file, encrypt_object
from .errors import VaultError

__all__ = ["SUFFIX", "ObjectStore"]

SUFFIX = ".dfv"


class ObjectStore:
    """The encrypted objects of the vault at ``root``: put (encrypting as they are
    written, atomically), open (decrypting chunk by chunk), list a dataset's ids."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"

    def path(self, ref: ObjectRef) -> Path:
        """The file that holds ``ref``."""
        digest = hashlib.sha256(ref.context()).hexdigest()[:40]
        return self.objects / ref.dataset / f"{digest}{SUFFIX}"

    def _dest(self, ref: ObjectRef, replace: bool) -> Path:
        path = self.path(ref)
        if not replace and path.exists():
            raise VaultError(f"object {ref} is stored already ({path}); objects of a version "
                             f"are immutable (pass replace=True to rewrite it)")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def put(self, ref: ObjectRef, data_key: bytes,
            source: bytes | bytearray | memoryview | Iterable[bytes], *,
            chunk_size: int = DEFAULT_CHUNK_SIZE, replace: bool = False) -> ObjectInfo:
        """Encrypt ``source`` (bytes or an iterable of pieces) as object ``ref``."""
        return encrypt_object(self._dest(ref, replace), data_key, ref, source,
                              chunk_size=chunk_size)

    def put_file(self, ref: ObjectRef, data_key: bytes, src: str | Path, *,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, replace: bool = False) -> ObjectInfo:
        """Encrypt the file ``src`` as object ``ref``, two chunks in memory at a time."""
        return encrypt_file(src, self._dest(ref, replace), data_key, ref, chunk_size=chunk_size)

    def put_tree(self, dataset: str, version: str, data_key: bytes, src: str | Path, *,
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[ObjectInfo]:
        """Encrypt every file under the directory ``src`` (a release version, a recording
        session) as objects of ``dataset``/``version`` named by their relative POSIX
        paths, in sorted order. A symlink or special file is refused before anything is
        written."""
        base = Path(src)
        if not base.is_dir():
            raise VaultError(f"{base} is not a directory")
        files: list[Path] = []
        for path in sorted(base.rglob("*")):
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise VaultError(f"{path} is a symlink or a special file; only regular files "
                                 f"are stored")
            if stat.S_ISREG(mode):
                files.append(path)
        return [self.put_file(ObjectRef(dataset, version, p.relative_to(base).as_posix()),
                              data_key, p, chunk_size=chunk_size) for p in files]

    def exists(self, ref: ObjectRef) -> bool:
        """Whether ``ref`` is stored."""
        return self.path(ref).is_file()

    def open(self, ref: ObjectRef, data_key: bytes) -> ObjectReader:
        """A reader of ``ref`` (its header checked against ``ref`` and the key)."""
        path = self.path(ref)
        if not path.is_file():
            raise VaultError(f"object {ref} is not stored ({path} is missing)")
        return ObjectReader(path, data_key, ref)

    def remove(self, ref: ObjectRef) -> None:
        """Delete ``ref``'s file (a withdrawn recording); a missing one is an error."""
        path = self.path(ref)
        try:
            os.unlink(path)
        except FileNotFoundError as exc:
            raise VaultError(f"object {ref} is not stored ({path} is missing)") from exc
