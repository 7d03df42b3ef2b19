"""The vault's HTTP API (FastAPI): catalog, mock releases, requests, reviews, grants,
pulls with HTTP Range, and the audit log.

Authorization lives in ONE dependency, :func:`require`: it turns the bearer token into an
:class:`~vault.identities.Identity` (401 when the token is missing, unknown, expired or
revoked) and checks the scope the route declares (403 without it); each route declares
its scope as data (``dependencies``/``Depends(require("pull"))``). The route table
:data:`ROUTE_SCOPES` lists them; tests walk the app's routes against it. Grants, roles and
review rules are checked by the service and the review workflow (403 when refused).

The app makes no outbound connection: it only answers.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from .catalog import NAME_PATTERN, DatasetDescription, ReleaseDescription
from .db import (
    AuthenticationError,
    CatalogError,
    Conflict,
    Forbidden,
    NotFound,
    ReviewError,
    TransitionError,
)
from .errors import TamperError, VaultError
from .identities import Identity
from .jobs.api import JOB_ROUTE_SCOPES, add_job_routes
from .review import UNCHANGED, RequestView
from .service import Vault, check_path

__all__ = ["AUTH", "PUBLIC_ROUTES", "ROUTE_SCOPES", "RequestId", "Version", "create_app", "parse_range",
           "require"]

PUBLIC_ROUTES = frozenset({"/health", "/openapi.json"})
"""The routes that answer without a token."""

ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/v1/datasets"): "catalog:read",
    ("GET", "/v1/datasets/{dataset}"): "catalog:read",
    ("GET", "/v1/datasets/{dataset}/releases/{version}/mock/{path:path}"): "catalog:read",
    ("POST", "/v1/requests"): "requests",
    ("GET", "/v1/requests"): "requests|reviews",
    ("GET", "/v1/requests/{request_id}"): "requests|reviews",
    ("POST", "/v1/requests/{request_id}/withdraw"): "requests",
    ("POST", "/v1/requests/{request_id}/resubmit"): "requests",
    ("POST", "/v1/requests/{request_id}/start-review"): "reviews",
    ("POST", "/v1/requests/{request_id}/request-changes"): "reviews",
    ("POST", "/v1/requests/{request_id}/reject"): "reviews",
    ("POST", "/v1/requests/{request_id}/approval"): "reviews",
    ("POST", "/v1/requests/{request_id}/approval/confirm"): "reviews",
    ("POST", "/v1/requests/{request_id}/revoke"): "reviews",
    ("GET", "/v1/grants"): "grants|pull",
    ("GET", "/v1/outputs"): "requests|reviews",  # clean-room output review: vault/jobs/outputs_api.py
    ("GET", "/v1/outputs/{output_id}"): "requests|reviews",
    ("POST", "/v1/outputs/{output_id}/submit"): "requests",
    ("POST", "/v1/outputs/{output_id}/withdraw"): "requests",
    ("POST", "/v1/outputs/{output_id}/votes"): "reviews",
    ("POST", "/v1/outputs/{output_id}/return"): "reviews",
    ("POST", "/v1/outputs/{output_id}/reject"): "reviews",
    ("POST", "/v1/outputs/{output_id}/release"): "reviews",
    ("POST", "/v1/outputs/{output_id}/release/confirm"): "reviews",
    ("GET", "/v1/outputs/{output_id}/review/{path:path}"): "reviews",
    ("GET", "/v1/outputs/{output_id}/files/{path:path}"): "pull",
    ("GET", "/v1/datasets/{dataset}/releases/{version}/files"): "pull",
    ("GET", "/v1/datasets/{dataset}/releases/{version}/files/{path:path}"): "pull",
    ("GET", "/v1/audit/checkpoint"): "audit",
    ("GET", "/v1/audit/entries"): "audit",
    ("GET", "/v1/datasets/{dataset}/exportable"): "catalog:read",  # vault.fingerprint.api
    ("PUT", "/v1/datasets/{dataset}/exportable"): "catalog:write",
    ("POST", "/v1/datasets/{dataset}/releases/{version}/export"): "pull",
    ("GET", "/v1/datasets/{dataset}/releases/{version}/export/files/{path:path}"): "pull",
}
"""(method, path) -> the scope the route needs (``a|b``: either)."""
ROUTE_SCOPES |= JOB_ROUTE_SCOPES  # the clean room's jobs (vault/jobs/api.py)

RequestId = Annotated[int, Path(ge=1, le=2**31 - 1, description="an access request's id")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="a release version")]

_BEARER = re.compile(r"Bearer ([A-Za-z0-9_\-]{1,200})")


class Problem(Exception):
    """An HTTP error with a status and a message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def require(scope: str) -> Callable[..., Identity]:
    """The dependency of a route that needs ``scope`` (``"a|b"``: either): the caller's
    identity, or 401 (no valid token) / 403 (the token lacks the scope)."""
    wanted = tuple(scope.split("|"))

    def dependency(request: Request,
                   authorization: Annotated[str | None, Header()] = None) -> Identity:
        vault: Vault = request.app.state.vault
        match = _BEARER.fullmatch(authorization or "")
        if match is None:
            raise Problem(401, "a bearer token is needed (Authorization: Bearer dfv1_...)",
                          {"WWW-Authenticate": 'Bearer realm="demofab-vault"'})
        try:
            who = vault.identities.authenticate(match.group(1))
        except AuthenticationError as exc:
            raise Problem(401, str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                          ) from exc
        if not any(who.has_scope(s) for s in wanted):
            raise Problem(403, f"token {who.token_id} of {who.name!r} does not carry the scope "
                               f"{' or '.join(repr(s) for s in wanted)} this needs")
        return who

    dependency.__name__ = f"require_{'_or_'.join(s.replace(':', '_') for s in wanted)}"
    return dependency


