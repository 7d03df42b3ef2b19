"""The HTTP API: authorization of every route (table-driven over the app's routes), Range
reads, path traversal in every path parameter, the review flow over HTTP, and concurrent
pulls by several labs while a review changes."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.vault.pgserver import database_url, postgres_server, release_dir  # noqa: F401
from tests.vault.test_service import HEAD, VALUES, Clock, grant, make_vault
from vault.api import PUBLIC_ROUTES, ROUTE_SCOPES, create_app, parse_range
from vault.audit import verify
from vault.identities import SCOPES
from vault.service import Vault

ALL = sorted(SCOPES)


@dataclass
class Env:
    vault: Vault
    client: TestClient
    clock: Clock
    tokens: dict[str, str]
    release: Path

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def _tokens(v: Vault) -> dict[str, str]:
    t = {name: v.identities.create_token(name, ALL).token
         for name in ("prov", "rev1", "alice", "bob", "carol", "dave", "aud")}
    t["expired"] = v.identities.create_token("alice", ALL, expires_in=timedelta(minutes=1)).token
    revoked = v.identities.create_token("alice", ALL)
    v.identities.revoke_token(revoked.info.token_id)
    t["revoked"] = revoked.token
    t["unknown"] = "dfv1_0123456789abcdef_" + "x" * 43
    return t


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, release_dir: Path) -> Iterator[Env]:  # noqa: F811
    clock = Clock()
    v = make_vault(tmp_path_factory.mktemp("api"), release_dir, clock)
    tokens = _tokens(v)
    clock.now += timedelta(minutes=2)  # the expired token is past its expiry
    with TestClient(create_app(v)) as client:
        yield Env(v, client, clock, tokens, release_dir)
    v.close()


# -- the route table -------------------------------------------------------------------------

SAMPLE = {"dataset": "pick", "version": "1", "path": "episodes.json", "request_id": "1",
          "job_id": "1", "output_id": "1"}


def routes(app: object) -> list[tuple[str, str]]:
    out = []
    for r in app.routes:  # type: ignore[attr-defined]
        if isinstance(r, APIRoute):
            out.extend((m, r.path) for m in sorted(r.methods))
    return out


def url(path: str) -> str:
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: SAMPLE[m.group(1)], path)


def body(method: str, path: str) -> dict[str, object] | None:
    if method != "POST":
        return None
    if path == "/v1/requests":
        return {"dataset": "pick", "release": 1, "purpose": "x"}
    if path.endswith("/confirm"):
        return {"code": "0000-0000"}
    return {"reason": "because"}


def test_every_route_is_in_the_scope_table_and_uses_the_one_dependency(env: Env) -> None:
    app = env.client.app
    found = routes(app)
    protected = [(m, p) for m, p in found if p not in PUBLIC_ROUTES]
    assert sorted(protected) == sorted(ROUTE_SCOPES), "a route without a declared scope"
    for r in app.routes:  # type: ignore[attr-defined]
        if isinstance(r, APIRoute) and r.path not in PUBLIC_ROUTES:
            names = [d.call.__name__ for d in r.dependant.dependencies if d.call]
            assert any(n.startswith("require_") for n in names), r.path


@pytest.mark.parametrize("who", ["none", "unknown", "expired", "revoked", "garbage"])
def test_every_route_answers_401_without_a_valid_token(env: Env, who: str) -> None:
    headers = ({} if who == "none" else {"Authorization": "Bearer !!"} if who == "garbage"
               else env.h(who))
    for method, path in ROUTE_SCOPES:
        r = env.client.request(method, url(path), headers=headers, json=body(method, path))
        assert r.status_code == 401, (method, path, r.text)
        assert "WWW-Authenticate" in r.headers


def test_every_route_answers_403_without_its_scope(env: Env) -> None:
    for (method, path), scope in ROUTE_SCOPES.items():
        others = [s for s in ALL if s not in scope.split("|")]
        token = env.vault.identities.create_token("alice", others).token
        r = env.client.request(method, url(path), headers={"Authorization": f"Bearer {token}"},
                               json=body(method, path))
        assert r.status_code == 403, (method, path, r.text)
        assert "scope" in r.json()["detail"]


def test_health_and_openapi_need_no_token(env: Env) -> None:
    assert env.client.get("/health").json() == {"status": "ok"}
    spec = env.client.get("/openapi.json").json()
    assert "/v1/datasets/{dataset}/releases/{version}/files/{path}" in spec["paths"]


# -- grants ----------------------------------------------------------------------------------

FILES = "/v1/datasets/pick/releases/1/files"


def test_pulls_need_a_grant_of_ones_own_lab_for_those_episodes_and_streams(env: Env) -> None:
    c = env.client
    assert c.get(f"{FILES}/episodes.json", headers=env.h("alice")).status_code == 200
    assert c.get(f"{FILES}/episodes.json", headers=env.h("bob")).status_code == 403
    assert c.get(FILES, headers=env.h("bob")).status_code == 403
    assert c.get(f"{FILES}/{VALUES}", headers=env.h("carol")).status_code == 403  # no head camera
    assert c.get(f"{FILES}/streams/imu/zarr.json", headers=env.h("carol")).status_code == 200
    # an episode subset gets its own derived release: whole files, no episode 2 in them
    listed = {f["path"]: f for f in c.get(FILES, headers=env.h("dave")).json()}
    assert listed[VALUES]["ranges"] is None
    whole = c.get(f"{FILES}/{VALUES}", headers=env.h("dave")).content
    r = c.get(f"{FILES}/{VALUES}", headers=env.h("dave") | {"Range": "bytes=10-99"})
    assert r.status_code == 206 and r.content == whole[10:100]
    assert len(whole) < len((env.release / VALUES).read_bytes())
    # the provider and the reviewer hold no grant: they see the catalog, not the data
    assert c.get(f"{FILES}/episodes.json", headers=env.h("prov")).status_code == 403
    assert c.get(f"{FILES}/episodes.json", headers=env.h("rev1")).status_code == 403


def test_catalog_and_mock_without_a_grant(env: Env) -> None:
    c = env.client
    d = c.get("/v1/datasets/pick", headers=env.h("bob")).json()
    assert d["episode_count"] == 3 and d["releases"][0]["streams"]
    assert [x["name"] for x in c.get("/v1/datasets", headers=env.h("bob")).json()] == ["pick"]
    r = c.get("/v1/datasets/pick/releases/1/mock/episodes.json", headers=env.h("bob"))
    assert r.status_code == 404 and "mock" in r.json()["detail"]
    assert c.get("/v1/datasets/nope", headers=env.h("bob")).status_code == 404


def test_grants_and_requests_are_ones_own(env: Env) -> None:
    c = env.client
    mine = c.get("/v1/grants", headers=env.h("carol")).json()
    assert {g["lab"] for g in mine} == {"lab-c"}
    assert c.get("/v1/grants", headers=env.h("bob")).json() == []
    reqs = c.get("/v1/requests", headers=env.h("carol")).json()
    assert {r["lab"] for r in reqs} == {"lab-c"}
    assert c.get(f"/v1/requests/{reqs[0]['id']}", headers=env.h("bob")).status_code == 403
    assert c.get(f"/v1/requests/{reqs[0]['id']}", headers=env.h("rev1")).status_code == 200


# -- Range -----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["bytes=0-0", "bytes=5-1048580", "bytes=1048575-2097152",
                                  "bytes=3000000-", "bytes=-77", "bytes=0-99999999"])
def test_range_reads_equal_the_plaintext_slice(env: Env, spec: str) -> None:
    plain = (env.release / VALUES).read_bytes()
    start, stop = parse_range(spec, len(plain)) or (0, len(plain))
    r = env.client.get(f"{FILES}/{VALUES}", headers=env.h("alice") | {"Range": spec})
    assert r.status_code == 206
    assert r.content == plain[start:stop]
    assert r.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(plain)}"


def test_a_whole_file_and_unsatisfiable_or_malformed_ranges(env: Env) -> None:
    plain = (env.release / VALUES).read_bytes()
    r = env.client.get(f"{FILES}/{VALUES}", headers=env.h("alice"))
    assert r.status_code == 200 and r.content == plain
    assert r.headers["Accept-Ranges"] == "bytes"
    r = env.client.get(f"{FILES}/{VALUES}", headers=env.h("alice") | {
        "Range": f"bytes={len(plain)}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(plain)}"
    for bad in ("bytes=0-1,5-9", "items=0-1", "bytes=9-1", "bytes=-"):
        r = env.client.get(f"{FILES}/{VALUES}", headers=env.h("alice") | {"Range": bad})
        assert r.status_code == 400, bad


# -- path traversal --------------------------------------------------------------------------

TRAVERSALS = ["../../vault.json", "%2e%2e/%2e%2e/vault.json", "..%2f..%2fvault.json",
              "streams/../../../keys/pick.json", "%2Fetc%2Fpasswd", "a%5C..%5Cb", "a%00b",
              "%2E/episodes.json", "streams//imu/zarr.json"]


@pytest.mark.parametrize("route", [
    "/v1/datasets/pick/releases/1/files/{}", "/v1/datasets/pick/releases/1/mock/{}"])
@pytest.mark.parametrize("evil", TRAVERSALS)
def test_path_traversal_in_file_paths_is_refused(env: Env, route: str, evil: str) -> None:
    r = env.client.get(route.format(evil), headers=env.h("alice"))
    assert r.status_code in (400, 404), (evil, r.status_code)
    assert b"provider_key_file" not in r.content and b"wrapped" not in r.content


@pytest.mark.parametrize("evil", ["..", "%2e%2e", "..%2f..%2fetc", "PICK", "a%00b", "-x"])
def test_path_traversal_in_names_is_refused(env: Env, evil: str) -> None:
    for route in ("/v1/datasets/{}", "/v1/datasets/{}/releases/1/files",
                  "/v1/datasets/{}/releases/1/files/episodes.json",
                  "/v1/datasets/{}/releases/1/mock/episodes.json"):
        r = env.client.get(route.format(evil), headers=env.h("alice"))
        assert r.status_code in (400, 404, 422), (route, evil, r.status_code)
    for route in ("/v1/datasets/pick/releases/{}/files", "/v1/requests/{}"):
        r = env.client.get(route.format(evil), headers=env.h("alice"))
        assert r.status_code in (400, 404, 422), (route, evil, r.status_code)
    r = env.client.get(f"/v1/audit/entries?dataset={evil}", headers=env.h("aud"))
    assert r.status_code in (400, 404, 422)


# -- the review flow over HTTP ---------------------------------------------------------------

def test_a_lab_requests_a_reviewer_approves_in_two_steps_and_the_lab_pulls(env: Env) -> None:
    c, v = env.client, env.vault
    v.identities.create_identity("erin")
    v.identities.create_lab("lab-e")
    v.identities.assign("erin", "lab_member", lab="lab-e")
    env.tokens["erin"] = v.identities.create_token("erin", ALL).token
    assert c.get(f"{FILES}/episodes.json", headers=env.h("erin")).status_code == 403
    r = c.post("/v1/requests", headers=env.h("erin"), json={
        "dataset": "pick", "release": 1, "streams": ["joint_states"], "purpose": "a policy"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    pending = c.get("/v1/requests", headers=env.h("rev1")).json()
    assert rid in [p["id"] for p in pending]
    assert c.post(f"/v1/requests/{rid}/start-review", headers=env.h("erin")).status_code == 403
    assert c.post(f"/v1/requests/{rid}/start-review", headers=env.h("rev1")).status_code == 200
    assert c.post(f"/v1/requests/{rid}/reject", headers=env.h("rev1"),
                  json={"reason": " "}).status_code == 400
    r = c.post(f"/v1/requests/{rid}/request-changes", headers=env.h("rev1"),
               json={"reason": "say which policy"})
    assert r.json()["state"] == "changes_requested"
    r = c.post(f"/v1/requests/{rid}/resubmit", headers=env.h("erin"),
               json={"purpose": "a grasp policy for towels"})
    assert (r.json()["state"], r.json()["round"], r.json()["streams"]) == (
        "submitted", 2, ["joint_states"])
    assert c.post(f"/v1/requests/{rid}/start-review", headers=env.h("rev1")).status_code == 200
    code = c.post(f"/v1/requests/{rid}/approval", headers=env.h("rev1")).json()["code"]
    assert c.get(f"{FILES}/episodes.json", headers=env.h("erin")).status_code == 403
    r = c.post(f"/v1/requests/{rid}/approval/confirm", headers=env.h("rev1"), json={"code": code})
    assert r.json()["state"] == "approved"
    assert c.get(f"{FILES}/streams/joint_states/zarr.json", headers=env.h("erin")).status_code == 200
    assert c.get(f"{FILES}/streams/imu/zarr.json", headers=env.h("erin")).status_code == 403
    assert c.post(f"/v1/requests/{rid}/withdraw", headers=env.h("erin")).status_code == 409
    assert c.post(f"/v1/requests/{rid}/revoke", headers=env.h("rev1"),
                  json={"reason": "ended"}).json()["state"] == "revoked"
    assert c.get(f"{FILES}/streams/joint_states/zarr.json", headers=env.h("erin")).status_code == 403


def test_audit_entries_and_checkpoint(env: Env) -> None:
    c = env.client
    before = env.vault.audit.size
    env.client.get(f"{FILES}/{VALUES}", headers=env.h("alice") | {"Range": "bytes=5-9"})
    env.client.get(f"{FILES}/episodes.json", headers=env.h("bob"))
    new = [(e.actor, e.action) for e in env.vault.audit.entries(before)]
    assert ("alice", "login") in new and ("alice", "key.use") in new
    assert ("alice", "pull") in new and ("bob", "login") in new
    assert ("bob", "pull_refused") in new
    assert ("bob", "pull") not in new  # refused: no pull, no key use
    assert ("bob", "key.use") not in new
    entries = c.get("/v1/audit/entries?dataset=pick", headers=env.h("aud")).json()
    assert any(e["action"] == "pull" and e["actor"] == "alice"
               and (e["details"]["start"], e["details"]["stop"]) == (5, 10) for e in entries)
    assert any(e["action"] == "grant_created" for e in entries)
    assert c.get("/v1/audit/entries?dataset=pick", headers=env.h("alice")).status_code == 403
    note = c.get("/v1/audit/checkpoint", headers=env.h("aud"))
    assert note.status_code == 200 and note.headers["content-type"].startswith("text/plain")
    assert note.text.startswith(env.vault.audit.origin + "\n") and "\n\u2014 " in note.text


# -- concurrency -----------------------------------------------------------------------------

def test_concurrent_pulls_by_several_labs_while_a_grant_is_revoked(
        tmp_path: Path, release_dir: Path, database_url: str) -> None:  # noqa: F811
    """On SQLite and on PostgreSQL."""
    v = make_vault(tmp_path, release_dir,
                   catalog_url=database_url if "://" in database_url else None)
    tokens = _tokens(v)
    plain = (release_dir / VALUES).read_bytes()
    imu = (release_dir / "streams/imu/zarr.json").read_bytes()
    results: dict[str, list[tuple[int, bool]]] = {"alice": [], "carol": []}
    revoked = threading.Event()
    with TestClient(create_app(v)) as client:
        def puller(name: str, path: str, expect: bytes, stop: threading.Event) -> None:
            h = {"Authorization": f"Bearer {tokens[name]}", "Range": "bytes=1000000-1100000"}
            full = path == VALUES
            while not stop.is_set():
                r = client.get(f"{FILES}/{path}", headers=h if full else h | {"Range": "bytes=0-"})
                ok = r.content == (expect[1000000:1100001] if full else expect)
                results[name].append((r.status_code, r.status_code != 206 or ok))

        stop = threading.Event()
        threads = [threading.Thread(target=puller, args=("alice", VALUES, plain, stop)),
                   threading.Thread(target=puller, args=("carol", "streams/imu/zarr.json", imu, stop))]
        for t in threads:
            t.start()
        while len(results["alice"]) < 3 or len(results["carol"]) < 3:
            threading.Event().wait(0.01)
        req = v.review.list_requests(lab="lab-a")[0]
        v.review.revoke(req.id, v.identities.get("prov"), "audit finding")
        revoked.set()
        n = len(results["alice"])
        while len(results["alice"]) < n + 3:
            threading.Event().wait(0.01)
        stop.set()
        for t in threads:
            t.join()
        other = grant(v, "lab-b", "bob")  # a review during the pulls leaves the rest intact
        assert v.review.get(other).state.value == "approved"
    v.close()
    alice, carol = results["alice"], results["carol"]
    assert all(ok for _, ok in alice + carol), "a pull returned wrong bytes"
    assert all(s == 206 for s, _ in carol)
    codes = [s for s, _ in alice]
    first_refused = codes.index(403)
    assert set(codes[:first_refused]) == {206} and set(codes[first_refused:]) == {403}
    assert verify(v.root).ok
    assert HEAD  # the head camera stream exists in the release used here


# -- a real server ---------------------------------------------------------------------------

@pytest.mark.slow
def test_demofab_vault_serve_answers_over_http(tmp_path: Path, release_dir: Path) -> None:  # noqa: F811
    import socket
    import subprocess
    import sys
    import time

    import httpx

    v = make_vault(tmp_path, release_dir)
    token = v.identities.create_token("alice", ALL).token
    v.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import sys; from tests.vault.test_service import _cli; "
            f"sys.exit(_cli('serve', '--root', {str(tmp_path / 'root')!r}, '--port', '{port}'))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not come up")
        plain = (release_dir / VALUES).read_bytes()
        h = {"Authorization": f"Bearer {token}"}
        r = httpx.get(f"{base}{FILES}/{VALUES}", headers=h | {"Range": "bytes=100-2000000"})
        assert r.status_code == 206 and r.content == plain[100:2000001]
        assert httpx.get(f"{base}{FILES}/{VALUES}").status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_app_makes_no_outbound_connection(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    tried: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        tried.append(args)
        raise OSError("outbound connection attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    c = env.client
    for path in ("/health", "/openapi.json", "/v1/datasets", "/v1/datasets/pick", FILES,
                 f"{FILES}/{VALUES}", "/v1/grants", "/v1/requests", "/v1/audit/checkpoint"):
        assert c.get(path, headers=env.h("alice") if path != "/v1/audit/checkpoint"
                     else env.h("aud")).status_code == 200, path
    assert tried == []


@pytest.mark.slow
def test_ingest_builds_the_mock_release_that_a_lab_reads_without_a_grant(
        tmp_path: Path, release_dir: Path) -> None:  # noqa: F811
    pytest.importorskip("vault.mock")
    import json

    v = make_vault(tmp_path, release_dir)
    try:
        v.ingest_release("pick", release_dir)  # same version again: adds the mock
        token = v.identities.create_token("bob", ["catalog:read"]).token
        with TestClient(create_app(v)) as c:
            h = {"Authorization": f"Bearer {token}"}
            mock = "/v1/datasets/pick/releases/1/mock"
            r = c.get(f"{mock}/episodes.json", headers=h)
            assert r.status_code == 200
            real = json.loads((release_dir / "episodes.json").read_text())["episodes"]
            assert len(r.json()["episodes"]) == len(real)
            attrs = c.get(f"{mock}/zarr.json", headers=h).json()["attributes"]["demofab"]
            assert attrs["streams"] == json.loads((release_dir / "zarr.json").read_text()
                                                  )["attributes"]["demofab"]["streams"]
            frames = c.get(f"{mock}/{VALUES}", headers=h)
            real_frames = (release_dir / VALUES).read_bytes()
            assert frames.status_code == 200 and frames.content[:2] == b"\xff\xd8"  # JPEG
            assert real_frames[1000:1048] not in frames.content  # not one byte of the real
            assert c.get(f"{FILES}/episodes.json", headers=h).status_code == 403
    finally:
        v.close()
