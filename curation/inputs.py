"""Finding recordings: episode files, sessions, rosbag2 bags, or folders holding them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from recorder.contract import (
    BAG_METADATA,
    DISCARDED_DIR,
    MCAP_SUFFIX,
    PART_SUFFIX,
    read_bag_listing,
)
from recorder.errors import RecorderError

from .errors import InputError

PART = MCAP_SUFFIX + PART_SUFFIX  # episode_NNNN.mcap.part
SKIP_DIRS = (DISCARDED_DIR,)


@dataclass(frozen=True, slots=True)
class InputFile:
    path: Path
    session: str      # session or bag the file belongs to ("" for a loose file)


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


def find_inputs(paths: list[str | Path]) -> tuple[list[InputFile], list[Skipped]]:
    """The MCAP files under the given paths, and what was left out (with why)."""
    files: list[InputFile] = []
    skipped: list[Skipped] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"input {path} does not exist")
        if path.is_file():
            if not path.name.endswith((MCAP_SUFFIX, PART)):
                raise InputError(f"input {path} is not an MCAP file ({MCAP_SUFFIX}) or a "
                                 "directory")
            files.append(InputFile(path, path.parent.name if (path.parent / BAG_METADATA).exists()
                                   else ""))
        else:
            _walk(path, files, skipped)
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    if not unique and not skipped:
        raise InputError(f"no MCAP files under {', '.join(str(p) for p in paths)}")
    return unique, skipped


def _walk(path: Path, files: list[InputFile], skipped: list[Skipped]) -> None:
    if (path / BAG_METADATA).exists():
        _bag(path, files, skipped)
        return
    for p in sorted(path.iterdir()):
        if p.is_dir():
            if p.name in SKIP_DIRS:
                skipped.extend(Skipped(str(q), "discarded by the operator")
                               for q in sorted(p.glob(f"*{MCAP_SUFFIX}")))
            elif not p.name.startswith("."):
                _walk(p, files, skipped)
        elif p.name.endswith(MCAP_SUFFIX):
            files.append(InputFile(p, ""))
        elif p.name.endswith(PART):
            skipped.append(Skipped(str(p), "unfinished recording: run 'demofab recover' on it, "
                                           "or name the file itself to ingest what is readable"))


def _bag(path: Path, files: list[InputFile], skipped: list[Skipped]) -> None:
    try:
        listing = read_bag_listing(path)
    except RecorderError as exc:
        raise InputError(str(exc)) from exc
    if listing is None:  # the bag metadata went away since the caller looked
        raise InputError(f"{path / BAG_METADATA}: no longer exists")
    meta = listing.path
    session = listing.session or path.name
    listed = set()
    for r in listing.files:
        p = path / r
        listed.add(p.name)
        if not p.exists():
            skipped.append(Skipped(str(p), f"listed in {meta} but missing"))
        elif p.name.endswith((MCAP_SUFFIX, PART)):
            files.append(InputFile(p, session))
        else:
            skipped.append(Skipped(str(p), "not MCAP storage (only MCAP bags are read)"))
    for p in sorted(path.glob(f"*{MCAP_SUFFIX}")):
        if p.name not in listed:
            files.append(InputFile(p, session))
    for p in sorted(path.glob(f"*{PART}")):
        if p.name not in listed:
            skipped.append(Skipped(str(p), "unfinished recording: run 'demofab recover' on the "
                                           "session, or name the file itself to ingest it"))
    if (path / DISCARDED_DIR).is_dir():
        skipped.extend(Skipped(str(q), "discarded by the operator")
                       for q in sorted((path / DISCARDED_DIR).glob(f"*{MCAP_SUFFIX}")))


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
