"""Identities, roles and API tokens, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.vault.pgserver import Clock, database_url, postgres_server  # noqa: F401
from vault.catalog import Catalog
from vault.db import SQLITE_NAME, CatalogError, ExpiredToken, Forbidden, NotFound, RevokedToken, UnknownToken
from vault.identities import SCOPES, Identities, Role, RoleGrant, hash_token


@dataclass
class World:
    clock: Clock
    catalog: Catalog
    ids: Identities
    events: list[dict[str, Any]]


@pytest.fixture
def world(database_url: str) -> Iterator[World]:  # noqa: F811
    clock = Clock()
    catalog = Catalog(database_url, clock=clock)
    events: list[dict[str, Any]] = []
    ids = Identities(catalog, on_event=events.append)
    catalog.create_provider("acme")
    catalog.create_dataset("acme", "pick")
    catalog.create_dataset("acme", "place")
    ids.create_lab("lab-a")
    for name in ("prov", "rev", "alice"):
        ids.create_identity(name)
    ids.assign("prov", Role.PROVIDER, provider="acme")
    ids.assign("alice", Role.LAB_MEMBER, lab="lab-a")
    yield World(clock, catalog, ids, events)
    catalog.close()


def test_a_token_authenticates_its_identity_with_its_scopes_and_roles(world: World) -> None:
    new = world.ids.create_token("alice", ["catalog:read", "requests"], name="laptop")
    who = world.ids.authenticate(new.token)
    assert who.name == "alice"
    assert who.scopes == {"catalog:read", "requests"}
    assert who.has_scope("requests") and not who.has_scope("pull")
    assert who.labs == {"lab-a"}
    assert who.has_role(Role.LAB_MEMBER, lab="lab-a")
    assert who.token_id == new.info.token_id
    assert not who.is_admin
    assert new.token.startswith(f"dfv1_{new.info.token_id}_")
    assert len(new.token.split("_", 2)[2]) >= 43  # 256 bits of secret
    assert world.events[-1] == {"actor": "alice", "action": "login", "dataset": None,
                                "details": {"token_id": new.info.token_id}}


def test_the_token_is_shown_once_and_never_stored(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    catalog = Catalog(root)
    ids = Identities(catalog)
    ids.create_identity("alice")
    new = ids.create_token("alice", ["pull"])
    secret = new.token.split("_", 2)[2]
    assert new.token not in repr(new) and secret not in repr(new)
    assert all(secret not in repr(t) for t in ids.list_tokens())
    catalog.close()
    files = [p for p in root.iterdir() if p.name.startswith(SQLITE_NAME)]
    data = b"".join(p.read_bytes() for p in files)
    assert data, files
    assert new.token.encode() not in data and secret.encode() not in data
    assert hash_token(new.token).encode() in data  # what is stored instead
    assert Identities(Catalog(root)).authenticate(new.token).name == "alice"


def test_unknown_forged_and_malformed_tokens_are_refused(world: World) -> None:
    new = world.ids.create_token("alice", ["pull"])
    prefix, public, secret = new.token.split("_", 2)
    forged = [f"{prefix}_{public}_{'A' * len(secret)}",         # right id, wrong secret
              f"{prefix}_{'0' * len(public)}_{secret}",         # right secret, wrong id
              new.token[:-1], "", "dfv1", "Bearer x", "dfv2_" + new.token[5:]]
    for token in forged:
        with pytest.raises(UnknownToken, match="not one this vault issued"):
            world.ids.authenticate(token)
    assert [e["details"]["reason"] for e in world.events if e["action"] == "login_failed"] == [
        "unknown"] * len(forged)
    json.dumps(world.events, allow_nan=False)  # the audit log takes JSON only


def test_an_expired_token_is_refused(world: World) -> None:
    new = world.ids.create_token("alice", ["pull"], expires_in=timedelta(hours=1))
    world.clock.advance(timedelta(minutes=59))
    assert world.ids.authenticate(new.token).name == "alice"
    world.clock.advance(timedelta(minutes=1))
    with pytest.raises(ExpiredToken, match=f"token {new.info.token_id} expired at 2026-12-03T13:00"):
        world.ids.authenticate(new.token)
    assert world.events[-1]["action"] == "login_failed"
    assert world.events[-1]["details"]["reason"] == "expired"


def test_a_revoked_token_is_refused_from_its_next_use(world: World) -> None:
    new = world.ids.create_token("alice", ["pull"])
    other = world.ids.create_token("alice", ["pull"])
    assert world.ids.authenticate(new.token).name == "alice"
    info = world.ids.revoke_token(new.info.token_id, by="prov")
    assert info.revoked_at == world.clock.now and info.revoked_by == "prov"
    with pytest.raises(RevokedToken, match=f"token {new.info.token_id} was revoked"):
        world.ids.authenticate(new.token)
    assert world.ids.authenticate(other.token).name == "alice"  # only that token
    assert world.ids.revoke_token(new.info.token_id) == info  # again: nothing changes
    assert [e["action"] for e in world.events].count("token_revoked") == 1
    with pytest.raises(NotFound, match="no token 'nope'"):
        world.ids.revoke_token("nope")


def test_tokens_are_listed_without_their_secrets(world: World) -> None:
    a = world.ids.create_token("alice", ["pull"], name="first")
    world.clock.advance(timedelta(seconds=1))
    b = world.ids.create_token("alice", ["catalog:read"], name="second")
    world.ids.create_token("prov", ["catalog:write"])
    listed = world.ids.list_tokens("alice")
    assert [t.token_id for t in listed] == [b.info.token_id, a.info.token_id]
    assert listed[1] == a.info and listed[1].scopes == ("pull",)
    assert len(world.ids.list_tokens()) == 3
    assert not any(hasattr(t, "token") for t in listed)


def test_token_scopes_and_lifetimes_are_checked(world: World) -> None:
    with pytest.raises(CatalogError, match=r"token scopes \['everything'\] are not valid"):
        world.ids.create_token("alice", ["pull", "everything"])
    with pytest.raises(CatalogError, match="a token needs one or more of"):
        world.ids.create_token("alice", [])
    for life in (timedelta(0), timedelta(days=400)):
        with pytest.raises(CatalogError, match="tokens always expire"):
            world.ids.create_token("alice", ["pull"], expires_in=life)
    with pytest.raises(NotFound, match="no identity 'mallory'"):
        world.ids.create_token("mallory", ["pull"])
    assert world.ids.create_token("alice", sorted(SCOPES)).info.scopes == tuple(sorted(SCOPES))


def test_roles_are_held_for_what_they_need(world: World) -> None:
    with pytest.raises(CatalogError, match="role reviewer is held for a dataset; got"):
        world.ids.assign("rev", Role.REVIEWER, lab="lab-a")
    with pytest.raises(CatalogError, match="role lab_member is held for a lab; got nothing"):
        world.ids.assign("rev", "lab_member")
    with pytest.raises(CatalogError, match="role admin is held for nothing"):
        world.ids.assign("rev", Role.ADMIN, provider="acme")
    with pytest.raises(CatalogError, match="unknown role 'boss'"):
        world.ids.assign("rev", "boss")
    with pytest.raises(NotFound, match="no lab 'lab-z'"):
        world.ids.assign("rev", Role.LAB_MEMBER, lab="lab-z")
    who = world.ids.assign("rev", Role.AUDITOR)
    assert RoleGrant(Role.AUDITOR) in who.roles
    who = world.ids.assign("rev", Role.CURATOR, provider="acme")
    assert who.has_role("curator", provider="acme")
    assert world.ids.assign("rev", Role.CURATOR, provider="acme") == who  # held already


def test_a_provider_appoints_reviewers_for_its_datasets_only(world: World) -> None:
    prov = world.ids.get("prov")
    rev = world.ids.appoint_reviewer(prov, "rev", "pick")
    assert rev.has_role(Role.REVIEWER, dataset="pick")
    assert not rev.has_role(Role.REVIEWER, dataset="place")
    with pytest.raises(Forbidden, match="'alice' may not appoint reviewers for dataset 'pick'"):
        world.ids.appoint_reviewer(world.ids.get("alice"), "alice", "pick")
    world.catalog.create_provider("other")
    world.catalog.create_dataset("other", "secret")
    with pytest.raises(Forbidden, match="only a provider of 'other' or an admin may"):
        world.ids.appoint_reviewer(prov, "rev", "secret")
    event = [e for e in world.events if e["action"] == "role_assigned"][-1]
    assert event == {"actor": "prov", "action": "role_assigned", "dataset": "pick",
                     "details": {"identity": "rev", "role": "reviewer", "provider": None,
                                 "lab": None}}


def test_a_role_taken_away_is_gone_at_the_next_authentication(world: World) -> None:
    new = world.ids.create_token("alice", ["requests"])
    assert world.ids.authenticate(new.token).labs == {"lab-a"}
    world.ids.unassign("alice", Role.LAB_MEMBER, lab="lab-a", by="prov")
    assert world.ids.authenticate(new.token).labs == frozenset()
    with pytest.raises(NotFound, match="'alice' does not hold role lab_member for lab 'lab-a'"):
        world.ids.unassign("alice", Role.LAB_MEMBER, lab="lab-a")


def test_names_are_unique_and_checked(world: World) -> None:
    from vault.db import Conflict

    with pytest.raises(Conflict, match="identity 'alice' already exists"):
        world.ids.create_identity("alice")
    with pytest.raises(Conflict, match="lab 'lab-a' already exists"):
        world.ids.create_lab("lab-a")
    with pytest.raises(CatalogError, match="identity name 'Alice Smith' is not valid"):
        world.ids.create_identity("Alice Smith")
    with pytest.raises(CatalogError, match="identity name 'local' is reserved"):
        world.ids.create_identity("local")
    assert [i.name for i in world.ids.identities()] == ["alice", "prov", "rev"]
    assert [x.name for x in world.ids.labs()] == ["lab-a"]
