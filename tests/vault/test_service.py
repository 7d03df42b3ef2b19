"""The vault service: init refuses without keys, ingest stores every file encrypted, grants
decide pulls (streams, episodes), and no plaintext of a served file is under the root."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.vault.pgserver import release_dir  # noqa: F401
from vault.db import Forbidden, NotFound
from vault.errors import KeyFileError, VaultError
from vault.identities import Identity, Role
from vault.service import Vault, check_path, init_vault

HEAD = "camera.head.image_raw.compressed"
VALUES = f"streams/{HEAD}/data/values/c/0"


@dataclass
class Clock:
    """A clock the tests move by hand."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


def grant(v: Vault, lab: str, member: str, **scope: object) -> int:
    """A lab member's request, approved by rev1; returns the request id."""
    r = v.review.submit(v.identities.get(member), "pick", 1, purpose="train", lab=lab,
                        **scope)  # type: ignore[arg-type]
    rev = v.identities.get("rev1")
    v.review.start_review(r.id, rev)
    v.review.confirm_approval(r.id, rev, v.review.prepare_approval(r.id, rev))
    return r.id


def make_vault(tmp: Path, release: Path, clock: Clock | None = None, *,
               mock: bool = False, catalog_url: str | None = None) -> Vault:
    """acme's dataset pick (1 approval) with the release; rev1 reviews; labs lab-a (alice,
    all of it), lab-b (bob, nothing), lab-c (carol, without the head camera), lab-d (dave,
    episodes 0 and 1); aud audits acme. ``mock``: build the mock release too (vault.mock);
    ``catalog_url``: the catalog on PostgreSQL."""
    (tmp / "keys").mkdir()
    init_vault(tmp / "root", tmp / "keys" / "provider.key")
    v = Vault(tmp / "root", clock=clock or Clock(), catalog_url=catalog_url)
    v.catalog.create_provider("acme")
    v.catalog.create_dataset("acme", "pick", required_approvals=1)
    v.ingest_release("pick", release, mock=mock)  # mock=True runs the simulator
    ids = v.identities
    for name in ("prov", "rev1", "alice", "bob", "carol", "dave", "aud"):
        ids.create_identity(name)
    ids.assign("prov", Role.PROVIDER, provider="acme")
    ids.assign("aud", Role.AUDITOR, provider="acme")
    ids.appoint_reviewer(ids.get("prov"), "rev1", "pick")
    for name, lab in (("alice", "lab-a"), ("bob", "lab-b"), ("carol", "lab-c"), ("dave", "lab-d")):
        ids.create_lab(lab)
        ids.assign(name, Role.LAB_MEMBER, lab=lab)
    streams = [s.name for s in v.catalog.release("pick", 1).description.streams]
    grant(v, "lab-a", "alice")
    grant(v, "lab-c", "carol", streams=[s for s in streams if s != HEAD])
    grant(v, "lab-d", "dave", episodes=[0, 1])
    return v


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory, release_dir: Path) -> Iterator[Vault]:  # noqa: F811
    v = make_vault(tmp_path_factory.mktemp("svc"), release_dir)
    yield v
    v.close()


def who(v: Vault, name: str) -> Identity:
    return v.identities.get(name)


def test_a_vault_does_not_open_without_its_keys(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="not a vault"):
        Vault(tmp_path / "nothing")
    (tmp_path / "k").mkdir()
    init_vault(tmp_path / "root", tmp_path / "k" / "p.key")
    assert os.stat(tmp_path / "k" / "p.key").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "k" / "p.key.log").st_mode & 0o777 == 0o600
    Vault(tmp_path / "root").close()
    os.chmod(tmp_path / "k" / "p.key", 0o644)
    with pytest.raises(KeyFileError, match="0644"):
        Vault(tmp_path / "root")
    os.chmod(tmp_path / "k" / "p.key", 0o600)
    (tmp_path / "k" / "p.key.log").unlink()
    with pytest.raises(KeyFileError, match="does not exist"):
        Vault(tmp_path / "root")
    with pytest.raises(KeyFileError, match="inside the vault root"):
        init_vault(tmp_path / "root2", tmp_path / "root2" / "p.key")


