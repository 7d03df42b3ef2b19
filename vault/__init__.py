"""The vault: DemoFab's secure data library.

This first part holds encryption at rest (per-dataset data keys wrapped by the provider's
key, chunked AES-256-GCM objects bound to their place) and the audit log a provider can
verify (an RFC 6962 Merkle log with C2SP signed checkpoints and cosignatures)."""

from __future__ import annotations

from .audit import (
    AuditLog,
    Entry,
    VerifyReport,
    cosign_checkpoint,
    latest_checkpoint,
    show,
    verify,
)
from .crypto import (
    ObjectInfo,
    ObjectReader,
    ObjectRef,
    ObjectWriter,
    decrypt_object,
    encrypt_file,
    encrypt_object,
)
from .errors import (
    ChunkError,
    FormatError,
    KeyFileError,
    LogTamperError,
    ProofError,
    TamperError,
    VaultError,
)
from .keys import (
    FileKeyProvider,
    KeyProvider,
    WrappedKey,
    create_data_key,
    generate_key_file,
    load_data_key,
    load_signer,
    rewrap_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from .merkle import MerkleTree, leaf_hash, node_hash, verify_consistency, verify_inclusion
from .note import Checkpoint, Signer, Verifier, cosign, generate_signer, open_note
from .store import ObjectStore

__all__ = [
    "AuditLog", "Checkpoint", "ChunkError", "Entry", "FileKeyProvider", "FormatError",
    "KeyFileError", "KeyProvider", "LogTamperError", "MerkleTree", "ObjectInfo", "ObjectReader",
    "ObjectRef", "ObjectStore", "ObjectWriter", "ProofError", "Signer", "TamperError",
    "VaultError", "Verifier", "VerifyReport", "WrappedKey", "cosign", "cosign_checkpoint",
    "create_data_key", "decrypt_object", "encrypt_file", "encrypt_object", "generate_key_file",
    "generate_signer", "latest_checkpoint", "leaf_hash", "load_data_key", "load_signer",
    "node_hash", "open_note", "rewrap_data_key", "show", "unwrap_data_key", "verify",
    "verify_consistency", "verify_inclusion", "wrap_data_key",
]
