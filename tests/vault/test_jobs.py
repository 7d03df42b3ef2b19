"""Clean-room jobs: submitted against the vault's offer, first run on the mock release
with the logs back to the lab, reviewed like access requests, run on real data after
approval (what the grant reaches), and never run once changed."""

from __future__ import annotations

import json
import socket
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from curation.loader import ReleaseDataset
from tests.vault.pgserver import database_url, postgres_server, release_dir  # noqa: F401
from tests.vault.test_service import make_vault
from vault.db import ConfirmationError, Forbidden, ReviewError, TransitionError
from vault.jobs import JobError, JobLimits, Jobs, OutputDecl, read_code
from vault.jobs.offer import offer
from vault.service import Vault

CODE = Path(__file__).with_name("jobs_code")
TRAIN = {"name": "linear", "entry": "train:main", "dataset": "pick", "release": 1,
         "outputs": [{"pattern": "metrics.json", "type": "json"}],
         "limits": JobLimits(cpu_s=60, wall_s=90, memory_bytes=4 << 30, output_bytes=1 << 20)}


def reqs() -> list[str]:
    return [f"numpy=={offer()['numpy']}", f"demofab=={offer()['demofab']}"]


@dataclass
class Handed:
    """What the output review was handed (a stand-in for vault.jobs.outputs)."""

    runs: list[Any]
    files: list[dict[str, bytes]]


@pytest.fixture()
def handed(monkeypatch: pytest.MonkeyPatch) -> Handed:
    got = Handed([], [])

    @dataclass
    class FinishedRun:
        job_id: int
        run_id: int
        dataset: str
        release: int
        lab: str
        submitter: str
        episodes: tuple[int, ...] | None
        streams: tuple[str, ...] | None
        files: dict[str, Path]
        inputs: Path
        declared: dict[str, str]

    class Outputs:
        def __init__(self, vault: Vault) -> None:
            pass

        def register_outputs(self, run: FinishedRun) -> None:
            assert (run.inputs / "zarr.json").is_file()  # what the job read, still there
            assert all(run.declared[n] == "json" for n in run.files if not n.startswith("logs/"))
            got.runs.append(run)
            got.files.append({n: p.read_bytes() for n, p in run.files.items()})

    mod = types.ModuleType("vault.jobs.outputs")
    mod.FinishedRun = FinishedRun  # type: ignore[attr-defined]
    mod.Outputs = Outputs  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vault.jobs.outputs", mod)
    return got


@pytest.fixture(scope="module")
def mock_dir(tmp_path_factory: pytest.TempPathFactory, release_dir: Path) -> Path:  # noqa: F811
    from vault.mock import build_mock

    return build_mock(release_dir, tmp_path_factory.mktemp("mock"), seed=1, frames_per_camera=2)


@pytest.fixture(scope="module")
def cleanroom(tmp_path_factory: pytest.TempPathFactory, release_dir: Path,  # noqa: F811
              mock_dir: Path) -> Iterator[tuple[Vault, Jobs]]:
    v = make_vault(tmp_path_factory.mktemp("jobs"), release_dir)
    v.put_mock("pick", 1, mock_dir)
    jobs = Jobs(v)
    yield v, jobs
    jobs.close()
    v.close()


def approve(jobs: Jobs, v: Vault, job_id: int, reviewer: str = "rev1") -> None:
    rev = v.identities.get(reviewer)
    jobs.start_review(job_id, rev)
    jobs.confirm_approval(job_id, rev, jobs.prepare_approval(job_id, rev))


def audit_actions(v: Vault, job_id: int) -> list[str]:
    return [e.action for e in v.audit.show("pick") if e.details.get("job") == job_id]


