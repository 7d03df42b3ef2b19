"""Encryption at rest: an object (a recording or a release file) stored as a header and
AES-256-GCM chunks that are bound to their place.

Layout of a stored object (format 1)::

    b"DFVAULT" 0x01 | u32 header length | header (JSON) | chunk 0 | chunk 1 | ... | chunk n-1

Each chunk is ``chunk_size`` bytes of plaintext (the last one 0..chunk_size) plus a 16-byte
tag. The header names the object (dataset, version, name) and holds a random 32-byte salt,
a random 7-byte nonce prefix and a key commitment. Following Tink's streaming AEAD:

* the object key is ``HKDF-SHA256(data key, salt, info = object identity)`` (64 bytes: the
  AES-256 key, then the commitment value that the header carries), so each stored object
  (each rewrite too) has a key of its own, derived for the identity the *reader asks
  for*: an object moved or replayed under another name, version or dataset does not
  decrypt, and a wrong key is told apart from damage by the commitment;
* chunk ``i``'s nonce is ``prefix || u32 i || u8 last`` (never reused under one key), and
  its associated data is ``SHA-256(header) || u64 i || u8 last``, so a chunk swapped,
  reordered, replayed from another object, or a truncated object (its new last chunk was
  not sealed as the last) fails authentication, with an error naming the object and the
  chunk.

A reader decrypts only the chunks that cover the byte range it is asked for (HTTP Range).
Nothing is written in clear: the writer encrypts straight into the destination, a file
in the same directory renamed over the target once complete (ciphertext only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from demofab.durable import fsync_parent

from .errors import ChunkError, FormatError, TamperError, VaultError
from .keys import DATA_KEY_SIZE, check_dataset_id

__all__ = ["DEFAULT_CHUNK_SIZE", "FORMAT", "MAGIC", "ObjectInfo", "ObjectReader", "ObjectRef",
           "ObjectWriter", "Sink", "Source", "TAG_SIZE", "decrypt_object", "encrypt_file", "encrypt_object"]

MAGIC = b"DFVAULT"
FORMAT = 1
DEFAULT_CHUNK_SIZE = 1 << 20
TAG_SIZE = 16
_MAX_CHUNKS = 1 << 32
_MIN_CHUNK, _MAX_CHUNK = 1 << 10, 1 << 26
_MAX_HEADER = 1 << 16
_PREFIX = struct.Struct(">7sB I")  # magic, format, header length


class Sink(Protocol):
    """Where a writer puts ciphertext: anything with a binary ``write`` (a file, a
    socket's file, ``io.BytesIO``)."""

    def write(self, data: memoryview, /) -> int | None:
        """Write some of ``data`` (blocking until it takes at least one byte); return how
        much."""
        ...


class Source(Protocol):
    """What :func:`encrypt_file` reads: anything with a binary ``readinto``."""

    def readinto(self, buffer: memoryview, /) -> int | None:
        """Read into ``buffer``; return how much (0 at the end)."""
        ...


@dataclass(frozen=True)
class ObjectRef:
    """Which object: a dataset, a version of it (a release version, a recording batch) and
    the object's name within it (a file's relative path)."""

    dataset: str
    version: str
    name: str

    def __post_init__(self) -> None:
        check_dataset_id(self.dataset)
        for what, value in (("version", self.version), ("name", self.name)):
            if not isinstance(value, str) or not value or "\0" in value or len(value) > 4096:
                raise VaultError(f"an object's {what} is a non-empty string without NUL, "
                                 f"not {value!r}")

    def __str__(self) -> str:
        return f"{self.dataset}/{self.version}/{self.name}"

    def context(self) -> bytes:
        """The identity bound into the object key: length-prefixed dataset, version, name."""
        parts = [p.encode() for p in (self.dataset, self.version, self.name)]
        return b"demofab-vault/object/v1\0" + b"".join(struct.pack(">H", len(p)) + p
                                                       for p in parts)


@dataclass(frozen=True)
class ObjectInfo:
    """What was stored: the object, its plaintext size, chunk size and count, and the
    stored (ciphertext) size."""

    ref: ObjectRef
    size: int
    chunk_size: int
    chunks: int
    stored_size: int


def _derive(data_key: bytes, salt: bytes, ref: ObjectRef) -> tuple[bytes, bytes]:
    if len(data_key) != DATA_KEY_SIZE:
        raise VaultError(f"a data key has {DATA_KEY_SIZE} bytes, not {len(data_key)}")
    okm = HKDF(hashes.SHA256(), 64, salt, ref.context()).derive(data_key)
    return okm[:32], okm[32:]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, last)


