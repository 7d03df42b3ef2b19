"""A read-only zarr v3 store over a release in the vault (:class:`vault.client.VaultRelease`).

Keys are the release's file paths (``streams/imu/orientation/c/0``); a key the release
does not have (for this caller's grant) is absent, answered from the file list without a
request. Byte requests become HTTP ``Range`` reads; ``zarr.json`` documents are cached by
the release. The HTTP calls are blocking (httpx), so each runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from .errors import VaultError

if TYPE_CHECKING:
    from .client import VaultRelease

__all__ = ["VaultStore"]


class VaultStore(Store):
    """Read-only zarr v3 store over :class:`~vault.client.VaultRelease` reads."""

    supports_writes = False
    supports_deletes = False
    supports_partial_writes = False
    supports_listing = True

    def __init__(self, release: VaultRelease) -> None:
        super().__init__(read_only=True)
        self.release = release

    def __repr__(self) -> str:
        return f"VaultStore({self.release.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VaultStore) and other.release.url == self.release.url

    def __hash__(self) -> int:
        return hash(self.release.url)

    def _read(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        size = self.release.size(key)
        if size is None:
            return None
        if byte_range is None:
            return self.release.read(key)
        if isinstance(byte_range, RangeByteRequest):
            start, stop = byte_range.start, min(byte_range.end, size)
        elif isinstance(byte_range, OffsetByteRequest):
            start, stop = byte_range.offset, size
        elif isinstance(byte_range, SuffixByteRequest):
            start, stop = max(0, size - byte_range.suffix), size
        else:
            raise VaultError(f"{self.release.url}: {key}: unknown byte request {byte_range!r}")
        return self.release.read_range(key, start, max(0, stop - start))

    async def get(self, key: str, prototype: BufferPrototype | None = None,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        """The bytes of ``key`` (or a range of them); None when absent."""
        proto = prototype or default_buffer_prototype()
        data = await asyncio.to_thread(self._read, key, byte_range)
        return None if data is None else proto.buffer.from_bytes(data)

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]
                                 ) -> list[Buffer | None]:
        """Several (key, range) reads, concurrently."""
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        """Whether the release has ``key``."""
        return await asyncio.to_thread(self.release.exists, key)

    async def set(self, key: str, value: Buffer) -> None:
        """Refused: a release in the vault is read-only."""
        raise VaultError(f"{self.release.url}: read-only; cannot write {key!r}")

    async def delete(self, key: str) -> None:
        """Refused: a release in the vault is read-only."""
        raise VaultError(f"{self.release.url}: read-only; cannot delete {key!r}")

    async def list(self) -> AsyncIterator[str]:
        """Every key."""
        for key in await asyncio.to_thread(self.release.files):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """Every key starting with ``prefix``."""
        for key in await asyncio.to_thread(self.release.files):
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """The names directly under ``prefix`` (files and directories)."""
        pre = prefix.rstrip("/")
        pre = pre + "/" if pre else ""
        seen: set[str] = set()
        for key in await asyncio.to_thread(self.release.files):
            if key.startswith(pre):
                name = key[len(pre):].split("/", 1)[0]
                if name and name not in seen:
                    seen.add(name)
                    yield name
