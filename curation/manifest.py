"""The manifest of a release version: sha256 and size of every file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import ReleaseError
from .inputs import sha256_file

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1




def build_manifest(root: Path, name: str, version: int,
                   known: dict[str, tuple[str, int]] | None = None) -> dict[str, Any]:
    """``known``: sha256 and size of files by path, as written (checked against the size)."""
    files = {}
    known = known or {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(root).as_posix()
            size = p.stat().st_size
            k = known.get(str(p))
            files[rel] = {"sha256": k[0] if k and k[1] == size else sha256_file(p), "size": size}
    lines = "".join(f"{v['sha256']}  {k}\n" for k, v in sorted(files.items()))
    return {"format_version": MANIFEST_VERSION, "name": name, "version": version,
            "files": files, "release_sha256": hashlib.sha256(lines.encode()).hexdigest()}


def write_manifest(root: Path, name: str, version: int,
                   known: dict[str, tuple[str, int]] | None = None) -> dict[str, Any]:
    m = build_manifest(root, name, version, known)
    (root / MANIFEST).write_text(json.dumps(m, indent=1, sort_keys=True))
    return m


def verify(root: Path) -> list[str]:
    """Files that differ from the manifest (empty when the version is intact)."""
    try:
        m = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{root / MANIFEST}: cannot read the manifest: {exc}") from exc
    bad = []
    for rel, info in m["files"].items():
        p = root / rel
        if not p.is_file():
            bad.append(f"{rel}: missing")
        elif sha256_file(p) != info["sha256"]:
            bad.append(f"{rel}: sha256 differs")
    extra = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    extra -= set(m["files"]) | {MANIFEST}
    bad.extend(f"{rel}: not in the manifest" for rel in sorted(extra))
    return bad