AUTH: dict[tuple[str, str], Any] = {route: Depends(require(scope))
                                    for route, scope in ROUTE_SCOPES.items()}
"""The dependency of each protected route (module level, so that the routes' annotations
resolve to it)."""


def _name(value: str, kind: str = "dataset") -> str:
    if not NAME_PATTERN.match(value):
        raise Problem(400, f"{kind} name {value!r} is not valid")
    return value


def _path(value: str) -> str:
    try:
        return check_path(value)
    except VaultError as exc:
        raise Problem(400, str(exc)) from exc


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, stop)`` of a single ``bytes=`` range against ``size``; None without a
    header; Problem 416 (unsatisfiable) or 400 (malformed, several ranges)."""
    if header is None:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if m is None or (not m.group(1) and not m.group(2)):
        raise Problem(400, f"Range {header!r}: one range 'bytes=START-END', 'bytes=START-' or "
                           f"'bytes=-SUFFIX' is served")
    first, last = m.group(1), m.group(2)
    unsat = Problem(416, f"Range {header!r} is outside the file's {size} bytes",
                    {"Content-Range": f"bytes */{size}"})
    if not first:
        n = int(last)
        if n == 0 or size == 0:
            raise unsat
        return max(size - n, 0), size
    start = int(first)
    stop = size if not last else int(last) + 1
    if last and int(last) < start:
        raise Problem(400, f"Range {header!r}: the end is before the start")
    if start >= size:
        raise unsat
    return start, min(stop, size)


# -- bodies ----------------------------------------------------------------------------------

class RequestBody(BaseModel):
    """A lab's access request."""

    dataset: str = Field(max_length=64)
    release: int = Field(ge=1, le=2**31)
    episodes: list[Annotated[int, Field(ge=0, le=2**31)]] | None = Field(None, max_length=100000)
    streams: list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=1000)
    purpose: str = Field(max_length=10000)
    lab: str | None = Field(None, max_length=64)
    duration_days: int = Field(30, ge=1, le=366)


class ResubmitBody(BaseModel):
    """A lab's answer to changes requested: the fields it changes (``episodes`` or
    ``streams`` given as null ask for all; a field left out stays as it was)."""

    purpose: str | None = Field(None, max_length=10000)
    episodes: list[Annotated[int, Field(ge=0, le=2**31)]] | None = Field(None, max_length=100000)
    streams: list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=1000)
    duration_days: int | None = Field(None, ge=1, le=366)


