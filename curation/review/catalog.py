"""What the review page shows of one release version: the episode list (computed once),
an episode's cameras, joints, events and segments, camera frames, thumbnails, stats."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from ..errors import CurationError
from ..flags import FLAG_BITS
from ..loader import ReleaseReader
from ..release import release_versions
from .metrics import Motion, joint_stream, outliers, release_motion

T = TypeVar("T")
THUMB_WIDTH = 160
#: columns of the list (and what ``sort`` accepts)
COLUMNS = ("index", "source", "episode_id", "task", "success", "operator", "session", "split",
           "duration_s", "quality_score", "flags", "jerk", "motion", "outliers")
SUMMARY_KEYS = ("index", "key", "episode_id", "task", "success", "outcome", "operator",
                "session", "robot", "split", "duration_s", "quality_score", "flags",
                "flag_names", "interventions", "notes")


class NotFound(CurationError, LookupError):
    """An episode, camera, stream or frame the release does not have."""


class BadQuery(CurationError, ValueError):
    """A filter or sort value the list does not know."""


def open_version(release: str | Path, version: int | None = None) -> Path:
    """The version directory to review: ``release`` itself when it is a version, else its
    newest version or version ``version``."""
    p = Path(release)
    if (p / "zarr.json").is_file():
        if version is not None and p.name != f"v{version}":
            raise CurationError(f"{p} is version {p.name}; --version {version} names another")
        return p
    versions = dict(release_versions(p))
    if not versions:
        raise CurationError(f"{p}: not a release (no zarr.json) and no versions v1, v2, ... in it")
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        raise CurationError(f"{p}: no version v{version} (versions: "
                            f"{', '.join(f'v{v}' for v in sorted(versions))})")
    return versions[version]


def default_cache_dir(version_dir: Path) -> Path:
    """$DEMOFAB_CACHE/review; else the release's own cache (NAME/.work/review) when it is
    writable; else ~/.cache/demofab/review. Never inside the (immutable) version."""
    env = os.environ.get("DEMOFAB_CACHE")
    if env:
        return Path(env) / "review"
    work = version_dir.parent / ".work"
    if work.is_dir() and os.access(work, os.W_OK):
        return work / "review"
    return Path.home() / ".cache" / "demofab" / "review"


@dataclass
class Part:
    """One release the list draws from: the reviewed version, or the scratch release of
    the sessions not yet in it (``source``: ``release`` or ``session``)."""

    reader: ReleaseReader
    source: str
    cache_dir: Path
    local: list[int]            # the table rows it contributes, in order
    joint_stream: str | None


class Catalog:
    """One release version, and optionally recordings not yet in it, opened once for the
    life of the server. Rows are numbered release first, then the sessions' episodes."""

    def __init__(self, version_dir: Path, cache_root: Path | None = None,
                 pending: Path | None = None) -> None:
        self.reader = ReleaseReader(version_dir)
        self.path = self.reader.path
        self.sha256 = _release_sha256(self.path)
        root = cache_root or default_cache_dir(self.path)
        self.cache_dir = root / f"{self.reader.name}-v{self.reader.version}-{self.sha256[:12]}"
        self.parts = [Part(self.reader, "release", self.cache_dir,
                           list(range(len(self.reader.episodes))), joint_stream(self.reader))]
        if pending is not None:
            known = {e["key"] for e in self.reader.episodes}
            other = ReleaseReader(pending)
            sha = _release_sha256(other.path)
            self.parts.append(Part(other, "session", root / f"sessions-{sha[:12]}",
                                   [e["index"] for e in other.episodes if e["key"] not in known],
                                   joint_stream(other)))
        self._where = [(part, i) for part in self.parts for i in part.local]
        self.cameras = sorted({n for part in self.parts for n, s in part.reader.streams.items()
                               if s.is_camera and "data" in s.ragged})
        self.thumb_camera = next((c for c in self.cameras if ".head." in f".{c}."),
                                 self.cameras[0] if self.cameras else None)
        self.joint_stream = self.parts[0].joint_stream
        for part in self.parts:  # clocks, bounds and frame offsets in memory before the first request
            for cam in self.cameras:
                if cam in part.reader.streams:
                    part.reader.times(cam), part.reader.bounds(cam), part.reader.offsets(cam)
        self.rows = finite(self._summaries())
        self.by_key = {r["key"]: r["index"] for r in self.rows}
        self.list_json = json.dumps({"episodes": self.rows, "total": len(self.rows),
                                     "shown": len(self.rows)}).encode()

    # -- the list ------------------------------------------------------------------

    def _summaries(self) -> list[dict[str, Any]]:
        eps = [part.reader.episodes[i] for part, i in self._where]
        motion = [m for part in self.parts for m in self._motion(part)]
        marks = outliers(eps, motion)  # robust z over everything listed
        rows = []
        for n, (ep, m, o, (part, _)) in enumerate(zip(eps, motion, marks, self._where, strict=True)):
            row = {k: ep.get(k) for k in SUMMARY_KEYS}
            row |= o
            row["index"], row["source"] = n, part.source
            row["jerk"] = None if m.jerk_rms is None else round(m.jerk_rms, 3)
            row["motion"] = None if m.speed is None else round(m.speed, 4)
            row["thumbs"] = ({"first": f"/api/episodes/{n}/thumbs/{self.thumb_camera}/first",
                              "last": f"/api/episodes/{n}/thumbs/{self.thumb_camera}/last"}
                             if self.thumb_camera else None)
            rows.append(row)
        return rows

    def _motion(self, part: Part) -> list[Motion]:
        """Motion figures of the part's rows, from the cache when it was reviewed before."""
        cached = part.cache_dir / "motion.json"
        n = len(part.reader.episodes)
        motion: list[Motion] | None = None
        try:
            data = json.loads(cached.read_text())
            if len(data) == n:
                motion = [Motion(a, b) for a, b in data]
        except (OSError, ValueError, TypeError):
            pass
        if motion is None:
            motion = release_motion(part.reader)
            _write_cache(cached, json.dumps([[m.jerk_rms, m.speed] for m in motion]).encode())
        return [motion[i] for i in part.local]

    def select(self, task: str = "", split: str = "", flag: str = "", success: str = "",
               text: str = "", sort: str = "", desc: bool = False) -> list[dict[str, Any]]:
        """The rows that pass the filters, sorted by ``sort`` (a column of COLUMNS)."""
        if sort and sort not in COLUMNS:
            raise BadQuery(f"sort: unknown column {sort!r} (columns: {', '.join(COLUMNS)})")
        if flag and flag not in FLAG_BITS and flag not in ("any", "none", "outlier"):
            raise BadQuery(f"flag: unknown flag {flag!r} (flags: any, none, outlier, "
                             f"{', '.join(FLAG_BITS)})")
        wanted = {"true": True, "false": False, "unknown": None}
        if success and success not in wanted:
            raise BadQuery(f"success: {success!r} is not true, false or unknown")
        needle = text.lower().strip()
        out = []
        for r in self.rows:
            if task and r["task"] != task or split and r["split"] != split:
                continue
            if success and r["success"] is not wanted[success]:
                continue
            names = r["flag_names"] or []
            if flag == "any" and not names or flag == "none" and names or \
                    flag == "outlier" and not r["outliers"] or \
                    flag in FLAG_BITS and flag not in names:
                continue
            if needle and needle not in _haystack(r):
                continue
            out.append(r)
        if sort:
            def key(r: dict[str, Any]) -> tuple[bool, Any]:
                v = r[sort]
                if sort == "flags":
                    v = len(r["flag_names"] or [])
                elif sort == "outliers":
                    v = len(v)
                elif isinstance(v, str):
                    v = v.lower()
                return (v is None, v)
            nones = [r for r in out if key(r)[0]]
            rest = sorted((r for r in out if not key(r)[0]), key=key, reverse=desc)
            out = rest + nones  # unknown values last either way
        return out

    # -- one episode ----------------------------------------------------------------

    def at(self, index: int) -> tuple[ReleaseReader, int]:
        """The release holding row ``index`` of the list, and the row's index in it."""
        if not 0 <= index < len(self._where):
            raise NotFound(f"{self.path}: no episode {index} (the list has {len(self._where)}"
                           f"{f': 0..{len(self._where) - 1}' if self._where else ''})")
        part, local = self._where[index]
        return part.reader, local

    def episode(self, index: int) -> dict[str, Any]:
        reader, local = self.at(index)
        return reader.episodes[local]

    def rows_of(self, index: int, stream: str) -> tuple[ReleaseReader, int, int]:
        reader, local = self.at(index)
        if stream not in reader.streams:
            raise NotFound(f"{reader.path}: no stream {stream!r} (streams: "
                           f"{', '.join(sorted(reader.streams))})")
        a, b = reader.bounds(stream)[local]
        return reader, int(a), int(b)

    def detail(self, index: int) -> dict[str, Any]:
        """The episode's row, its cameras (frame times), joint streams, events, segments,
        and the gaps the quality checks listed (per stream: when, how long)."""
        reader, local = self.at(index)
        ep = reader.episodes[local]
        t0 = int(ep["start_ns"])
        cams = []
        for cam in self.cameras:
            if cam in reader.streams:
                _, a, b = self.rows_of(index, cam)
                t = (reader.times(cam)[a:b] - t0) / 1e9
                cams.append({"name": cam, "frames": b - a, "times_s": np.round(t, 4).tolist()})
        ref = self._where[index][0].joint_stream
        joints = [{"stream": n, "names": list(s.attributes.get("joint_names") or []),
                   "fields": s.fields}
                  for n, s in sorted(reader.streams.items())
                  if s.attributes.get("type") == "sensor_msgs/msg/JointState" and s.fields]
        joints.sort(key=lambda j: j["stream"] != ref)
        anns = sorted(ep.get("annotations") or [], key=lambda a: a["time_ns"])
        events = [{"kind": a["kind"], "label": a["label"], "t_s": round((a["time_ns"] - t0) / 1e9, 4)}
                  for a in anns]
        marks = [e for e in events if e["kind"] == "subtask"]
        segments = [{"label": m["label"], "start_s": m["t_s"],
                     "end_s": marks[i + 1]["t_s"] if i + 1 < len(marks) else ep["duration_s"]}
                    for i, m in enumerate(marks)]
        gaps = [{"stream": topic, "t_s": round((g["after_ns"] - t0) / 1e9, 4),
                 "length_s": round(g["length_ms"] / 1e3, 4)}
                for topic, q in sorted((ep.get("quality_streams") or {}).items())
                for g in q.get("gap_list") or []]
        return finite({"episode": ep | {"index": index}, "summary": self.rows[index],
                       "duration_s": ep["duration_s"], "cameras": cams, "joints": joints,
                       "events": events, "segments": segments, "gaps": gaps,
                       "previous": index - 1 if index > 0 else None,
                       "next": index + 1 if index + 1 < len(self.rows) else None})

    def _camera(self, index: int, camera: str) -> tuple[ReleaseReader, int, int]:
        if camera not in self.cameras:
            self.at(index)
            raise NotFound(f"{self.path}: no camera {camera!r} (cameras: "
                           f"{', '.join(self.cameras) or 'none'})")
        return self.rows_of(index, camera)

    def frame(self, index: int, camera: str, k: int) -> tuple[bytes, int]:
        """The JPEG bytes of frame ``k`` of the episode's camera, and its row in the stream."""
        reader, a, b = self._camera(index, camera)
        if not 0 <= k < b - a:
            raise NotFound(f"episode {index}, camera {camera}: no frame {k} "
                           f"(the episode has {b - a} frames)")
        return reader.payload(camera, a + k), a + k

    def frame_at(self, index: int, camera: str, t_s: float) -> int:
        """The frame index (within the episode) shown at ``t_s`` seconds into the episode:
        through the sync index from the reference stream (its latest row at or before the
        time, then that row's camera row), else the camera's latest frame at or before."""
        reader, a, b = self._camera(index, camera)
        if b == a:
            raise NotFound(f"episode {index}, camera {camera}: no frames")
        t_abs = int(self.episode(index)["start_ns"]) + int(round(t_s * 1e9))
        ref = reader.sync_reference
        sync = reader.sync(ref, camera) if ref and ref != camera else None
        if sync is not None and ref is not None:
            _, ra, rb = self.rows_of(index, ref)
            r = int(np.searchsorted(reader.times(ref)[ra:rb], t_abs, side="right")) - 1
            row = int(sync[ra + max(r, 0)]) if rb > ra else -1
        else:
            row = a + int(np.searchsorted(reader.times(camera)[a:b], t_abs, side="right")) - 1
        return min(max(row - a, 0), b - a - 1)

    def joints(self, index: int, stream: str | None, field: str, points: int) -> dict[str, Any]:
        """Joint values of the episode, at most ``points`` buckets of (min, max) each
        (``stream`` None: the episode's reference joint stream)."""
        if not stream:
            self.at(index)
            stream = self._where[index][0].joint_stream
            if stream is None:
                raise NotFound(f"episode {index}: its release has no joint stream")
        reader, a, b = self.rows_of(index, stream)
        info = reader.stream(stream)
        if field not in info.fields:
            raise NotFound(f"stream {stream}: no field {field!r} (fields: {', '.join(info.fields)})")
        t = (reader.times(stream)[a:b] - int(self.episode(index)["start_ns"])) / 1e9
        v = reader.field(stream, field).read(a, b).reshape(b - a, -1).astype(np.float64)
        if b - a > points > 0:
            edges = np.linspace(0, b - a, points + 1).astype(np.int64)
            with np.errstate(all="ignore"):
                lo, hi = np.minimum.reduceat(v, edges[:-1]), np.maximum.reduceat(v, edges[:-1])
            mid = t[(edges[:-1] + edges[1:]) // 2]
            t = np.repeat(mid, 2)
            v = np.empty((2 * points, v.shape[1]))
            v[0::2], v[1::2] = lo, hi
        names = list(info.attributes.get("joint_names") or []) or \
            [f"{field}[{i}]" for i in range(v.shape[1])]
        vals = np.round(v.T, 5)
        return {"stream": stream, "field": field, "names": names[: v.shape[1]],
                "t_s": np.round(t, 4).tolist(),
                "values": [[x if math.isfinite(x) else None for x in col] for col in vals.tolist()]}

    def thumbnail(self, index: int, camera: str, which: str) -> bytes:
        """A THUMB_WIDTH-wide JPEG of the episode's first or last frame, cached on disk
        (under the cache of the release holding the episode, by its index there)."""
        if which not in ("first", "last"):
            raise NotFound(f"thumbnail {which!r}: expected first or last")
        reader, a, b = self._camera(index, camera)
        part, local = self._where[index]
        path = part.cache_dir / "thumbs" / f"{local}-{camera}-{which}.jpg"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        if b == a:
            raise NotFound(f"episode {index}, camera {camera}: no frames")
        jpeg = reader.payload(camera, a if which == "first" else b - 1)
        data = _downscale(jpeg, f"episode {index} camera {camera} {which} frame")
        _write_cache(path, data)
        return data

    def stats(self) -> dict[str, Any]:
        streams = {n: {"type": s.attributes.get("type"), "role": s.attributes.get("role"),
                       "joint_names": s.attributes.get("joint_names"),
                       "fields": s.fields, "rate_hz": s.rate_hz}
                   for n, s in sorted(self.reader.streams.items())}
        return finite({"stats": self.reader.stats, "streams": streams})


def finite(obj: T) -> T:
    """``obj`` with every NaN or infinite float replaced by None: JSON has no NaN (the
    release's own files may hold one, e.g. the statistics of an all-NaN field)."""
    return cast(T, _finite(obj))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _haystack(r: dict[str, Any]) -> str:
    return " ".join(str(r.get(k) or "") for k in ("episode_id", "key", "task", "operator",
                                                    "session", "split")).lower() + " " + \
        " ".join(r.get("notes") or []).lower() + " " + " ".join(r.get("flag_names") or [])


def _downscale(jpeg: bytes, what: str) -> bytes:
    import cv2

    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise CurationError(f"{what}: the stored JPEG does not decode ({len(jpeg)} bytes)")
    h, w = img.shape[:2]
    if w > THUMB_WIDTH:
        img = cv2.resize(img, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))),
                         interpolation=cv2.INTER_AREA)
    ok, out = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise CurationError(f"{what}: could not encode the thumbnail")
    return bytes(out)


def _write_cache(path: Path, data: bytes) -> None:
    """Write a cache file atomically (a half-written thumbnail is never served); a cache
    that cannot be written is not an error (the data is served anyway)."""
    tmp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        import warnings

        warnings.warn(f"review cache {path}: not written ({exc}); served without caching",
                      stacklevel=2)


def _release_sha256(version_dir: Path) -> str:
    try:
        return str(json.loads((version_dir / "manifest.json").read_text()).get("release_sha256", ""))
    except (OSError, ValueError) as exc:
        raise CurationError(f"{version_dir}/manifest.json: unreadable ({exc})") from exc
