"""C2SP signed notes (c2sp.org/signed-note), checkpoints (c2sp.org/tlog-checkpoint) and
Ed25519 cosignatures (c2sp.org/tlog-cosignature), so that Go's ``sumdb/note``, witnesses
and the other transparency-log tools read what the vault signs.

A note is its text (ending in a newline), a blank line, and signature lines
``— <name> base64(key ID || signature)``, with ``key ID = SHA-256(name || 0x0A || type ||
public key)[:4]``. Keys are written as Go writes them: a verifier key (vkey)
``<name>+<hex key ID>+base64(type || public key)`` and a signer key
``PRIVATE+KEY+<name>+<hex key ID>+base64(type || 32-byte seed)``.

Two signature types: ``0x01``, Ed25519 over the note text (a log's own signature), and
``0x04``, a timestamped cosignature: Ed25519 over ``cosignature/v1\\ntime <t>\\n`` + the
note text, the signature being ``u64 timestamp || Ed25519 signature``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import time
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import FormatError, ProofError

__all__ = ["COSIGNATURE_V1", "ED25519", "Checkpoint", "NoteSignature", "Signer", "Verifier",
           "add_signatures", "cosign", "generate_signer", "key_id", "open_note", "parse_note"]

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
_TYPES = {ED25519: "Ed25519", COSIGNATURE_V1: "Ed25519 cosignature/v1"}
_DASH = "\u2014"
_MAX_SIGNATURES = 100


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what} is not base64: {text!r}") from exc


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise FormatError(f"a key name is non-empty, without spaces or '+': {name!r}")


def key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """The signed-note key ID: ``SHA-256(name || 0x0A || type || public key)[:4]`` as a
    big-endian uint32."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _cosigned_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


