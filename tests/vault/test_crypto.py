"""Chunked AES-256-GCM objects: round trips, byte ranges, and every kind of tampering
(swapped, reordered, replayed, truncated, appended chunks, a wrong key, a moved object)
detected with an error naming the object and the chunk; no plaintext on disk."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.audit import AuditLog
from vault.crypto import (
    TAG_SIZE,
    ObjectReader,
    ObjectRef,
    ObjectWriter,
    decrypt_object,
    encrypt_file,
    encrypt_object,
)
from vault.errors import ChunkError, FormatError, TamperError, VaultError
from vault.keys import create_data_key, generate_key_file
from vault.note import generate_signer

CS = 1024  # the smallest chunk size: many chunks from little data
KEY = bytes(range(32))
REF = ObjectRef("kitchen", "v1", "episodes/ep_0001.mcap")


def plaintext(n: int, seed: int = 0) -> bytes:
    # recognisable text, so a scan for it is meaningful
    line = f"joint_states seed {seed} operator alice grasp lift release ".encode()
    return (line * (n // len(line) + 1))[:n]


def store(tmp_path: Path, data: bytes, ref: ObjectRef = REF, key: bytes = KEY,
          name: str = "obj.enc") -> Path:
    path = tmp_path / name
    encrypt_object(path, key, ref, data, chunk_size=CS)
    return path


def chunk_offsets(path: Path) -> tuple[int, int]:
    """(offset of chunk 0, stored size of one chunk)."""
    with ObjectReader(path, KEY, REF) as r:
        return r._body, r.chunk_size + TAG_SIZE


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 3 * CS, 5 * CS + 17])
def test_objects_of_every_size_round_trip(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = store(tmp_path, data)
    with ObjectReader(path, KEY, REF) as r:
        assert r.size == size
        assert r.chunks == max(1, -(-size // CS))
        assert r.read_all() == data


def test_pieces_of_any_size_and_files_give_the_same_object(tmp_path: Path) -> None:
    data = os.urandom(7 * CS + 3)
    with ObjectWriter(tmp_path / "a.enc", KEY, REF, chunk_size=CS) as w:
        for start in range(0, len(data), 333):
            w.write(data[start:start + 333])
    (tmp_path / "plain.bin").write_bytes(data)
    info = encrypt_file(tmp_path / "plain.bin", tmp_path / "b.enc", KEY, REF, chunk_size=CS)
    assert (info.size, info.chunks) == (len(data), 8)
    assert info.stored_size == (tmp_path / "b.enc").stat().st_size
    sink = io.BytesIO()
    encrypt_file(io.BytesIO(data), sink, KEY, REF, chunk_size=CS)  # a stream the caller owns
    (tmp_path / "c.enc").write_bytes(sink.getvalue())
    for name in ("a.enc", "b.enc", "c.enc"):
        assert decrypt_object(tmp_path / name, KEY, REF) == data


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 6 * CS), st.integers(0, 7 * CS), st.integers(0, 7 * CS))
def test_a_byte_range_decrypts_only_the_chunks_that_cover_it(tmp_path_factory: pytest.TempPathFactory,
                                                             size: int, a: int, b: int) -> None:
    start, stop = min(a, b), max(a, b)
    data = plaintext(size)
    path = store(tmp_path_factory.mktemp("range"), data)
    with ObjectReader(path, KEY, REF) as r:
        assert r.read_range(start, stop) == data[start:stop]
        # a server streaming a Range writes each reused piece out before the next
        assert b"".join(bytes(p) for p in r.iter_range(start, stop, reuse=True)) == data[start:stop]
        assert b"".join(r.iter_range(start, stop)) == data[start:stop]
        span = r.chunk_span(start, stop)
        if start < min(stop, size):
            assert span == range(start // CS, (min(stop, size) - 1) // CS + 1)
        else:
            assert len(span) == 0


def test_a_range_read_leaves_damaged_chunks_outside_the_range_unread(tmp_path: Path) -> None:
    data = plaintext(4 * CS)
    path = store(tmp_path, data)
    body, per = chunk_offsets(path)
    raw = bytearray(path.read_bytes())
    raw[body + 3 * per + 5] ^= 1
    path.write_bytes(raw)
    with ObjectReader(path, KEY, REF) as r:
        assert r.read_range(0, 2 * CS) == data[:2 * CS]
        with pytest.raises(ChunkError, match="chunk 3 of 4: it fails authentication"):
            r.read_range(0, 4 * CS)


def test_swapped_chunks_are_detected_and_named(tmp_path: Path) -> None:
    path = store(tmp_path, plaintext(4 * CS))
    body, per = chunk_offsets(path)
    raw = bytearray(path.read_bytes())
    c1, c2 = raw[body + per:body + 2 * per], raw[body + 2 * per:body + 3 * per]
    raw[body + per:body + 2 * per], raw[body + 2 * per:body + 3 * per] = c2, c1
    path.write_bytes(raw)
    with ObjectReader(path, KEY, REF) as r, pytest.raises(ChunkError) as err:
        r.read_all()
    assert err.value.chunk == 1 and err.value.object == str(REF)
    assert "kitchen/v1/episodes/ep_0001.mcap" in str(err.value)
    assert "chunk 1 of 4: it holds chunk 2: chunks were swapped or reordered" in str(err.value)


def test_a_chunk_replayed_from_another_version_is_detected(tmp_path: Path) -> None:
    v2 = ObjectRef("kitchen", "v2", REF.name)
    old = store(tmp_path, plaintext(3 * CS, seed=1), name="old.enc")
    new = store(tmp_path, plaintext(3 * CS, seed=2), ref=v2, name="new.enc")
    body, per = chunk_offsets(old)
    raw_old = bytearray(old.read_bytes())
    raw_new = new.read_bytes()
    raw_old[body + per:body + 2 * per] = raw_new[body + per:body + 2 * per]
    old.write_bytes(raw_old)
    with pytest.raises(ChunkError, match="chunk 1 of 3: it fails authentication: altered, or "
                                         "replayed from another object or version"):
        decrypt_object(old, KEY, REF)


def test_a_chunk_replayed_from_an_earlier_write_of_the_same_object_is_detected(
        tmp_path: Path) -> None:
    first = store(tmp_path, plaintext(2 * CS, seed=1), name="first.enc")
    again = store(tmp_path, plaintext(2 * CS, seed=2), name="again.enc")
    body, per = chunk_offsets(again)
    raw = bytearray(again.read_bytes())
    raw[body:body + per] = first.read_bytes()[body:body + per]
    again.write_bytes(raw)
    with pytest.raises(ChunkError, match="chunk 0 of 2"):
        decrypt_object(again, KEY, REF)


def test_a_whole_object_moved_or_relabelled_is_detected(tmp_path: Path) -> None:
    path = store(tmp_path, plaintext(2 * CS))
    other = ObjectRef("kitchen", "v1", "episodes/ep_0002.mcap")
    with pytest.raises(TamperError, match="holds object kitchen/v1/episodes/ep_0001.mcap, not "
                                          "kitchen/v1/episodes/ep_0002.mcap"):
        ObjectReader(path, KEY, other)
    # the header relabelled to claim the other name: the key derived for it does not match
    raw = path.read_bytes().replace(b"ep_0001", b"ep_0002", 1)
    path.write_bytes(raw)
    with pytest.raises(TamperError, match="key commitment"):
        ObjectReader(path, KEY, other)


@pytest.mark.parametrize("drop", [1, 2])
def test_a_truncated_object_is_detected(tmp_path: Path, drop: int) -> None:
    path = store(tmp_path, plaintext(4 * CS))
    body, per = chunk_offsets(path)
    path.write_bytes(path.read_bytes()[:body + (4 - drop) * per])
    with ObjectReader(path, KEY, REF) as r:
        assert r.chunks == 4 - drop
        with pytest.raises(ChunkError, match=f"chunk {3 - drop} of {4 - drop}: it was not sealed "
                                             f"as the last chunk: the object was truncated"):
            r.read_all()


def test_an_object_cut_mid_chunk_or_extended_is_detected(tmp_path: Path) -> None:
    path = store(tmp_path, plaintext(2 * CS + 100))
    body, per = chunk_offsets(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:body + per + 30])
    with pytest.raises(ChunkError, match="chunk 1 of 2: it fails authentication"):
        decrypt_object(path, KEY, REF)
    path.write_bytes(raw[:body + per + 10])  # less than a tag left of chunk 1
    with pytest.raises(ChunkError, match="chunk 1 is cut short"):
        ObjectReader(path, KEY, REF)
    # a chunk appended after the real last one: the real last one says it is the last
    full = store(tmp_path, plaintext(3 * CS), name="full.enc")
    raw = full.read_bytes()
    full.write_bytes(raw + raw[body:body + per])
    with pytest.raises(ChunkError, match="chunk 2 of 4: it was sealed as the last chunk, yet "
                                         "more follow"):
        decrypt_object(full, KEY, REF)


def test_a_wrong_key_is_told_apart_from_damage(tmp_path: Path) -> None:
    path = store(tmp_path, plaintext(CS))
    with pytest.raises(TamperError, match="wrong data key"):
        ObjectReader(path, bytes(32), REF)


def test_unknown_formats_and_foreign_files_are_refused(tmp_path: Path) -> None:
    path = store(tmp_path, b"x")
    raw = bytearray(path.read_bytes())
    raw[7] = 2
    path.write_bytes(raw)
    with pytest.raises(FormatError, match="format 2; this vault reads format 1"):
        ObjectReader(path, KEY, REF)
    path.write_bytes(b"PAR1 not ours")
    with pytest.raises(FormatError, match="not an encrypted vault object"):
        ObjectReader(path, KEY, REF)


def test_an_aborted_write_leaves_the_destination_as_it_was(tmp_path: Path) -> None:
    dest = tmp_path / "obj.enc"
    store(tmp_path, b"the old object")
    before = dest.read_bytes()
    with pytest.raises(RuntimeError), ObjectWriter(dest, KEY, REF, chunk_size=CS) as w:
        w.write(plaintext(5 * CS))
        raise RuntimeError("the source failed")
    assert dest.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj.enc"]


def test_bad_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="chunk size"):
        ObjectWriter(tmp_path / "x", KEY, REF, chunk_size=100)
    with pytest.raises(VaultError, match="32 bytes"):
        ObjectWriter(tmp_path / "x", b"short", REF)
    with pytest.raises(VaultError, match="version"):
        ObjectRef("kitchen", "", "x")


def test_no_plaintext_and_no_key_anywhere_under_the_vault_root(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    root.mkdir()
    provider = generate_key_file(tmp_path / "provider.key", vault_root=root)
    data_key = create_data_key(root, provider, "kitchen")
    signer = generate_signer("vault.example/log")
    log = AuditLog.create(root, signer)
    secret = plaintext(6 * CS + 77, seed=42)
    (root / "objects").mkdir()
    for i in range(3):
        ref = ObjectRef("kitchen", "v1", f"episodes/ep_{i}.mcap")
        encrypt_object(root / "objects" / f"ep_{i}.enc", data_key, ref, secret, chunk_size=CS)
        log.append("provider:acme", "upload", dataset="kitchen", details={"object": ref.name})
        with ObjectReader(root / "objects" / f"ep_{i}.enc", data_key, ref) as r:
            assert r.read_all() == secret
    log.close()
    provider_key = (tmp_path / "provider.key").read_text().split("key ")[1].strip()
    needles = [secret[i:i + 32] for i in range(0, len(secret) - 32, 29)]
    needles += [data_key, provider_key.encode(), signer.skey().split("+", 4)[-1].encode(),
                signer.seed]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"ep_0.enc", "kitchen.json", "log.sqlite"}
    for p in files:
        content = p.read_bytes()
        found = [n for n in needles if n in content]
        assert not found, f"{p} holds plaintext or key bytes"
