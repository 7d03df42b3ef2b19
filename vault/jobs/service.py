"""Clean-room jobs over an open :class:`~vault.service.Vault`: submit, review, run.

A lab member submits a job (:class:`~vault.jobs.spec.JobSpec`) for a release its lab
holds a live grant for; the job is stored under ``ROOT/jobs/code/<sha256>/`` and runs at
once on the **mock** release (simulated content, no grant needed), its outputs and full
logs kept for the lab under ``ROOT/jobs/runs/<run id>/``. The dataset's reviewers review
it with the states, reviewer rules and two-step approval of access requests
(:mod:`vault.review`): only reviewers of the dataset, never the submitter nor a member of
the lab; a reason to reject or request changes; ``required_approvals`` distinct
approvals. A review can start only once a mock run succeeded. On the last approval the
job runs on the **real** data: the files the submitter's grant reaches (its derived
release for an episode subset), decrypted into a private tmpfs directory
(:func:`~vault.jobs.sandbox.private_tmpfs`); its declared outputs and its logs go to the
output review (``vault.jobs.outputs``), never straight to the lab.

A job's identity is its SHA-256: submitting the same name again with anything changed is
a new **version** that needs its own approvals; the earlier version is withdrawn (or, if
approved, revoked) and never runs again. Before every run the stored code and spec are
hashed again; a job whose bytes no longer give its identity, or whose requirements the
vault no longer offers, does not run (state ``refused``). Every step is an audit entry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..catalog import check_name, release_row
from ..db import ConfirmationError, Forbidden, NotFound, ReviewError, TransitionError, make_event
from ..identities import Identity, Role, RoleGrant, identity_row, lab_row, roles_of
from ..review import CONFIRMATION_LIFETIME, MAX_TEXT, TRANSITIONS, Action, RequestState
from .models import JobConfirmationRow, JobDecisionRow, JobRow, JobRunRow
from .offer import check_requirements
from .runs import RunView, execute_run, run_view
from .sandbox import MAXIMA, JobLimits
from .spec import JobError, JobSpec, OutputDecl, check_code, code_digest

if TYPE_CHECKING:
    from ..service import Vault

__all__ = ["JobView", "Jobs"]

S = RequestState


@dataclass(frozen=True)
class JobView:
    """A job version as its lab and its reviewers see it."""

    id: int
    name: str
    version: int
    sha256: str
    dataset: str
    release: int
    lab: str
    submitter: str
    state: RequestState
    round: int
    required_approvals: int
    approvals: tuple[str, ...]
    decisions: tuple[dict[str, Any], ...]
    reason: str
    superseded_by: int | None
    spec: JobSpec
    runs: tuple[RunView, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        spec = self.spec.as_dict()
        return {"id": self.id, "name": self.name, "version": self.version, "sha256": self.sha256,
                "dataset": self.dataset, "release": self.release, "lab": self.lab,
                "submitter": self.submitter, "state": self.state.value, "round": self.round,
                "required_approvals": self.required_approvals, "approvals": list(self.approvals),
                "decisions": list(self.decisions), "reason": self.reason,
                "superseded_by": self.superseded_by, "entry": spec["entry"],
                "requirements": spec["requirements"], "outputs": spec["outputs"],
                "limits": spec["limits"], "code": spec["code"],
                "runs": [r.as_dict() for r in self.runs]}


class Jobs:
    """The clean room of ``vault``. ``maxima``: the vault-wide limits; ``workers``: runs
    at a time (runs are queued and executed in background threads). One per vault: a new
    one ends the runs it finds queued or running as failed (left by a stopped vault)."""

    def __init__(self, vault: Vault, *, maxima: JobLimits = MAXIMA, workers: int = 1) -> None:
        self.vault = vault
        self.db = vault.catalog.db
        self.maxima = maxima
        self.code_root = vault.root / "jobs" / "code"
        self.runs_root = vault.root / "jobs" / "runs"
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cleanroom")
        self._futures: dict[int, Future[RunView]] = {}
        self._lock = threading.Lock()
        self._end_stale_runs()

    def _end_stale_runs(self) -> None:
        """Runs left queued or running by a vault that stopped: ended as failed (their
        sandbox died with the vault: bwrap runs with --die-with-parent)."""
        with self.db.write() as s:
            for run in s.scalars(select(JobRunRow).where(JobRunRow.state.in_(("queued", "running")))):
                run.state, run.ended_at = "failed", self.db.clock()
                run.message = "the vault stopped before the run ended; start it again"
                s.flush()
                self._emit("vault", "job_run_ended", run.job, run=run.id, kind=run.kind,
                           state="failed", message=run.message)

    def close(self) -> None:
        """Wait for the queued runs, then stop the workers."""
        self._pool.shutdown(wait=True)

    def _emit(self, actor: str, action: str, job: JobRow, **details: Any) -> None:
        self.vault.audit.record(make_event(actor, action, job.dataset.name, **(
            {"job": job.id, "name": job.name, "version": job.version, "sha256": job.sha256,
             "lab": job.lab.name} | details)))

    # -- the lab's side ----------------------------------------------------------------------
    def submit(self, by: Identity, code: dict[str, bytes], *, name: str, entry: str,
               requirements: Iterable[str], dataset: str, release: int,
               outputs: Iterable[OutputDecl | dict[str, str]], limits: JobLimits | None = None,
               lab: str | None = None, run_mock: bool = True) -> JobView:
        """Submit a job (a new version when ``name`` exists for the lab), then queue its
        mock run. JobError for a job that is not valid as given (the requirements not
        offered, an entry point that is not in the code, limits above the maxima)."""
        _need_scope(by, "jobs", "submit a job")
        check_name(name, "job")
        outs = tuple(o if isinstance(o, OutputDecl) else OutputDecl(o["pattern"], o["type"])
                     for o in outputs)
        spec = JobSpec(name=name, entry=entry, requirements=check_requirements(list(requirements)),
                       dataset=dataset, release=int(release), outputs=outs,
                       limits=(limits or JobLimits()).check(self.maxima),
                       code=code_digest(check_code(code, f"job {name!r}")))
        spec.check_entry()
        sha = spec.sha256()
        with self.db.write() as s:
            actor = identity_row(s, by.name)
            labs = sorted(g.lab for g in roles_of(s, actor.id) if g.role is Role.LAB_MEMBER and g.lab)
            if lab is None:
                if len(labs) != 1:
                    raise ReviewError(f"{by.name!r} is a member of {labs or 'no lab'}; name the "
                                      "lab the job is for")
                lab = labs[0]
            if lab not in labs:
                raise Forbidden(f"{by.name!r} is not a member of lab {lab!r} and may not submit "
                                "jobs for it")
            rel = release_row(s, dataset, spec.release)
            if not any(g.release == spec.release
                       for g in self.vault.grants.list(lab=lab, dataset=dataset, live=True)):
                raise Forbidden(f"lab {lab!r} holds no live grant for dataset {dataset!r} release "
                                f"{spec.release}; a job reads only what a grant reaches "
                                "(request access first)")
            lab_id = lab_row(s, lab).id
            previous = s.scalars(select(JobRow).where(JobRow.lab_id == lab_id, JobRow.name == name)
                                 .order_by(JobRow.version.desc()).with_for_update()).first()
            if previous is not None and previous.sha256 == sha and previous.superseded_by is None \
                    and previous.state not in (S.REJECTED.value, S.WITHDRAWN.value, S.REVOKED.value):
                raise JobError(f"job {name!r} version {previous.version} is this very job "
                               f"({sha[:12]}); nothing changed")
            self._store_code(sha, code)
            now = self.db.clock()
            job = JobRow(sha256=sha, name=name, version=1 if previous is None else previous.version + 1,
                         dataset=rel.dataset, release=rel, lab=lab_row(s, lab), submitter=actor,
                         spec=spec.as_dict(), state=S.SUBMITTED.value, round=1, created_at=now,
                         updated_at=now)
            s.add(job)
            s.flush()
            self._emit(by.name, "job_submitted", job, entry=entry,
                       requirements=list(spec.requirements), outputs=[o.as_dict() for o in outs],
                       limits=spec.limits.as_dict(), files=len(code))
            if previous is not None and previous.superseded_by is None:
                self._supersede(s, previous, job, by)
            job_id = job.id
        if run_mock:
            self.start_run(job_id, "mock", by=by)
        return self.get(job_id)

    def _supersede(self, s: Session, old: JobRow, new: JobRow, by: Identity) -> None:
        """A new version replaces the old: its approvals do not carry over."""
        old.superseded_by = new.id
        state = RequestState(old.state)
        action = Action.REVOKE if state is S.APPROVED else Action.WITHDRAW
        if action in TRANSITIONS[state]:
            old.state = TRANSITIONS[state][action].value
            old.reason = f"superseded by version {new.version} ({new.sha256[:12]})"
        s.execute(delete(JobConfirmationRow).where(JobConfirmationRow.job_id == old.id))
        s.flush()
        self._emit(by.name, "job_superseded", old, by_job=new.id, by_version=new.version,
                   **{"from": state.value, "to": old.state})

    def _store_code(self, sha: str, code: dict[str, bytes]) -> None:
        final = self.code_root / sha
        if final.is_dir():
            return
        tmp = self.code_root / f".{sha}.{secrets.token_hex(4)}"
        for path, data in code.items():
            f = tmp / path
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)
            f.chmod(0o444)
        tmp.rename(final)

    def withdraw(self, job_id: int, by: Identity) -> JobView:
        """A member of the job's lab withdraws it."""
        with self.db.write() as s:
            job = _job(s, job_id, lock=True)
            new = _transition(job, Action.WITHDRAW)
            _need_scope(by, "jobs", "withdraw a job")
            if RoleGrant(Role.LAB_MEMBER, lab=job.lab.name) not in roles_of(s, identity_row(s, by.name).id):
                raise Forbidden(f"job {job.id}: only a member of lab {job.lab.name!r} may withdraw it")
            self._move(s, job, new, by, "job_withdrawn")
        return self.get(job_id)

    # -- the reviewers' side -----------------------------------------------------------------
    def start_review(self, job_id: int, by: Identity) -> JobView:
        """A reviewer takes up a submitted job whose mock run succeeded."""
        with self.db.write() as s:
            job = _job(s, job_id, lock=True)
            new = _transition(job, Action.START_REVIEW)
            self._reviewer(s, job, by)
            mock = s.scalars(select(JobRunRow).where(JobRunRow.job_id == job.id,
                                                     JobRunRow.kind == "mock",
                                                     JobRunRow.state == "succeeded")).first()
            if mock is None:
                raise ReviewError(f"job {job.id}: no successful mock run yet; the lab debugs its "
                                  "job on the mock release before review")
            self._move(s, job, new, by, "job_review_started", round=job.round)
        return self.get(job_id)

    def request_changes(self, job_id: int, by: Identity, reason: str) -> JobView:
        """Send the job back (the lab submits a new version)."""
        return self._decide(job_id, by, Action.REQUEST_CHANGES, reason, "job_changes_requested")

    def reject(self, job_id: int, by: Identity, reason: str) -> JobView:
        """Reject the job, saying why (final)."""
        return self._decide(job_id, by, Action.REJECT, reason, "job_rejected")

    def prepare_approval(self, job_id: int, by: Identity) -> str:
        """Step one of approving: a one-time code for this reviewer, round and job
        identity, valid :data:`~vault.review.CONFIRMATION_LIFETIME`."""
        with self.db.write() as s:
            job = _job(s, job_id, lock=True)
            _transition(job, Action.APPROVE)
            reviewer = self._reviewer(s, job, by)
            if _decision(s, job, reviewer.id) is not None:
                raise ReviewError(f"job {job.id}: {by.name!r} already decided in round {job.round}")
            code = secrets.token_hex(4).upper()
            code = f"{code[:4]}-{code[4:]}"
            expires = self.db.clock() + CONFIRMATION_LIFETIME
            s.execute(delete(JobConfirmationRow).where(JobConfirmationRow.job_id == job.id,
                                                       JobConfirmationRow.reviewer_id == reviewer.id))
            s.add(JobConfirmationRow(job_id=job.id, reviewer_id=reviewer.id, round=job.round,
                                     sha256=job.sha256, code_sha256=_code_hash(code),
                                     expires_at=expires))
            s.flush()
            self._emit(by.name, "job_approval_prepared", job, round=job.round,
                       expires_at=expires.isoformat())
            return code

    def confirm_approval(self, job_id: int, by: Identity, code: str) -> JobView:
        """Step two: the approval, with the code. With enough distinct approvals the job
        is approved and its run on real data queued."""
        approved = False
        with self.db.write() as s:
            job = _job(s, job_id, lock=True)
            new = _transition(job, Action.APPROVE)
            reviewer = self._reviewer(s, job, by)
            pending = s.scalars(select(JobConfirmationRow).where(
                JobConfirmationRow.job_id == job.id,
                JobConfirmationRow.reviewer_id == reviewer.id)).first()
            if pending is None:
                raise ConfirmationError(f"job {job.id}: {by.name!r} has no prepared approval; "
                                        "prepare it first")
            problem = ""
            if pending.round != job.round or pending.sha256 != job.sha256:
                problem = "the job changed since the code was prepared"
            elif self.db.clock() >= pending.expires_at:
                problem = f"the code expired at {pending.expires_at.isoformat()}"
            elif not hmac.compare_digest(pending.code_sha256.encode(), _code_hash(code).encode()):
                problem = "the code is wrong"
            s.delete(pending)
            s.flush()
            if not problem:
                s.add(JobDecisionRow(job_id=job.id, reviewer=reviewer, round=job.round,
                                     decision="approve", created_at=self.db.clock()))
                s.flush()
                approvals = _approvals(s, job)
                required = job.dataset.required_approvals
                if len(approvals) < required:
                    self._emit(by.name, "job_approval_recorded", job, round=job.round,
                               approvals=list(approvals), required=required)
                else:
                    self._move(s, job, new, by, "job_approved", round=job.round,
                               approvals=list(approvals), required=required)
                    approved = True
            else:
                self._emit(by.name, "job_approval_confirmation_failed", job, reason=problem)
        if problem:
            raise ConfirmationError(f"job {job_id}: {problem}; prepare the approval again")
        if approved:
            self.start_run(job_id, "real", by=None)
        return self.get(job_id)

    def _decide(self, job_id: int, by: Identity, action: Action, reason: str, event: str) -> JobView:
        with self.db.write() as s:
            job = _job(s, job_id, lock=True)
            new = _transition(job, action)
            reviewer = self._reviewer(s, job, by)
            if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_TEXT:
                raise ReviewError(f"job {job.id}: {action.value} needs a reason (1 to {MAX_TEXT} "
                                  "characters: what the lab should know)")
            if _decision(s, job, reviewer.id) is not None:
                raise ReviewError(f"job {job.id}: {by.name!r} already decided in round {job.round}")
            s.add(JobDecisionRow(job_id=job.id, reviewer=reviewer, round=job.round,
                                 decision=action.value, reason=reason.strip(),
                                 created_at=self.db.clock()))
            job.reason = reason.strip()
            s.execute(delete(JobConfirmationRow).where(JobConfirmationRow.job_id == job.id))
            self._move(s, job, new, by, event, round=job.round, reason=reason.strip())
        return self.get(job_id)

    def _reviewer(self, s: Session, job: JobRow, by: Identity) -> Any:
        _need_scope(by, "reviews", "review a job")
        actor = identity_row(s, by.name)
        roles = roles_of(s, actor.id)
        if RoleGrant(Role.REVIEWER, dataset=job.dataset.name) not in roles:
            raise Forbidden(f"job {job.id}: {by.name!r} is not a reviewer of dataset "
                            f"{job.dataset.name!r}")
        if actor.id == job.submitter_id:
            raise Forbidden(f"job {job.id}: {by.name!r} submitted this job; nobody reviews their own")
        if RoleGrant(Role.LAB_MEMBER, lab=job.lab.name) in roles:
            raise Forbidden(f"job {job.id}: {by.name!r} is a member of the submitting lab "
                            f"{job.lab.name!r} and may not review its jobs")
        return actor

    def _move(self, s: Session, job: JobRow, new: RequestState, by: Identity, event: str,
              **details: Any) -> None:
        old, job.state, job.updated_at = job.state, new.value, self.db.clock()
        s.flush()
        self._emit(by.name, event, job, **({"from": old, "to": new.value} | details))

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, job_id: int, kind: str, *, by: Identity | None) -> RunView:
        """Queue a run (``mock``: any member of the lab; ``real``: an approved job, queued
        by the vault on approval or by a member of the lab again later). Returns the run
        as queued; :meth:`wait` for its end."""
        if kind not in ("mock", "real"):
            raise JobError(f"run kind {kind!r}: 'mock' or 'real'")
        with self.db.write() as s:
            job = _job(s, job_id, lock=True)
            actor = "vault" if by is None else by.name
            if by is not None:
                _need_scope(by, "jobs", "run a job")
                if RoleGrant(Role.LAB_MEMBER, lab=job.lab.name) not in roles_of(
                        s, identity_row(s, by.name).id):
                    raise Forbidden(f"job {job.id}: only a member of lab {job.lab.name!r} may run it")
            if kind == "real" and (job.state != S.APPROVED.value or job.superseded_by is not None):
                self._emit(actor, "job_run_refused", job, kind=kind, reason=f"job is {job.state}")
                raise TransitionError(f"job {job.id} is {job.state}"
                                      + (f", superseded by job {job.superseded_by}"
                                         if job.superseded_by else "")
                                      + "; only an approved job runs on real data")
            run = JobRunRow(job=job, kind=kind, state="queued", started_at=self.db.clock())
            s.add(run)
            s.flush()
            self._emit(actor, "job_run_queued", job, run=run.id, kind=kind)
            view = run_view(run)
        fut = self._pool.submit(execute_run, self, view.id)
        with self._lock:
            self._futures[view.id] = fut
        return view

    def wait(self, run_id: int, timeout: float | None = None) -> RunView:
        """The run once it has ended (``timeout`` seconds at most)."""
        with self._lock:
            fut = self._futures.get(run_id)
        if fut is not None:
            fut.result(timeout)
        return self.run(run_id)

    def run(self, run_id: int) -> RunView:
        """A run by id."""
        with self.db.read() as s:
            row = s.get(JobRunRow, run_id)
            if row is None:
                raise NotFound(f"no job run {run_id}")
            return run_view(row)

    def logs(self, run_id: int, by: Identity) -> dict[str, str]:
        """The logs of a MOCK run (``stdout``, ``stderr``), for the job's lab and its
        reviewers. A real-data run's logs are outputs: they reach the lab through the
        output review only."""
        view = self.run(run_id)
        job = self.get(view.job_id)
        self.check_visible(by, job)
        if view.kind != "mock":
            raise Forbidden(f"run {run_id} ran on real data: its logs are outputs, released only "
                            "through the output review (demofab vault output ...)")
        base = self.runs_root / str(run_id) / "logs"
        return {k: (base / f"{k}.log").read_text(errors="replace") if (base / f"{k}.log").exists()
                else "" for k in ("stdout", "stderr")}

    def code_file(self, job_id: int, path: str, by: Identity) -> bytes:
        """One file of a job's code, as submitted (its lab and its reviewers read it):
        JobError when the stored file no longer has the SHA-256 the job's identity holds."""
        job = self.get(job_id)
        self.check_visible(by, job)
        if path not in job.spec.code:
            raise NotFound(f"job {job_id} has no code file {path!r} (files: {sorted(job.spec.code)[:20]})")
        data = (self.code_root / job.sha256 / path).read_bytes()
        if hashlib.sha256(data).hexdigest() != job.spec.code[path]:
            raise JobError(f"job {job_id}: the stored {path} changed after submission; the job "
                           "does not run")
        return data

    def mock_output(self, run_id: int, name: str, by: Identity) -> Path:
        """An output file of a mock run (the lab's to take: mock content)."""
        view = self.run(run_id)
        self.check_visible(by, self.get(view.job_id))
        if view.kind != "mock" or name not in view.outputs:
            raise NotFound(f"mock run {run_id} has no output {name!r}")
        return self.runs_root / str(run_id) / "out" / name

    # -- reading -------------------------------------------------------------------------------
    def get(self, job_id: int) -> JobView:
        """A job version by id."""
        with self.db.read() as s:
            return _view(s, _job(s, job_id))

    def list_jobs(self, *, lab: str | None = None, dataset: str | None = None) -> list[JobView]:
        """Job versions, oldest first."""
        with self.db.read() as s:
            q = select(JobRow).order_by(JobRow.id)
            if lab is not None:
                q = q.where(JobRow.lab_id == lab_row(s, lab).id)
            rows = [r for r in s.scalars(q) if dataset is None or r.dataset.name == dataset]
            return [_view(s, r) for r in rows]

    def pending(self, reviewer: Identity) -> list[JobView]:
        """The submitted and under-review jobs this reviewer may decide and has not."""
        with self.db.read() as s:
            actor = identity_row(s, reviewer.name)
            roles = roles_of(s, actor.id)
            datasets = {g.dataset for g in roles if g.role is Role.REVIEWER}
            labs = {g.lab for g in roles if g.role is Role.LAB_MEMBER}
            rows = s.scalars(select(JobRow).where(JobRow.state.in_(
                [S.SUBMITTED.value, S.UNDER_REVIEW.value])).order_by(JobRow.id))
            return [_view(s, r) for r in rows if r.dataset.name in datasets
                    and r.lab.name not in labs and r.submitter_id != actor.id
                    and _decision(s, r, actor.id) is None]

    def check_visible(self, by: Identity, job: JobView) -> None:
        """Forbidden unless ``by`` may see the job (its lab, the dataset's reviewers and
        provider, an admin)."""
        if not self.vault.sees_request(by, job.dataset, job.lab):
            raise Forbidden(f"{by.name!r} may not see job {job.id}")

    def stored_code(self, sha: str) -> Path:
        """Where a job's code is kept."""
        return self.code_root / sha


