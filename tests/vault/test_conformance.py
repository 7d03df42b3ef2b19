"""Reference files of the vault's on-disk formats, written by format 1 (see
tests/vault/conformance): every later vault must still read them, to the byte."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from vault.audit import log_path, show, verify
from vault.crypto import ObjectReader, ObjectRef
from vault.note import Checkpoint, Verifier, open_note

HERE = Path(__file__).parent / "conformance"
KEY = bytes(range(32))
PLAIN = b"demofab vault conformance: format 1\n" * 100
LOG_VKEY = "conformance.demofab.example/log+5d3ba340+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs"
ROOT_B64 = "OyqG9cgloW7tkY3v4O7PTgGg6AVVKZfwoeeQOmOvmmA="


def test_the_format_1_object_decrypts_to_its_plaintext() -> None:
    ref = ObjectRef("conformance", "v1", "episodes/ep_0001.mcap")
    with ObjectReader(HERE / "object-v1.dfv", KEY, ref) as r:
        assert (r.size, r.chunk_size, r.chunks) == (len(PLAIN), 1024, 4)
        assert hashlib.sha256(r.read_all()).digest() == hashlib.sha256(PLAIN).digest()
        assert r.read_range(1000, 1100) == PLAIN[1000:1100]


def test_the_format_1_log_verifies_against_its_checkpoint(tmp_path: Path) -> None:
    path = log_path(tmp_path)
    path.parent.mkdir()
    shutil.copy(HERE / "log-v1.sqlite", path)
    note = (HERE / "log-v1.checkpoint").read_text()
    text, signed = open_note(note, [Verifier.from_vkey(LOG_VKEY)])
    cp = Checkpoint.parse(text)
    assert (cp.origin, cp.size, cp.text().split("\n")[2]) == (
        "conformance.demofab.example/log", 6, ROOT_B64)
    report = verify(tmp_path, note, keys=[LOG_VKEY])
    assert report.ok, report.problem
    assert (report.size, report.checkpoints) == (6, 2)
    pulls = [e for e in show(tmp_path, "kitchen") if e.action == "pull"]
    assert [(e.index, e.actor, e.time) for e in pulls] == [
        (4, "lab:acme/alice", "2026-12-03T12:13:25.000000Z"),
        (5, "lab:acme/alice", "2026-12-03T12:13:26.000000Z")]
