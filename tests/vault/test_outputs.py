"""Output review with the Airlock rules, on SQLite and on PostgreSQL: authors never review
their own outputs, reject and changes-requested votes need a comment, a changed file resets
its reviews, release needs every file approved by the dataset's reviewer count and takes
two steps, a file the gate blocked is never released, a file changed after review is not
released, and only released outputs are downloaded, by the job's lab, byte for byte, with
every action (and every refusal) in the audit log."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url

from curation.loader import ReleaseReader
from tests.vault.pgserver import BACKENDS, postgres_server, release_dir  # noqa: F401
from tests.vault.test_service import HEAD, Clock, make_vault
from vault.audit import Entry, verify
from vault.crypto import ObjectRef
from vault.db import ConfirmationError, Forbidden, NotFound, ReviewError, TransitionError
from vault.errors import TamperError, VaultError
from vault.identities import Identity, Role
from vault.jobs.outputs import FinishedRun, GateResult, Outputs, gate_with_index
from vault.jobs.outputs_tables import FileState, OutputFileRow, OutputSetView, OutputState
from vault.service import Vault

METRICS = json.dumps({"success_rate": 0.75, "episodes": 3, "mean_len_s": 0.5}).encode()
LOG = b"loading release\nepoch 1 loss 0.31\ndone\n"


_WORLDS = itertools.count(1)


@dataclass
class Env:
    """A vault shared by a module's tests; each test takes its own job numbers (``base``)
    and files directory from :meth:`fresh`."""

    vault: Vault
    outputs: Outputs
    clock: Clock
    tmp: Path
    release: Path
    base: int = 0

    def fresh(self, tmp: Path) -> Env:
        """This world for one more test: job and run numbers of its own."""
        return replace(self, tmp=tmp, base=next(_WORLDS) * 1000)

    def __getitem__(self, name: str) -> Identity:
        return self.vault.identities.get(name)

    def run(self, job: int, run: int, *, submitter: str = "alice", lab: str = "lab-a",
            **files: bytes) -> OutputSetView:
        """A finished real-data run of the test's ``job`` that wrote ``files`` (in the
        keys, '__' for '/' and '_json', '_log', '_jpg' for the suffixes)."""
        job, run = self.base + job, self.base + run
        out = self.tmp / f"job{job}-run{run}"
        paths = {}
        for key, data in files.items():
            name = key.replace("__", "/").replace("_json", ".json").replace("_log", ".log")
            name = name.replace("_jpg", ".jpg")
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            paths[name] = path
        return self.outputs.register_outputs(FinishedRun(
            job_id=job, run_id=run, dataset="pick", release=1, lab=lab, submitter=submitter,
            files=paths, inputs=self.release))

    def vote_all(self, oid: int, reviewer: str, vote: str = "approve", comment: str = "") -> OutputSetView:
        view = self.outputs.get(oid)
        for f in view.files:
            if not (f.withdrawn or f.gone):
                view = self.outputs.vote(oid, f.name, self[reviewer], vote, comment)
        return view

    def release_set(self, oid: int, reviewer: str = "rev2") -> OutputSetView:
        code = self.outputs.prepare_release(oid, self[reviewer])
        return self.outputs.confirm_release(oid, self[reviewer], code)

    def entries(self, oid: int) -> list[Entry]:
        """The audit entries about output set ``oid``."""
        return [e for e in self.vault.audit.show("pick") if e.details.get("output_set") == oid]

    def actions(self, oid: int) -> list[str]:
        return [e.action for e in self.entries(oid)]


def make_env(tmp: Path, release: Path, url: str | None = None, *,
             gate_cache: Path | None = None) -> Env:
    """make_vault's world (rev1 reviews pick; alice in lab-a; bob in lab-b), plus rev2 (a
    reviewer) and revlab (a reviewer who is also a member of lab-a). ``gate_cache``: where
    the gate keeps its index of the release (shared between tests: built once)."""
    clock = Clock()
    v = make_vault(tmp, release, clock, catalog_url=url)
    ids = v.identities
    for name in ("rev2", "revlab"):
        ids.create_identity(name)
        ids.appoint_reviewer(ids.get("prov"), name, "pick")
    ids.assign("revlab", Role.LAB_MEMBER, lab="lab-a")
    gate = gate_with_index(gate_cache) if gate_cache is not None else None
    return Env(v, Outputs(v, gate=gate), clock, tmp, release)


@pytest.fixture(scope="session")
def gate_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gate's index cache, shared by the tests (the real gate; the index of the test
    release is built by the first test that needs it)."""
    return tmp_path_factory.mktemp("gate-cache")


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          release_dir: Path, gate_cache: Path) -> Iterator[Env]:  # noqa: F811
    """One vault per backend for the module: SQLite under a root, or a PostgreSQL database
    of its own on the session's server."""
    url, server, name = None, "", f"outputs_{next(_WORLDS)}"
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        with create_engine(server, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
    e = make_env(tmp_path_factory.mktemp("outputs"), release_dir, url, gate_cache=gate_cache)
    yield e
    e.vault.close()
    if server:
        e.vault.catalog.db.dispose()
        with create_engine(server, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def env(world: Env, tmp_path: Path) -> Env:
    """The module's vault on each backend, with job numbers of this test's own."""
    return world.fresh(tmp_path)


def frame(release: Path, row: int = 2) -> bytes:
    """A camera frame of the release, as the job would copy it."""
    reader = ReleaseReader(release)
    try:
        return reader.payload(HEAD, row)
    finally:
        reader.close()


# -- registration --------------------------------------------------------------------------

def test_a_finished_run_is_pending_with_every_file_hashed_gated_and_stored_encrypted(env: Env) -> None:
    view = env.run(1, 10, metrics_json=METRICS, logs__stdout_log=LOG)
    assert view.state is OutputState.PENDING
    assert (view.job_id, view.run_id) == (env.base + 1, env.base + 10)
    assert [f.name for f in view.files] == ["logs/stdout.log", "metrics.json"]
    m = view.file("metrics.json")
    assert (m.size, m.gate_verdict, m.state, m.decision) == (len(METRICS), "pass",
                                                             FileState.PENDING, "undecided")
    assert m.sha256 == hashlib.sha256(METRICS).hexdigest()
    stored = b"".join(p.read_bytes() for p in (env.vault.root / "objects").rglob("*.dfv"))
    assert METRICS not in stored and b"epoch 1 loss" not in stored
    # the lab sees its own set; another lab does not, and reviewers see it once submitted
    assert [s.id for s in env.outputs.list(env["alice"], job_id=view.job_id)] == [view.id]
    for who in ("bob", "rev1", "prov"):
        assert view.id not in [s.id for s in env.outputs.list(env[who])], who
    with pytest.raises(Forbidden, match="may not see"):
        env.outputs.get(view.id, env["bob"])


def test_bad_output_names_and_missing_files_are_refused_naming_them(env: Env, tmp_path: Path) -> None:
    job = env.base + 1
    run = FinishedRun(job_id=job, run_id=1, dataset="pick", release=1, lab="lab-a", submitter="alice",
                      files={"../escape.json": tmp_path / "x"}, inputs=env.release)
    with pytest.raises(ReviewError, match=r"output name '\.\./escape\.json'"):
        env.outputs.register_outputs(run)
    run = FinishedRun(job_id=job, run_id=1, dataset="pick", release=1, lab="lab-a", submitter="alice",
                      files={"metrics.json": tmp_path / "missing.json"}, inputs=env.release)
    with pytest.raises(Exception, match=r"metrics\.json.*not a regular file"):
        env.outputs.register_outputs(run)
    assert env.outputs.list(env["alice"], job_id=job) == []


def test_a_file_changed_between_the_gate_and_the_store_is_refused(env: Env, gate_cache: Path) -> None:
    real = gate_with_index(gate_cache)

    def gate_then_change(run: FinishedRun, files: Mapping[str, Path]) -> Mapping[str, GateResult]:
        out = real(run, files)
        files["metrics.json"].write_bytes(b'{"swapped": "after the gate read it"}')
        return out

    outputs = Outputs(env.vault, gate=gate_then_change)
    path = env.tmp / "metrics.json"
    path.write_bytes(METRICS)
    job = env.base + 1
    run = FinishedRun(job_id=job, run_id=1, dataset="pick", release=1, lab="lab-a",
                      submitter="alice", files={"metrics.json": path}, inputs=env.release)
    with pytest.raises(VaultError, match="'metrics.json' changed while it was checked"):
        outputs.register_outputs(run)
    assert env.outputs.list(env["alice"], job_id=job) == []


# -- the review ----------------------------------------------------------------------------

@pytest.fixture
def two(env: Env) -> Iterator[Env]:
    """The dataset needs two reviewers' approvals for this test (one again after it)."""
    env.vault.review.set_required_approvals("pick", 2, env["prov"])
    yield env
    env.vault.review.set_required_approvals("pick", 1, env["prov"])


def test_two_reviewers_move_a_set_through_partially_reviewed_and_reviewed_to_released(two: Env) -> None:
    env = two
    oid = env.run(1, 10, metrics_json=METRICS, logs__stdout_log=LOG).id
    with pytest.raises(TransitionError, match="pending"):
        env.outputs.vote(oid, "metrics.json", env["rev1"], "approve")
    view = env.outputs.submit(oid, env["alice"])
    assert view.state is OutputState.SUBMITTED
    assert oid in [s.id for s in env.outputs.list(env["rev1"])]
    assert oid in [v.id for v in env.outputs.list(env["rev1"], waiting=True)]
    assert oid not in [v.id for v in env.outputs.list(env["revlab"], waiting=True)]  # lab-a
    view = env.outputs.vote(oid, "metrics.json", env["rev1"], "approve")
    assert view.state is OutputState.SUBMITTED  # rev1 has not voted on every file yet
    assert view.file("metrics.json").state is FileState.PARTIALLY_REVIEWED
    view = env.vote_all(oid, "rev1")
    assert view.state is OutputState.PARTIALLY_REVIEWED and view.reviewers_done == ("rev1",)
    waiting = {who: [v.id for v in env.outputs.list(env[who], waiting=True)] for who in ("rev1", "rev2")}
    assert oid not in waiting["rev1"] and oid in waiting["rev2"]
    with pytest.raises(TransitionError, match="partially_reviewed: only a reviewed set"):
        env.outputs.prepare_release(oid, env["rev1"])
    view = env.vote_all(oid, "rev2")
    assert view.state is OutputState.REVIEWED
    assert view.file("metrics.json").approvals == ("rev1", "rev2")
    assert view.file("metrics.json").decision == "approved"
    view = env.release_set(oid, "rev1")
    assert view.state is OutputState.RELEASED and view.released_by == "rev1"
    assert {f.state for f in view.files} == {FileState.RELEASED}
    got, data = env.outputs.download(oid, "metrics.json", env["alice"])
    assert data == METRICS and got.sha256 == view.file("metrics.json").sha256


def test_authors_never_review_their_own_outputs(env: Env) -> None:
    own = env.run(1, 10, submitter="revlab", metrics_json=METRICS).id
    env.outputs.submit(own, env["revlab"])
    with pytest.raises(Forbidden, match=r"'revlab' submitted job \d+; authors never vote on"):
        env.outputs.vote(own, "metrics.json", env["revlab"], "approve")
    theirs = env.run(2, 20, submitter="alice", metrics_json=METRICS).id
    env.outputs.submit(theirs, env["alice"])
    with pytest.raises(Forbidden, match="member of the job's lab 'lab-a'"):
        env.outputs.vote(theirs, "metrics.json", env["revlab"], "approve")
    env.vote_all(theirs, "rev1")
    for who in ("revlab", "alice"):  # nor release it: the lab member is no reviewer at all
        with pytest.raises(Forbidden):
            env.outputs.prepare_release(theirs, env[who])
    with pytest.raises(Forbidden, match="not a reviewer of dataset 'pick'"):
        env.outputs.vote(theirs, "metrics.json", env["bob"], "approve")
    with pytest.raises(Forbidden, match="only a member of lab 'lab-a'"):
        env.outputs.submit(own, env["bob"])


def test_reject_and_changes_requested_votes_and_decisions_need_a_comment(env: Env) -> None:
    oid = env.run(1, 10, metrics_json=METRICS, logs__stdout_log=LOG).id
    env.outputs.submit(oid, env["alice"])
    for vote in ("reject", "changes_requested"):
        with pytest.raises(ReviewError, match=f"a {vote} vote needs a comment"):
            env.outputs.vote(oid, "metrics.json", env["rev1"], vote, "  ")
    with pytest.raises(ReviewError, match="to return it needs a reason"):
        env.outputs.return_to_lab(oid, env["rev1"], "")
    with pytest.raises(ReviewError, match="not one of"):
        env.outputs.vote(oid, "metrics.json", env["rev1"], "maybe")
    view = env.outputs.vote(oid, "logs/stdout.log", env["rev1"], "changes_requested",
                            "the log prints episode ids; drop them")
    assert view.file("logs/stdout.log").votes[0].comment == "the log prints episode ids; drop them"
    assert view.file("logs/stdout.log").decision == "changes_requested"
    view = env.outputs.return_to_lab(oid, env["rev1"], "see the comment on the log")
    assert (view.state, view.reason) == (OutputState.RETURNED, "see the comment on the log")
    assert {f.state for f in view.files} == {FileState.RETURNED}


def test_a_changed_file_resets_its_reviews_and_unchanged_files_keep_theirs(env: Env) -> None:
    oid = env.run(1, 10, metrics_json=METRICS, logs__stdout_log=LOG).id
    env.outputs.submit(oid, env["alice"])
    env.outputs.vote(oid, "metrics.json", env["rev1"], "changes_requested", "round to 2 digits")
    env.outputs.vote(oid, "logs/stdout.log", env["rev1"], "approve")
    env.outputs.return_to_lab(oid, env["rev1"], "see metrics.json")
    rerun = json.dumps({"success_rate": 0.75, "episodes": 3, "mean_len_s": 0.50}).encode() + b"\n"
    view = env.run(1, 11, metrics_json=rerun, logs__stdout_log=LOG)
    assert view.id == oid and view.state is OutputState.RETURNED and view.run_id == env.base + 11
    m, log = view.file("metrics.json"), view.file("logs/stdout.log")
    assert (m.content, m.votes, m.earlier_votes, m.run_id) == (2, (), 1, env.base + 11)
    assert (log.content, log.approvals, log.run_id) == (1, ("rev1",), env.base + 10)
    view = env.outputs.submit(oid, env["alice"])
    assert (view.state, view.round) == (OutputState.SUBMITTED, 2)
    with pytest.raises(TransitionError, match="submitted: only a reviewed set"):
        env.outputs.prepare_release(oid, env["rev1"])
    view = env.outputs.vote(oid, "metrics.json", env["rev1"], "approve")
    assert view.state is OutputState.REVIEWED
    # a re-run while under review changes the log: its approval stops counting at once
    view = env.run(1, 12, metrics_json=rerun, logs__stdout_log=LOG + b"one more line\n")
    assert view.state is OutputState.SUBMITTED and view.file("logs/stdout.log").votes == ()
    assert "output_reviews_reset" in env.actions(oid)


def test_release_needs_every_live_file_approved_by_the_datasets_reviewer_count(two: Env) -> None:
    env = two
    oid = env.run(1, 10, metrics_json=METRICS, logs__stdout_log=LOG).id
    env.outputs.submit(oid, env["alice"])
    env.vote_all(oid, "rev1")
    env.outputs.vote(oid, "metrics.json", env["rev2"], "approve")
    env.outputs.vote(oid, "logs/stdout.log", env["rev2"], "reject", "the log is not needed")
    assert env.outputs.get(oid).state is OutputState.REVIEWED
    with pytest.raises(ReviewError, match=r"file 'logs/stdout.log' is not approved \(rejected"):
        env.outputs.prepare_release(oid, env["rev1"])
    env.outputs.vote(oid, "logs/stdout.log", env["rev2"], "approve")  # rev2 changes its vote
    assert env.release_set(oid, "rev2").state is OutputState.RELEASED


def test_a_file_the_gate_blocked_cannot_be_approved_or_released(env: Env) -> None:
    copied = frame(env.release)
    oid = env.run(1, 10, metrics_json=METRICS, frame_jpg=copied).id
    view = env.outputs.get(oid)
    blocked = view.file("frame.jpg")
    assert blocked.blocked and blocked.decision == "blocked" and blocked.gate_findings
    assert view.file("metrics.json").gate_verdict != "block"
    env.outputs.submit(oid, env["alice"])
    with pytest.raises(Forbidden, match="'frame.jpg' was blocked by the output gate"):
        env.outputs.vote(oid, "frame.jpg", env["rev1"], "approve")
    env.outputs.vote(oid, "frame.jpg", env["rev1"], "reject", "a copied camera frame")
    env.outputs.vote(oid, "metrics.json", env["rev1"], "approve")
    with pytest.raises(ReviewError, match="'frame.jpg' was blocked by the output gate"):
        env.outputs.prepare_release(oid, env["rev1"])
    # the lab takes the frame out and sends the rest again
    env.outputs.return_to_lab(oid, env["rev1"], "remove the frame")
    env.outputs.withdraw(oid, env["alice"], file="frame.jpg")
    env.outputs.submit(oid, env["alice"])
    view = env.release_set(oid, "rev1")
    assert view.state is OutputState.RELEASED
    assert view.file("frame.jpg").state is FileState.WITHDRAWN
    with pytest.raises(Forbidden, match="'frame.jpg' was withdrawn"):
        env.outputs.download(oid, "frame.jpg", env["alice"])
    assert env.outputs.download(oid, "metrics.json", env["alice"])[1] == METRICS


def test_release_takes_two_steps_with_a_one_time_code_for_the_approved_contents(env: Env) -> None:
    oid = env.run(1, 10, metrics_json=METRICS).id
    env.outputs.submit(oid, env["alice"])
    env.vote_all(oid, "rev1")
    with pytest.raises(ConfirmationError, match="no prepared release"):
        env.outputs.confirm_release(oid, env["rev1"], "0000-0000")
    code = env.outputs.prepare_release(oid, env["rev1"])
    with pytest.raises(ConfirmationError, match="the code is wrong"):
        env.outputs.confirm_release(oid, env["rev1"], "0000-0000")
    with pytest.raises(ConfirmationError, match="no prepared release"):  # one try per code
        env.outputs.confirm_release(oid, env["rev1"], code)
    code = env.outputs.prepare_release(oid, env["rev1"])
    env.clock.now += timedelta(minutes=11)
    with pytest.raises(ConfirmationError, match="expired"):
        env.outputs.confirm_release(oid, env["rev1"], code)
    code = env.outputs.prepare_release(oid, env["rev1"])
    env.outputs.vote(oid, "metrics.json", env["rev2"], "approve")  # any vote cancels it
    with pytest.raises(ConfirmationError, match="no prepared release"):
        env.outputs.confirm_release(oid, env["rev1"], code)
    assert env.outputs.get(oid).state is OutputState.REVIEWED
    assert env.release_set(oid, "rev1").state is OutputState.RELEASED
    with pytest.raises(TransitionError, match="released"):
        env.outputs.prepare_release(oid, env["rev1"])


def test_a_stored_file_changed_after_approval_is_not_released_naming_the_file(env: Env) -> None:
    oid = env.run(1, 10, metrics_json=METRICS, logs__stdout_log=LOG).id
    env.outputs.submit(oid, env["alice"])
    env.vote_all(oid, "rev1")
    code = env.outputs.prepare_release(oid, env["rev1"])
    view = env.outputs.get(oid)
    stored = env.vault.store.path(ObjectRef("pick", f"output-job{view.job_id}-run{view.run_id}",
                                            "metrics.json"))
    blob = bytearray(stored.read_bytes())
    blob[-20] ^= 0x01  # one bit of the stored (encrypted) file
    stored.write_bytes(bytes(blob))
    with pytest.raises(TamperError, match=r"file 'metrics\.json': the stored "
                                          r"file is not the content that was reviewed"):
        env.outputs.confirm_release(oid, env["rev1"], code)
    assert env.outputs.get(oid).state is OutputState.REVIEWED
    assert "output_release_refused" in env.actions(oid)


def test_a_file_whose_hash_changed_after_approval_is_not_released_naming_the_file(env: Env) -> None:
    oid = env.run(1, 10, metrics_json=METRICS, logs__stdout_log=LOG).id
    env.outputs.submit(oid, env["alice"])
    env.vote_all(oid, "rev1")
    code = env.outputs.prepare_release(oid, env["rev1"])
    with env.vault.catalog.db.write() as s:  # another content slipped in under the same name
        s.execute(update(OutputFileRow).where(OutputFileRow.set_id == oid,
                                              OutputFileRow.name == "metrics.json")
                  .values(sha256="ab" * 32))
    with pytest.raises(ReviewError, match=r"file 'metrics\.json' is not approved .*changed after "
                                          r"review"):
        env.outputs.confirm_release(oid, env["rev1"], code)
    assert env.outputs.get(oid).state is not OutputState.RELEASED


# -- downloads -----------------------------------------------------------------------------

def test_downloads_only_after_release_only_by_the_jobs_lab_and_every_refusal_audited(env: Env) -> None:
    oid = env.run(1, 10, metrics_json=METRICS, logs__stdout_log=LOG).id
    with pytest.raises(Forbidden, match="pending: only released outputs can be downloaded"):
        env.outputs.download(oid, "metrics.json", env["alice"])
    env.outputs.submit(oid, env["alice"])
    env.vote_all(oid, "rev1")
    with pytest.raises(Forbidden, match="reviewed: only released outputs"):
        env.outputs.download(oid, "metrics.json", env["alice"])
    env.release_set(oid, "rev1")
    assert env.outputs.download(oid, "metrics.json", env["alice"])[1] == METRICS
    assert env.outputs.download(oid, "logs/stdout.log", env["revlab"])[1] == LOG  # lab-a member
    for who in ("bob", "rev1"):
        with pytest.raises(Forbidden, match="only a member of lab 'lab-a'"):
            env.outputs.download(oid, "metrics.json", env[who])
    with pytest.raises(NotFound, match="no file 'secret.json'"):
        env.outputs.download(oid, "secret.json", env["alice"])
    entries = env.entries(oid)
    refused = [e for e in entries if e.action == "output_download_refused"]
    assert [e.actor for e in refused] == ["alice", "alice", "bob", "rev1", "alice"]
    assert "pending" in refused[0].details["reason"]
    done = [e for e in entries if e.action == "output_download"]
    assert [(e.actor, e.details["file"]) for e in done] == [("alice", "metrics.json"),
                                                             ("revlab", "logs/stdout.log")]


def test_every_action_is_in_the_audit_log_and_the_log_verifies(env: Env) -> None:
    oid = env.run(1, 10, metrics_json=METRICS).id
    env.outputs.submit(oid, env["alice"])
    assert env.outputs.read_for_review(oid, "metrics.json", env["rev1"]) == METRICS
    env.vote_all(oid, "rev1")
    env.release_set(oid, "rev1")
    env.outputs.download(oid, "metrics.json", env["alice"])
    acts = env.actions(oid)
    for action in ("outputs_registered", "outputs_submitted", "output_viewed", "output_vote",
                   "output_release_prepared", "outputs_released", "output_download"):
        assert action in acts, action
    released = next(e for e in env.entries(oid) if e.action == "outputs_released")
    assert released.actor == "rev1" and released.details["files"][0]["name"] == "metrics.json"
    env.vault.audit.checkpoint()
    assert verify(env.vault.root).ok


def test_withdrawn_and_final_sets_take_no_more_actions_and_a_new_run_opens_a_new_set(env: Env) -> None:
    first = env.run(1, 10, metrics_json=METRICS).id
    env.outputs.withdraw(first, env["alice"])
    assert env.outputs.get(first).state is OutputState.WITHDRAWN
    with pytest.raises(TransitionError, match="withdrawn"):
        env.outputs.submit(first, env["alice"])
    with pytest.raises(TransitionError, match="withdrawn"):
        env.outputs.withdraw(first, env["alice"])
    second = env.run(1, 11, metrics_json=METRICS).id
    assert second != first
    env.outputs.submit(second, env["alice"])
    with pytest.raises(TransitionError, match="from a pending or returned set only"):
        env.outputs.withdraw(second, env["alice"], file="metrics.json")
    env.outputs.reject(second, env["rev1"], "not covered by the contract")
    assert env.outputs.get(second).state is OutputState.REJECTED
    with pytest.raises(TransitionError, match="rejected"):
        env.outputs.vote(second, "metrics.json", env["rev1"], "approve")
    third = env.run(1, 12, metrics_json=METRICS)
    assert third.id not in (first, second) and third.state is OutputState.PENDING


def test_two_reviewers_voting_at_the_same_moment_both_count(two: Env) -> None:
    env = two
    oid = env.run(1, 10, metrics_json=METRICS).id
    env.outputs.submit(oid, env["alice"])
    start, errors = threading.Barrier(2), []

    def vote(who: str) -> None:
        try:
            start.wait(5)
            env.outputs.vote(oid, "metrics.json", env[who], "approve")
        except Exception as exc:  # noqa: BLE001 - collected and shown by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=vote, args=(who,)) for who in ("rev1", "rev2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    view = env.outputs.get(oid)
    assert view.state is OutputState.REVIEWED and view.reviewers_done == ("rev1", "rev2")
    assert env.release_set(oid, "rev1").state is OutputState.RELEASED
