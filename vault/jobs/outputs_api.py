"""The HTTP routes of output review, under the vault's one authorization dependency
(:func:`vault.api.require`, through :data:`vault.api.AUTH`; their scopes are rows of
:data:`vault.api.ROUTE_SCOPES`, so a route missing there fails as the app is made).
:func:`add_output_routes` adds them to the app :func:`vault.api.create_app` makes.

The lab (scope ``requests``) submits and withdraws; the reviewers (scope ``reviews``) read,
vote, return, reject and release; the lab downloads released files (scope ``pull``), with
the released sha256 in ``X-Content-SHA256``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from ..api import AUTH, CodeBody, Problem, ReasonBody
from ..errors import VaultError
from ..identities import Identity
from ..service import Vault, check_path
from .outputs import Outputs

__all__ = ["add_output_routes"]

OutputId = Annotated[int, Path(ge=1, le=2**31 - 1, description="an output set's id")]


class VoteBody(BaseModel):
    """A reviewer's vote on one file."""

    file: str = Field(max_length=1024)
    vote: str = Field(max_length=32)
    comment: str = Field("", max_length=10000)


class WithdrawBody(BaseModel):
    """The lab withdraws a whole set (no ``file``) or one file of it."""

    file: str | None = Field(None, max_length=1024)


def _name(value: str) -> str:
    try:
        return check_path(value)
    except VaultError as exc:
        raise Problem(400, str(exc)) from exc


def add_output_routes(app: FastAPI, vault: Vault) -> Outputs:
    """Add the output review routes to ``app`` (over ``vault``); returns the
    :class:`~vault.jobs.outputs.Outputs` they use (also ``app.state.outputs``)."""
    outputs = Outputs(vault)
    app.state.outputs = outputs

    @app.get("/v1/outputs")
    def list_outputs(me: Annotated[Identity, AUTH[("GET", "/v1/outputs")]],
                     job: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
                     state: Annotated[str | None, Query(max_length=32)] = None,
                     waiting: bool = False) -> list[dict[str, Any]]:
        """The output sets the caller may see: its labs', and, once submitted, those of
        the datasets it reviews or provides (``waiting``: only those waiting for the
        caller's votes)."""
        return [v.as_dict() for v in outputs.list(me, job_id=job, state=state, waiting=waiting)]

    @app.get("/v1/outputs/{output_id}")
    def get_output(output_id: OutputId, me: Annotated[Identity, AUTH[(
            "GET", "/v1/outputs/{output_id}")]]) -> dict[str, Any]:
        """One output set: its files, what the gate found in each, the votes."""
        return outputs.get(output_id, me).as_dict()

    @app.post("/v1/outputs/{output_id}/submit")
    def submit(output_id: OutputId, me: Annotated[Identity, AUTH[(
            "POST", "/v1/outputs/{output_id}/submit")]]) -> dict[str, Any]:
        """The lab sends its outputs to the reviewers."""
        return outputs.submit(output_id, me).as_dict()

    @app.post("/v1/outputs/{output_id}/withdraw")
    def withdraw(output_id: OutputId, body: WithdrawBody, me: Annotated[Identity, AUTH[(
            "POST", "/v1/outputs/{output_id}/withdraw")]]) -> dict[str, Any]:
        """The lab withdraws the set, or one file of a pending or returned set."""
        name = None if body.file is None else _name(body.file)
        return outputs.withdraw(output_id, me, file=name).as_dict()

    @app.post("/v1/outputs/{output_id}/votes")
    def vote(output_id: OutputId, body: VoteBody, me: Annotated[Identity, AUTH[(
            "POST", "/v1/outputs/{output_id}/votes")]]) -> dict[str, Any]:
        """A reviewer's vote on one file's current content."""
        return outputs.vote(output_id, _name(body.file), me, body.vote, body.comment).as_dict()

    @app.post("/v1/outputs/{output_id}/return")
    def return_to_lab(output_id: OutputId, body: ReasonBody, me: Annotated[Identity, AUTH[(
            "POST", "/v1/outputs/{output_id}/return")]]) -> dict[str, Any]:
        """A reviewer returns the set to the lab, saying what to change."""
        return outputs.return_to_lab(output_id, me, body.reason).as_dict()

    @app.post("/v1/outputs/{output_id}/reject")
    def reject(output_id: OutputId, body: ReasonBody, me: Annotated[Identity, AUTH[(
            "POST", "/v1/outputs/{output_id}/reject")]]) -> dict[str, Any]:
        """A reviewer rejects the set, saying why (final)."""
        return outputs.reject(output_id, me, body.reason).as_dict()

    @app.post("/v1/outputs/{output_id}/release")
    def prepare_release(output_id: OutputId, me: Annotated[Identity, AUTH[(
            "POST", "/v1/outputs/{output_id}/release")]]) -> dict[str, Any]:
        """Step one of a release: a one-time code for the approved contents."""
        return {"output_set": output_id, "code": outputs.prepare_release(output_id, me)}

    @app.post("/v1/outputs/{output_id}/release/confirm")
    def confirm_release(output_id: OutputId, body: CodeBody, me: Annotated[Identity, AUTH[(
            "POST", "/v1/outputs/{output_id}/release/confirm")]]) -> dict[str, Any]:
        """Step two: the release, with the code (every stored file checked first)."""
        return outputs.confirm_release(output_id, me, body.code).as_dict()

    @app.get("/v1/outputs/{output_id}/review/{path:path}", response_class=Response)
    def review_file(output_id: OutputId, path: str, me: Annotated[Identity, AUTH[(
            "GET", "/v1/outputs/{output_id}/review/{path:path}")]]) -> Response:
        """A file's current content, for a reviewer of the dataset (audited)."""
        data = outputs.read_for_review(output_id, _name(path), me)
        return Response(data, media_type="application/octet-stream")

    @app.get("/v1/outputs/{output_id}/files/{path:path}", response_class=Response)
    def download(output_id: OutputId, path: str, me: Annotated[Identity, AUTH[(
            "GET", "/v1/outputs/{output_id}/files/{path:path}")]]) -> Response:
        """A released file, for a member of the job's lab (audited; refusals too)."""
        view, chunks = outputs.open_download(output_id, _name(path), me)
        return StreamingResponse(chunks, media_type="application/octet-stream", headers={
            "Content-Length": str(view.size), "X-Content-SHA256": view.sha256})

    return outputs