def test_the_offer_is_what_the_sandbox_has_and_anything_else_is_refused() -> None:
    import importlib.metadata as md

    got = offer()
    assert got["numpy"] == md.version("numpy") and got["demofab"] == md.version("demofab")
    assert "sqlalchemy" not in got and "cryptography" not in got  # not on the allow-list
    from vault.jobs.offer import check_requirements

    assert check_requirements([f"NumPy=={got['numpy']}"]) == (f"numpy=={got['numpy']}",)
    with pytest.raises(JobError, match=r"offers numpy==.*not 0\.0\.1.*demofab=="):
        check_requirements(["numpy==0.0.1"])
    with pytest.raises(JobError, match="requests is not offered"):
        check_requirements(["requests==2.0"])
    with pytest.raises(JobError, match="exact version"):
        check_requirements(["numpy>=1"])


@pytest.mark.slow
def test_a_job_trains_on_the_mock_then_on_real_data_after_approval(
        cleanroom: tuple[Vault, Jobs], handed: Handed, release_dir: Path) -> None:  # noqa: F811
    v, jobs = cleanroom
    alice = v.identities.get("alice")
    job = jobs.submit(alice, read_code(CODE / "train.py"), requirements=reqs(), **TRAIN)
    assert job.state.value == "submitted" and job.version == 1 and job.lab == "lab-a"
    mock = jobs.wait(job.runs[0].id, 120)
    assert mock.kind == "mock" and mock.state == "succeeded", (mock.message, jobs.logs(mock.id, alice))
    logs = jobs.logs(mock.id, alice)
    assert "trained on" in logs["stdout"]
    metrics = json.loads(jobs.mock_output(mock.id, "metrics.json", alice).read_text())
    assert metrics["last_loss"] < metrics["first_loss"]
    assert not handed.runs  # a mock run hands nothing to the output review
    # reviewers only, never the submitter; two steps
    with pytest.raises(Forbidden, match="not a reviewer"):
        jobs.start_review(job.id, alice)
    rev = v.identities.get("rev1")
    jobs.start_review(job.id, rev)
    with pytest.raises(ConfirmationError, match="no prepared approval"):
        jobs.confirm_approval(job.id, rev, "0000-0000")
    jobs.prepare_approval(job.id, rev)
    with pytest.raises(ConfirmationError, match="the code is wrong"):
        jobs.confirm_approval(job.id, rev, "0000-0000")
    assert jobs.get(job.id).state.value == "under_review"
    approve_code = jobs.prepare_approval(job.id, rev)
    done = jobs.confirm_approval(job.id, rev, approve_code)
    assert done.state.value == "approved" and done.approvals == ("rev1",)
    real = jobs.wait(done.runs[-1].id, 120)
    assert real.kind == "real" and real.state == "succeeded", real.message
    # the real run's outputs and logs went to the output review, not to the lab
    assert handed.runs[-1].run_id == real.id and handed.runs[-1].episodes is None
    files = handed.files[-1]
    assert set(files) == {"metrics.json", "logs/stdout.log", "logs/stderr.log"}
    with pytest.raises(Forbidden, match="its logs are outputs"):
        jobs.logs(real.id, alice)
    got = json.loads(files["metrics.json"])
    local = ReleaseDataset(release_dir, keys=["joint_states/position"])
    x = np.stack([local[i]["joint_states/position"] for i in range(len(local))])
    assert got["samples"] == len(local) and got["episodes"] == [0, 1, 2]
    assert got["position_sum"] == pytest.approx(float(x.astype(np.float64).sum()))
    assert got["position_sum"] != pytest.approx(metrics["position_sum"])  # the mock is other data
    acts = audit_actions(v, job.id)
    for a in ("job_submitted", "job_run_queued", "job_inputs_decrypted", "job_run_ended",
              "job_review_started", "job_approval_prepared", "job_approval_confirmation_failed",
              "job_approved"):
        assert a in acts, a


