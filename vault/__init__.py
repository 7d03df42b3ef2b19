"""The vault: DemoFab's secure data library.

The catalog (SQLite, or PostgreSQL by URL) of providers, datasets, releases and episodes;
identities, roles and hashed API tokens; review before viewing (access requests, reviews,
two-step approval, scoped grants); mock releases made by the simulator; encryption at rest
(per-dataset data keys wrapped by the provider's key, chunked AES-256-GCM objects bound to
their place); the audit log a provider can verify (an RFC 6962 Merkle log with C2SP signed
checkpoints and cosignatures); the HTTP API (FastAPI) and its Python client, through which
curation's loader opens ``vault://HOST:PORT/DATASET/VERSION``.

The names but the errors load on first use, so that ``import vault`` (and ``demofab
--help``) works where the ``vault`` extra (``cryptography``) is not installed."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import ChunkError, FormatError, KeyFileError, LogTamperError, ProofError, TamperError, VaultError

if TYPE_CHECKING:
    from .api import create_app
    from .audit import AuditLog, Entry, VerifyReport, cosign_checkpoint, latest_checkpoint, show, verify
    from .catalog import Catalog
    from .client import VaultClient, open_vault_release
    from .crypto import (
        ObjectInfo,
        ObjectReader,
        ObjectRef,
        ObjectWriter,
        decrypt_object,
        encrypt_file,
        encrypt_object,
    )
    from .db import Database
    from .identities import Identities, Identity, Role
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
    from .mock import build_mock
    from .note import Checkpoint, Signer, Verifier, cosign, generate_signer, open_note
    from .review import Grants, Review
    from .service import Vault, init_vault
    from .store import ObjectStore

_WHERE = {
    "Catalog": "catalog",
    "Database": "db",
    "Grants": "review",
    "Identities": "identities",
    "Identity": "identities",
    "Review": "review",
    "Role": "identities",
    "Vault": "service",
    "VaultClient": "client",
    "build_mock": "mock",
    "create_app": "api",
    "init_vault": "service",
    "open_vault_release": "client",
    "AuditLog": "audit",
    "Checkpoint": "note",
    "Entry": "audit",
    "FileKeyProvider": "keys",
    "KeyProvider": "keys",
    "MerkleTree": "merkle",
    "ObjectInfo": "crypto",
    "ObjectReader": "crypto",
    "ObjectRef": "crypto",
    "ObjectStore": "store",
    "ObjectWriter": "crypto",
    "Signer": "note",
    "Verifier": "note",
    "VerifyReport": "audit",
    "WrappedKey": "keys",
    "cosign": "note",
    "cosign_checkpoint": "audit",
    "create_data_key": "keys",
    "decrypt_object": "crypto",
    "encrypt_file": "crypto",
    "encrypt_object": "crypto",
    "generate_key_file": "keys",
    "generate_signer": "note",
    "latest_checkpoint": "audit",
    "leaf_hash": "merkle",
    "load_data_key": "keys",
    "load_signer": "keys",
    "node_hash": "merkle",
    "open_note": "note",
    "rewrap_data_key": "keys",
    "show": "audit",
    "unwrap_data_key": "keys",
    "verify": "audit",
    "verify_consistency": "merkle",
    "verify_inclusion": "merkle",
    "wrap_data_key": "keys",
}

__all__ = [
    "Catalog", "Database", "Grants", "Identities", "Identity", "Review", "Role", "Vault",
    "VaultClient", "build_mock", "create_app", "init_vault", "open_vault_release",
    "AuditLog", "Checkpoint", "ChunkError", "Entry", "FileKeyProvider", "FormatError",
    "KeyFileError", "KeyProvider", "LogTamperError", "MerkleTree", "ObjectInfo", "ObjectReader",
    "ObjectRef", "ObjectStore", "ObjectWriter", "ProofError", "Signer", "TamperError",
    "VaultError", "Verifier", "VerifyReport", "WrappedKey", "cosign", "cosign_checkpoint",
    "create_data_key", "decrypt_object", "encrypt_file", "encrypt_object", "generate_key_file",
    "generate_signer", "latest_checkpoint", "leaf_hash", "load_data_key", "load_signer",
    "node_hash", "open_note", "rewrap_data_key", "show", "unwrap_data_key", "verify",
    "verify_consistency", "verify_inclusion", "wrap_data_key",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'vault' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
