"""Output review over HTTP and from the command line: the lab submits, the reviewers read,
vote and release in two steps, the lab downloads byte for byte; refusals answer 400/403/409
with the vault's message and downloads before release are refused and audited; ``demofab
vault output list`` shows the gate's findings with their context and each file's state."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from demofab.cli import main
from tests.vault.pgserver import release_dir, serve_on_localhost  # noqa: F401
from tests.vault.test_outputs import LOG, METRICS, Env, frame, gate_cache, make_env  # noqa: F401
from vault.api import create_app

LAB_SCOPES = ["catalog:read", "requests", "pull"]
REVIEW_SCOPES = ["catalog:read", "reviews"]


Served = tuple[Env, TestClient, dict[str, dict[str, str]]]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, release_dir: Path,  # noqa: F811
           gate_cache: Path) -> Iterator[Served]:  # noqa: F811
    """One vault (SQLite) and its app for the module, with tokens of alice, bob and rev1."""
    e = make_env(tmp_path_factory.mktemp("outputs-api"), release_dir, gate_cache=gate_cache)
    ids = e.vault.identities
    tokens = {"alice": ids.create_token("alice", LAB_SCOPES).token,
              "bob": ids.create_token("bob", LAB_SCOPES).token,
              "rev1": ids.create_token("rev1", REVIEW_SCOPES).token,
              "alice-noscope": ids.create_token("alice", ["catalog:read", "requests"]).token}
    headers = {k: {"Authorization": f"Bearer {t}"} for k, t in tokens.items()}
    with TestClient(create_app(e.vault)) as client:
        yield e, client, headers
    e.vault.close()


@pytest.fixture
def served(shared: Served, tmp_path: Path) -> Served:
    """The module's vault, with job numbers of this test's own."""
    return shared[0].fresh(tmp_path), shared[1], shared[2]


def test_a_lab_submits_a_reviewer_releases_in_two_steps_and_the_lab_downloads_over_http(
        served: Served) -> None:
    env, c, h = served
    oid = env.run(1, 10, metrics_json=METRICS, logs__stdout_log=LOG).id
    base = f"/v1/outputs/{oid}"
    assert c.get(base, headers=h["bob"]).status_code == 403
    r = c.get(f"{base}/files/metrics.json", headers=h["alice"])
    assert r.status_code == 403 and "only released outputs" in r.json()["detail"]
    assert c.post(f"{base}/submit", headers=h["rev1"]).status_code == 403  # no 'requests' scope
    assert c.post(f"{base}/submit", headers=h["alice"]).json()["state"] == "submitted"
    listed = c.get("/v1/outputs", headers=h["rev1"]).json()
    assert oid in [s["id"] for s in listed]
    assert c.get(f"{base}/review/metrics.json", headers=h["rev1"]).content == METRICS
    assert c.get(f"{base}/review/metrics.json", headers=h["alice"]).status_code == 403
    r = c.post(f"{base}/votes", headers=h["rev1"], json={"file": "metrics.json", "vote": "reject"})
    assert r.status_code == 400 and "needs a comment" in r.json()["detail"]
    for name in ("metrics.json", "logs/stdout.log"):
        r = c.post(f"{base}/votes", headers=h["rev1"], json={"file": name, "vote": "approve"})
        assert r.status_code == 200, r.text
    assert r.json()["state"] == "reviewed"
    assert c.post(f"{base}/release", headers=h["alice"]).status_code == 403
    code = c.post(f"{base}/release", headers=h["rev1"]).json()["code"]
    r = c.post(f"{base}/release/confirm", headers=h["rev1"], json={"code": code})
    assert r.status_code == 200 and r.json()["state"] == "released"
    assert c.post(f"{base}/release", headers=h["rev1"]).status_code == 409
    r = c.get(f"{base}/files/metrics.json", headers=h["alice"])
    assert r.status_code == 200 and r.content == METRICS
    assert r.headers["X-Content-SHA256"] == hashlib.sha256(METRICS).hexdigest()
    assert c.get(f"{base}/files/logs/stdout.log", headers=h["alice"]).content == LOG
    assert c.get(f"{base}/files/metrics.json", headers=h["bob"]).status_code == 403
    assert c.get(f"{base}/files/metrics.json", headers=h["alice-noscope"]).status_code == 403
    assert c.get(f"{base}/files/..%2Fvault.json", headers=h["alice"]).status_code in (400, 404)
    refused = [e for e in env.entries(oid) if e.action == "output_download_refused"]
    # the scope check answers before the outputs are asked: those two refusals are the vault's
    assert [(e.actor, e.details["file"]) for e in refused] == [("alice", "metrics.json"),
                                                                ("bob", "metrics.json")]


@pytest.fixture(scope="module")
def server(shared: Served) -> Iterator[str]:
    """The module's vault served by uvicorn on 127.0.0.1 (for the CLI)."""
    env = shared[0]
    with serve_on_localhost(create_app(env.vault)) as host:
        yield f"http://{host}"


