"""Keys: the provider's key behind a key-provider interface, and envelope encryption of
the per-dataset data keys.

Each dataset has its own random 256-bit data key. It is never stored in clear: it is
wrapped (AES-256-GCM) by the provider's key, with the dataset id and the provider key's
id in the associated data, so a wrapped key moved to another dataset or presented to
another provider key does not unwrap. The wrapped record is what the vault keeps under
its root (``keys/<dataset>.json``).

:class:`KeyProvider` is the interface (a KMS or an HSM implements it as well); the
default, :class:`FileKeyProvider`, reads the provider's key from a key file that must
live OUTSIDE the vault root and be readable by its owner only (mode 0600), so that a copy
of the vault root alone (a backup, a stolen disk image) decrypts nothing. Secret key
files of any kind (the provider key, the log's signing key, a cosigner key) go through
:func:`read_secret_file` and :func:`write_secret_file`, which enforce both rules.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from demofab.durable import atomic_write

from .errors import FormatError, KeyFileError, TamperError, VaultError
from .note import Signer

if TYPE_CHECKING:
    from .audit import AuditLog

__all__ = ["DATA_KEY_SIZE", "FileKeyProvider", "KeyProvider", "WrappedKey", "check_dataset_id",
           "create_data_key", "generate_key_file", "load_data_key", "load_signer",
           "read_secret_file", "rewrap_data_key", "unwrap_data_key", "wrap_data_key",
           "write_secret_file"]

DATA_KEY_SIZE = 32
_KEY_FILE_HEADER = "demofab-vault-key/v1"
_WRAP_FORMAT = 1
_DATASET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_dataset_id(dataset: str) -> str:
    """Return ``dataset`` if it is a safe id (letters, digits, ``._-``, not starting with a
    dot or dash, at most 128 characters: usable as a file name), else raise VaultError."""
    if not isinstance(dataset, str) or not _DATASET_RE.fullmatch(dataset):
        raise VaultError(f"a dataset id is 1-128 of [A-Za-z0-9._-] starting with a letter or "
                         f"digit, not {dataset!r}")
    return dataset


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _check_outside(path: Path, vault_root: Path | None) -> None:
    if vault_root is not None and _inside(path, vault_root):
        raise KeyFileError(f"key file {path} is inside the vault root {vault_root}: keep "
                           f"keys outside it, so a copy of the vault alone decrypts nothing")


def read_secret_file(path: str | Path, *, vault_root: str | Path | None = None) -> str:
    """Read a secret key file: it must be a regular file owned by this user, readable and
    writable by its owner only (mode 0600 or 0400), and not inside ``vault_root``."""
    path = Path(path)
    root = Path(vault_root) if vault_root is not None else None
    _check_outside(path, root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise KeyFileError(f"key file {path} does not exist") from exc
    except OSError as exc:
        raise KeyFileError(f"key file {path} cannot be opened: {exc.strerror}"
                           f"{' (a symlink is refused)' if os.path.islink(path) else ''}") from exc
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(f"key file {path} has mode {stat.S_IMODE(st.st_mode):04o}: "
                               f"it is readable or writable by group or others; a key file "
                               f"must be 0600 (chmod 600 {path})")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise KeyFileError(f"key file {path} belongs to uid {st.st_uid}, not to this "
                               f"user ({os.getuid()})")
        return f.read()


def write_secret_file(path: str | Path, text: str, *,
                      vault_root: str | Path | None = None) -> None:
    """Create a secret key file with mode 0600 (never replacing an existing one), outside
    ``vault_root``; the file is fsynced before this returns."""
    path = Path(path)
    root = Path(vault_root) if vault_root is not None else None
    _check_outside(path, root)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"key file {path} exists already; a key is never overwritten") from exc
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@runtime_checkable
class KeyProvider(Protocol):
    """Where a provider's key lives. It never hands the key out: it wraps and unwraps data
    keys. ``key_id`` names the key in wrapped records (it is bound into them)."""

    @property
    def key_id(self) -> str:
        """A stable, non-secret id of the provider key."""
        ...

    def wrap(self, data_key: bytes, associated_data: bytes) -> bytes:
        """Encrypt ``data_key`` bound to ``associated_data``."""
        ...

    def unwrap(self, wrapped: bytes, associated_data: bytes) -> bytes:
        """Decrypt what :meth:`wrap` returned; raise TamperError if it does not
        authenticate with ``associated_data``."""
        ...


def _key_id_of(key: bytes) -> str:
    return hashlib.sha256(b"demofab-vault/key-id/v1\n" + key).hexdigest()[:16]


class FileKeyProvider:
    """The default key provider: a 256-bit AES key read from a key file outside the vault
    root (``vault_root`` is required, so that the check is never forgotten; None only
    where there is no vault, e.g. a provider's own tools), mode 0600. The file holds
    ``demofab-vault-key/v1``, then ``id <key id>`` and ``key <base64 key>`` lines."""

    def __init__(self, path: str | Path, *, vault_root: str | Path | None) -> None:
        self.path = Path(path)
        text = read_secret_file(self.path, vault_root=vault_root)
        lines = text.splitlines()
        if not lines or lines[0] != _KEY_FILE_HEADER:
            raise KeyFileError(f"key file {self.path} does not start with "
                               f"{_KEY_FILE_HEADER!r} (not a vault key file, or a format "
                               f"this vault cannot read)")
        fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
        try:
            key = base64.b64decode(fields["key"], validate=True)
        except (KeyError, ValueError) as exc:
            raise KeyFileError(f"key file {self.path} has no valid 'key <base64>' line") from exc
        if len(key) != DATA_KEY_SIZE:
            raise KeyFileError(f"key file {self.path} holds a {len(key) * 8}-bit key, "
                               f"expected 256 bits")
        if fields.get("id") != _key_id_of(key):
            raise KeyFileError(f"key file {self.path}: its id line does not match its key")
        self._aead = AESGCM(key)
        self._key_id = fields["id"]

    @property
    def key_id(self) -> str:
        """The id written in the key file (a hash of the key, not the key)."""
        return self._key_id

    def wrap(self, data_key: bytes, associated_data: bytes) -> bytes:
        """AES-256-GCM with a random 96-bit nonce: ``nonce || ciphertext || tag``."""
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data_key, associated_data)

    def unwrap(self, wrapped: bytes, associated_data: bytes) -> bytes:
        """The data key, if ``wrapped`` authenticates with ``associated_data``."""
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], associated_data)
        except InvalidTag as exc:
            raise TamperError(f"a wrapped key does not unwrap with provider key "
                              f"{self.key_id} ({self.path})") from exc

    def __repr__(self) -> str:
        return f"FileKeyProvider({str(self.path)!r}, key_id={self.key_id!r})"


def generate_key_file(path: str | Path, *, vault_root: str | Path | None) -> FileKeyProvider:
    """Create a new provider key file (mode 0600, outside ``vault_root``) holding a random
    256-bit key, and return its provider."""
    key = AESGCM.generate_key(bit_length=256)
    text = (f"{_KEY_FILE_HEADER}\nid {_key_id_of(key)}\n"
            f"key {base64.b64encode(key).decode()}\n")
    write_secret_file(path, text, vault_root=vault_root)
    return FileKeyProvider(path, vault_root=vault_root)


@dataclass(frozen=True)
class WrappedKey:
    """A dataset's data key, wrapped by a provider key. Safe to store: without the
    provider key it reveals nothing."""

    dataset: str
    key_id: str
    wrapped: bytes
    format: int = _WRAP_FORMAT

    def associated_data(self) -> bytes:
        """What the wrap binds: the format, the dataset id and the provider key id."""
        return _wrap_aad(self.dataset, self.key_id)

    def to_json(self) -> str:
        """The record as JSON (the wrapped bytes in base64)."""
        return json.dumps({"format": self.format, "dataset": self.dataset,
                           "key_id": self.key_id,
                           "wrapped": base64.b64encode(self.wrapped).decode()}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, *, where: str = "wrapped key") -> WrappedKey:
        """Parse :meth:`to_json`'s output; refuse formats this vault does not know."""
        try:
            d = json.loads(text)
            fmt = d["format"]
            if fmt != _WRAP_FORMAT:
                raise FormatError(f"{where}: format {fmt} (this vault reads {_WRAP_FORMAT})")
            return cls(d["dataset"], d["key_id"], base64.b64decode(d["wrapped"], validate=True),
                       fmt)
        except FormatError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"{where} is malformed: {exc}") from exc


