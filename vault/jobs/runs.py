"""Executing one run of a job: check that the job is still what was reviewed, put its
inputs (decrypted) into a private tmpfs directory, run the sandbox, and hand the results
on: a mock run's outputs and logs to ``ROOT/jobs/runs/<id>/`` for the lab, a real run's
declared outputs and logs to the output review (``vault.jobs.outputs``)."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..db import CatalogError, make_event
from ..errors import VaultError
from .models import JobRow, JobRunRow
from .offer import check_requirements
from .sandbox import SandboxResult, private_tmpfs, run_sandboxed
from .spec import JobSpec, code_digest

if TYPE_CHECKING:
    from .service import Jobs

__all__ = ["RunView", "execute_run", "run_view"]

RUN_STATES = ("queued", "running", "succeeded", "failed", "cpu_limit", "memory_limit",
              "wall_limit", "output_limit", "refused", "outputs_refused")


@dataclass(frozen=True)
class RunView:
    """A run as the lab and reviewers see it (``outputs``: ``{name: {size, sha256,
    type}}``; type None for a file no declaration matches, which is not handed on)."""

    id: int
    job_id: int
    job_sha256: str
    version: int
    kind: str
    state: str
    exit_code: int | None
    message: str
    cpu_s: float
    wall_s: float
    output_bytes: int
    outputs: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"id": self.id, "job_id": self.job_id, "job_sha256": self.job_sha256,
                "version": self.version, "kind": self.kind, "state": self.state,
                "exit_code": self.exit_code, "message": self.message, "cpu_s": self.cpu_s,
                "wall_s": self.wall_s, "output_bytes": self.output_bytes, "outputs": self.outputs,
                "started_at": self.started_at.isoformat(),
                "ended_at": self.ended_at.isoformat() if self.ended_at else None}


def run_view(r: JobRunRow) -> RunView:
    """The view of a run row."""
    return RunView(id=r.id, job_id=r.job_id, job_sha256=r.job.sha256, version=r.job.version,
                   kind=r.kind, state=r.state, exit_code=r.exit_code, message=r.message,
                   cpu_s=r.cpu_s, wall_s=r.wall_s, output_bytes=r.output_bytes,
                   outputs=dict(r.outputs or {}), started_at=r.started_at, ended_at=r.ended_at)


def _finish(jobs: Jobs, run_id: int, state: str, message: str, *, res: SandboxResult | None = None,
            outputs: dict[str, Any] | None = None) -> RunView:
    with jobs.db.write() as s:
        run = s.get(JobRunRow, run_id)
        assert run is not None
        run.state, run.message, run.ended_at = state, message[:4000], jobs.db.clock()
        if res is not None:
            run.exit_code, run.cpu_s, run.wall_s = res.exit_code, res.cpu_s, res.wall_s
            run.output_bytes = res.output_bytes
        run.outputs = outputs or {}
        s.flush()
        job = run.job
        jobs.vault.audit.record(make_event(
            job.submitter.name if run.kind == "mock" else "vault",
            "job_run_refused" if state == "refused" else "job_run_ended", job.dataset.name,
            job=job.id, name=job.name, version=job.version, sha256=job.sha256, run=run.id,
            kind=run.kind, state=state, message=message[:500],
            exit_code=run.exit_code, cpu_s=run.cpu_s, wall_s=run.wall_s,
            output_bytes=run.output_bytes, outputs=sorted(run.outputs)))
        return run_view(run)


def _verify(jobs: Jobs, job: JobRow) -> tuple[JobSpec, str]:
    """The spec, if the stored code and spec still give the job's identity and its
    requirements are still offered; else ("", why)."""
    spec = JobSpec.from_dict(job.spec)
    if spec.sha256() != job.sha256:
        raise _Refused(f"the stored spec of job {job.id} no longer hashes to its identity "
                       f"{job.sha256[:12]}: it changed after submission and does not run")
    base = jobs.stored_code(job.sha256)
    found = {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*"))
             if p.is_file()} if base.is_dir() else {}
    if code_digest(found) != spec.code:
        changed = sorted(set(found) ^ set(spec.code) | {
            p for p in set(found) & set(spec.code)
            if hashlib.sha256(found[p]).hexdigest() != spec.code[p]})
        raise _Refused(f"the code of job {job.id} changed after it was submitted (files "
                       f"{changed[:10]}); a changed job is a new job and needs its own review")
    try:
        check_requirements(list(spec.requirements))
    except VaultError as exc:
        raise _Refused(f"job {job.id}: its requirements are no longer offered: {exc}") from exc
    return spec, str(base)


class _Refused(Exception):
    pass


def _fetch_inputs(jobs: Jobs, job: JobRow, kind: str, dest: Path) -> int:
    """Decrypt the job's inputs into ``dest`` (a tmpfs directory); bytes written."""
    v = jobs.vault
    who = v.identities.get(job.submitter.name)
    ds, rel = job.dataset.name, job.release.version
    total = 0
    if kind == "mock":
        with v.open_mock(who, ds, rel, "manifest.json") as r:
            manifest = r.read_all()
        paths = ["manifest.json", *sorted(json.loads(manifest).get("files", {}))]
        opener: Any = lambda p: v.open_mock(who, ds, rel, p)  # noqa: E731
    else:
        paths = [f.path for f in v.list_files(who, ds, rel) if f.ranges is None]
        opener = lambda p: v.open_file(who, ds, rel, p)  # noqa: E731
    for path in paths:
        out = dest / path
        out.parent.mkdir(parents=True, exist_ok=True)
        with opener(path) as r, open(out, "wb") as fh:
            for piece in r.iter_range(0, r.size):
                fh.write(piece)
                total += len(piece)
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    return total