def _aad(header_digest: bytes, index: int, last: bool) -> bytes:
    return header_digest + struct.pack(">QB", index, last)


class ObjectWriter:
    """Encrypt an object as it is written, straight into ``dest``.

    ``dest`` is a path (written to a sibling file, fsynced and renamed over the path on
    :meth:`close`; removed on :meth:`abort` or an exception in a ``with`` block) or a
    binary stream the caller owns. ``write`` takes plaintext pieces of any size."""

    def __init__(self, dest: str | Path | Sink, data_key: bytes, ref: ObjectRef, *,
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if not _MIN_CHUNK <= chunk_size <= _MAX_CHUNK:
            raise VaultError(f"a chunk size is in {_MIN_CHUNK}..{_MAX_CHUNK} bytes, "
                             f"not {chunk_size}")
        self.ref = ref
        self.chunk_size = chunk_size
        salt, prefix = os.urandom(32), os.urandom(7)
        key, commit = _derive(data_key, salt, ref)
        self._aead = AESGCM(key)
        self._prefix = prefix
        header = json.dumps({"dataset": ref.dataset, "version": ref.version, "object": ref.name,
                             "chunk_size": chunk_size,
                             "salt": base64.b64encode(salt).decode(),
                             "nonce_prefix": base64.b64encode(prefix).decode(),
                             "commit": base64.b64encode(commit).decode()},
                            sort_keys=True).encode()
        self._digest = hashlib.sha256(header).digest()
        self._buf = bytearray(chunk_size)
        self._view = memoryview(self._buf)
        self._out = bytearray(chunk_size + TAG_SIZE)
        self._out_view = memoryview(self._out)
        self._fill = 0
        self._index = 0
        self.size = 0
        self._stored = 0
        self._closed = False
        self._path: Path | None = None
        self._tmp: Path | None = None
        self._fd = -1
        self._file: Sink
        if isinstance(dest, str | Path):
            self._path = Path(dest)
            self._tmp = self._path.with_name(f".{self._path.name}.{os.urandom(6).hex()}.part")
            self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._file = _FdSink(self._fd)
        else:
            self._file = dest
        try:
            self._emit(memoryview(_PREFIX.pack(MAGIC, FORMAT, len(header)) + header))
        except BaseException:
            self.abort()
            raise

    def _emit(self, data: memoryview) -> None:
        while len(data):
            n = self._file.write(data)
            if not n:
                raise VaultError(f"object {self.ref}: the destination took no bytes (a "
                                 f"non-blocking stream, or a full one)")
            self._stored += n
            data = data[n:]

    def _seal(self, plain: memoryview, last: bool) -> None:
        i = self._index
        if i >= _MAX_CHUNKS:
            raise VaultError(f"object {self.ref}: more than {_MAX_CHUNKS} chunks")
        out = self._out_view[:len(plain) + TAG_SIZE]
        self._aead.encrypt_into(_nonce(self._prefix, i, last), plain,
                                _aad(self._digest, i, last), out)
        self._emit(out)
        self._index = i + 1

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and write the next plaintext piece. A full chunk is sealed once more data
        follows (the last chunk is sealed as the last on :meth:`close`)."""
        if self._closed:
            raise VaultError(f"object {self.ref}: write after close")
        mv = memoryview(data).cast("B")
        if not len(mv):
            return
        self.size += len(mv)
        cs = self.chunk_size
        if self._fill == cs:
            self._seal(self._view, last=False)
            self._fill = 0
        if self._fill:
            n = min(cs - self._fill, len(mv))
            self._view[self._fill:self._fill + n] = mv[:n]
            self._fill += n
            mv = mv[n:]
            if not len(mv):
                return
            self._seal(self._view, last=False)
            self._fill = 0
        while len(mv) > cs:  # whole chunks straight from the caller's buffer
            self._seal(mv[:cs], last=False)
            mv = mv[cs:]
        self._view[:len(mv)] = mv
        self._fill = len(mv)

    def close(self) -> ObjectInfo:
        """Seal the last chunk, make the object durable and return what was stored."""
        if self._closed:
            raise VaultError(f"object {self.ref}: closed twice")
        try:
            self._seal(self._view[:self._fill], last=True)
            if self._path is not None:
                assert self._tmp is not None
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
                os.replace(self._tmp, self._path)
                fsync_parent(self._path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return ObjectInfo(self.ref, self.size, self.chunk_size, self._index, self._stored)

    def abort(self) -> None:
        """Drop the object: a destination path is left as it was before."""
        self._closed = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()


class _FdSink:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: memoryview, /) -> int:
        return os.write(self.fd, data)


def encrypt_object(dest: str | Path | Sink, data_key: bytes, ref: ObjectRef,
                   source: bytes | bytearray | memoryview | Iterable[bytes], *,
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> ObjectInfo:
    """Encrypt ``source`` (bytes, or an iterable of plaintext pieces) into ``dest``."""
    with ObjectWriter(dest, data_key, ref, chunk_size=chunk_size) as w:
        if isinstance(source, bytes | bytearray | memoryview):
            w.write(source)
        else:
            for piece in source:
                w.write(piece)
        return w.close()


def encrypt_file(src: str | Path | Source, dest: str | Path | Sink, data_key: bytes,
                 ref: ObjectRef, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ObjectInfo:
    """Encrypt a file (a path or an open binary file) into ``dest``, reading it chunk by
    chunk into reused buffers: memory stays at two chunks whatever the file's size."""
    if isinstance(src, str | Path):
        with open(src, "rb", buffering=0) as f:
            return _encrypt_stream(f, dest, data_key, ref, chunk_size)
    return _encrypt_stream(src, dest, data_key, ref, chunk_size)


def _encrypt_stream(f: Source, dest: str | Path | Sink, data_key: bytes, ref: ObjectRef,
                    chunk_size: int) -> ObjectInfo:
    with ObjectWriter(dest, data_key, ref, chunk_size=chunk_size) as w:
        bufs = [memoryview(bytearray(chunk_size)), memoryview(bytearray(chunk_size))]
        cur = _read_full(f, bufs[0])
        while True:
            nxt = _read_full(f, bufs[1])
            if nxt == 0:
                break
            w.write(bufs[0][:cur])
            bufs.reverse()
            cur = nxt
        w.write(bufs[0][:cur])
        return w.close()


def _read_full(f: Source, buf: memoryview) -> int:
    n = 0
    while n < len(buf):
        got = f.readinto(buf[n:])
        if not got:
            break
        n += got
    return n


class ObjectReader:
    """Decrypt a stored object, all of it or only the chunks that cover a byte range.

    ``ref`` is the object the caller expects (from the catalog): the header must name it
    and the key derived for it must match the header's commitment, or TamperError. Each
    chunk that fails authentication raises :class:`~vault.errors.ChunkError` naming the
    object and the chunk, and saying what it found (swapped, truncated, appended).

    A reader reuses its buffers from chunk to chunk: use one reader per thread."""

    def __init__(self, path: str | Path, data_key: bytes, ref: ObjectRef) -> None:
        self.path = Path(path)
        self.ref = ref
        self._raw_buf: memoryview | None = None
        self._out_buf: memoryview | None = None
        self._f = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        try:
            self._read_header(data_key)
        except BaseException:
            self._f.close()
            raise

    def _read_header(self, data_key: bytes) -> None:
        where = f"object {self.ref} ({self.path})"
        head = self._f.read(_PREFIX.size)
        if len(head) < _PREFIX.size or head[:7] != MAGIC:
            raise FormatError(f"{where} is not an encrypted vault object")
        _, fmt, size = _PREFIX.unpack(head)
        hlen = int(size)
        if fmt != FORMAT:
            raise FormatError(f"{where} has format {fmt}; this vault reads format {FORMAT}")
        if hlen > _MAX_HEADER:
            raise FormatError(f"{where}: a header of {hlen} bytes")
        header = self._f.read(hlen)
        try:
            h = json.loads(header)
            stored = ObjectRef(h["dataset"], h["version"], h["object"])
            chunk_size = int(h["chunk_size"])
            salt = base64.b64decode(h["salt"], validate=True)
            prefix = base64.b64decode(h["nonce_prefix"], validate=True)
            commit = base64.b64decode(h["commit"], validate=True)
        except (ValueError, KeyError, TypeError, VaultError) as exc:
            raise FormatError(f"{where}: its header is malformed ({exc})") from exc
        if stored != self.ref:
            raise TamperError(f"{where} holds object {stored}, not {self.ref}: it was moved "
                              f"or replayed from another object or version")
        if len(prefix) != 7 or len(salt) != 32 or not _MIN_CHUNK <= chunk_size <= _MAX_CHUNK:
            raise FormatError(f"{where}: its header has a bad salt, nonce prefix or chunk size")
        key, want = _derive(data_key, salt, self.ref)
        if not hmac.compare_digest(commit, want):
            raise TamperError(f"{where}: the key does not match the object's key commitment "
                              f"(a wrong data key, or the header was altered or replayed)")
        self._aead = AESGCM(key)
        self._prefix = prefix
        self._digest = hashlib.sha256(header).digest()
        self.chunk_size = chunk_size
        self._body = _PREFIX.size + hlen
        body = os.fstat(self._f.fileno()).st_size - self._body
        per = chunk_size + TAG_SIZE
        self.chunks = max(1, -(-body // per))
        last = body - (self.chunks - 1) * per - TAG_SIZE
        if last < 0:
            raise ChunkError(f"{where}: chunk {self.chunks - 1} is cut short ({body} bytes "
                             f"after the header): the object was truncated",
                             object=str(self.ref), chunk=self.chunks - 1)
        self.size = (self.chunks - 1) * chunk_size + last

    def _raw(self, index: int) -> memoryview:
        """Chunk ``index`` as stored, read into the reader's reused buffer."""
        per = self.chunk_size + TAG_SIZE
        if self._raw_buf is None:
            self._raw_buf = memoryview(bytearray(per))
        n = os.preadv(self._f.fileno(), [self._raw_buf], self._body + index * per)
        return self._raw_buf[:n]

    def _open(self, index: int, raw: memoryview | bytes, last: bool,
              out: memoryview | None = None) -> bytes | int | None:
        nonce, aad = _nonce(self._prefix, index, last), _aad(self._digest, index, last)
        try:
            if out is not None:
                return self._aead.decrypt_into(nonce, raw, aad, out[:len(raw) - TAG_SIZE])
            return self._aead.decrypt(nonce, raw, aad)
        except InvalidTag:
            return None

    def _check_index(self, index: int) -> bool:
        if not 0 <= index < self.chunks:
            raise VaultError(f"object {self.ref} has chunks 0..{self.chunks - 1}, not {index}")
        return index == self.chunks - 1

    def read_chunk(self, index: int) -> bytes:
        """The plaintext of chunk ``index``, authenticated."""
        last = self._check_index(index)
        raw = self._raw(index)
        plain = self._open(index, raw, last)
        if plain is None:
            raise self._diagnose(index, bytes(raw), last)
        assert isinstance(plain, bytes)
        return plain

    def readinto_chunk(self, index: int, out: memoryview | bytearray) -> int:
        """Decrypt chunk ``index`` into ``out`` (at least ``chunk_size`` bytes; nothing
        is allocated); return its plaintext length."""
        last = self._check_index(index)
        raw = self._raw(index)
        if len(raw) < TAG_SIZE:
            raise self._diagnose(index, bytes(raw), last)
        view = memoryview(out).cast("B")
        if len(view) < len(raw) - TAG_SIZE:
            raise VaultError(f"object {self.ref}: a buffer of {len(view)} bytes cannot hold "
                             f"chunk {index} ({len(raw) - TAG_SIZE} bytes)")
        n = self._open(index, raw, last, view)
        if n is None:
            raise self._diagnose(index, bytes(raw), last)
        assert isinstance(n, int)
        return n

    def _diagnose(self, index: int, raw: bytes, last: bool) -> ChunkError:
        where = f"object {self.ref} ({self.path}), chunk {index} of {self.chunks}"
        if last and self._open(index, raw, False) is not None:
            why = "it was not sealed as the last chunk: the object was truncated"
        elif not last and self._open(index, raw, True) is not None:
            why = "it was sealed as the last chunk, yet more follow: chunks were appended"
        else:
            lo, hi = max(0, index - 64), min(self.chunks, index + 65)
            other = next((j for j in range(lo, hi) for flag in (False, True)
                          if j != index and self._open(j, raw, flag) is not None), None)
            if other is not None:
                why = f"it holds chunk {other}: chunks were swapped or reordered"
            else:
                why = ("it fails authentication: altered, or replayed from another object or "
                       "version")
        return ChunkError(f"{where}: {why}", object=str(self.ref), chunk=index)

    def chunk_span(self, start: int, stop: int) -> range:
        """The chunks that hold plaintext bytes ``[start, stop)``."""
        stop = min(stop, self.size)
        if start >= stop:
            return range(0)
        return range(start // self.chunk_size, (stop - 1) // self.chunk_size + 1)

    def iter_range(self, start: int = 0, stop: int | None = None, *,
                   reuse: bool = False) -> Iterator[bytes | memoryview]:
        """Plaintext bytes ``[start, stop)`` (clipped to the object), piece by piece,
        decrypting only the chunks that cover them.

        With ``reuse``, the pieces are views of one buffer that the next piece overwrites
        (write each out before taking the next: nothing is allocated per chunk)."""
        if start < 0 or (stop is not None and stop < 0):
            raise VaultError(f"object {self.ref}: a byte range is >= 0, not {start}..{stop}")
        end = self.size if stop is None else min(stop, self.size)
        cs = self.chunk_size
        for i in self.chunk_span(start, end):
            plain: bytes | memoryview
            if reuse:
                if self._out_buf is None:
                    self._out_buf = memoryview(bytearray(cs))
                plain = self._out_buf[:self.readinto_chunk(i, self._out_buf)]
            else:
                plain = self.read_chunk(i)
            lo, hi = max(start - i * cs, 0), min(end - i * cs, len(plain))
            yield plain if (lo, hi) == (0, len(plain)) else plain[lo:hi]

    def read_range(self, start: int, stop: int) -> bytes:
        """Plaintext bytes ``[start, stop)`` (clipped to the object); whole chunks are
        decrypted straight into the result."""
        if start < 0 or stop < 0:
            raise VaultError(f"object {self.ref}: a byte range is >= 0, not {start}..{stop}")
        end = min(stop, self.size)
        if start >= end:
            return b""
        out = bytearray(end - start)
        view = memoryview(out)
        at, cs = 0, self.chunk_size
        for i in self.chunk_span(start, end):
            lo, hi = max(start - i * cs, 0), min(end - i * cs, cs)
            if lo == 0 and hi == min(cs, self.size - i * cs):
                at += self.readinto_chunk(i, view[at:at + hi])
            else:
                if self._out_buf is None:
                    self._out_buf = memoryview(bytearray(cs))
                self.readinto_chunk(i, self._out_buf)
                view[at:at + hi - lo] = self._out_buf[lo:hi]
                at += hi - lo
        return bytes(out)

    def read_all(self) -> bytes:
        """The whole plaintext, every chunk authenticated (truncation included)."""
        return self.read_range(0, self.size) if self.size else self.read_chunk(0)

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def decrypt_object(path: str | Path, data_key: bytes, ref: ObjectRef) -> bytes:
    """The whole plaintext of a stored object."""
    with ObjectReader(path, data_key, ref) as r:
        return r.read_all()