def test_a_full_grant_pulls_every_file_as_it_is(vault: Vault, release_dir: Path) -> None:  # noqa: F811
    files = vault.list_files(who(vault, "alice"), "pick", 1)
    on_disk = sorted(p.relative_to(release_dir).as_posix() for p in release_dir.rglob("*")
                     if p.is_file())
    assert sorted(f.path for f in files) == on_disk
    for path in (VALUES, "episodes.json", "manifest.json"):
        with vault.open_file(who(vault, "alice"), "pick", 1, path) as f:
            assert f.read_range(0, f.size) == (release_dir / path).read_bytes()


def test_a_lab_without_a_grant_is_refused(vault: Vault) -> None:
    with pytest.raises(Forbidden, match="no grant"):
        vault.open_file(who(vault, "bob"), "pick", 1, "episodes.json")
    with pytest.raises(Forbidden):
        vault.list_files(who(vault, "bob"), "pick", 1)


def test_a_stream_subset_refuses_the_other_streams(vault: Vault, release_dir: Path) -> None:  # noqa: F811
    carol = who(vault, "carol")
    paths = {f.path for f in vault.list_files(carol, "pick", 1)}
    assert not any(HEAD in p for p in paths)
    assert "streams/joint_states/zarr.json" in paths
    with pytest.raises(Forbidden, match="not granted"):
        vault.open_file(carol, "pick", 1, VALUES)
    with pytest.raises(Forbidden):
        vault.open_file(carol, "pick", 1, f"sync/joint_states__to__{HEAD}/c/0")
    with vault.open_file(carol, "pick", 1, "stats.json") as f:
        stats = json.loads(f.read_range(0, f.size))
    assert HEAD not in stats["streams"] and "joint_states" in stats["streams"]
    with vault.open_file(carol, "pick", 1, "zarr.json") as f:
        listed = json.loads(f.read_range(0, f.size))["attributes"]["demofab"]["streams"]
    assert HEAD not in listed and "joint_states" in listed
    with vault.open_file(carol, "pick", 1, "manifest.json") as f:
        manifest = json.loads(f.read_range(0, f.size))
    assert set(manifest["files"]) == paths - {"manifest.json"}


def test_an_episode_subset_is_served_as_its_own_derived_release(vault: Vault,
                                                                release_dir: Path) -> None:  # noqa: F811
    dave = who(vault, "dave")  # granted episodes 0 and 1 of 3
    with vault.open_file(dave, "pick", 1, "episodes.json") as f:
        rows = json.loads(f.read_range(0, f.size))["episodes"]
    assert [(r["index"], r["source_index"]) for r in rows] == [(0, 0), (1, 1)]
    with pytest.raises(NotFound, match="stats.json"):  # no statistics over other episodes
        vault.open_file(dave, "pick", 1, "stats.json")
    listed = {f.path: f for f in vault.list_files(dave, "pick", 1)}
    assert listed[VALUES].ranges is None  # every file of the derived release is whole
    with vault.open_file(dave, "pick", 1, VALUES) as f:
        derived = f.read_range(0, f.size)
    with vault.open_file(who(vault, "alice"), "pick", 1, VALUES) as f:
        full = f.read_range(0, f.size)
    assert len(derived) < len(full)  # episode 2's frames are not in it


def test_pulls_and_key_uses_are_audit_entries(vault: Vault) -> None:
    before = vault.audit.size
    with vault.open_file(who(vault, "alice"), "pick", 1, VALUES) as f:
        f.read_range(10, 20)
    new = [e for e in vault.audit.entries(before)]
    actions = [e.action for e in new]
    assert "key.use" in actions and "pull" in actions
    pull = next(e for e in new if e.action == "pull")
    assert pull.actor == "alice" and pull.details["path"] == VALUES
    assert (pull.details["start"], pull.details["stop"]) == (10, 20)


def test_no_plaintext_of_a_served_file_is_under_the_root(vault: Vault, release_dir: Path) -> None:  # noqa: F811
    for path in (VALUES, "streams/joint_states/position/c/0/0"):
        with vault.open_file(who(vault, "alice"), "pick", 1, path) as f:
            f.read_range(0, f.size)
    plain = (release_dir / VALUES).read_bytes()
    probes = [plain[i:i + 48] for i in (1000, 500_000, 2_000_000)]
    probes.append((release_dir / "streams/joint_states/position/c/0/0").read_bytes()[64:112])
    for p in vault.root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert not any(x in data for x in probes), p


def test_release_paths_are_checked() -> None:
    for bad in ("../x", "a/../../b", "/etc/passwd", "a//b", "a/./b", "", "a\\b", "a\0b", ".."):
        with pytest.raises(VaultError):
            check_path(bad)
    assert check_path("streams/imu/c/0") == "streams/imu/c/0"


