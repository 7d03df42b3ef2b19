"""The Python client of output review: :class:`OutputsClient`, a
:class:`~vault.client.VaultClient` with the routes of :mod:`vault.jobs.outputs_api`."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

from ..client import VaultClient
from ..errors import TamperError

__all__ = ["OutputsClient"]


class OutputsClient(VaultClient):
    """A :class:`~vault.client.VaultClient` that also speaks the output review routes (its
    token says who acts)."""

    def _post(self, output_id: int, action: str, body: Any = None) -> dict[str, Any]:
        out: dict[str, Any] = self._json("POST", f"/v1/outputs/{int(output_id)}/{action}",
                                         {} if body is None else body)
        return out

    def output_sets(self, *, job: int | None = None, state: str | None = None,
                    waiting: bool = False) -> list[dict[str, Any]]:
        """The output sets the caller may see (``waiting``: those waiting for its votes)."""
        query = "&".join(f"{k}={quote(str(v))}" for k, v in (
            ("job", job), ("state", state), ("waiting", "true" if waiting else None))
            if v is not None)
        out: list[dict[str, Any]] = self._json("GET", "/v1/outputs" + (f"?{query}" if query else ""))
        return out

    def output_set(self, output_id: int) -> dict[str, Any]:
        """One output set."""
        out: dict[str, Any] = self._json("GET", f"/v1/outputs/{int(output_id)}")
        return out

    def submit(self, output_id: int) -> dict[str, Any]:
        """The lab sends the set to its reviewers."""
        return self._post(output_id, "submit")

    def withdraw(self, output_id: int, file: str | None = None) -> dict[str, Any]:
        """The lab withdraws the set, or one file of it."""
        return self._post(output_id, "withdraw", {"file": file})

    def vote(self, output_id: int, file: str, vote: str, comment: str = "") -> dict[str, Any]:
        """A reviewer's vote on one file (approve, changes_requested, reject)."""
        return self._post(output_id, "votes", {"file": file, "vote": vote, "comment": comment})

    def return_to_lab(self, output_id: int, reason: str) -> dict[str, Any]:
        """A reviewer returns the set to the lab."""
        return self._post(output_id, "return", {"reason": reason})

    def reject(self, output_id: int, reason: str) -> dict[str, Any]:
        """A reviewer rejects the set (final)."""
        return self._post(output_id, "reject", {"reason": reason})

    def prepare_release(self, output_id: int) -> str:
        """Step one of a release: the one-time code."""
        return str(self._post(output_id, "release")["code"])

    def confirm_release(self, output_id: int, code: str) -> dict[str, Any]:
        """Step two: the release."""
        return self._post(output_id, "release/confirm", {"code": code})

    def read_for_review(self, output_id: int, file: str) -> bytes:
        """A file's content, for a reviewer."""
        return self._call("GET", f"/v1/outputs/{int(output_id)}/review/"
                                 f"{quote(file, safe='/')}").content

    def download(self, output_id: int, file: str) -> bytes:
        """A released file, checked against the sha256 the vault released
        (:class:`~vault.errors.TamperError` when it differs)."""
        resp = self._call("GET", f"/v1/outputs/{int(output_id)}/files/{quote(file, safe='/')}")
        want = resp.headers.get("X-Content-SHA256", "")
        got = hashlib.sha256(resp.content).hexdigest()
        if got != want:
            raise TamperError(f"output set {output_id} file {file!r}: downloaded sha256 {got}, the "
                              f"vault released {want or 'no hash'}; not kept")
        return resp.content
