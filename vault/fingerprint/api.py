"""The fingerprinted-export routes of the vault's HTTP API, under its one authorization
dependency (:func:`vault.api.require`, through ``vault.api.AUTH``; their scopes are rows of
``vault.api.ROUTE_SCOPES``). :func:`add_routes` is called by ``vault.api.create_app``.

* ``GET  /v1/datasets/{dataset}/exportable`` (catalog:read): the dataset's export policy;
* ``PUT  /v1/datasets/{dataset}/exportable`` (catalog:write): a provider of the dataset's
  provider, or an admin, sets it;
* ``POST /v1/datasets/{dataset}/releases/{version}/export`` (pull): the caller's lab's
  fingerprinted copy, made on the first call (under the lab's live grant), with its files;
* ``GET  /v1/datasets/{dataset}/releases/{version}/export/files/{path:path}`` (pull): a file
  of that copy (a live grant still needed; each pull an audit entry).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from ..api import AUTH, Version, _name, _path
from ..identities import Identity
from ..service import Vault
from .service import Fingerprints

__all__ = ["ExportBody", "PolicyBody", "add_routes"]

_LAB = Annotated[str | None, Query(max_length=64, description="the lab, for a member of several")]


class PolicyBody(BaseModel):
    """A dataset's export policy."""

    exportable: bool = False


class ExportBody(BaseModel):
    """Which lab the copy is for (a member of several labs names it)."""

    lab: str | None = Field(None, max_length=64)


def add_routes(app: FastAPI, vault: Vault) -> Fingerprints:
    """Add the routes to ``app`` (the vault's API); returns their :class:`Fingerprints`."""
    fp = Fingerprints(vault)

    @app.get("/v1/datasets/{dataset}/exportable")
    def policy(dataset: str, me: Annotated[Identity, AUTH[(
            "GET", "/v1/datasets/{dataset}/exportable")]]) -> dict[str, Any]:
        """Whether the dataset's provider lets it be exported (fingerprinted)."""
        return fp.policy(_name(dataset)).as_dict()

    @app.put("/v1/datasets/{dataset}/exportable")
    def set_policy(dataset: str, body: PolicyBody, me: Annotated[Identity, AUTH[(
            "PUT", "/v1/datasets/{dataset}/exportable")]]) -> dict[str, Any]:
        """Mark the dataset exportable or not (its provider, an admin)."""
        return fp.set_exportable(_name(dataset), body.exportable, me).as_dict()

    @app.post("/v1/datasets/{dataset}/releases/{version}/export", status_code=201)
    def export(dataset: str, version: Version, body: ExportBody, me: Annotated[Identity, AUTH[(
            "POST", "/v1/datasets/{dataset}/releases/{version}/export")]]) -> dict[str, Any]:
        """The caller's lab's fingerprinted copy of the release (made once per grant) and
        its files."""
        lab = None if body.lab is None else _name(body.lab, "lab")
        fp.export(_name(dataset), version, by=me, lab=lab)
        info, files = fp.export_for(me, dataset, version, lab)
        return info.as_dict() | {"files": files}

    @app.get("/v1/datasets/{dataset}/releases/{version}/export/files/{path:path}",
             response_class=Response)
    def export_file(dataset: str, version: Version, path: str, me: Annotated[
            Identity, AUTH[("GET", "/v1/datasets/{dataset}/releases/{version}/export/files/"
                                   "{path:path}")]], lab: _LAB = None) -> Response:
        """A file of the caller's lab's fingerprinted copy."""
        reader = fp.open_export_file(me, _name(dataset), version, _path(path),
                                     None if lab is None else _name(lab, "lab"))

        def body() -> Any:
            try:
                yield from (bytes(p) for p in reader.iter_range(0, reader.size))
            finally:
                reader.close()

        return StreamingResponse(body(), media_type="application/octet-stream",
                                 headers={"Content-Length": str(reader.size)})

    return fp