class ReasonBody(BaseModel):
    """A reviewer's reason."""

    reason: str = Field(max_length=10000)


class CodeBody(BaseModel):
    """An approval's confirmation code."""

    code: str = Field(max_length=64)


def _dataset_json(d: DatasetDescription) -> dict[str, Any]:
    return {"name": d.name, "provider": d.provider, "title": d.title, "summary": d.summary,
            "required_approvals": d.required_approvals, "episode_count": d.episode_count,
            "releases": [_release_json(r) for r in d.releases]}


def _release_json(r: ReleaseDescription) -> dict[str, Any]:
    return {"name": r.name, "version": r.version, "release_sha256": r.release_sha256,
            "created_at": r.created_at, "episode_count": r.episode_count,
            "duration_s": r.duration_s, "streams": [s.as_dict() for s in r.streams],
            "label_schema": r.label_schema}


def _request_json(r: RequestView) -> dict[str, Any]:
    return {"id": r.id, "dataset": r.dataset, "release": r.release, "lab": r.lab,
            "requester": r.requester, "purpose": r.purpose,
            "episodes": None if r.episodes is None else list(r.episodes),
            "streams": None if r.streams is None else list(r.streams),
            "duration_s": int(r.duration.total_seconds()), "state": r.state.value,
            "round": r.round, "required_approvals": r.required_approvals,
            "approvals": list(r.approvals),
            "decisions": [{"reviewer": d.reviewer, "round": d.round, "decision": d.decision,
                           "reason": d.reason, "created_at": d.created_at.isoformat()}
                          for d in r.decisions],
            "reason": r.reason, "grant_id": r.grant_id, "created_at": r.created_at.isoformat(),
            "updated_at": r.updated_at.isoformat()}


# -- the app ---------------------------------------------------------------------------------