def test_a_revoked_grant_is_refused_on_the_next_pull(tmp_path: Path,
                                                     release_dir: Path) -> None:  # noqa: F811
    clock = Clock()
    v = make_vault(tmp_path, release_dir, clock)
    try:
        alice = who(v, "alice")
        v.open_file(alice, "pick", 1, "episodes.json").close()
        req = v.review.list_requests(lab="lab-a")[0]
        v.review.revoke(req.id, who(v, "prov"), "contract ended")
        with pytest.raises(Forbidden, match="revoked"):
            v.open_file(alice, "pick", 1, "episodes.json")
        dave = who(v, "dave")  # authenticated before leaving the lab
        v.open_file(dave, "pick", 1, "episodes.json").close()
        v.identities.unassign("dave", Role.LAB_MEMBER, lab="lab-d")
        with pytest.raises(Forbidden, match="no lab"):
            v.open_file(dave, "pick", 1, "episodes.json")  # membership is read at each pull
        clock.now += timedelta(days=31)
        with pytest.raises(Forbidden):  # its grant expired after 30 days
            v.open_file(who(v, "carol"), "pick", 1, "episodes.json")
    finally:
        v.close()


# -- the commands ----------------------------------------------------------------------------

def _cli(*argv: str) -> int:
    import argparse

    from vault.admin_cli import add_commands

    parser = argparse.ArgumentParser(prog="demofab")
    vsub = parser.add_subparsers(dest="command").add_parser("vault").add_subparsers(
        dest="vault_command", required=True)
    add_commands(vsub)
    args = parser.parse_args(["vault", *argv])
    code: int = args.func(args)
    return code


def test_the_commands_make_a_vault_and_tokens_shown_once(
        tmp_path: Path, release_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    root, key = str(tmp_path / "root"), str(tmp_path / "provider.key")
    assert _cli("init", "--root", root, "--key-file", key) == 0
    assert _cli("init", "--root", root, "--key-file", key) == 2  # never over an existing vault
    assert "is a vault already" in capsys.readouterr().err
    for argv in (("provider", "create", "--root", root, "acme"),
                 ("dataset", "create", "--root", root, "pick", "--provider", "acme",
                  "--approvals", "1"),
                 ("ingest", "--root", root, "--dataset", "pick", "--no-mock", str(release_dir)),
                 ("identity", "create", "--root", root, "alice"),
                 ("lab", "create", "--root", root, "lab-a"),
                 ("role", "assign", "--root", root, "alice", "lab_member", "--lab", "lab-a")):
        assert _cli(*argv) == 0, argv
    capsys.readouterr()
    assert _cli("token", "create", "--root", root, "alice", "--scope", "catalog:read") == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("dfv1_")
    assert _cli("token", "list", "--root", root) == 0
    listed = capsys.readouterr().out
    assert token not in listed and token.split("_")[1] in listed
    with Vault(root) as v:
        assert v.identities.authenticate(token).name == "alice"
        assert v.catalog.release("pick", 1).description.episode_count == 3
    assert _cli("token", "revoke", "--root", root, token.split("_")[1]) == 0
    os.chmod(key, 0o640)
    assert _cli("serve", "--root", root, "--port", "1") == 2  # no server without its own key
    assert "0640" in capsys.readouterr().err


def test_a_mock_release_is_served_without_a_grant(tmp_path: Path, release_dir: Path) -> None:  # noqa: F811
    import shutil

    v = make_vault(tmp_path, release_dir)
    try:
        bob = who(v, "bob")
        with pytest.raises(NotFound, match="no mock release"):
            v.open_mock(bob, "pick", 1, "episodes.json")
        mock = tmp_path / "mock"
        shutil.copytree(release_dir, mock, ignore=shutil.ignore_patterns("c"))  # metadata only
        (mock / "episodes.json").write_text('{"format_version": 1, "episodes": []}')
        assert v.put_mock("pick", 1, mock) > 10
        with v.open_mock(bob, "pick", 1, "episodes.json") as r:
            assert json.loads(r.read_all())["episodes"] == []
        with pytest.raises(NotFound):
            v.open_mock(bob, "pick", 1, VALUES)  # not in the mock
        with pytest.raises(Forbidden):
            v.open_file(bob, "pick", 1, "episodes.json")  # the real one still needs a grant
        assert any(e.action == "mock_pull" for e in v.audit.show("pick"))
    finally:
        v.close()
