"""CRC-32 (the IEEE polynomial of zlib and of MCAP's chunk and data CRCs), from ISA-L when
it is installed: about 6x faster than zlib's here (18 against 3 GB/s), and it runs over
every chunk that is written or read."""

from __future__ import annotations

try:
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is a dependency; zlib gives the same values
    from zlib import crc32

__all__ = ["crc32"]
