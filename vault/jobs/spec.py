"""What a lab submits as a job, and the job's identity.

A job is its **code** (a directory or one file; regular files only), an **entry point**
(``module:function``, called with the input and output directories, or a script path,
run with them as arguments), **requirements** from the vault's offer
(:func:`vault.jobs.offer.offer`, exact ``name==version`` pins), its **input** (a
dataset release the lab holds a grant for: the job sees what the grant reaches), its
declared **outputs** (glob patterns with a type) and its **limits**
(:class:`~vault.jobs.sandbox.JobLimits`).

Its identity, :meth:`JobSpec.sha256`, is the SHA-256 of a canonical JSON of all of that
(the code as the SHA-256 of each file): changing any of it makes another job, which
needs its own review.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import JobError
from .sandbox import JobLimits

__all__ = [
    "MAX_CODE_BYTES", "MAX_CODE_FILES", "OUTPUT_TYPES", "JobError", "JobSpec", "OutputDecl",
    "check_code", "check_code_path", "code_digest", "read_code",
]

MAX_CODE_BYTES = 8 << 20
MAX_CODE_FILES = 500
OUTPUT_TYPES: dict[str, tuple[str, ...]] = {
    "json": (".json",), "csv": (".csv",), "png": (".png",), "safetensors": (".safetensors",)}
"""The output types a job may declare, with the file name endings each allows."""
_PART = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_SKIP_DIRS = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def check_code_path(path: str, what: str = "code file") -> str:
    """``path`` if it is a relative POSIX path of ``[A-Za-z0-9._-]`` parts, else JobError."""
    parts = path.split("/") if isinstance(path, str) and 0 < len(path) <= 512 else [""]
    if any(p in ("", ".", "..") or not set(p) <= _PART for p in parts):
        raise JobError(f"{what} {path!r}: a relative path of [A-Za-z0-9._-] parts, no '.' or '..'")
    return path


def read_code(path: str | Path) -> dict[str, bytes]:
    """The job's code from a directory (every regular file below it, caches left out) or
    one file: ``{relative path: bytes}``. JobError on a symlink, a special file, a name
    outside ``[A-Za-z0-9._-]``, more than :data:`MAX_CODE_FILES` files or
    :data:`MAX_CODE_BYTES` bytes."""
    base = Path(path)
    if base.is_file():
        files = {check_code_path(base.name): base.read_bytes()}
    elif base.is_dir():
        files = {}
        for root, dirs, names in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            for name in sorted(names):
                full = Path(root) / name
                if name.endswith(".pyc"):
                    continue
                mode = full.lstat().st_mode
                if not stat.S_ISREG(mode):
                    raise JobError(f"{full}: only regular files are job code (a symlink or a "
                                   "special file)")
                files[check_code_path(full.relative_to(base).as_posix())] = full.read_bytes()
                if len(files) > MAX_CODE_FILES:
                    raise JobError(f"{base}: more than {MAX_CODE_FILES} files of code")
            for d in dirs:
                if (Path(root) / d).is_symlink():
                    raise JobError(f"{Path(root) / d}: a symlinked directory in the job's code")
    else:
        raise JobError(f"{base}: no such file or directory (the job's code)")
    _check_size(files, str(base))
    return files


def check_code(files: dict[str, bytes], where: str = "the job") -> dict[str, bytes]:
    """``files`` if every path is a plain relative path and the code is within
    :data:`MAX_CODE_FILES` and :data:`MAX_CODE_BYTES`; JobError otherwise."""
    for path, data in files.items():
        check_code_path(path)
        if not isinstance(data, bytes):
            raise JobError(f"code file {path!r} of {where}: bytes expected")
    _check_size(files, where)
    return files


def _check_size(files: dict[str, bytes], where: str) -> None:
    total = sum(len(b) for b in files.values())
    if not files:
        raise JobError(f"{where}: the job has no code")
    if total > MAX_CODE_BYTES or len(files) > MAX_CODE_FILES:
        raise JobError(f"{where}: {len(files)} files, {total} bytes of code; at most "
                       f"{MAX_CODE_FILES} files and {MAX_CODE_BYTES} bytes")


def code_digest(files: dict[str, bytes]) -> dict[str, str]:
    """``{path: sha256 hex}``, sorted by path."""
    return {p: hashlib.sha256(files[p]).hexdigest() for p in sorted(files)}


@dataclass(frozen=True)
class OutputDecl:
    """A declared output: a glob over paths in the output directory, and its type."""

    pattern: str
    type: str

    def __post_init__(self) -> None:
        check_code_path(self.pattern.replace("*", "x").replace("?", "x"), "output pattern")
        if self.type not in OUTPUT_TYPES:
            raise JobError(f"output {self.pattern!r}: type {self.type!r} is not one of "
                           f"{sorted(OUTPUT_TYPES)}")
        if not self.pattern.endswith(OUTPUT_TYPES[self.type]):
            raise JobError(f"output {self.pattern!r} of type {self.type}: the name must end in "
                           f"{' or '.join(OUTPUT_TYPES[self.type])}")

    def matches(self, name: str) -> bool:
        """Whether an output file's relative path is this declaration's."""
        return fnmatch.fnmatchcase(name, self.pattern) and name.count("/") == self.pattern.count("/")

    def as_dict(self) -> dict[str, str]:
        """JSON-able."""
        return {"pattern": self.pattern, "type": self.type}


@dataclass(frozen=True)
class JobSpec:
    """A job as submitted (see the module's note)."""

    name: str
    entry: str
    requirements: tuple[str, ...]
    dataset: str
    release: int
    outputs: tuple[OutputDecl, ...]
    limits: JobLimits
    code: dict[str, str]  # path -> sha256, as code_digest gives

    def check_entry(self) -> None:
        """JobError when the entry point names no file of the code."""
        if ":" in self.entry:
            module, _, func = self.entry.partition(":")
            parts = module.split(".")
            if not func.isidentifier() or not all(p.isidentifier() for p in parts):
                raise JobError(f"entry {self.entry!r}: 'module:function' with Python names")
            base = "/".join(parts)
            if f"{base}.py" not in self.code and f"{base}/__init__.py" not in self.code:
                raise JobError(f"entry {self.entry!r}: no {base}.py in the job's code "
                               f"(files: {sorted(self.code)[:20]})")
        elif check_code_path(self.entry, "entry script") not in self.code or not self.entry.endswith(".py"):
            raise JobError(f"entry {self.entry!r}: not a .py file of the job's code "
                           f"(files: {sorted(self.code)[:20]})")
        if not self.outputs:
            raise JobError(f"job {self.name!r} declares no outputs; a job without outputs gives "
                           "nothing back")

    def output_type(self, name: str) -> str | None:
        """The declared type of an output file, None when no declaration matches."""
        return next((o.type for o in self.outputs if o.matches(name)), None)

    def as_dict(self) -> dict[str, Any]:
        """The canonical form (what :meth:`sha256` hashes)."""
        return {"name": self.name, "entry": self.entry, "requirements": sorted(self.requirements),
                "inputs": {"dataset": self.dataset, "release": self.release},
                "outputs": [o.as_dict() for o in self.outputs], "limits": self.limits.as_dict(),
                "code": dict(sorted(self.code.items()))}

    def sha256(self) -> str:
        """The job's identity."""
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobSpec:
        """From :meth:`as_dict`."""
        try:
            return cls(name=d["name"], entry=d["entry"], requirements=tuple(d["requirements"]),
                       dataset=d["inputs"]["dataset"], release=int(d["inputs"]["release"]),
                       outputs=tuple(OutputDecl(o["pattern"], o["type"]) for o in d["outputs"]),
                       limits=JobLimits.from_dict(d["limits"]), code=dict(d["code"]))
        except (KeyError, TypeError) as exc:
            raise JobError(f"a job spec without {exc}") from exc
