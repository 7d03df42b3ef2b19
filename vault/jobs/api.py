"""The clean room's HTTP routes, under the vault's one authorization dependency
(:func:`vault.api.require`): :func:`add_job_routes` adds them to the app
:func:`vault.api.create_app` makes; :data:`JOB_ROUTE_SCOPES` (merged into
:data:`vault.api.ROUTE_SCOPES`) says which scope each needs: ``jobs`` for the lab's
actions, ``reviews`` for the reviewers'.

The code of a submitted job travels as ``{path: base64}`` in the JSON body (at most
:data:`~vault.jobs.spec.MAX_CODE_BYTES`)."""

# no `from __future__ import annotations`: the routes' annotations name the dependencies
# made in add_job_routes, so they are evaluated where the routes are defined
import base64
import binascii
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Path, Query
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from ..identities import Identity
from .sandbox import JobLimits
from .service import Jobs, JobView
from .spec import MAX_CODE_BYTES, MAX_CODE_FILES, JobError, OutputDecl

if TYPE_CHECKING:
    from ..service import Vault

__all__ = ["JOB_ROUTE_SCOPES", "JobBody", "add_job_routes"]

JOB_ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/v1/jobs/offer"): "jobs|reviews",
    ("POST", "/v1/jobs"): "jobs",
    ("GET", "/v1/jobs"): "jobs|reviews",
    ("GET", "/v1/jobs/{job_id}"): "jobs|reviews",
    ("GET", "/v1/jobs/{job_id}/logs"): "jobs|reviews",
    ("GET", "/v1/jobs/{job_id}/code/{path:path}"): "jobs|reviews",
    ("GET", "/v1/jobs/{job_id}/mock-outputs/{path:path}"): "jobs|reviews",
    ("POST", "/v1/jobs/{job_id}/run"): "jobs",
    ("POST", "/v1/jobs/{job_id}/withdraw"): "jobs",
    ("POST", "/v1/jobs/{job_id}/start-review"): "reviews",
    ("POST", "/v1/jobs/{job_id}/request-changes"): "reviews",
    ("POST", "/v1/jobs/{job_id}/reject"): "reviews",
    ("POST", "/v1/jobs/{job_id}/approval"): "reviews",
    ("POST", "/v1/jobs/{job_id}/approval/confirm"): "reviews",
}
"""(method, path) -> the scope the route needs (``a|b``: either)."""

JobId = Annotated[int, Path(ge=1, le=2**31 - 1, description="a job version's id")]


class LimitsBody(BaseModel):
    """A job's limits (left out: the defaults)."""

    cpu_s: float = Field(default=JobLimits.cpu_s, gt=0, le=1e6)
    memory_bytes: int = Field(default=JobLimits.memory_bytes, gt=0, le=2**50)
    wall_s: float = Field(default=JobLimits.wall_s, gt=0, le=1e6)
    output_bytes: int = Field(default=JobLimits.output_bytes, gt=0, le=2**50)


class OutputBody(BaseModel):
    """A declared output."""

    pattern: str = Field(max_length=200)
    type: str = Field(max_length=32)


class JobBody(BaseModel):
    """A job as a lab submits it."""

    name: str = Field(max_length=64)
    entry: str = Field(max_length=300)
    dataset: str = Field(max_length=64)
    release: int = Field(ge=1, le=2**31)
    requirements: list[Annotated[str, Field(max_length=200)]] = Field(max_length=50)
    outputs: list[OutputBody] = Field(max_length=100)
    limits: LimitsBody | None = None
    code: dict[str, Annotated[str, Field(max_length=MAX_CODE_BYTES * 2)]] = Field(
        max_length=MAX_CODE_FILES)
    lab: str | None = Field(None, max_length=64)


class RunBody(BaseModel):
    """Which run to start."""

    kind: str = Field("mock", max_length=8)


class ReasonBody(BaseModel):
    """A reviewer's reason."""

    reason: str = Field(max_length=10000)


class CodeBody(BaseModel):
    """An approval's confirmation code."""

    code: str = Field(max_length=64)


def _decode(code: dict[str, str]) -> dict[str, bytes]:
    out = {}
    for path, text in code.items():
        try:
            out[path] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise JobError(f"code file {path!r}: not base64 ({exc})") from exc
    return out