def _wrap_aad(dataset: str, key_id: str) -> bytes:
    return (f"demofab-vault/wrapped-key/v{_WRAP_FORMAT}\0".encode()
            + dataset.encode() + b"\0" + key_id.encode())


def wrap_data_key(provider: KeyProvider, dataset: str,
                  data_key: bytes | None = None) -> tuple[bytes, WrappedKey]:
    """A data key for ``dataset`` (a new random one unless given) and its wrapped record."""
    check_dataset_id(dataset)
    key = AESGCM.generate_key(bit_length=256) if data_key is None else data_key
    if len(key) != DATA_KEY_SIZE:
        raise VaultError(f"a data key has {DATA_KEY_SIZE} bytes, not {len(key)}")
    record = WrappedKey(dataset, provider.key_id, provider.wrap(key, _wrap_aad(dataset,
                                                                              provider.key_id)))
    return key, record


def unwrap_data_key(provider: KeyProvider, record: WrappedKey, *, dataset: str) -> bytes:
    """The data key of ``dataset`` from its wrapped record; TamperError if the record is
    for another dataset or another provider key, or was altered."""
    if record.dataset != dataset:
        raise TamperError(f"the wrapped key record is for dataset {record.dataset!r}, not "
                          f"{dataset!r}")
    if record.key_id != provider.key_id:
        raise TamperError(f"dataset {dataset}: its data key is wrapped by provider key "
                          f"{record.key_id}, not by {provider.key_id}")
    key = provider.unwrap(record.wrapped, _wrap_aad(dataset, provider.key_id))
    if len(key) != DATA_KEY_SIZE:
        raise TamperError(f"dataset {dataset}: the unwrapped data key has {len(key)} bytes")
    return key