# -- helpers ---------------------------------------------------------------------------------

def _need_scope(by: Identity, scope: str, what: str) -> None:
    if scope not in by.scopes:
        raise Forbidden(f"{by.name!r}: token {by.token_id} does not carry the scope {scope!r} "
                        f"needed to {what}")


def _transition(job: JobRow, action: Action) -> RequestState:
    state = RequestState(job.state)
    allowed = TRANSITIONS[state]
    if job.superseded_by is not None:
        raise TransitionError(f"job {job.id} was superseded by job {job.superseded_by} (a new "
                              "version); act on that one")
    if action not in allowed or action is Action.RESUBMIT:
        what = ", ".join(a.value for a in allowed if a is not Action.RESUBMIT) or "nothing"
        raise TransitionError(f"job {job.id} is {state.value}: {action.value} is not allowed (a "
                              f"{state.value} job allows {what}; changes come as a new version)")
    return allowed[action]


def _job(s: Session, job_id: int, *, lock: bool = False) -> JobRow:
    q = select(JobRow).where(JobRow.id == job_id)
    job = s.scalars(q.with_for_update() if lock else q).first()
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def _decision(s: Session, job: JobRow, reviewer_id: int) -> JobDecisionRow | None:
    return s.scalars(select(JobDecisionRow).where(
        JobDecisionRow.job_id == job.id, JobDecisionRow.round == job.round,
        JobDecisionRow.reviewer_id == reviewer_id)).first()