def add_job_routes(app: FastAPI, vault: "Vault") -> Jobs:
    """Add the clean room's routes to ``app`` (the vault's API) and return the
    :class:`~vault.jobs.service.Jobs` that runs them (``app.state.jobs``)."""
    from ..api import require  # the one dependency (imported here: vault.api imports us)

    jobs = Jobs(vault)
    app.state.jobs = jobs
    auth = {route: Depends(require(scope)) for route, scope in JOB_ROUTE_SCOPES.items()}

    def me_of(method: str, path: str) -> Any:
        return auth[(method, path)]

    def visible(job_id: int, me: Identity) -> dict[str, Any]:
        view = jobs.get(job_id)
        jobs.check_visible(me, view)
        return view.as_dict()

    @app.get("/v1/jobs/offer")
    def job_offer(me: Annotated[Identity, me_of("GET", "/v1/jobs/offer")]) -> dict[str, Any]:
        """The requirements a job may name (exact versions) and the vault's maximum limits."""
        from .offer import offer

        return {"requirements": [f"{k}=={v}" for k, v in offer().items()],
                "maxima": jobs.maxima.as_dict()}

    @app.post("/v1/jobs", status_code=201)
    def submit_job(body: JobBody, me: Annotated[Identity, me_of("POST", "/v1/jobs")]) -> dict[str, Any]:
        """Submit a job (a new version when the name exists); its mock run is queued."""
        view = jobs.submit(me, _decode(body.code), name=body.name, entry=body.entry,
                           requirements=body.requirements, dataset=body.dataset,
                           release=body.release, lab=body.lab,
                           outputs=[OutputDecl(o.pattern, o.type) for o in body.outputs],
                           limits=JobLimits(**(body.limits or LimitsBody()).model_dump()))
        return view.as_dict()

    @app.get("/v1/jobs")
    def list_jobs(me: Annotated[Identity, me_of("GET", "/v1/jobs")]) -> list[dict[str, Any]]:
        """The jobs of the caller's labs, and those waiting for the caller's review."""
        seen: dict[int, JobView] = {}
        if me.has_scope("jobs"):
            for lab in sorted(vault.identities.get(me.name).labs):
                seen.update((j.id, j) for j in jobs.list_jobs(lab=lab))
        if me.has_scope("reviews"):
            seen.update((j.id, j) for j in jobs.pending(me))
        return [seen[k].as_dict() for k in sorted(seen)]

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: JobId, me: Annotated[Identity, me_of("GET", "/v1/jobs/{job_id}")]
                ) -> dict[str, Any]:
        """One job version with its review and runs."""
        return visible(job_id, me)

    def mock_run(job_id: int, run: int | None, me: Identity) -> int:
        view = jobs.get(job_id)
        jobs.check_visible(me, view)
        mocks = [r.id for r in view.runs if r.kind == "mock"]
        if run is None:
            if not mocks:
                raise JobError(f"job {job_id} has no mock run")
            return mocks[-1]
        if run not in mocks:
            raise JobError(f"run {run} is not a mock run of job {job_id} (its mock runs: {mocks})")
        return run

    @app.get("/v1/jobs/{job_id}/logs")
    def job_logs(job_id: JobId, me: Annotated[Identity, me_of("GET", "/v1/jobs/{job_id}/logs")],
                 run: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> dict[str, Any]:
        """The full logs of a mock run (the newest by default)."""
        rid = mock_run(job_id, run, me)
        return {"run": rid} | jobs.logs(rid, me)

    @app.get("/v1/jobs/{job_id}/code/{path:path}", response_class=Response)
    def job_code(job_id: JobId, path: str, me: Annotated[Identity, me_of(
            "GET", "/v1/jobs/{job_id}/code/{path:path}")]) -> Response:
        """One file of the job's code, as submitted (what the reviewers review)."""
        return Response(jobs.code_file(job_id, path, me), media_type="text/plain")

    @app.get("/v1/jobs/{job_id}/mock-outputs/{path:path}", response_class=FileResponse)
    def mock_output(job_id: JobId, path: str, me: Annotated[Identity, me_of(
            "GET", "/v1/jobs/{job_id}/mock-outputs/{path:path}")],
            run: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> FileResponse:
        """An output file of a mock run (mock content: the lab's to take)."""
        return FileResponse(jobs.mock_output(mock_run(job_id, run, me), path, me))

    @app.post("/v1/jobs/{job_id}/run", status_code=202)
    def run_job(job_id: JobId, body: RunBody,
                me: Annotated[Identity, me_of("POST", "/v1/jobs/{job_id}/run")]) -> dict[str, Any]:
        """Queue a run: ``mock`` any time, ``real`` for an approved job."""
        return jobs.start_run(job_id, body.kind, by=me).as_dict()

    @app.post("/v1/jobs/{job_id}/withdraw")
    def withdraw_job(job_id: JobId, me: Annotated[Identity, me_of(
            "POST", "/v1/jobs/{job_id}/withdraw")]) -> dict[str, Any]:
        """The lab withdraws its job."""
        return jobs.withdraw(job_id, me).as_dict()

    @app.post("/v1/jobs/{job_id}/start-review")
    def start_job_review(job_id: JobId, me: Annotated[Identity, me_of(
            "POST", "/v1/jobs/{job_id}/start-review")]) -> dict[str, Any]:
        """A reviewer takes up a job (once its mock run succeeded)."""
        return jobs.start_review(job_id, me).as_dict()

    @app.post("/v1/jobs/{job_id}/request-changes")
    def job_changes(job_id: JobId, body: ReasonBody, me: Annotated[Identity, me_of(
            "POST", "/v1/jobs/{job_id}/request-changes")]) -> dict[str, Any]:
        """Send the job back, saying what to change (a new version answers)."""
        return jobs.request_changes(job_id, me, body.reason).as_dict()

    @app.post("/v1/jobs/{job_id}/reject")
    def reject_job(job_id: JobId, body: ReasonBody, me: Annotated[Identity, me_of(
            "POST", "/v1/jobs/{job_id}/reject")]) -> dict[str, Any]:
        """Reject the job, saying why."""
        return jobs.reject(job_id, me, body.reason).as_dict()

    @app.post("/v1/jobs/{job_id}/approval")
    def job_approval(job_id: JobId, me: Annotated[Identity, me_of(
            "POST", "/v1/jobs/{job_id}/approval")]) -> dict[str, Any]:
        """Step one of approving: a one-time confirmation code."""
        return {"job": job_id, "code": jobs.prepare_approval(job_id, me)}

    @app.post("/v1/jobs/{job_id}/approval/confirm")
    def confirm_job(job_id: JobId, body: CodeBody, me: Annotated[Identity, me_of(
            "POST", "/v1/jobs/{job_id}/approval/confirm")]) -> dict[str, Any]:
        """Step two: the approval; the last one queues the run on real data."""
        return jobs.confirm_approval(job_id, me, body.code).as_dict()

    return jobs
