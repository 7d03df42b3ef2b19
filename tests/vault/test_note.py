"""C2SP signed notes, checkpoints and cosignatures, against the published vectors: Go's
sumdb/note PeterNeumann key and note (golang.org/x/mod/sumdb/note note_test.go), the
signed-note spec's example.com/foo note, and the tlog-checkpoint and tlog-cosignature
examples."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vault.errors import FormatError, ProofError
from vault.note import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    Signer,
    Verifier,
    add_signatures,
    cosign,
    generate_signer,
    key_id,
    open_note,
    parse_note,
)

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgK"
          "vqfqdngotpRZb6KE6RyyBwJnAM=\n")
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = ("This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1Y"
             "Eq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")
CHECKPOINT_EXAMPLE = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN"
    "7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9"
    "dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n")


def test_the_go_signer_key_reproduces_the_published_signature_byte_for_byte() -> None:
    signer = Signer.from_skey(GO_SKEY)
    assert signer.skey() == GO_SKEY
    assert signer.verifier().vkey() == GO_VKEY
    assert signer.sign(GO_TEXT).line() == GO_SIG


def test_the_go_note_verifies_and_an_altered_one_does_not() -> None:
    note = GO_TEXT + "\n" + GO_SIG
    verifier = Verifier.from_vkey(GO_VKEY)
    assert open_note(note, [verifier]) == (GO_TEXT, {"PeterNeumann": None})
    with pytest.raises(ProofError, match="PeterNeumann .*does not verify"):
        open_note(note.replace("cryptography", "cryptographY"), [verifier])


def test_the_signed_note_spec_example_verifies() -> None:
    verifier = Verifier.from_vkey(SPEC_VKEY)
    assert verifier.key_id == 0x530D903A
    assert open_note(SPEC_NOTE, [verifier])[0] == "This is an example message.\n"


def test_key_ids_follow_the_spec() -> None:
    v = Verifier.from_vkey(GO_VKEY)
    assert key_id("PeterNeumann", ED25519, v.public_key) == 0xC74F20A3
    # the same key as a cosigner has another ID: the type byte is part of the hash
    assert Verifier("PeterNeumann", COSIGNATURE_V1, v.public_key).key_id != 0xC74F20A3


@pytest.mark.parametrize("bad", [
    GO_VKEY[:-1], GO_VKEY.replace("c74f20a3", "c74f20a4"), "PeterNeumann+c74f20a3",
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    GO_VKEY.replace("+AR", "+Ag"),  # unknown signature type
])
def test_malformed_verifier_keys_are_refused(bad: str) -> None:
    with pytest.raises(FormatError):
        Verifier.from_vkey(bad)


def test_unknown_signatures_are_ignored_but_one_known_is_required() -> None:
    other = generate_signer("other.example/log")
    note = add_signatures(GO_TEXT + "\n" + GO_SIG, [other.sign(GO_TEXT)])
    assert open_note(note, [Verifier.from_vkey(GO_VKEY)])[1] == {"PeterNeumann": None}
    with pytest.raises(ProofError, match="none of the known keys"):
        open_note(GO_TEXT + "\n" + GO_SIG, [other.verifier()])


@pytest.mark.parametrize("bad", [
    GO_TEXT + GO_SIG,                       # no blank line
    GO_TEXT + "\n",                         # no signature
    GO_TEXT + "\n- PeterNeumann abc=\n",   # not an em dash
    GO_TEXT.rstrip("\n") + "\x07\n\n" + GO_SIG,  # a control character
])
def test_malformed_notes_are_refused(bad: str) -> None:
    with pytest.raises(FormatError):
        parse_note(bad)


def test_the_tlog_checkpoint_example_parses() -> None:
    cp = Checkpoint.parse(CHECKPOINT_EXAMPLE)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.text() == CHECKPOINT_EXAMPLE[:CHECKPOINT_EXAMPLE.index("\n\n") + 1]


def test_the_tlog_cosignature_example_carries_its_timestamp() -> None:
    _, sigs = parse_note(CHECKPOINT_EXAMPLE)
    witness = sigs[1]
    assert witness.name == "witness.example.com/w1"
    assert int.from_bytes(witness.signature[:8], "big") == 1679315147  # "time 1679315147"
    assert len(witness.signature) == 72


@pytest.mark.parametrize("bad", ["o\n01\n" + "A" * 43 + "=\n", "o\n1\n", "o\n-1\nAAAA\n",
                                 "o\n1\nAAAA\n", "\n1\n" + "A" * 43 + "=\n"])
def test_malformed_checkpoints_are_refused(bad: str) -> None:
    with pytest.raises(FormatError):
        Checkpoint.parse(bad)


def test_a_cosigned_checkpoint_verifies_with_the_cosigners_key_and_its_time() -> None:
    log = generate_signer("vault.example/log")
    provider = generate_signer("provider.example/acme", COSIGNATURE_V1)
    note = Checkpoint("vault.example/log", 5, bytes(range(32))).sign(log)
    kept = cosign(note, provider, timestamp=1_700_000_000)
    text, signed = open_note(kept, [log.verifier(), provider.verifier()])
    assert signed == {"vault.example/log": None, "provider.example/acme": 1_700_000_000}
    # the signed message is the spec's: cosignature/v1, the time line, the checkpoint
    sig = parse_note(kept)[1][-1]
    Ed25519PublicKey.from_public_bytes(provider.verifier().public_key).verify(
        sig.signature[8:], b"cosignature/v1\ntime 1700000000\n" + text.encode())
    with pytest.raises(ProofError, match="provider.example/acme"):
        open_note(kept.replace("\n5\n", "\n6\n"), [provider.verifier()])
    with pytest.raises(FormatError, match="not a cosigner key"):
        cosign(note, log)


def test_signer_keys_round_trip_and_check_their_id() -> None:
    s = generate_signer("a.example/b", COSIGNATURE_V1)
    assert Signer.from_skey(s.skey()) == s
    with pytest.raises(FormatError, match="does not match"):
        Signer.from_skey(s.skey().replace(f"+{s.verifier().key_id:08x}+", "+00000000+"))
    assert s.skey().split("+", 4)[-1] not in repr(s)  # the secret stays out of logs
