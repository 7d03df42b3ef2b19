"""The clean room over HTTP and from the command line: a lab submits a job with
`demofab vault job submit --wait` and reads its mock logs; a reviewer approves it in two
steps; other labs see nothing of it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from demofab.cli import main
from tests.vault.pgserver import release_dir, serve_on_localhost  # noqa: F401
from tests.vault.test_jobs import CODE, reqs
from tests.vault.test_service import make_vault
from vault.api import create_app
from vault.identities import SCOPES
from vault.service import Vault


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, release_dir: Path  # noqa: F811
           ) -> Iterator[tuple[Vault, str, dict[str, str]]]:
    from vault.mock import build_mock

    tmp = tmp_path_factory.mktemp("jobs_api")
    v = make_vault(tmp, release_dir)
    v.put_mock("pick", 1, build_mock(release_dir, tmp / "mock", seed=1, frames_per_camera=2))
    tokens = {n: v.identities.create_token(n, sorted(SCOPES)).token
              for n in ("alice", "bob", "rev1")}
    tokens["alice-pull"] = v.identities.create_token("alice", ["pull"]).token
    app = create_app(v)
    with serve_on_localhost(app) as host:
        yield v, f"http://{host}", tokens
    app.state.jobs.close()
    v.close()


def cli(monkeypatch: pytest.MonkeyPatch, token: str, *argv: str) -> int:
    monkeypatch.setenv("DEMOFAB_VAULT_TOKEN", token)
    return main(["vault", "job", *argv])


@pytest.mark.slow
def test_a_lab_submits_from_the_cli_and_a_reviewer_approves_in_two_steps(
        served: tuple[Vault, str, dict[str, str]], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    v, url, tok = served
    assert cli(monkeypatch, tok["alice"], "offer", "--url", url) == 0
    assert f"numpy=={reqs()[0].split('==')[1]}" in capsys.readouterr().out
    args = ["submit", str(CODE / "train.py"), "--name", "linear", "--entry", "train:main",
            "--dataset", "pick", "--release", "1", "--output", "metrics.json:json",
            "--url", url, "--wait"]
    # a requirement not offered: refused, the offer listed
    assert cli(monkeypatch, tok["alice"], *args, "--require", "numpy==0.1") == 1
    err = capsys.readouterr().err
    assert "the vault offers numpy==" in err and "demofab==" in err
    assert cli(monkeypatch, tok["alice"], *args, *[a for r in reqs() for a in ("--require", r)]) == 0
    out = capsys.readouterr().out
    assert "job 1: linear v1" in out and "[mock] succeeded" in out and "trained on" in out
    # the logs again, and the other lab sees nothing
    assert cli(monkeypatch, tok["alice"], "logs", "1", "--url", url) == 0
    assert "trained on" in capsys.readouterr().out
    assert cli(monkeypatch, tok["bob"], "status", "1", "--url", url) == 1
    assert "may not see job 1" in capsys.readouterr().err
    # the reviewer reads the code as submitted
    assert cli(monkeypatch, tok["rev1"], "code", "1", "train.py", "--url", url) == 0
    assert capsys.readouterr().out == (CODE / "train.py").read_text()
    # two steps: the first prints a code, the second confirms with it
    assert cli(monkeypatch, tok["rev1"], "approve", "1", "--url", url) == 0
    out = capsys.readouterr().out
    code = out.split("--code ")[1].split()[0]
    assert "under_review" in out
    assert cli(monkeypatch, tok["rev1"], "approve", "1", "--code", code, "--url", url) == 0
    assert "approved (1/1 approvals)" in capsys.readouterr().out
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert cli(monkeypatch, tok["alice"], "status", "1", "--url", url, "--json") == 0
        job = json.loads(capsys.readouterr().out)
        if job["runs"][-1]["kind"] == "real" and job["runs"][-1]["state"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    real = job["runs"][-1]
    # handed to the output review: its metrics and its logs wait for the reviewers there
    assert real["kind"] == "real" and real["state"] == "succeeded", real
    assert set(real["outputs"]) == {"metrics.json"}
    import httpx

    with httpx.Client(base_url=url, trust_env=False) as http:
        sets = http.get("/v1/outputs", headers={"Authorization": f"Bearer {tok['alice']}"}).json()
    names = {f["name"] for s in sets if s["job_id"] == 1 for f in s["files"]}
    assert names == {"metrics.json", "logs/stdout.log", "logs/stderr.log"}, sets
    # a real run's logs are outputs: not served to the lab here
    assert cli(monkeypatch, tok["alice"], "logs", "1", "--run", str(real["id"]), "--url", url) == 1


def test_job_routes_need_their_scope_and_decode_the_code(
        served: tuple[Vault, str, dict[str, str]]) -> None:
    import httpx

    v, url, tok = served
    with httpx.Client(base_url=url, trust_env=False) as http:
        r = http.get("/v1/jobs", headers={"Authorization": f"Bearer {tok['alice-pull']}"})
        assert r.status_code == 403 and "'jobs' or 'reviews'" in r.json()["detail"]
        body = {"name": "bad", "entry": "train:main", "dataset": "pick", "release": 1,
                "requirements": reqs(), "outputs": [{"pattern": "m.json", "type": "json"}],
                "code": {"train.py": "not base64!"}}
        r = http.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {tok['alice']}"})
        assert r.status_code == 400 and "not base64" in r.json()["detail"]
        body["code"] = {"../train.py": base64.b64encode(b"x").decode()}
        r = http.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {tok['alice']}"})
        assert r.status_code == 400 and "'..'" in r.json()["detail"]
    assert not (v.root / "jobs" / "train.py").exists() and not (v.root / "train.py").exists()