def _record_path(root: Path, dataset: str) -> Path:
    return root / "keys" / f"{check_dataset_id(dataset)}.json"


def create_data_key(root: str | Path, provider: KeyProvider, dataset: str, *,
                    audit: AuditLog | None = None, actor: str = "vault") -> bytes:
    """Make a dataset's data key and keep its wrapped record at ``ROOT/keys/<dataset>.json``
    (written atomically; refused when the dataset has one already). With ``audit``, the
    key's creation is an entry (action ``key.create``) by ``actor``."""
    path = _record_path(Path(root), dataset)
    if path.exists():
        raise VaultError(f"dataset {dataset} has a data key already ({path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    key, record = wrap_data_key(provider, dataset)
    atomic_write(path, record.to_json())
    if audit is not None:
        audit.append(actor, "key.create", dataset=dataset, details={"key_id": record.key_id})
    return key


def load_data_key(root: str | Path, provider: KeyProvider, dataset: str, *,
                  audit: AuditLog | None = None, actor: str = "vault",
                  purpose: str | None = None) -> bytes:
    """Unwrap the data key of ``dataset`` kept under ``root``. With ``audit``, every use of
    the key is an entry (action ``key.use``, with the ``purpose``), written before the key
    is handed out."""
    path = _record_path(Path(root), dataset)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise VaultError(f"dataset {dataset} has no data key ({path} is missing)") from exc
    record = WrappedKey.from_json(text, where=str(path))
    key = unwrap_data_key(provider, record, dataset=dataset)
    if audit is not None:
        details = {"key_id": record.key_id}
        if purpose is not None:
            details["purpose"] = purpose
        audit.append(actor, "key.use", dataset=dataset, details=details)
    return key


def rewrap_data_key(root: str | Path, old: KeyProvider, new: KeyProvider, dataset: str, *,
                    audit: AuditLog | None = None, actor: str = "vault") -> WrappedKey:
    """Rotate the provider key of ``dataset``: unwrap its data key with ``old``, wrap it
    with ``new`` and replace the record atomically. The data key, and so every stored
    object, stays as it is: nothing is re-encrypted. With ``audit``, the rotation is an
    entry (action ``key.rotate``)."""
    path = _record_path(Path(root), dataset)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise VaultError(f"dataset {dataset} has no data key ({path} is missing)") from exc
    record = WrappedKey.from_json(text, where=str(path))
    key = unwrap_data_key(old, record, dataset=dataset)
    _, fresh = wrap_data_key(new, dataset, key)
    atomic_write(path, fresh.to_json())
    if audit is not None:
        audit.append(actor, "key.rotate", dataset=dataset,
                     details={"from_key_id": record.key_id, "to_key_id": fresh.key_id})
    return fresh


def load_signer(path: str | Path, *, vault_root: str | Path | None) -> Signer:
    """A note signer (the log's key, a provider's cosigner key) from its key file: mode
    0600, outside ``vault_root``, holding a ``PRIVATE+KEY+...`` line."""
    try:
        return Signer.from_skey(read_secret_file(path, vault_root=vault_root))
    except FormatError as exc:
        raise KeyFileError(f"key file {path}: {exc}") from exc