def _approvals(s: Session, job: JobRow) -> tuple[str, ...]:
    rows = s.scalars(select(JobDecisionRow).where(
        JobDecisionRow.job_id == job.id, JobDecisionRow.round == job.round,
        JobDecisionRow.decision == "approve").order_by(JobDecisionRow.id))
    return tuple(dict.fromkeys(r.reviewer.name for r in rows))


def _code_hash(code: str) -> str:
    norm = code.strip().upper().replace("-", "") if isinstance(code, str) else ""
    return hashlib.sha256(norm.encode()).hexdigest()


def _view(s: Session, job: JobRow) -> JobView:
    decisions: tuple[dict[str, Any], ...] = tuple(
        {"reviewer": d.reviewer.name, "round": d.round, "decision": d.decision,
         "reason": d.reason, "created_at": d.created_at.isoformat()}
                      for d in s.scalars(select(JobDecisionRow).where(
                          JobDecisionRow.job_id == job.id).order_by(JobDecisionRow.id)))
    runs = tuple(run_view(r) for r in s.scalars(select(JobRunRow).where(
        JobRunRow.job_id == job.id).order_by(JobRunRow.id)))
    return JobView(id=job.id, name=job.name, version=job.version, sha256=job.sha256,
                   dataset=job.dataset.name, release=job.release.version, lab=job.lab.name,
                   submitter=job.submitter.name, state=RequestState(job.state), round=job.round,
                   required_approvals=job.dataset.required_approvals,
                   approvals=tuple(d["reviewer"] for d in decisions
                                   if d["round"] == job.round and d["decision"] == "approve"),
                   decisions=decisions, reason=job.reason, superseded_by=job.superseded_by,
                   spec=JobSpec.from_dict(job.spec), runs=runs)
