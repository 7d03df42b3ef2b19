"""Fingerprinted exports over the API (under the one authorization dependency) and from the
command line: a lab downloads its copy with ``demofab vault export``, the provider names
the recipient with ``demofab vault fingerprint identify`` (exit 0 / 1 / 2)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from demofab.cli import main
from tests.vault.pgserver import release_dir, serve_on_localhost  # noqa: F401
from tests.vault.test_service import HEAD, make_vault
from vault.api import ROUTE_SCOPES, create_app
from vault.client import TOKEN_ENV
from vault.identities import SCOPES
from vault.service import Vault

EXPORT = "/v1/datasets/pick/releases/1/export"


@dataclass
class Served:
    vault: Vault
    host: str
    client: TestClient
    tokens: dict[str, str]
    release: Path

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, release_dir: Path  # noqa: F811
           ) -> Iterator[Served]:
    """make_vault's vault behind the API: in process (TestClient) and on 127.0.0.1."""
    v = make_vault(tmp_path_factory.mktemp("fpcli"), release_dir)
    tokens = {n: v.identities.create_token(n, sorted(SCOPES)).token
              for n in ("prov", "rev1", "alice", "bob", "dave")}
    app = create_app(v)
    with serve_on_localhost(app) as host:
        with TestClient(app) as client:
            yield Served(v, host, client, tokens, release_dir)
    v.close()


def test_the_export_routes_are_in_the_scope_table(served: Served) -> None:
    assert ROUTE_SCOPES[("POST", "/v1/datasets/{dataset}/releases/{version}/export")] == "pull"
    assert ROUTE_SCOPES[("PUT", "/v1/datasets/{dataset}/exportable")] == "catalog:write"
    r = served.client.post(EXPORT, json={})
    assert r.status_code == 401


def test_only_the_provider_marks_a_dataset_exportable_over_the_api(served: Served) -> None:
    c = served.client
    assert c.get("/v1/datasets/pick/exportable", headers=served.h("alice")).json()[
        "exportable"] is False
    r = c.post(EXPORT, json={}, headers=served.h("alice"))
    assert r.status_code == 403 and "not exportable" in r.json()["detail"]
    r = c.put("/v1/datasets/pick/exportable", json={"exportable": True}, headers=served.h("alice"))
    assert r.status_code == 403 and "only a provider" in r.json()["detail"]
    r = c.put("/v1/datasets/pick/exportable", json={"exportable": True}, headers=served.h("prov"))
    assert r.status_code == 200 and r.json()["set_by"] == "prov"


@pytest.fixture(scope="module")
def downloaded(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lab-d's copy, downloaded by dave with ``demofab vault export``."""
    served.client.put("/v1/datasets/pick/exportable", json={"exportable": True},
                      headers=served.h("prov"))
    out = tmp_path_factory.mktemp("download") / "copy"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_ENV, served.tokens["dave"])
        assert main(["vault", "export", f"vault://{served.host}/pick/1", "--out", str(out)]) == 0
        assert main(["vault", "export", f"vault://{served.host}/pick/1", "--out", str(out)]) == 2
    return out


def test_a_lab_downloads_its_copy_checked_against_its_manifest(
        served: Served, downloaded: Path) -> None:
    c = served.client
    r = c.post(EXPORT, json={}, headers=served.h("bob"))
    assert r.status_code == 403 and "no live grant" in r.json()["detail"]
    manifest = json.loads((downloaded / "manifest.json").read_text())
    for rel, meta in manifest["files"].items():
        assert hashlib.sha256((downloaded / rel).read_bytes()).hexdigest() == meta["sha256"], rel
    # bob may not read dave's copy; dave's file pulls are audited
    r = c.get(f"{EXPORT}/files/manifest.json", headers=served.h("bob"))
    assert r.status_code == 403
    pulls = [e for e in served.vault.audit.show("pick") if e.action == "export_pull"]
    assert {e.actor for e in pulls} == {"dave"} and len(pulls) >= len(manifest["files"])


def test_identify_names_the_lab_of_a_leaked_frame_and_exits_by_the_result(
        served: Served, downloaded: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    frame = tmp_path / "leak.jpg"
    data = (downloaded / f"streams/{HEAD}/data/values/c/0").read_bytes()
    first = data[:data.index(b"\xff\xd9") + 2]  # the first JPEG of the stream
    img = cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR)
    cv2.imwrite(str(frame), img, [cv2.IMWRITE_JPEG_QUALITY, 60])
    root = str(served.vault.root)
    capsys.readouterr()
    assert main(["vault", "fingerprint", "identify", "--root", root, str(frame)]) == 0
    said = capsys.readouterr().out
    assert said.startswith("recipient") and "lab-d" in said and "false-positive" in said
    assert main(["vault", "fingerprint", "identify", "--root", root, "--json",
                 str(downloaded)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["matches"][0]["recipient"] == "lab-d" and result["exact_copy_of"]
    assert main(["vault", "fingerprint", "identify", "--root", root, str(served.release)]) == 1
    assert capsys.readouterr().out.startswith("no match")
    assert main(["vault", "fingerprint", "identify", "--root", root,
                 str(tmp_path / "nothing.jpg")]) == 2
    assert "nothing.jpg" in capsys.readouterr().err


def test_a_revoked_grant_stops_the_download_of_its_copy(served: Served, tmp_path: Path) -> None:
    c = served.client
    c.put("/v1/datasets/pick/exportable", json={"exportable": True}, headers=served.h("prov"))
    r = c.post(EXPORT, json={}, headers=served.h("alice"))
    assert r.status_code == 201
    files = {f["path"] for f in r.json()["files"]}
    assert "manifest.json" in files and f"streams/{HEAD}/data/values/c/0" in files
    assert c.get(f"{EXPORT}/files/episodes.json", headers=served.h("alice")).status_code == 200
    grant = next(g for g in served.vault.grants.list(lab="lab-a") if g.revoked_at is None)
    served.vault.review.revoke(grant.request_id, served.vault.identities.get("rev1"), "leak")
    r = c.get(f"{EXPORT}/files/episodes.json", headers=served.h("alice"))
    assert r.status_code == 403 and "no live grant" in r.json()["detail"]


def test_the_provider_s_commands_set_the_policy_export_and_list(
        served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(served.vault.root)
    assert main(["vault", "fingerprint", "exportable", "--root", root, "pick", "--no"]) == 0
    assert "not exportable" in capsys.readouterr().out
    out = tmp_path / "d"
    assert main(["vault", "fingerprint", "export", "--root", root, "pick", "1",
                 "--recipient", "lab-b", "--out", str(out)]) == 2
    assert "not exportable" in capsys.readouterr().err
    assert main(["vault", "fingerprint", "exportable", "--root", root, "pick", "--yes"]) == 0
    assert main(["vault", "fingerprint", "exportable", "--root", root, "pick"]) == 0
    assert "exportable (set by local" in capsys.readouterr().out
    assert main(["vault", "fingerprint", "export", "--root", root, "pick", "1",
                 "--recipient", "lab-b", "--out", str(out)]) == 2
    assert "no live grant" in capsys.readouterr().err and not out.exists()
    assert main(["vault", "fingerprint", "export", "--root", root, "pick", "1",
                 "--recipient", "lab-d", "--out", str(out)]) == 0
    assert "for lab lab-d" in capsys.readouterr().out and (out / "manifest.json").is_file()
    assert main(["vault", "fingerprint", "list", "--root", root, "--dataset", "pick"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["lab"] for r in rows} >= {"lab-d"}