@pytest.mark.slow
def test_an_episode_subset_grant_runs_on_its_episodes_only(
        cleanroom: tuple[Vault, Jobs], handed: Handed) -> None:
    v, jobs = cleanroom
    dave = v.identities.get("dave")
    job = jobs.submit(dave, read_code(CODE / "train.py"), requirements=reqs(), **TRAIN)
    assert jobs.wait(job.runs[0].id, 120).state == "succeeded"
    approve(jobs, v, job.id)
    real = jobs.wait(jobs.get(job.id).runs[-1].id, 120)
    assert real.state == "succeeded", real.message
    got = json.loads(handed.files[-1]["metrics.json"])
    assert got["episodes"] == [0, 1] and handed.runs[-1].episodes == (0, 1)
    # the grant is revoked: the approved job no longer reads anything
    grant = v.grants.list(lab="lab-d", live=True)[0]
    v.grants.revoke(grant.id, v.identities.get("prov"), "the project ended")
    after = jobs.wait(jobs.start_run(job.id, "real", by=dave).id, 60)
    assert after.state == "refused" and "inputs cannot be read" in after.message
    assert len(handed.runs) == 1


@pytest.mark.slow
def test_a_job_changed_after_approval_does_not_run(
        cleanroom: tuple[Vault, Jobs], handed: Handed) -> None:
    v, jobs = cleanroom
    carol = v.identities.get("carol")
    code = read_code(CODE / "train.py")
    job = jobs.submit(carol, code, requirements=reqs(), **(TRAIN | {"name": "changing"}))
    assert jobs.wait(job.runs[0].id, 120).state == "succeeded"
    approve(jobs, v, job.id)
    first = jobs.wait(jobs.get(job.id).runs[-1].id, 120)
    assert first.state == "succeeded", first.message
    # the stored code changed behind the vault's back: the run is refused and audited
    stored = jobs.stored_code(job.sha256) / "train.py"
    stored.chmod(0o644)
    stored.write_text(stored.read_text() + "\nimport socket\n")
    again = jobs.wait(jobs.start_run(job.id, "real", by=carol).id, 60)
    assert again.state == "refused" and "changed after it was submitted" in again.message
    assert "job_run_refused" in audit_actions(v, job.id)
    with pytest.raises(JobError, match="changed after submission"):
        jobs.code_file(job.id, "train.py", v.identities.get("rev1"))
    # a new version of the job: the approved one is revoked, the new one needs its review
    changed = dict(code)
    changed["train.py"] = code["train.py"] + b"\n# tuned\n"
    v2 = jobs.submit(carol, changed, requirements=reqs(), **(TRAIN | {"name": "changing"}))
    assert v2.version == 2 and v2.sha256 != job.sha256 and v2.state.value == "submitted"
    old = jobs.get(job.id)
    assert old.state.value == "revoked" and old.superseded_by == v2.id
    with pytest.raises(TransitionError, match="superseded"):
        jobs.start_run(job.id, "real", by=carol)
    with pytest.raises(TransitionError, match="only an approved job runs on real data"):
        jobs.start_run(v2.id, "real", by=carol)
    assert jobs.wait(v2.runs[0].id, 120).state == "succeeded"  # the mock run, as for any job
    assert len(handed.runs) == 1


def test_a_requirement_not_offered_or_a_bad_job_is_refused_at_submit(
        cleanroom: tuple[Vault, Jobs]) -> None:
    v, jobs = cleanroom
    alice, bob = v.identities.get("alice"), v.identities.get("bob")
    code = read_code(CODE / "train.py")
    with pytest.raises(JobError, match="the vault offers"):
        jobs.submit(alice, code, requirements=["numpy==1.0.0"], **TRAIN)
    with pytest.raises(JobError, match="no nothere.py"):
        jobs.submit(alice, code, requirements=reqs(), **(TRAIN | {"entry": "nothere:main"}))
    with pytest.raises(JobError, match="type 'exe' is not one of"):
        jobs.submit(alice, code, requirements=reqs(),
                    **(TRAIN | {"outputs": [OutputDecl("a.exe", "exe")]}))
    with pytest.raises(JobError, match="cpu_s=99999 must be positive and at most"):
        jobs.submit(alice, code, requirements=reqs(), **(TRAIN | {"limits": JobLimits(cpu_s=99999)}))
    with pytest.raises(Forbidden, match="no live grant"):
        jobs.submit(bob, code, requirements=reqs(), **TRAIN)
    assert jobs.list_jobs(lab="lab-b") == []


