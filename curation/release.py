"""Reading releases: versions of a name, opening one, and what ``release show`` prints."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import ReleaseError
from .writer import FORMAT, FORMAT_VERSION

_VERSION = re.compile(r"^v(\d+)$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

#: entry point group of the openers of ``scheme://`` releases (e.g. ``vault``)
OPENERS_GROUP = "demofab.release_openers"


def url_scheme(path: object) -> str | None:
    """The scheme of a ``scheme://...`` release URL (not ``file``), None for a local path."""
    if isinstance(path, str) and (m := _SCHEME.match(path)) and m.group(1).lower() != "file":
        return m.group(1).lower()
    return None


def open_url(url: str) -> Any:
    """The release files object an opener registered in :data:`OPENERS_GROUP` returns for
    ``url`` (``.url``, ``.read(rel) -> bytes``, ``.read_range(rel, offset, nbytes)``,
    ``.size(rel) -> int | None``, ``.zarr_store()``); the entry point's name is the scheme
    (``vault+https`` falls back to ``vault``)."""
    from importlib.metadata import entry_points

    scheme = url_scheme(url)
    if scheme is None:
        raise ReleaseError(f"{url!r} is not a release URL (scheme://...)")
    eps = {ep.name: ep for ep in entry_points(group=OPENERS_GROUP)}
    ep = eps.get(scheme) or eps.get(scheme.split("+", 1)[0])
    if ep is None:
        raise ReleaseError(f"{url}: no release opener for scheme {scheme!r} (entry point group "
                           f"{OPENERS_GROUP}; installed: {', '.join(sorted(eps)) or 'none'})")
    return ep.load()(url)


def check_attrs(meta: dict[str, Any], where: str) -> dict[str, Any]:
    """``attributes.demofab`` of a root ``zarr.json`` document (format and version checked)."""
    attrs = (meta.get("attributes") or {}).get("demofab")
    if not isinstance(attrs, dict) or attrs.get("format") != FORMAT:
        raise ReleaseError(f"{where}: not a DemoFab release (no attributes.demofab.format)")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise ReleaseError(f"{where}: release format_version {attrs.get('format_version')} is not "
                           f"supported (this DemoFab reads {FORMAT_VERSION})")
    return attrs


def release_versions(name_dir: Path | str) -> list[tuple[int, Path]]:
    """Published versions under ``RELEASES_DIR/NAME``, oldest first."""
    d = Path(name_dir)
    if not d.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in d.iterdir()
           if p.is_dir() and (m := _VERSION.match(p.name)) and (p / "zarr.json").exists()]
    return sorted(out)


def resolve(path: Path | str) -> Path:
    """A version directory, or a release name directory (its newest version)."""
    p = Path(path)
    if (p / "zarr.json").exists():
        return p
    versions = release_versions(p)
    if not versions:
        raise ReleaseError(f"{p} is neither a release version (no zarr.json) nor a release "
                           "name directory with versions v1, v2, ...")
    return versions[-1][1]


def release_attrs(path: Path | str) -> dict[str, Any]:
    p = resolve(path)
    try:
        meta = json.loads((p / "zarr.json").read_text())
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{p / 'zarr.json'}: cannot read: {exc}") from exc
    return check_attrs(meta, str(p))


def open_release(path: Path | str) -> Any:
    """The release as a read-only zarr group (format version checked)."""
    import zarr

    p = resolve(path)
    release_attrs(p)
    return zarr.open_group(str(p), mode="r")


def episode_table(path: Path | str) -> list[dict[str, Any]]:
    p = resolve(path)
    raw = json.loads((p / "episodes.json").read_text())
    if raw.get("format_version") != 1:
        raise ReleaseError(f"{p / 'episodes.json'}: table format_version "
                           f"{raw.get('format_version')} is not supported (1)")
    return list(raw["episodes"])


def release_summary(path: Path | str) -> dict[str, Any]:
    """What ``demofab release show --json`` prints."""
    p = resolve(path)
    attrs = release_attrs(p)
    streams = []
    for name in attrs["streams"]:
        g = json.loads((p / "streams" / name / "zarr.json").read_text())["attributes"]
        arrays = {k: f"streams/{name}/{k}" for k in ("time_ns", "log_time_ns", "episode_bounds")}
        arrays.update({k: f"streams/{name}/{k}" for k in g.get("fields", [])})
        for k in g.get("ragged", []):
            arrays[f"{k}.values"] = f"streams/{name}/{k}/values"
            arrays[f"{k}.offsets"] = f"streams/{name}/{k}/offsets"
        streams.append({"name": name, "topic": g["topic"], "type": g["type"],
                        "role": g.get("role"), "count": g["count"], "rate_hz": g.get("rate_hz"),
                        "measured_rate_hz": g.get("measured_rate_hz"), "clock": g.get("clock"),
                        "arrays": arrays, **({"camera": g["camera"]} if "camera" in g else {}),
                        **({"joint_names": g["joint_names"]} if "joint_names" in g else {})})
    sync = sorted(q.name for q in (p / "sync").iterdir() if q.is_dir()) \
        if (p / "sync").is_dir() else []
    manifest = json.loads((p / "manifest.json").read_text()) \
        if (p / "manifest.json").exists() else {}
    return {"path": str(p), "name": attrs["name"], "version": attrs["version"],
            "format_version": attrs["format_version"], "created_at": attrs.get("created_at"),
            "parent_version": attrs.get("parent_version"),
            "release_sha256": manifest.get("release_sha256"),
            "files": len(manifest.get("files", {})),
            "sync_reference": attrs.get("sync_reference"),
            "sync": {s: f"sync/{s}" for s in sync},
            "streams": streams, "episodes": episode_table(p)}


def list_releases(path: Path | str) -> list[dict[str, Any]]:
    """Every version under a releases dir or a release name dir."""
    root = Path(path)
    if not root.is_dir():
        raise ReleaseError(f"{root} is not a directory")
    names = [root] if release_versions(root) else sorted(
        p for p in root.iterdir() if p.is_dir() and release_versions(p))
    out = []
    for d in names:
        for v, p in release_versions(d):
            try:
                a = release_attrs(p)
            except ReleaseError as exc:
                out.append({"name": d.name, "version": v, "path": str(p), "error": str(exc)})
                continue
            eps = episode_table(p)
            out.append({"name": a["name"], "version": v, "path": str(p),
                        "created_at": a.get("created_at"), "episodes": a["episodes"],
                        "streams": len(a["streams"]),
                        "flagged": sum(1 for e in eps if e["flags"]),
                        "duration_s": round(sum(e["duration_s"] for e in eps), 3)})
    return out