def execute_run(jobs: Jobs, run_id: int) -> RunView:
    """Run a queued run to its end (the worker threads of :class:`~.service.Jobs`)."""
    try:
        with jobs.db.write() as s:
            run = s.get(JobRunRow, run_id)
            assert run is not None
            run.state = "running"
            job = run.job
            kind = run.kind
            try:
                spec, code_dir = _verify(jobs, job)
            except _Refused as exc:
                refused = str(exc)
            else:
                refused = ""
        if refused:
            return _finish(jobs, run_id, "refused", refused)
        with private_tmpfs() as work:
            dirs = {d: work / d for d in ("input", "out", "logs")}
            for d in dirs.values():
                d.mkdir(0o700)
            with jobs.db.read() as s:
                again = s.get(JobRow, job.id)
                assert again is not None
                job = again
                try:
                    nbytes = _fetch_inputs(jobs, job, kind, dirs["input"])
                except CatalogError as exc:
                    return _finish(jobs, run_id, "refused", f"the inputs cannot be read: {exc}")
                jobs.vault.audit.record(make_event(
                    "vault", "job_inputs_decrypted", job.dataset.name, job=job.id, run=run_id,
                    kind=kind, bytes=nbytes, where="tmpfs"))
                submitter, job_id = job.submitter.name, job.id
                ds, rel, lab = job.dataset.name, job.release.version, job.lab.name
            res = run_sandboxed(Path(code_dir), dirs["input"], dirs["out"], dirs["logs"],
                                ["/job/runner.py", spec.entry], spec.limits)
            outputs = _describe(spec, dirs["out"])
            if res.attempts:  # the namespaces stopped them; the provider learns of them
                jobs.vault.audit.record(make_event(
                    "vault", "job_sandbox_attempts", ds, job=job_id, run=run_id, kind=kind,
                    count=len(res.attempts), attempts=list(res.attempts[:50])))
            if kind == "mock":
                return _keep_mock(jobs, run_id, res, dirs, outputs)
            # a real run's outputs and logs, whatever its end, go to the output review only
            files = {n: dirs["out"] / n for n, o in outputs.items() if o["type"] is not None}
            files |= {f"logs/{n}": dirs["logs"] / n for n in ("stdout.log", "stderr.log")}
            dropped = sorted(n for n, o in outputs.items() if o["type"] is None)
            note = f"; undeclared outputs not handed on: {dropped}" if dropped else ""
            try:
                outputs_mod = importlib.import_module(f"{__package__}.outputs")
                episodes, streams = _grant_scope(jobs, submitter, ds, rel)
                finished = outputs_mod.FinishedRun(
                    job_id=job_id, run_id=run_id, dataset=ds, release=rel, lab=lab,
                    submitter=submitter, episodes=episodes, streams=streams, files=files,
                    inputs=dirs["input"],
                    declared={n: o["type"] for n, o in outputs.items() if o["type"] is not None})
                outputs_mod.Outputs(jobs.vault).register_outputs(finished)
            except (ModuleNotFoundError, VaultError) as exc:
                state = "outputs_refused" if res.state == "succeeded" else res.state
                return _finish(jobs, run_id, state, f"{res.message}; the output review did not "
                                                    f"take the outputs: {exc}{note}",
                               res=res, outputs=outputs)
            return _finish(jobs, run_id, res.state, f"{res.message}; outputs and logs sent to "
                                                    f"the output review{note}", res=res,
                           outputs=outputs)
    except Exception as exc:  # noqa: BLE001 - a run that broke is recorded, not lost
        return _finish(jobs, run_id, "failed", f"the vault could not run the job: "
                                               f"{type(exc).__name__}: {exc}")


def _grant_scope(jobs: Jobs, submitter: str, ds: str, rel: int
                 ) -> tuple[tuple[int, ...] | None, tuple[str, ...] | None]:
    """The episodes and streams of the grant the run read through (the oldest live one)."""
    who = jobs.vault.identities.get(submitter)
    grants = [g for lab in sorted(who.labs) for g in jobs.vault.grants.list(lab=lab, dataset=ds,
                                                                            live=True)
              if g.release == rel]
    return (grants[0].episodes, grants[0].streams) if grants else (None, None)


def _describe(spec: JobSpec, out: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and not p.is_symlink():
            name = p.relative_to(out).as_posix()
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            found[name] = {"size": p.stat().st_size, "sha256": h.hexdigest(),
                           "type": spec.output_type(name)}
    return found


def _keep_mock(jobs: Jobs, run_id: int, res: SandboxResult, dirs: dict[str, Path],
               outputs: dict[str, Any]) -> RunView:
    """A mock run's outputs and logs, kept for the lab (mock content only)."""
    dest = jobs.runs_root / str(run_id)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, mode=0o700)
    shutil.copytree(dirs["logs"], dest / "logs", symlinks=True)
    shutil.copytree(dirs["out"], dest / "out", symlinks=True)
    return _finish(jobs, run_id, res.state, res.message, res=res, outputs=outputs)
