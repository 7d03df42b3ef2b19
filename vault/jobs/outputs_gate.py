"""What the jobs module hands to output review, and the output gate as output review calls
it: :class:`FinishedRun` (a finished real-data run and its files), :class:`GateResult` (the
gate's verdict and findings on one file) and :func:`gate_with_index` (:mod:`vault.gate`
against an index of exactly the inputs the job read)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VaultError

__all__ = ["FinishedRun", "GateFn", "GateResult", "gate_with_index"]


@dataclass(frozen=True)
class FinishedRun:
    """A finished real-data run of a job, as the jobs module hands it over: which job and
    run, on which data, for which lab, by whom; ``files`` maps each output's name as the
    lab will see it (a relative POSIX path, e.g. ``metrics.json``, ``logs/stdout.log``) to
    the file the run wrote; ``inputs`` is the decrypted input release the job read (the
    gate checks the outputs against it); ``declared`` the type the job declared for an
    output (``json``, ``csv``, ``png``, ``safetensors``), which the gate holds it to."""

    job_id: int
    run_id: int
    dataset: str
    release: int
    lab: str
    submitter: str
    files: Mapping[str, Path]
    inputs: Path | None = None
    episodes: tuple[int, ...] | None = None
    streams: tuple[str, ...] | None = None
    declared: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one file (``pass`` or ``block``) and its findings, each a
    JSON-able dict (what was found, where in the output, which input it matches), and the
    sha256 of the bytes it checked, which the stored file must have."""

    verdict: str
    findings: tuple[dict[str, Any], ...] = field(default=())
    sha256: str | None = None  # of the bytes the gate read (None: the gate does not say)


GateFn = Callable[[FinishedRun, Mapping[str, Path]], Mapping[str, GateResult]]
"""Checks a run's files (name -> path): a :class:`GateResult` for every name."""


def gate_with_index(cache_dir: Path) -> GateFn:
    """The output gate of :mod:`vault.gate`: an index of the run's inputs (built once per
    input release and kept under ``cache_dir``), then every file checked against it."""

    def run_gate(run: FinishedRun, files: Mapping[str, Path]) -> Mapping[str, GateResult]:
        try:
            from vault.gate import InputIndex, check
        except ImportError as exc:
            raise VaultError(f"job {run.job_id} run {run.run_id}: the output gate (vault.gate) "
                             f"is not available ({exc}); no output is registered unchecked") from exc
        if run.inputs is None:
            raise VaultError(f"job {run.job_id} run {run.run_id}: no inputs given; the gate "
                             "checks outputs against the inputs the job read")
        index = InputIndex.cached(run.inputs, cache_dir)
        names: dict[str | Path, str] = {path: name for name, path in files.items()}
        declared: dict[str | Path, str] = {files[n]: kind for n, kind in run.declared.items()
                                           if n in files}
        doc = check(list(names), index, names=names, declared=declared).to_json()
        # a finding about the whole run (a cap of all outputs together) is every file's
        run_wide = [dict(f) | {"scope": "run"} for f in doc.get("run_findings", [])]
        run_blocks = any(f.get("severity") == "block" for f in run_wide)
        out = {}
        for fv in doc["files"]:
            verdict = "block" if run_blocks else str(fv["verdict"])
            out[str(fv["name"])] = GateResult(verdict, tuple(
                [dict(f) for f in fv.get("findings", [])] + run_wide), fv.get("sha256"))
        return out

    return run_gate
