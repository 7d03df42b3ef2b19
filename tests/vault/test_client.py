"""The vault client and vault:// releases: errors carry the server's message, byte ranges are
exact, a release over HTTP reads as the local one (zarr-python through the store, and
curation's loader once its release-opening hook exists).

The server here is a minimal stand-in for vault.api written in this module (same routes,
bearer tokens, 401/403, HTTP Range), served by uvicorn on 127.0.0.1 in a thread; it serves
a curated release from disk."""

from __future__ import annotations

import importlib.util
import json
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import zarr
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response

from curation.pipeline import curate
from tests.vault.pgserver import serve_on_localhost
from vault.client import (
    TOKEN_ENV,
    AccessDenied,
    AuthenticationFailed,
    NotFound,
    RangeNotSatisfiable,
    Unreachable,
    VaultClient,
    VaultError,
    open_vault_release,
    parse_vault_url,
)

_CONFTEST = Path(__file__).resolve().parents[1] / "curation" / "conftest.py"
LAB = "dfv1_lab-token"
OTHER = "dfv1_other-lab"
SUBSET = "dfv1_subset"  # may read only the first half of the head camera's frame bytes
HEAD_VALUES = "streams/camera.head.image_raw.compressed/data/values/c/0"


def _record_session(out: Path, **kwargs: Any) -> Path:
    spec = importlib.util.spec_from_file_location("_curation_conftest_for_client", _CONFTEST)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    path: Path = mod.record_session(out, **kwargs)
    return path


# -- a stand-in for vault.api -----------------------------------------------------------

