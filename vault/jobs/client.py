"""The Python client of clean-room jobs: :class:`JobsClient`, a
:class:`~vault.client.VaultClient` with the routes of :mod:`vault.jobs.api` (the token
says who acts: a lab member with ``jobs``, a reviewer with ``reviews``)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..client import VaultClient
from .errors import JobError
from .spec import read_code

__all__ = ["ENDED", "JobsClient"]

ENDED = frozenset({"succeeded", "failed", "cpu_limit", "memory_limit", "wall_limit",
                   "output_limit", "refused", "outputs_refused"})
"""The states a run ends in."""


class JobsClient(VaultClient):
    """A :class:`~vault.client.VaultClient` that also speaks the clean room's routes."""

    def _post(self, job_id: int, action: str, body: Any = None) -> dict[str, Any]:
        out: dict[str, Any] = self._json("POST", f"/v1/jobs/{int(job_id)}/{action}",
                                         {} if body is None else body)
        return out

    def offer(self) -> dict[str, Any]:
        """``{"requirements": ["numpy==...", ...], "maxima": {...}}``."""
        out: dict[str, Any] = self._json("GET", "/v1/jobs/offer")
        return out

    def submit_job(self, code: str | Path | Mapping[str, bytes], *, name: str, entry: str,
                   dataset: str, release: int, requirements: Iterable[str],
                   outputs: Iterable[tuple[str, str] | Mapping[str, str]],
                   limits: Mapping[str, float] | None = None, lab: str | None = None
                   ) -> dict[str, Any]:
        """Submit a job: ``code`` a directory, a file or ``{path: bytes}``; ``outputs``
        ``(pattern, type)`` pairs or ``{"pattern", "type"}``; ``limits`` any of
        ``cpu_s``, ``memory_bytes``, ``wall_s``, ``output_bytes``. Its mock run is queued
        (``runs[0]``)."""
        files = read_code(code) if isinstance(code, str | Path) else dict(code)
        body = {"name": name, "entry": entry, "dataset": dataset, "release": int(release),
                "requirements": list(requirements), "lab": lab,
                "outputs": [dict(o) if isinstance(o, Mapping) else {"pattern": o[0], "type": o[1]}
                            for o in outputs],
                "code": {p: base64.b64encode(b).decode() for p, b in files.items()}}
        if limits is not None:
            body["limits"] = dict(limits)
        out: dict[str, Any] = self._json("POST", "/v1/jobs", body)
        return out

    def job(self, job_id: int) -> dict[str, Any]:
        """One job version: its review state and its runs."""
        out: dict[str, Any] = self._json("GET", f"/v1/jobs/{int(job_id)}")
        return out

    def jobs(self) -> list[dict[str, Any]]:
        """The jobs of the caller's labs and those waiting for the caller's review."""
        out: list[dict[str, Any]] = self._json("GET", "/v1/jobs")
        return out

    def wait_run(self, job_id: int, *, kind: str | None = None, run_id: int | None = None,
                 timeout: float = 600.0, poll: float = 0.5) -> dict[str, Any]:
        """The newest run of the job (of ``kind``, or ``run_id``) once it has ended;
        JobError when none ends within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            runs = [r for r in self.job(job_id)["runs"]
                    if (kind is None or r["kind"] == kind) and (run_id is None or r["id"] == run_id)]
            if runs and runs[-1]["state"] in ENDED:
                last: dict[str, Any] = runs[-1]
                return last
            if time.monotonic() > deadline:
                raise JobError(f"job {job_id}: no {kind or ''} run ended within {timeout:g} s "
                               f"({[(r['id'], r['state']) for r in runs]})")
            time.sleep(poll)

    def logs(self, job_id: int, run: int | None = None) -> dict[str, Any]:
        """``{"run", "stdout", "stderr"}`` of a mock run (the newest by default)."""
        out: dict[str, Any] = self._json("GET", f"/v1/jobs/{int(job_id)}/logs"
                                                + ("" if run is None else f"?run={int(run)}"))
        return out

    def code(self, job_id: int, path: str) -> bytes:
        """One file of the job's code, as submitted."""
        return self._call("GET", f"/v1/jobs/{int(job_id)}/code/{quote(path, safe='/')}").content

    def mock_output(self, job_id: int, path: str, run: int | None = None) -> bytes:
        """An output file of a mock run (the newest by default)."""
        return self._call("GET", f"/v1/jobs/{int(job_id)}/mock-outputs/{quote(path, safe='/')}"
                                 + ("" if run is None else f"?run={int(run)}")).content

    def run(self, job_id: int, kind: str = "mock") -> dict[str, Any]:
        """Queue a run: ``mock``, or ``real`` for an approved job."""
        out: dict[str, Any] = self._call("POST", f"/v1/jobs/{int(job_id)}/run",
                                         json_body={"kind": kind}, ok=(202,)).json()
        return out

    def withdraw(self, job_id: int) -> dict[str, Any]:
        """The lab withdraws its job."""
        return self._post(job_id, "withdraw")

    def start_review(self, job_id: int) -> dict[str, Any]:
        """A reviewer takes up a job whose mock run succeeded."""
        return self._post(job_id, "start-review")

    def request_changes(self, job_id: int, reason: str) -> dict[str, Any]:
        """A reviewer sends the job back (a new version answers)."""
        return self._post(job_id, "request-changes", {"reason": reason})

    def reject(self, job_id: int, reason: str) -> dict[str, Any]:
        """A reviewer rejects the job."""
        return self._post(job_id, "reject", {"reason": reason})

    def prepare_approval(self, job_id: int) -> str:
        """Step one of approving: the one-time code."""
        return str(self._post(job_id, "approval")["code"])

    def confirm_approval(self, job_id: int, code: str) -> dict[str, Any]:
        """Step two: the approval (the last one queues the run on real data)."""
        return self._post(job_id, "approval/confirm", {"code": code})
