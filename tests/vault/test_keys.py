"""Provider key files (outside the root, mode 0600) and envelope-wrapped data keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vault.errors import FormatError, KeyFileError, TamperError, VaultError
from vault.keys import (
    FileKeyProvider,
    KeyProvider,
    WrappedKey,
    create_data_key,
    generate_key_file,
    load_data_key,
    read_secret_file,
    unwrap_data_key,
    wrap_data_key,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "vault"
    r.mkdir()
    return r


@pytest.fixture
def provider(tmp_path: Path, root: Path) -> FileKeyProvider:
    return generate_key_file(tmp_path / "provider.key", vault_root=root)


def test_a_new_key_file_is_0600_and_reads_back(tmp_path: Path, provider: FileKeyProvider) -> None:
    assert os.stat(tmp_path / "provider.key").st_mode & 0o777 == 0o600
    assert isinstance(provider, KeyProvider)
    again = FileKeyProvider(tmp_path / "provider.key", vault_root=None)
    assert again.key_id == provider.key_id
    assert str(tmp_path) in repr(again) and "key=" not in repr(again)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_a_key_file_readable_or_writable_by_others_is_refused(tmp_path: Path, mode: int,
                                                              provider: FileKeyProvider) -> None:
    path = tmp_path / "provider.key"
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=f"mode {mode:04o}.*chmod 600"):
        FileKeyProvider(path, vault_root=None)


def test_a_key_file_inside_the_vault_root_is_refused(tmp_path: Path, root: Path) -> None:
    with pytest.raises(KeyFileError, match="inside the vault root"):
        generate_key_file(root / "provider.key", vault_root=root)
    assert not (root / "provider.key").exists()
    outside = generate_key_file(tmp_path / "k", vault_root=root)
    (root / "keys").mkdir()
    os.replace(outside.path, root / "keys" / "k")
    with pytest.raises(KeyFileError, match="inside the vault root"):
        FileKeyProvider(root / "keys" / "k", vault_root=root)


def test_a_symlinked_missing_or_foreign_key_file_is_refused(tmp_path: Path,
                                                            provider: FileKeyProvider) -> None:
    link = tmp_path / "link.key"
    link.symlink_to(provider.path)
    with pytest.raises(KeyFileError, match="symlink"):
        FileKeyProvider(link, vault_root=None)
    with pytest.raises(KeyFileError, match="does not exist"):
        FileKeyProvider(tmp_path / "nope.key", vault_root=None)
    other = tmp_path / "other.key"
    other.write_text("hello\n")
    other.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a vault key file"):
        FileKeyProvider(other, vault_root=None)


def test_a_key_file_is_never_overwritten(tmp_path: Path, provider: FileKeyProvider) -> None:
    before = read_secret_file(provider.path)
    with pytest.raises(KeyFileError, match="exists already"):
        generate_key_file(provider.path, vault_root=None)
    assert read_secret_file(provider.path) == before


def test_a_wrapped_key_unwraps_only_for_its_dataset_and_provider(
        tmp_path: Path, provider: FileKeyProvider) -> None:
    key, record = wrap_data_key(provider, "kitchen")
    assert len(key) == 32 and key not in record.wrapped
    assert unwrap_data_key(provider, WrappedKey.from_json(record.to_json()), dataset="kitchen") == key
    with pytest.raises(TamperError, match="for dataset 'kitchen', not 'garage'"):
        unwrap_data_key(provider, record, dataset="garage")
    # relabelled to another dataset: the associated data no longer matches
    moved = WrappedKey("garage", record.key_id, record.wrapped)
    with pytest.raises(TamperError, match="does not unwrap"):
        unwrap_data_key(provider, moved, dataset="garage")
    other = generate_key_file(tmp_path / "other.key", vault_root=None)
    with pytest.raises(TamperError, match="wrapped by provider key"):
        unwrap_data_key(other, record, dataset="kitchen")
    forged = WrappedKey("kitchen", other.key_id, record.wrapped)
    with pytest.raises(TamperError, match="does not unwrap"):
        unwrap_data_key(other, forged, dataset="kitchen")


def test_data_keys_are_kept_wrapped_under_the_root(root: Path, provider: FileKeyProvider) -> None:
    key = create_data_key(root, provider, "kitchen")
    stored = (root / "keys" / "kitchen.json").read_bytes()
    assert key not in stored
    assert load_data_key(root, provider, "kitchen") == key
    with pytest.raises(VaultError, match="has a data key already"):
        create_data_key(root, provider, "kitchen")
    with pytest.raises(VaultError, match="no data key"):
        load_data_key(root, provider, "garage")


@pytest.mark.parametrize("bad", ["../etc", "", ".hidden", "a/b", "x" * 129, "-rf"])
def test_dataset_ids_that_are_not_safe_file_names_are_refused(
        root: Path, provider: FileKeyProvider, bad: str) -> None:
    with pytest.raises(VaultError, match="dataset id"):
        create_data_key(root, provider, bad)


def test_a_wrapped_key_of_an_unknown_format_is_refused(provider: FileKeyProvider) -> None:
    _, record = wrap_data_key(provider, "kitchen")
    with pytest.raises(FormatError, match="format 2"):
        WrappedKey.from_json(record.to_json().replace('"format": 1', '"format": 2'))


def test_creating_and_using_a_data_key_are_audit_entries(tmp_path: Path, root: Path,
                                                         provider: FileKeyProvider) -> None:
    from vault.audit import AuditLog
    from vault.note import generate_signer

    log = AuditLog.create(root, generate_signer("vault.example/log"))
    create_data_key(root, provider, "kitchen", audit=log, actor="provider:acme")
    load_data_key(root, provider, "kitchen", audit=log, actor="lab:acme/alice",
                  purpose="pull kitchen/v1")
    entries = log.show("kitchen")
    assert [(e.actor, e.action) for e in entries] == [("provider:acme", "key.create"),
                                                      ("lab:acme/alice", "key.use")]
    assert entries[1].details == {"key_id": provider.key_id, "purpose": "pull kitchen/v1"}
    log.close()


def test_a_signer_key_file_is_checked_like_any_key_file(tmp_path: Path, root: Path) -> None:
    from vault.keys import load_signer, write_secret_file
    from vault.note import generate_signer

    signer = generate_signer("vault.example/log")
    write_secret_file(tmp_path / "log.key", signer.skey() + "\n", vault_root=root)
    assert load_signer(tmp_path / "log.key", vault_root=root) == signer
    (tmp_path / "log.key").chmod(0o644)
    with pytest.raises(KeyFileError, match="mode 0644"):
        load_signer(tmp_path / "log.key", vault_root=root)
    write_secret_file(tmp_path / "bad.key", "not a key\n")
    with pytest.raises(KeyFileError, match="bad.key: a signer key is"):
        load_signer(tmp_path / "bad.key", vault_root=root)


def test_rotating_the_provider_key_keeps_the_data_key_and_retires_the_old_one(
        tmp_path: Path, root: Path, provider: FileKeyProvider) -> None:
    from vault.keys import rewrap_data_key

    key = create_data_key(root, provider, "kitchen")
    new = generate_key_file(tmp_path / "new.key", vault_root=root)
    record = rewrap_data_key(root, provider, new, "kitchen")
    assert record.key_id == new.key_id
    assert load_data_key(root, new, "kitchen") == key  # stored objects still decrypt
    with pytest.raises(TamperError, match="wrapped by provider key"):
        load_data_key(root, provider, "kitchen")
    with pytest.raises(TamperError):
        rewrap_data_key(root, provider, new, "kitchen")  # the old key no longer opens it