def cli(url: str, token: str, *args: str) -> int:
    return main(["vault", "output", args[0], "--url", url, "--token", token, *args[1:]])


def test_the_cli_shows_findings_in_context_reviews_releases_and_downloads(
        served: Served, server: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    env, _, h = served
    lab, rev = (h[k]["Authorization"].split()[1] for k in ("alice", "rev1"))
    oid = env.run(1, 10, metrics_json=METRICS, frame_jpg=frame(env.release)).id
    assert cli(server, lab, "submit", str(oid)) == 0
    assert cli(server, rev, "list", "--waiting") == 0
    assert f"output set {oid} " in capsys.readouterr().out
    assert cli(server, lab, "list", "--waiting") == 0  # the lab reviews nothing
    assert f"output set {oid} " not in capsys.readouterr().out
    assert cli(server, rev, "list", str(oid)) == 0
    shown = capsys.readouterr().out
    assert f"output set {oid}" in shown and "SUBMITTED" in shown
    assert "frame.jpg" in shown and "gate: BLOCK" in shown and "input: {" in shown
    assert "metrics.json" in shown and "gate: PASS" in shown
    assert cli(server, rev, "review", str(oid), "frame.jpg", "approve") == 2
    assert "blocked by the output gate" in capsys.readouterr().err
    assert cli(server, rev, "review", str(oid), "frame.jpg", "reject") == 2
    assert "needs a comment" in capsys.readouterr().err
    assert cli(server, rev, "review", str(oid), "--return-to-lab", "drop the frame") == 0
    assert cli(server, lab, "withdraw", str(oid), "--file", "frame.jpg") == 0
    assert cli(server, lab, "submit", str(oid)) == 0
    assert cli(server, rev, "review", str(oid), "--read", "metrics.json") == 0
    assert capsys.readouterr().out.endswith(METRICS.decode())
    assert cli(server, lab, "download", str(oid), "--out", str(tmp_path / "dl")) == 2
    assert "nothing released" in capsys.readouterr().err
    assert cli(server, rev, "review", str(oid), "metrics.json", "approve") == 0
    assert cli(server, rev, "release", str(oid)) == 0
    out = capsys.readouterr().out
    code = out.split("--code ")[1].split()[0]
    assert cli(server, rev, "release", str(oid), "--code", code) == 0
    assert "released by rev1" in capsys.readouterr().out
    assert cli(server, lab, "download", str(oid), "--out", str(tmp_path / "dl")) == 0
    assert (tmp_path / "dl" / "metrics.json").read_bytes() == METRICS
    assert not (tmp_path / "dl" / "frame.jpg").exists()
    assert cli(server, lab, "download", str(oid), "frame.jpg", "--out", str(tmp_path / "dl")) == 2
    assert "withdrawn" in capsys.readouterr().err