def test_runs_left_behind_by_a_stopped_vault_end_as_failed(cleanroom: tuple[Vault, Jobs]) -> None:
    from vault.jobs.models import JobRunRow

    v, jobs = cleanroom
    alice = v.identities.get("alice")
    job = jobs.submit(alice, read_code(CODE / "train.py"), requirements=reqs(), run_mock=False,
                      **(TRAIN | {"name": "stale"}))
    with jobs.db.write() as s:  # as a vault that died mid-run leaves it
        s.add(JobRunRow(job_id=job.id, kind="mock", state="running", started_at=jobs.db.clock()))
    fresh = Jobs(v)
    fresh.close()
    run = jobs.get(job.id).runs[-1]
    assert run.state == "failed" and "vault stopped" in run.message


def test_the_job_identity_covers_code_requirements_inputs_outputs_and_limits() -> None:
    from vault.jobs.spec import JobSpec, code_digest

    base = JobSpec("j", "train:main", ("numpy==1",), "pick", 1, (OutputDecl("m.json", "json"),),
                   JobLimits(), code_digest({"train.py": b"x"}))
    variants = [
        JobSpec("j", "train:main", ("numpy==1",), "pick", 1, (OutputDecl("m.json", "json"),),
                JobLimits(), code_digest({"train.py": b"y"})),
        JobSpec("j", "train:main", ("numpy==2",), "pick", 1, (OutputDecl("m.json", "json"),),
                JobLimits(), code_digest({"train.py": b"x"})),
        JobSpec("j", "train:main", ("numpy==1",), "pick", 2, (OutputDecl("m.json", "json"),),
                JobLimits(), code_digest({"train.py": b"x"})),
        JobSpec("j", "train:main", ("numpy==1",), "pick", 1, (OutputDecl("n.json", "json"),),
                JobLimits(), code_digest({"train.py": b"x"})),
        JobSpec("j", "train:main", ("numpy==1",), "pick", 1, (OutputDecl("m.json", "json"),),
                JobLimits(cpu_s=61), code_digest({"train.py": b"x"})),
    ]
    assert len({base.sha256(), *(s.sha256() for s in variants)}) == 6
    assert JobSpec.from_dict(base.as_dict()).sha256() == base.sha256()