def create_app(vault: Vault) -> FastAPI:
    """The HTTP API over an open :class:`~vault.service.Vault`."""
    app = FastAPI(title="DemoFab vault", version="1",
                  description="Catalog, review before viewing, grants and audited pulls.")
    app.state.vault = vault

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(CatalogError)
    async def _catalog(_: Request, exc: CatalogError) -> JSONResponse:
        status = (404 if isinstance(exc, NotFound) else 403 if isinstance(exc, Forbidden)
                  else 401 if isinstance(exc, AuthenticationError)
                  else 409 if isinstance(exc, TransitionError | Conflict)
                  else 400 if isinstance(exc, ReviewError) else 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(VaultError)
    async def _vault(_: Request, exc: VaultError) -> JSONResponse:
        status = 500 if isinstance(exc, TamperError) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness (no token)."""
        return {"status": "ok"}

    @app.get("/v1/datasets")
    def datasets(me: Annotated[Identity, AUTH[("GET", "/v1/datasets")]]) -> list[dict[str, Any]]:
        """Every dataset's description (streams, rates, shapes, episode count, labels)."""
        return [_dataset_json(d) for d in vault.catalog.list_datasets()]

    @app.get("/v1/datasets/{dataset}")
    def dataset(dataset: str, me: Annotated[Identity, AUTH[("GET", "/v1/datasets/{dataset}")]]
                ) -> dict[str, Any]:
        """One dataset's description."""
        return _dataset_json(vault.catalog.describe_dataset(_name(dataset)))

    @app.get("/v1/datasets/{dataset}/releases/{version}/mock/{path:path}",
             response_class=Response)
    def mock_file(dataset: str, version: Version, path: str, request: Request,
                  me: Annotated[Identity, AUTH[(
                      "GET", "/v1/datasets/{dataset}/releases/{version}/mock/{path:path}")]],
                  ) -> Response:
        """A file of the release's mock release (simulated content, no grant needed)."""
        reader = vault.open_mock(me, _name(dataset), version, _path(path))
        return _stream(reader.size, lambda a, b: reader.iter_range(a, b), reader.close,
                       request.headers.get("range"))

    @app.post("/v1/requests", status_code=201)
    def submit(body: RequestBody, me: Annotated[Identity, AUTH[("POST", "/v1/requests")]]
               ) -> dict[str, Any]:
        """Request access to a release (or some of its episodes or streams)."""
        view = vault.review.submit(me, _name(body.dataset), body.release, purpose=body.purpose,
                                   lab=body.lab, episodes=body.episodes, streams=body.streams,
                                   duration=timedelta(days=body.duration_days))
        return _request_json(view)

    @app.get("/v1/requests")
    def requests(me: Annotated[Identity, AUTH[("GET", "/v1/requests")]]) -> list[dict[str, Any]]:
        """The requests of the caller's labs, and those waiting for the caller's review."""
        seen: dict[int, RequestView] = {}
        if me.has_scope("requests"):
            for lab in sorted(vault.identities.get(me.name).labs):
                seen.update((r.id, r) for r in vault.review.list_requests(lab=lab))
        if me.has_scope("reviews"):
            seen.update((r.id, r) for r in vault.review.pending(me))
        return [_request_json(seen[k]) for k in sorted(seen)]

    def _visible(request_id: RequestId, me: Identity) -> RequestView:
        view = vault.review.get(request_id)
        if not vault.sees_request(me, view.dataset, view.lab):
            raise Problem(403, f"{me.name!r} may not see request {request_id}")
        return view

    @app.get("/v1/requests/{request_id}")
    def get_request(request_id: RequestId,
                    me: Annotated[Identity, AUTH[("GET", "/v1/requests/{request_id}")]]) -> dict[str, Any]:
        """One request (its lab's members, the dataset's reviewers and provider)."""
        return _request_json(_visible(request_id, me))

    @app.post("/v1/requests/{request_id}/withdraw")
    def withdraw(request_id: RequestId, me: Annotated[Identity, AUTH[(
            "POST", "/v1/requests/{request_id}/withdraw")]]) -> dict[str, Any]:
        """The lab withdraws its request."""
        return _request_json(vault.review.withdraw(request_id, me))

    @app.post("/v1/requests/{request_id}/resubmit")
    def resubmit(request_id: RequestId, body: ResubmitBody, me: Annotated[Identity, AUTH[(
            "POST", "/v1/requests/{request_id}/resubmit")]]) -> dict[str, Any]:
        """The lab answers a changes-requested decision: back to submitted, a new round."""
        given = body.model_fields_set
        return _request_json(vault.review.resubmit(
            request_id, me, purpose=body.purpose,
            episodes=body.episodes if "episodes" in given else UNCHANGED,
            streams=body.streams if "streams" in given else UNCHANGED,
            duration=None if body.duration_days is None else timedelta(days=body.duration_days)))

    @app.post("/v1/requests/{request_id}/start-review")
    def start_review(request_id: RequestId, me: Annotated[Identity, AUTH[(
            "POST", "/v1/requests/{request_id}/start-review")]]) -> dict[str, Any]:
        """A reviewer takes up a submitted request."""
        return _request_json(vault.review.start_review(request_id, me))

    @app.post("/v1/requests/{request_id}/request-changes")
    def request_changes(request_id: RequestId, body: ReasonBody, me: Annotated[Identity, AUTH[(
            "POST", "/v1/requests/{request_id}/request-changes")]]) -> dict[str, Any]:
        """A reviewer sends the request back, saying what to change."""
        return _request_json(vault.review.request_changes(request_id, me, body.reason))

    @app.post("/v1/requests/{request_id}/reject")
    def reject(request_id: RequestId, body: ReasonBody, me: Annotated[Identity, AUTH[(
            "POST", "/v1/requests/{request_id}/reject")]]) -> dict[str, Any]:
        """A reviewer rejects the request, saying why."""
        return _request_json(vault.review.reject(request_id, me, body.reason))

    @app.post("/v1/requests/{request_id}/approval")
    def approval(request_id: RequestId, me: Annotated[Identity, AUTH[(
            "POST", "/v1/requests/{request_id}/approval")]]) -> dict[str, Any]:
        """Step one of an approval: a one-time confirmation code."""
        return {"request": request_id, "code": vault.review.prepare_approval(request_id, me)}

    @app.post("/v1/requests/{request_id}/approval/confirm")
    def confirm(request_id: RequestId, body: CodeBody, me: Annotated[Identity, AUTH[(
            "POST", "/v1/requests/{request_id}/approval/confirm")]]) -> dict[str, Any]:
        """Step two: the approval, recorded with the code."""
        return _request_json(vault.review.confirm_approval(request_id, me, body.code))

    @app.post("/v1/requests/{request_id}/revoke")
    def revoke(request_id: RequestId, body: ReasonBody, me: Annotated[Identity, AUTH[(
            "POST", "/v1/requests/{request_id}/revoke")]]) -> dict[str, Any]:
        """Revoke an approved request and its grant (effective on the next pull)."""
        return _request_json(vault.review.revoke(request_id, me, body.reason))

    @app.get("/v1/grants")
    def grants(me: Annotated[Identity, AUTH[("GET", "/v1/grants")]]) -> list[dict[str, Any]]:
        """The grants of the caller's labs."""
        labs = sorted(vault.identities.get(me.name).labs)
        return [g.as_dict() for lab in labs for g in vault.grants.list(lab=lab)]

    from .jobs.outputs_api import add_output_routes  # clean-room output review
    add_output_routes(app, vault)

    @app.get("/v1/datasets/{dataset}/releases/{version}/files")
    def files(dataset: str, version: Version, me: Annotated[Identity, AUTH[(
            "GET", "/v1/datasets/{dataset}/releases/{version}/files")]]) -> list[dict[str, Any]]:
        """The files of a release the caller may pull, with their sizes."""
        return [f.as_dict() for f in vault.list_files(me, _name(dataset), version)]

    @app.get("/v1/datasets/{dataset}/releases/{version}/files/{path:path}",
             response_class=Response)
    def pull(dataset: str, version: Version, path: str, request: Request, me: Annotated[Identity, AUTH[(
            "GET", "/v1/datasets/{dataset}/releases/{version}/files/{path:path}")]]) -> Response:
        """A release file's bytes, decrypted (HTTP Range: one range, 206)."""
        f = vault.open_file(me, _name(dataset), version, _path(path))
        try:
            return _stream(f.size, f.iter_range, f.close, request.headers.get("range"),
                           check=f.check_range)
        except BaseException:
            f.close()
            raise

    @app.get("/v1/audit/checkpoint", response_class=PlainTextResponse)
    def checkpoint(me: Annotated[Identity, AUTH[("GET", "/v1/audit/checkpoint")]]) -> PlainTextResponse:
        """The log's newest signed checkpoint (a C2SP signed note)."""
        return PlainTextResponse(vault.audit.checkpoint())

    @app.get("/v1/audit/entries")
    def entries(dataset: Annotated[str, Query(max_length=64)],
                me: Annotated[Identity, AUTH[("GET", "/v1/audit/entries")]]) -> list[dict[str, Any]]:
        """Every audit entry about ``dataset`` (its provider, auditors, admins)."""
        if not vault.audit_visible(me, _name(dataset)):
            raise Problem(403, f"{me.name!r} may not read the audit entries of {dataset!r}")
        return [e.as_dict() for e in vault.audit.show(dataset)]

    add_job_routes(app, vault)
    importlib.import_module("vault.fingerprint.api").add_routes(app, vault)
    return app


def _stream(size: int, read: Callable[[int, int], Iterator[bytes | memoryview]],
            close: Callable[[], None], range_header: str | None, *,
            check: Callable[[int, int], None] | None = None) -> Response:
    try:
        span = parse_range(range_header, size)
    except BaseException:
        close()
        raise
    start, stop = span if span is not None else (0, size)
    if check is not None:
        try:
            check(start, stop)
        except BaseException:
            close()
            raise
    pieces = read(start, stop)

    def body() -> Iterator[bytes]:
        try:
            for piece in pieces:
                yield bytes(piece)
        finally:
            close()

    headers = {"Accept-Ranges": "bytes", "Content-Length": str(stop - start)}
    if span is None:
        return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    return StreamingResponse(body(), status_code=206, media_type="application/octet-stream",
                             headers=headers)