def _app(releases: dict[tuple[str, int], Path], grants: dict[str, set[str]],
         mocks: dict[tuple[str, int], Path] | None = None) -> FastAPI:
    app = FastAPI()

    def who(authorization: str | None) -> str:
        token = (authorization or "").removeprefix("Bearer ")
        if token not in grants:
            raise _Problem(401, "token unknown or expired")
        return token

    def allowed(token: str, dataset: str, version: int) -> Path:
        if (dataset, version) not in releases:
            raise _Problem(404, f"no release {dataset} v{version}")
        if dataset not in grants[token]:
            raise _Problem(403, f"no live grant of your lab reaches {dataset!r} release {version}")
        return releases[(dataset, version)]

    @app.exception_handler(_Problem)
    async def _err(_: Request, exc: _Problem) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/datasets/{dataset}")
    def describe(dataset: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        who(authorization)
        return {"name": dataset, "releases": [{"name": root.parent.name, "version": v}
                                              for (d, v), root in releases.items() if d == dataset]}

    @app.get("/v1/datasets/{dataset}/releases/{version}/files")
    def files(dataset: str, version: int, authorization: str | None = Header(None)
              ) -> list[dict[str, Any]]:
        token = who(authorization)
        root = allowed(token, dataset, version)
        return [{"path": rel, "size": p.stat().st_size, "ranges": (
                    [[0, p.stat().st_size // 2]] if token == SUBSET and rel == HEAD_VALUES
                    else None)}
                for p in sorted(root.rglob("*")) if p.is_file()
                and (rel := p.relative_to(root).as_posix())]

    def serve(root: Path, path: str, rng: str | None, token: str = "") -> Response:
        f = (root / path).resolve()
        if root.resolve() not in f.parents or not f.is_file():
            raise _Problem(404, f"no file {path!r}")
        data = f.read_bytes()
        if rng is None:
            return Response(data, media_type="application/octet-stream")
        first, _, last = rng.removeprefix("bytes=").partition("-")
        if not first:
            start, stop = max(0, len(data) - int(last)), len(data)
        else:
            start, stop = int(first), len(data) if not last else int(last) + 1
        if start >= len(data):
            raise _Problem(416, f"Range {rng!r} is outside the file's {len(data)} bytes")
        stop = min(stop, len(data))
        if token == SUBSET and path == HEAD_VALUES and stop > len(data) // 2:
            raise _Problem(403, f"bytes {start}-{stop - 1} of {path} reach episodes the grant "
                                "does not cover")
        return Response(data[start:stop], status_code=206, headers={
            "Content-Range": f"bytes {start}-{stop - 1}/{len(data)}"})

    @app.get("/v1/datasets/{dataset}/releases/{version}/files/{path:path}")
    def pull(dataset: str, version: int, path: str, request: Request,
             authorization: str | None = Header(None)) -> Response:
        token = who(authorization)
        if token == SUBSET and path == HEAD_VALUES and "range" not in request.headers:
            raise _Problem(403, f"{path}: the grant covers part of this file; ask for a range")
        return serve(allowed(token, dataset, version), path, request.headers.get("range"),
                     token)

    @app.get("/v1/datasets/{dataset}/releases/{version}/mock/{path:path}")
    def mock(dataset: str, version: int, path: str, request: Request,
             authorization: str | None = Header(None)) -> Response:
        who(authorization)
        mock_dir = (mocks or {}).get((dataset, version))
        if mock_dir is None:
            raise _Problem(404, "no mock release")
        return serve(mock_dir, path, request.headers.get("range"))

    return app


class _Problem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client_rel")
    session = _record_session(root / "s1", episodes=2, seconds=0.3, operator="op1")
    out: Path = curate([session], root / "rel", "towels").release
    return out


@pytest.fixture(scope="module")
def mock_dir(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vault.mock import build_mock

    return build_mock(release, tmp_path_factory.mktemp("client_mock"), frames_per_camera=1)


@pytest.fixture(scope="module")
def server(release: Path, mock_dir: Path) -> Iterator[str]:
    app = _app({("towels", 1): release, ("secret", 1): release},
               {LAB: {"towels"}, OTHER: set(), SUBSET: {"towels"}}, {("towels", 1): mock_dir})
    with serve_on_localhost(app) as host:
        yield host


# -- tests --------------------------------------------------------------------------------

def test_errors_carry_the_servers_message(server: str) -> None:
    with VaultClient(f"http://{server}") as anon:
        assert anon.health() == {"status": "ok"}
        with pytest.raises(AuthenticationFailed, match="token missing, expired or revoked: "
                           "token unknown or expired") as e401:
            anon.files("towels", 1)
        assert e401.value.status == 401 and isinstance(e401.value, VaultError)
    with VaultClient(f"http://{server}", OTHER) as other:
        with pytest.raises(AccessDenied, match="no grant .*'towels' release 1"):
            other.read("towels", 1, "zarr.json")
    with VaultClient(f"http://{server}", LAB) as lab:
        with pytest.raises(AccessDenied, match="secret"):
            lab.files("secret", 1)
        with pytest.raises(NotFound, match="no file 'nope.json'"):
            lab.read("towels", 1, "nope.json")
        with pytest.raises(RangeNotSatisfiable, match="outside the file"):
            lab.read("towels", 1, "zarr.json", 10**9, 10**9 + 5)
    with pytest.raises(Unreachable, match="vault unreachable"):
        VaultClient("http://127.0.0.1:9", LAB, timeout=2).health()


def test_byte_ranges_are_exact(server: str, release: Path, mock_dir: Path) -> None:
    with VaultClient(f"http://{server}", LAB) as lab:
        listed = {f["path"]: f["size"] for f in lab.files("towels", 1)}
        cam = "streams/camera.head.image_raw.compressed/data/values/c/0"
        assert listed[cam] == (release / cam).stat().st_size
        local = (release / cam).read_bytes()
        assert lab.read("towels", 1, cam) == local
        assert lab.read("towels", 1, cam, 100, 2100) == local[100:2100]
        assert lab.read("towels", 1, cam, len(local) - 16) == local[-16:]
        assert lab.read("towels", 1, cam, 5, 5) == b""
        assert lab.mock_file("towels", 1, "episodes.json", 0, 10) == \
            (mock_dir / "episodes.json").read_bytes()[:10]


def test_vault_urls_parse() -> None:
    u = parse_vault_url("vault://vault.lab:8443/towels/v3")
    assert (u.base_url, u.dataset, u.version, u.mock) == ("http://vault.lab:8443", "towels", 3,
                                                          False)
    assert parse_vault_url("vault+https://h:1/towels/latest/mock").version is None
    assert parse_vault_url("vault://h:1/towels/2/mock").mock
    named = parse_vault_url("vault://h:1/pick/towels/v2")
    assert (named.dataset, named.release, named.version) == ("pick", "towels", 2)
    assert parse_vault_url("vault://h:1/pick/towels").release == "towels"
    for bad in ("http://h/towels", "vault://h:1/", "vault://h:1/pick/towels/x3",
                "vault://u:pw@h:1/towels", "vault://h:1/towels?token=x", "vault://h:1/a/b/c/d"):
        with pytest.raises(VaultError):
            parse_vault_url(bad)


def test_release_over_vault_reads_as_the_local_one(server: str, release: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, LAB)
    remote = open_vault_release(f"vault://{server}/towels")  # latest = 1
    assert open_vault_release(f"vault://{server}/towels/towels/v1").version == 1  # by name
    with pytest.raises(NotFound, match="no release 'pick'"):
        open_vault_release(f"vault://{server}/towels/pick")
    assert remote.version == 1 and remote.size("zarr.json") == (release / "zarr.json").stat().st_size
    g_remote = remote.open_group()
    g_local = zarr.open_group(str(release), mode="r")
    assert g_remote.attrs.asdict() == g_local.attrs.asdict()
    arrays = [rel for p in release.rglob("zarr.json")
              if '"node_type": "array"' in p.read_text()
              and (rel := p.parent.relative_to(release).as_posix()).startswith(
                  ("streams/joint_states/", "streams/imu/", "sync/imu__",
                   "streams/camera.head.image_raw.compressed/"))]
    assert len(arrays) > 12
    for rel in arrays:
        np.testing.assert_array_equal(g_remote[rel][...], g_local[rel][...], err_msg=rel)
    # a partial read of the camera's frame bytes comes as a range, not the whole shard
    vals = "streams/camera.head.image_raw.compressed/data/values"
    np.testing.assert_array_equal(g_remote[vals][1000:1500], g_local[vals][1000:1500])
    assert remote.read("episodes.json") is remote.read("episodes.json")  # cached document
    # a DataLoader worker gets a copy with a connection pool of its own
    copy = pickle.loads(pickle.dumps(remote))
    assert copy.client is not remote.client and copy.client.token == LAB
    assert copy.read_range(vals + "/c/0", 10, 99) == (release / vals / "c" / "0").read_bytes()[10:109]
    with pytest.raises(FileNotFoundError, match="no file 'streams/nope/zarr.json'"):
        remote.read("streams/nope/zarr.json")


def test_open_needs_a_token_and_a_grant(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(VaultError, match=f"no token: pass token= or set \\${TOKEN_ENV}"):
        open_vault_release(f"vault://{server}/towels/1")
    with pytest.raises(AccessDenied, match="no grant"):
        open_vault_release(f"vault://{server}/towels/1", token=OTHER)
    with pytest.raises(AuthenticationFailed):
        open_vault_release(f"vault://{server}/towels/1", token="dfv1_revoked")
    # the mock release needs no grant
    mock = open_vault_release(f"vault://{server}/towels/1/mock", token=OTHER)
    assert mock.mock and "episodes.json" in mock.files()
    assert mock.json("episodes.json")["episodes"][0]["task"] == "mock task 1"
    with pytest.raises(NotFound, match="no mock release"):
        open_vault_release(f"vault://{server}/secret/1/mock", token=OTHER)


def _loader_hook() -> bool:
    import curation.release as rel

    return hasattr(rel, "OPENERS_GROUP")


@pytest.mark.skipif(not _loader_hook(), reason="curation's release-opening hook "
                    "(curation.release.OPENERS_GROUP, demofab.release_openers) is not there yet")
def test_loader_reads_the_same_samples_from_vault(server: str, release: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from curation.loader import ReleaseDataset

    monkeypatch.setenv(TOKEN_ENV, LAB)
    keys = ["joint_states/position", "imu/orientation", "camera.head.image_raw.compressed/data"]
    local = ReleaseDataset(release, keys=keys, delta_timestamps={"joint_states/position":
                                                                 [-0.01, 0.0]})
    remote = ReleaseDataset(f"vault://{server}/towels/1", keys=keys, delta_timestamps={
        "joint_states/position": [-0.01, 0.0]})
    assert len(remote) == len(local) > 0
    assert remote.episodes == local.episodes
    for i in range(0, len(local), max(1, len(local) // 25)):
        a, b = local[i], remote[i]
        assert sorted(a) == sorted(b)
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not (_has("vault.api") and _has("tests.vault.test_service")),
                    reason="vault.api / vault.service (the api helper's branch) not merged yet")
def test_a_lab_goes_from_the_mock_to_a_grant_through_the_api(tmp_path: Path,
                                                             release: Path) -> None:
    from fastapi.testclient import TestClient

    from tests.vault.test_service import make_vault
    from vault.api import create_app
    from vault.identities import SCOPES

    v = make_vault(tmp_path, release, mock=True)
    try:
        tokens = {n: v.identities.create_token(n, sorted(SCOPES)).token
                  for n in ("bob", "rev1", "aud")}
        app = create_app(v)

        def client(who: str) -> VaultClient:
            return VaultClient("http://testserver", tokens[who], http=TestClient(app))

        bob, rev = client("bob"), client("rev1")
        assert "pick" in {d["name"] for d in bob.datasets()}
        described = bob.describe("pick")["releases"][0]
        # before any grant: the mock release, with the real layout, opens as zarr
        mock = open_vault_release("vault://testserver/pick/1/mock", token=tokens["bob"],
                                  http=TestClient(app))
        g = mock.open_group()
        assert g.attrs["demofab"]["mock"]["of"] == {"name": "towels", "version": 1}
        real = zarr.open_group(str(release), mode="r")
        for s in described["streams"]:
            name = s["name"]
            assert g[f"streams/{name}/time_ns"].shape == real[f"streams/{name}/time_ns"].shape
        with pytest.raises(AccessDenied, match="no grant"):
            bob.read("pick", 1, "episodes.json")
        # request, two-step approval, pull, revoke
        req = bob.request_access("pick", 1, purpose="train a folding policy", lab="lab-b")
        rev.start_review(req["id"])
        code = rev.prepare_approval(req["id"])
        assert rev.confirm_approval(req["id"], code)["state"] == "approved"
        assert any(gr.get("dataset") == "pick" for gr in bob.grants())
        remote = open_vault_release("vault://testserver/pick/1", token=tokens["bob"],
                                    http=TestClient(app))
        pos = "streams/joint_states/position"
        np.testing.assert_array_equal(remote.open_group()[pos][...], real[pos][...])
        rev.revoke(req["id"], "the project ended")
        with pytest.raises(AccessDenied):
            bob.read("pick", 1, "episodes.json")
        assert "\n\n\u2014 " in client("aud").checkpoint()
    finally:
        v.close()


def test_block_reads_stay_inside_an_episode_subset_grants_ranges(server: str,
                                                                 release: Path) -> None:
    remote = open_vault_release(f"vault://{server}/towels/1", token=SUBSET)
    local = (release / HEAD_VALUES).read_bytes()
    half = len(local) // 2
    assert remote.read_range(HEAD_VALUES, 100, 900) == local[100:1000]
    assert remote.read_range(HEAD_VALUES, half - 50, 50) == local[half - 50:half]
    with pytest.raises(AccessDenied, match="the grant does not cover"):
        remote.read_range(HEAD_VALUES, half - 10, 20)
    # other files are read in whole blocks as before
    meta = "streams/imu/time_ns/c/0"
    assert remote.read_range(meta, 0, 16) == (release / meta).read_bytes()[:16]


def test_resubmit_sends_only_the_fields_given() -> None:
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/requests/7/resubmit"
        assert request.headers["Authorization"] == f"Bearer {LAB}"
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"id": 7, "state": "submitted"})

    http = httpx.Client(base_url="http://vault.test", transport=httpx.MockTransport(handler))
    c = VaultClient("http://vault.test", LAB, http=http)
    assert c.resubmit(7, purpose="only the wrist cameras",
                      streams=["camera.left_wrist.image_raw.compressed"])["state"] == "submitted"
    c.resubmit(7, episodes=None)
    assert seen == [{"purpose": "only the wrist cameras",
                     "streams": ["camera.left_wrist.image_raw.compressed"]}, {"episodes": None}]


@pytest.mark.skipif(not _loader_hook(), reason="curation's release-opening hook is not there")
def test_a_lab_loads_the_mock_over_vault_without_a_grant(server: str, mock_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from curation.loader import ReleaseDataset

    monkeypatch.setenv(TOKEN_ENV, OTHER)  # a lab with no grant at all
    keys = ["joint_states/position", "camera.head.image_raw.compressed/data"]
    local = ReleaseDataset(mock_dir, keys=keys)
    remote = ReleaseDataset(f"vault://{server}/towels/1/mock", keys=keys)
    assert len(remote) == len(local) > 0 and remote.features == local.features
    for i in (0, len(local) - 1):
        for k in keys:
            np.testing.assert_array_equal(remote[i][k], local[i][k])