@pytest.mark.slow
def test_the_job_review_follows_the_request_rules_on_both_databases(
        tmp_path: Path, release_dir: Path, database_url: str, mock_dir: Path) -> None:  # noqa: F811
    url = database_url if "://" in database_url else None
    v = make_vault(tmp_path, release_dir, catalog_url=url)
    v.put_mock("pick", 1, mock_dir)
    jobs = Jobs(v)
    try:
        v.review.set_required_approvals("pick", 2, v.identities.get("prov"))
        ids = v.identities
        ids.create_identity("rev2")
        ids.appoint_reviewer(ids.get("prov"), "rev2", "pick")
        ids.assign("rev2", "lab_member", lab="lab-a")  # a member of the submitting lab
        ids.create_identity("rev3")
        ids.appoint_reviewer(ids.get("prov"), "rev3", "pick")
        alice = ids.get("alice")
        job = jobs.submit(alice, read_code(CODE / "train.py"), requirements=reqs(), run_mock=False,
                          **TRAIN)
        with pytest.raises(ReviewError, match="no successful mock run"):
            jobs.start_review(job.id, ids.get("rev1"))
        mock = jobs.wait(jobs.start_run(job.id, "mock", by=alice).id, 120)
        assert mock.state == "succeeded", mock.message
        jobs.start_review(job.id, ids.get("rev1"))
        with pytest.raises(Forbidden, match="member of the submitting lab"):
            jobs.prepare_approval(job.id, ids.get("rev2"))
        with pytest.raises(ReviewError, match="needs a reason"):
            jobs.reject(job.id, ids.get("rev3"), "  ")
        rev1 = ids.get("rev1")
        one = jobs.confirm_approval(job.id, rev1, jobs.prepare_approval(job.id, rev1))
        assert one.state.value == "under_review" and one.approvals == ("rev1",)
        with pytest.raises(ReviewError, match="already decided"):
            jobs.prepare_approval(job.id, rev1)
        back = jobs.request_changes(job.id, ids.get("rev3"), "log the loss per epoch")
        assert back.state.value == "changes_requested" and back.reason == "log the loss per epoch"
        assert [j.id for j in jobs.pending(ids.get("rev3"))] == []
        v2 = jobs.submit(alice, read_code(CODE / "train.py") | {"notes.txt": b"v2"},
                         requirements=reqs(), run_mock=False, **TRAIN)
        assert v2.version == 2 and v2.approvals == ()
        assert jobs.get(job.id).state.value == "withdrawn"
        assert [j.id for j in jobs.pending(ids.get("rev3"))] == [v2.id]
    finally:
        jobs.close()
        v.close()


@pytest.mark.slow
def test_an_approved_job_that_tries_to_get_data_out_fails_and_is_audited(
        cleanroom: tuple[Vault, Jobs], handed: Handed, tmp_path: Path) -> None:
    v, jobs = cleanroom
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.setblocking(False)
    cfg = v.root / "vault.json"
    targets = {"port": srv.getsockname()[1],
               "read": [json.loads(cfg.read_text())["provider_key_file"], str(cfg),
                        str(v.root / "catalog.sqlite"), str(v.root / "audit" / "log.sqlite")],
               "write": ["/job/code/x.py", "/job/input/zarr.json", "/x", str(tmp_path / "leak")]}
    code = read_code(CODE / "escape.py") | {"targets.json": json.dumps(targets).encode()}
    alice = v.identities.get("alice")
    limits = JobLimits(cpu_s=2, wall_s=30)
    job = jobs.submit(alice, code, requirements=reqs(),
                      **(TRAIN | {"name": "escape", "entry": "escape:main", "limits": limits}))
    mock = jobs.wait(job.runs[0].id, 60)
    assert mock.state == "succeeded", mock.message
    approve(jobs, v, job.id)
    real = jobs.wait(jobs.get(job.id).runs[-1].id, 60)
    try:
        with pytest.raises(BlockingIOError):
            srv.accept()  # nothing ever connected
    finally:
        srv.close()
    assert real.state == "cpu_limit" and "CPU limit" in real.message
    tried = json.loads(handed.files[-1]["logs/stdout.log"].decode().splitlines()[0])
    assert len(tried) == 10 and all(r.startswith("blocked") for r in tried.values()), tried
    assert not (tmp_path / "leak").exists()
    seen = [e for e in v.audit.show("pick") if e.action == "job_sandbox_attempts"
            and e.details.get("job") == job.id]
    assert len(seen) == 1 and seen[0].details["kind"] == "real"
    tried_kinds = {(a["kind"], a["target"]) for a in seen[0].details["attempts"]}
    assert ("connect", repr(("127.0.0.1", targets["port"]))) in tried_kinds
    assert ("resolve", "example.com") in tried_kinds
    assert {("write", p) for p in targets["write"][:3]} <= tried_kinds  # the last: sandbox /tmp
    ended = [e for e in v.audit.show("pick") if e.action == "job_run_ended"
             and e.details.get("job") == job.id]
    assert [(e.details["kind"], e.details["state"]) for e in ended] == [
        ("mock", "succeeded"), ("real", "cpu_limit")]