@dataclass(frozen=True)
class Verifier:
    """A public key that checks note signatures: a log key (``ED25519``) or a cosigner's
    key (``COSIGNATURE_V1``)."""

    name: str
    sig_type: int
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.sig_type not in _TYPES:
            raise FormatError(f"key {self.name}: signature type {self.sig_type:#04x} is not "
                              f"one of {', '.join(f'{t:#04x}' for t in _TYPES)}")
        if len(self.public_key) != 32:
            raise FormatError(f"key {self.name}: an Ed25519 public key has 32 bytes, "
                              f"not {len(self.public_key)}")

    @property
    def key_id(self) -> int:
        """The key ID that this key's signature lines start with."""
        return key_id(self.name, self.sig_type, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<hex key ID>+base64(type || public key)``; the key ID must match."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8:
            raise FormatError(f"a verifier key is name+hexid+base64key: {vkey!r}")
        name, hex_id, material = parts
        try:
            want = int(hex_id, 16)
        except ValueError as exc:
            raise FormatError(f"verifier key {name}: key ID {hex_id!r} is not hex") from exc
        raw = _b64decode(material, f"verifier key {name}")
        if len(raw) != 33:
            raise FormatError(f"verifier key {name}: {len(raw)} key bytes, expected "
                              f"1 type byte and a 32-byte Ed25519 key")
        verifier = cls(name, raw[0], raw[1:])
        if verifier.key_id != want:
            raise FormatError(f"verifier key {name}: key ID {hex_id} does not match its "
                              f"key (it is {verifier.key_id:08x})")
        return verifier

    def vkey(self) -> str:
        """This key as a verifier key string."""
        material = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{material}"

    def verify(self, text: str, signature: bytes) -> int | None:
        """Check ``signature`` (the bytes after the key ID) over the note ``text``; return
        the cosignature's timestamp (None for a plain Ed25519 signature). Raise ProofError
        when it does not verify."""
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        timestamp: int | None = None
        if self.sig_type == COSIGNATURE_V1:
            if len(signature) != 72:
                raise ProofError(f"cosignature by {self.name}: {len(signature)} bytes, a "
                                 f"timestamped Ed25519 signature has 72")
            (timestamp,) = struct.unpack(">Q", signature[:8])
            if timestamp >= 1 << 63:
                raise ProofError(f"cosignature by {self.name}: timestamp {timestamp} is "
                                 f"beyond 2^63 - 1")
            message, sig = _cosigned_message(text, timestamp), signature[8:]
        else:
            message, sig = text.encode(), signature
        try:
            key.verify(sig, message)
        except InvalidSignature as exc:
            raise ProofError(f"the signature by {self.name} ({self.key_id:08x}) does not "
                             f"verify: the note was changed or signed by another key") from exc
        return timestamp


@dataclass(frozen=True)
class Signer:
    """A private Ed25519 key that signs notes (``ED25519``) or cosigns checkpoints
    (``COSIGNATURE_V1``)."""

    name: str
    sig_type: int
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.sig_type not in _TYPES:
            raise FormatError(f"key {self.name}: signature type {self.sig_type:#04x} is not "
                              f"one of {', '.join(f'{t:#04x}' for t in _TYPES)}")
        if len(self.seed) != 32:
            raise FormatError(f"key {self.name}: an Ed25519 seed has 32 bytes")

    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def verifier(self) -> Verifier:
        """The public half."""
        pub = self._private().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(self.name, self.sig_type, pub)

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+base64(type || seed)``."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or len(parts[3]) != 8:
            raise FormatError("a signer key is PRIVATE+KEY+name+hexid+base64key")
        name, hex_id, material = parts[2:]
        raw = _b64decode(material, f"signer key {name}")
        if len(raw) != 33:
            raise FormatError(f"signer key {name}: expected 1 type byte and a 32-byte seed")
        signer = cls(name, raw[0], raw[1:])
        if f"{signer.verifier().key_id:08x}" != hex_id.lower():
            raise FormatError(f"signer key {name}: key ID {hex_id} does not match its key")
        return signer

    def skey(self) -> str:
        """This key as a signer key string (a secret: keep it in a key file)."""
        material = base64.b64encode(bytes([self.sig_type]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier().key_id:08x}+{material}"

    def sign(self, text: str, *, timestamp: int | None = None) -> NoteSignature:
        """Sign a note ``text``; a cosigner stamps it with ``timestamp`` (default: now)."""
        _check_text(text)
        key = self._private()
        if self.sig_type == COSIGNATURE_V1:
            ts = int(time.time()) if timestamp is None else timestamp
            if not 0 <= ts < 1 << 63:
                raise FormatError(f"a cosignature's timestamp is in 0..2^63-1, not {ts}")
            data = struct.pack(">Q", ts) + key.sign(_cosigned_message(text, ts))
        else:
            data = key.sign(text.encode())
        return NoteSignature(self.name, self.verifier().key_id, data)


def generate_signer(name: str, sig_type: int = ED25519) -> Signer:
    """A new random Ed25519 signer (``sig_type`` ED25519 for a log, COSIGNATURE_V1 for a
    provider's cosigner)."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return Signer(name, sig_type, seed)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note: the key's name, its key ID and the signature bytes."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """The signature line, with its newline."""
        blob = base64.b64encode(self.key_id.to_bytes(4, "big") + self.signature).decode()
        return f"{_DASH} {self.name} {blob}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise FormatError("a note's text ends in a newline")
    bad = [c for c in text if ord(c) < 0x20 and c != "\n"]
    if bad:
        raise FormatError(f"a note holds no control characters but newline: {bad[0]!r}")


def parse_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and its signature lines (nothing verified)."""
    if not note.endswith("\n"):
        raise FormatError("a signed note ends in a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise FormatError("a signed note has a blank line between its text and signatures")
    text, sig_block = note[:split + 1], note[split + 2:]
    _check_text(text)
    signatures: list[NoteSignature] = []
    for line in sig_block.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            raise FormatError(f"a signature line is '{_DASH} name base64', not {line!r}")
        _check_name(parts[1])
        raw = _b64decode(parts[2], f"the signature by {parts[1]}")
        if len(raw) < 5:
            raise FormatError(f"the signature by {parts[1]} is too short")
        signatures.append(NoteSignature(parts[1], int.from_bytes(raw[:4], "big"), raw[4:]))
    if not signatures:
        raise FormatError("a signed note has at least one signature line")
    if len(signatures) > _MAX_SIGNATURES:
        raise FormatError(f"a note with {len(signatures)} signatures (at most "
                          f"{_MAX_SIGNATURES} are read)")
    return text, signatures


def open_note(note: str, verifiers: list[Verifier]) -> tuple[str, dict[str, int | None]]:
    """Verify a signed note against known keys: every signature by a known key (name and
    key ID) must verify, unknown ones are ignored, and at least one must be known.

    Return the text and, per verifying key name, its cosignature timestamp (None for a
    plain signature). Raise ProofError when a known key's signature fails or none is
    known."""
    text, signatures = parse_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: dict[str, int | None] = {}
    for sig in signatures:
        v = known.get((sig.name, sig.key_id))
        if v is not None:
            verified[v.name] = v.verify(text, sig.signature)
    if not verified:
        names = ", ".join(f"{s.name} ({s.key_id:08x})" for s in signatures)
        raise ProofError(f"the note is signed by none of the known keys "
                         f"({', '.join(v.vkey() for v in verifiers) or 'none given'}); "
                         f"it is signed by {names}")
    return text, verified


def add_signatures(note: str, signatures: list[NoteSignature]) -> str:
    """Append signature lines to a signed note (a cosigner adds its own), replacing any
    earlier line by the same key."""
    _, existing = parse_note(note)
    new = {(s.name, s.key_id) for s in signatures}
    text = note[:note.rfind("\n\n") + 1]
    kept = [s for s in existing if (s.name, s.key_id) not in new]
    return text + "\n" + "".join(s.line() for s in kept + signatures)


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, tree size, RFC 6962 root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise FormatError(f"a checkpoint's origin is one non-empty line: {self.origin!r}")
        if self.size < 0:
            raise FormatError(f"a checkpoint's tree size is >= 0, not {self.size}")
        if len(self.root_hash) != 32:
            raise FormatError(f"a checkpoint's root hash has 32 bytes, not {len(self.root_hash)}")
        if any(not e or "\n" in e for e in self.extensions):
            raise FormatError("a checkpoint's extension lines are non-empty single lines")

    def text(self) -> str:
        """The note text: origin, size, base64 root, extension lines, each ending in \\n."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode(),
                 *self.extensions]
        return "".join(line + "\n" for line in lines)

    def sign(self, *signers: Signer) -> str:
        """This checkpoint as a signed note."""
        if not signers:
            raise FormatError("a checkpoint is signed by at least one key")
        text = self.text()
        return text + "\n" + "".join(s.sign(text).line() for s in signers)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint's note text (or a whole signed note: only its text is read)."""
        if "\n\n" in text:
            text = text[:text.rfind("\n\n") + 1]
        lines = text.split("\n")
        if lines[-1] != "" or len(lines) < 4:
            raise FormatError("a checkpoint has three lines at least (origin, size, root), "
                              "each ending in a newline")
        origin, size_text, root_text, *ext = lines[:-1]
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise FormatError(f"a checkpoint's tree size is a decimal with no leading zeros, "
                              f"not {size_text!r}")
        root = _b64decode(root_text, "the checkpoint's root hash")
        return cls(origin, int(size_text), root, tuple(ext))


def cosign(note: str, cosigner: Signer, *, timestamp: int | None = None) -> str:
    """A provider's cosignature (c2sp.org/tlog-cosignature, Ed25519 ``cosignature/v1``)
    added to a signed checkpoint note; the result is what the provider keeps."""
    if cosigner.sig_type != COSIGNATURE_V1:
        raise FormatError(f"key {cosigner.name} is not a cosigner key (type 0x04)")
    text, _ = parse_note(note)
    Checkpoint.parse(text)
    return add_signatures(note, [cosigner.sign(text, timestamp=timestamp)])
