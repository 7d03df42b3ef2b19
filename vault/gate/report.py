"""What the gate found, for the reviewers: per file a verdict and findings with context.

A :class:`Finding` says what kind of problem it is, where in the output (``where``: byte
offset, CSV rows and column, PNG region, tensor, JSON path) and which input it matched
(``input``: stream, episode, row or rows, field and column). A :class:`GateReport` is JSON
(:meth:`GateReport.to_json`, :meth:`GateReport.from_json`) and text
(:meth:`GateReport.summary`), which ``demofab vault output list/review`` show."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import GateError

__all__ = ["FileVerdict", "Finding", "GateReport", "KINDS", "REPORT_FORMAT_VERSION"]

REPORT_FORMAT_VERSION = 1

#: finding kinds, with what each means (the reviewer's guide lists them too)
KINDS = {
    "type": "the content is not an allowed output type",
    "size": "a size cap of the file or of the run is exceeded",
    "structure": "the file is malformed or carries data outside its payload",
    "frame_copy": "the file is, or contains, the bytes of an input camera frame",
    "frame_image": "an image looks like an input camera frame (perceptual match)",
    "stream_window": "numbers in the file follow an input stream's values",
    "stream_dump": "a CSV has as many rows as an input stream or episode",
    "unreadable": "the file could not be read",
}


@dataclass(frozen=True)
class Finding:
    """One problem in one output file. ``severity`` is ``block`` or ``note``."""

    kind: str
    message: str
    severity: str = "block"
    where: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise GateError(f"finding kind {self.kind!r} unknown (kinds: {', '.join(KINDS)})")
        if self.severity not in ("block", "note"):
            raise GateError(f"finding severity {self.severity!r}: expected block or note")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "message": self.message,
                "where": self.where, "input": self.input}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Finding:
        return cls(kind=doc["kind"], message=doc["message"], severity=doc.get("severity", "block"),
                   where=dict(doc.get("where") or {}), input=dict(doc.get("input") or {}))


@dataclass
class FileVerdict:
    """The gate's verdict on one output file."""

    path: str
    name: str
    size: int
    sha256: str
    detected_type: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "block" if any(f.severity == "block" for f in self.findings) else "pass"

    @property
    def blocked(self) -> bool:
        return self.verdict == "block"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "size": self.size, "sha256": self.sha256,
                "detected_type": self.detected_type, "verdict": self.verdict,
                "findings": [f.to_json() for f in self.findings]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FileVerdict:
        return cls(path=doc["path"], name=doc["name"], size=int(doc["size"]), sha256=doc["sha256"],
                   detected_type=doc["detected_type"],
                   findings=[Finding.from_json(f) for f in doc.get("findings") or []])


@dataclass
class GateReport:
    """The gate's verdict on the outputs of one run, against one input index."""

    files: list[FileVerdict]
    index: dict[str, Any]                 # which release (name, version, sha256) and subset
    run_findings: list[Finding] = field(default_factory=list)  # caps of the whole run
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        blocked = any(f.blocked for f in self.files) or any(
            f.severity == "block" for f in self.run_findings)
        return "block" if blocked else "pass"

    @property
    def passed(self) -> list[FileVerdict]:
        return [f for f in self.files if not f.blocked]

    @property
    def blocked(self) -> list[FileVerdict]:
        return [f for f in self.files if f.blocked]

    def file(self, name: str) -> FileVerdict:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"no output named {name!r} in the gate report "
                       f"(outputs: {', '.join(f.name for f in self.files)})")

    def to_json(self) -> dict[str, Any]:
        return {"format": "demofab.gate_report", "format_version": REPORT_FORMAT_VERSION,
                "verdict": self.verdict, "index": self.index, "seconds": round(self.seconds, 4),
                "run_findings": [f.to_json() for f in self.run_findings],
                "files": [f.to_json() for f in self.files]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> GateReport:
        if doc.get("format") != "demofab.gate_report":
            raise GateError("not a gate report (format is not demofab.gate_report)")
        if doc.get("format_version") != REPORT_FORMAT_VERSION:
            raise GateError(f"gate report format_version {doc.get('format_version')!r} unknown "
                            f"(this vault reads {REPORT_FORMAT_VERSION})")
        return cls(files=[FileVerdict.from_json(f) for f in doc.get("files") or []],
                   index=dict(doc.get("index") or {}),
                   run_findings=[Finding.from_json(f) for f in doc.get("run_findings") or []],
                   seconds=float(doc.get("seconds", 0.0)))

    def summary(self) -> str:
        """The report for a person: one line per file, then one line per finding."""
        idx = self.index
        release = f"{idx.get('release', '?')} v{idx.get('version', '?')}"
        lines = [f"gate: {self.verdict.upper()} - {len(self.passed)} of {len(self.files)} output(s) "
                 f"pass, checked against {release} ({idx.get('frames', 0)} frames, "
                 f"{idx.get('columns', 0)} stream columns) in {self.seconds:.2f} s"]
        for f in self.run_findings:
            lines.append(f"  run: {f.severity}: {f.message}")
        for fv in self.files:
            lines.append(f"  {fv.verdict.upper():5} {fv.name} ({fv.detected_type}, {_size(fv.size)})")
            for f in fv.findings:
                lines.append(f"        {f.severity}: [{f.kind}] {f.message}")
        return "\n".join(lines)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    x = float(n)
    for unit in ("KiB", "MiB"):
        x /= 1024
        if x < 1024:
            return f"{x:.1f} {unit}"
    return f"{x / 1024:.1f} GiB"
