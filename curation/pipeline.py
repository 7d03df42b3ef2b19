"""``curate``: inputs -> ingest (cached) -> episodes -> quality -> labels -> release vN."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recorder.contract import EPISODE_METADATA, SIM_METADATA, STATE_FILE, read_session_state
from recorder.errors import RecorderError

from .config import CurateConfig
from .errors import CurationError
from .ingest import INGEST_VERSION, Cache, FileRecord, held_bytes, ingest_file, read_file, spill
from .inputs import InputFile, find_inputs, sha256_bytes
from .labels import Labels, assign_splits, curator_decisions
from .manifest import WrittenFiles, write_manifest
from .quality import Expectation, QualityResult, check_episode, urdf_limits
from .release import episode_table, release_versions
from .segment import Segment, segment_file
from .writer import FORMAT_VERSION, EarlyPayloads, Planned, finish_row, write_release
from .zwrite import fsync_path, fsync_tree

Progress = Callable[[str, int, int], None]
EARLY_FRAMES = True  # write camera frames while files load (see writer.EarlyPayloads)

if TYPE_CHECKING:
    from recorder.profile import Profile


@dataclass
class CurateResult:
    """What one `curate` run did: the release written (or reused), its episodes and inputs."""
    release: Path
    name: str
    version: int
    created: bool                   # False: nothing changed since the newest version
    episodes: int
    new_episodes: int
    decoded_files: int              # files read and decoded in this run
    cached_files: int               # files taken from the work cache
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flagged: int = 0
    seconds: float = 0.0
    input_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"release": str(self.release), "name": self.name, "version": self.version,
                "created": self.created, "episodes": self.episodes,
                "new_episodes": self.new_episodes, "decoded_files": self.decoded_files,
                "cached_files": self.cached_files, "flagged": self.flagged,
                "skipped": self.skipped, "notes": self.notes,
                "seconds": round(self.seconds, 3), "input_bytes": self.input_bytes}


@dataclass
class _Context:
    cfg: CurateConfig
    profiles: dict[str, _ProfileFound] = field(default_factory=dict)
    roles: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # files load on threads


def curate(inputs: list[str | Path], out_dir: str | Path, name: str, *,
           labels: Labels | None = None, config: CurateConfig | None = None,
           replace: bool = False, progress: Progress | None = None,
           memory_budget: int | None = None) -> CurateResult:
    """Create ``out_dir/name/vN`` from the inputs plus the episodes of the newest version.
    ``memory_budget``: bytes of camera payloads kept in memory from ingest to writing
    (default: a quarter of RAM); payloads beyond it are read again from their files."""
    t0 = time.perf_counter()
    import recorder.profile  # noqa: F401 - imported here, not first on a worker thread

    cfg = config or CurateConfig()
    labels = labels or Labels()
    if not name or "/" in name or name.startswith("."):
        raise CurationError(f"release name {name!r} must be a plain directory name")
    name_dir = Path(out_dir) / name
    work = name_dir / ".work"
    cache = Cache(work)
    cache.clean_partial()
    for stale in name_dir.glob(".v*.tmp-*") if name_dir.exists() else ():
        shutil.rmtree(stale, ignore_errors=True)
    files, skipped = find_inputs(list(inputs)) if inputs else ([], [])
    versions = release_versions(name_dir)
    prev = None if replace or not versions else versions[-1]
    prev_rows = episode_table(prev[1]) if prev else []
    ctx = _Context(cfg)
    result = CurateResult(name_dir, name, 0, False, 0, 0, 0, 0,
                          skipped=[{"path": s.path, "reason": s.reason} for s in skipped])
    records: dict[str, FileRecord] = {}
    analyses: dict[str, _Analysis] = {}

    workers = max(1, min(cfg.workers or (os.cpu_count() or 1), len(files) or 1))
    budget = memory_budget if memory_budget is not None else _default_budget()
    version = versions[-1][0] + 1 if versions else 1
    # a new release (nothing to carry over) starts writing camera frames while loading
    staged = _Staged.start(name_dir, version, cfg,
                           early=EARLY_FRAMES and prev is None and bool(files))
    try:
        result.release, plans = _curate(files, cache, ctx, workers, budget, staged, records,
                                        analyses, prev, prev_rows, labels, name, version,
                                        result, progress)
    except BaseException:
        staged.abandon()
        raise
    if result.created:
        result.version = version
    result.episodes = len(plans)
    result.flagged = sum(1 for p in plans if p.row["flags"]) if result.created else 0
    result.seconds = time.perf_counter() - t0
    return result


def _curate(files: list[InputFile], cache: Cache, ctx: _Context, workers: int, budget: int,
            staged: _Staged, records: dict[str, FileRecord], analyses: dict[str, _Analysis],
            prev: tuple[int, Path] | None, prev_rows: list[dict[str, Any]], labels: Labels,
            name: str, version: int, result: CurateResult, progress: Progress | None
            ) -> tuple[Path, list[Planned]]:
    from concurrent.futures import ThreadPoolExecutor

    name_dir = staged.tmp.parent
    held = 0
    with ThreadPoolExecutor(workers) as pool:
        for i, (inp, rec, stats, found) in enumerate(
                _window(pool, lambda f: _load(f, cache, ctx), files, 2 * workers)):
            if staged.early is not None and rec.sha256 not in records \
                    and staged.early.add(rec, found.segments):
                spill(rec, cache, inp)  # its frames are being written: let them go here
            else:
                held += held_bytes(rec)
                if held > budget:  # camera frames beyond the budget: re-read when written
                    held -= spill(rec, cache, inp)
            if progress:
                progress(f"ingest {inp.path.name}", i, len(files))
            result.input_bytes += rec.size
            result.cached_files += stats == "cached"
            result.decoded_files += stats == "decoded"
            if rec.sha256 in records:
                result.skipped.append({"path": str(inp.path), "reason": "same content as "
                                       f"{records[rec.sha256].path} (sha256 {rec.sha256[:12]})"})
                continue
            records[rec.sha256] = rec
            analyses[rec.sha256] = found
    # the newest version's episodes come along (unless --replace)
    for row in prev_rows:
        sha = row["provenance"].get("source_sha256", "")
        if sha and sha not in records:
            records[sha] = _carry(sha, row, cache)
    plans = _plan(records, analyses, prev_rows, ctx, labels, result)
    if progress:
        progress("write release", len(files), len(files))
    fp = _fingerprint(plans, labels, ctx.cfg)
    if prev is not None and _prev_fingerprint(prev[1]) == fp:
        staged.abandon()
        result.version = prev[0]
        return prev[1], plans
    final = _publish(name_dir, name, version, prev, plans, ctx, fp, staged)
    result.created = True
    return final, plans


def _load(inp: InputFile, cache: Cache, ctx: _Context
          ) -> tuple[InputFile, FileRecord, str, _Analysis]:
    """Read (or take from the cache), segment and check one file: per-file work that
    runs on the worker threads."""
    buf = read_file(inp.path)
    try:
        sha = sha256_bytes(buf)
        if cache.has(sha):
            rec, how = cache.load(sha, inp), "cached"
        else:
            rec, how = ingest_file(inp, buf, sha, borrowed=True), "decoded"
            cache.save(rec)
    finally:
        buf.release()  # the buffer is this thread's, for its next file
    return inp, rec, how, _analyse(rec, ctx)


@dataclass
class _Analysis:
    """A file's segments, segmentation notes, and quality results per segment."""

    segments: list[Segment]
    notes: list[str]
    quality: dict[int, QualityResult]


def _analyse(rec: FileRecord, ctx: _Context) -> _Analysis:
    expect, limits, latency, invalid = _expectations(rec, ctx)
    segs, notes = segment_file(rec, ctx.cfg.segment, limits)
    quality = {}
    for seg in segs:
        if not seg.discarded:
            q = check_episode(rec, seg, expect, limits, ctx.cfg.quality, latency)
            if invalid:
                q.raise_("profile_invalid", "", invalid)
            quality[seg.index] = q
    return _Analysis(segs, notes, quality)


def _default_budget() -> int:
    """Camera payloads held in memory between ingest and writing: a quarter of RAM."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):
        return 2 << 30


def _window(pool: Any, fn: Callable[[Any], Any], items: list[Any], ahead: int) -> Iterator[Any]:
    """``pool.map`` that keeps at most ``ahead`` items in flight, so finished results are
    consumed (and their memory bounded) while later files are still loading."""
    pending: deque[Any] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _carry(sha: str, row: dict[str, Any], cache: Cache) -> FileRecord:
    if cache.has(sha):
        return cache.load(sha)
    src = Path(row["provenance"].get("source_file", ""))
    if src.is_file():
        buf = src.read_bytes()
        if sha256_bytes(buf) == sha:
            rec = ingest_file(InputFile(src, row.get("session", "")), buf, sha)
            cache.save(rec)
            return rec
    raise CurationError(f"episode {row['episode_id']} of the previous version came from {src} "
                        f"(sha256 {sha[:12]}), which is neither in the work cache nor on disk "
                        "unchanged; give that recording again, or curate with --replace")


# -- episodes -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _ProfileFound:
    """The profile that gives a file's expectations, and why the session's own profile
    could not be used (a ``profile_invalid`` reason), if it could not."""

    profile: Profile | None
    invalid: str = ""


def _profile(rec: FileRecord, ctx: _Context) -> _ProfileFound:
    """The session state's profile; else ``--profile``; else the built-in profile the
    episode metadata names. A malformed session profile is reported (``invalid``) and
    curation goes on with ``--profile`` if given, else with expectations inferred from the
    data; a bad ``--profile`` is a CurationError."""
    from recorder.profile import builtin_profiles

    session_dir = Path(rec.path).parent
    state = session_dir / STATE_FILE
    key = str(state) if state.exists() else ctx.cfg.profile or \
        rec.metadata.get(EPISODE_METADATA, {}).get("profile", "")
    with ctx.lock:
        if key in ctx.profiles:
            return ctx.profiles[key]
    found = _ProfileFound(None)
    if state.exists():
        found = _session_profile(session_dir)
        if found.profile is None and ctx.cfg.profile:
            found = _ProfileFound(_explicit(ctx.cfg.profile), found.invalid)
    elif ctx.cfg.profile:
        found = _ProfileFound(_explicit(ctx.cfg.profile))
    elif key in builtin_profiles():
        found = _ProfileFound(_explicit(key))
    with ctx.lock:
        ctx.profiles[key] = found
    return found


def _session_profile(session_dir: Path) -> _ProfileFound:
    from recorder.profile import parse_profile

    where = session_dir / STATE_FILE
    fallback = "; expectations inferred from the data instead"
    try:
        state = read_session_state(session_dir)
    except RecorderError as exc:
        return _ProfileFound(None, f"{exc}{fallback}")
    if state is None or not state.profile:  # a state without a profile: none to check
        return _ProfileFound(None)
    try:
        return _ProfileFound(parse_profile(state.profile, f"{where}: profile"))
    except (RecorderError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return _ProfileFound(None, f"{where}: profile does not parse: {exc}{fallback}")


def _explicit(name: str) -> Profile:
    from recorder.profile import load_profile

    try:
        return load_profile(name)
    except (RecorderError, OSError, ValueError, TypeError, KeyError) as exc:
        raise CurationError(f"profile {name!r}: {exc}") from exc


def _expectations(rec: FileRecord, ctx: _Context
                  ) -> tuple[dict[str, Expectation], dict[str, tuple[float, float]],
                             float | None, str]:
    """Per-topic expectations, joint limits, the latency limit, and why the session's
    profile was not usable ("" when it was, or when there is none)."""
    found = _profile(rec, ctx)
    prof = found.profile
    expect: dict[str, Expectation] = {}
    limits: dict[str, tuple[float, float]] = {}
    latency = None
    if prof is not None:
        with ctx.lock:
            for t in prof.topics:
                if t.role != "event":
                    expect[t.topic] = Expectation(t.rate_hz, t.role)
                    ctx.roles.setdefault(t.topic, (t.role, t.rate_hz))
        limits = {j.name: (j.lower, j.upper) for j in prof.robot.joints}
        latency = prof.health.max_latency_ms
    if not limits:
        for text in rec.attachments.values():
            limits = urdf_limits(text)
            if limits:
                break
    return expect, limits, latency, found.invalid


def _base_row(rec: FileRecord, seg: Segment, nsegs: int) -> dict[str, Any]:
    md = rec.metadata.get(EPISODE_METADATA, {})
    info = seg.info
    outcome = info.get("outcome") or md.get("outcome") or "unknown"
    eid = info.get("episode_id") or md.get("episode_id") or ""
    if not eid or nsegs > 1 and not info.get("episode_id"):
        eid = f"{rec.sha256[:16]}-{seg.index}"
    src = {"task": "metadata", "operator": "metadata", "success": "metadata"}
    if seg.method == "events":
        src = {"task": "events", "operator": "events", "success": "events"}
    anns = seg.annotations
    row: dict[str, Any] = {
        "index": -1, "episode_id": eid, "key": f"{rec.sha256}:{seg.index}",
        "task": info.get("task") or md.get("task", ""),
        "success": {"success": True, "failure": False}.get(outcome),
        "outcome": outcome,
        "operator": info.get("operator") or md.get("operator", ""),
        "session": md.get("session") or rec.session or info.get("session", ""),
        "robot": md.get("robot", ""),
        "split": "train", "quality_score": 1.0, "flags": 0, "flag_names": [],
        "flag_reasons": [],
        "interventions": sum(1 for a in anns if a["kind"] == "intervention"),
        "notes": [a["label"] for a in anns if a["kind"] == "note"],
        "start_ns": int(seg.start_ns), "end_ns": int(seg.end_ns),
        "duration_s": round((seg.end_ns - seg.start_ns) / 1e9, 6),
        "streams": {}, "annotations": anns,
        "provenance": {
            "kind": "recording", "source_file": str(Path(rec.path).resolve()),
            "source_sha256": rec.sha256, "source_size": rec.size, "segment": seg.index,
            "segmentation": seg.method,
            "log_time_start_ns": _log_span(rec, seg)[0], "log_time_end_ns": _log_span(rec, seg)[1],
            "profile": md.get("profile", ""),
            "recorder_episode_index": info.get("recorder_episode_index"),
            "software": {k[9:]: v for k, v in md.items() if k.startswith("software.")},
            "truncated_at": rec.truncated_at},
        "labels_source": {**src, "interventions": "events", "notes": "events"},
    }
    if not row["task"]:
        row["labels_source"]["task"] = "default"
    sim = rec.metadata.get(SIM_METADATA)
    if sim:  # a simulated episode: its seed, draw, source demos and transforms
        row["provenance"]["kind"] = "sim"
        row["provenance"]["sim"] = {k: _json_value(v) for k, v in sim.items()}
    return row


def _json_value(text: str) -> Any:
    """A metadata value: JSON objects, lists and numbers decoded, anything else as text."""
    if text[:1] in "{[" or text[:1].isdigit() or text[:1] == "-":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _log_span(rec: FileRecord, seg: Segment) -> tuple[int, int]:
    lo, hi = [], []
    for sd in rec.streams.values():
        a, b = seg.rows(sd)
        if b > a:
            lt = sd.log_time_ns[a:b]
            lo.append(int(lt.min()))
            hi.append(int(lt.max()))
    return (min(lo), max(hi)) if lo else (0, 0)


def _plan(records: dict[str, FileRecord], analyses: dict[str, _Analysis],
          prev_rows: list[dict[str, Any]], ctx: _Context, labels: Labels,
          result: CurateResult) -> list[Planned]:
    prev_by_key = {r["key"]: r for r in prev_rows}
    plans: list[Planned] = []
    excluded_rows: list[dict[str, Any]] = []
    for rec in records.values():
        found = analyses.get(rec.sha256) or _analyse(rec, ctx)
        segs = found.segments
        result.notes.extend(found.notes)
        for seg in segs:
            if seg.discarded:
                result.skipped.append({"path": rec.path, "reason": f"segment {seg.index} was "
                                       "discarded by the operator (DISCARD event)"})
                continue
            row = _base_row(rec, seg, len(segs))
            q = found.quality[seg.index]
            old = prev_by_key.get(row["key"])
            if old is not None:
                for k, src in old.get("labels_source", {}).items():
                    if src in ("labels_file", "cli", "previous_version"):
                        row[k] = old[k]
                        row["labels_source"][k] = "previous_version"
                if "split" in old:
                    row["split"] = old["split"]
                    row["labels_source"]["split"] = "previous_version"
            labels.apply(row)
            excluded, q_flags, q_reasons = curator_decisions(row, q.flags, q.reasons)
            if excluded:
                excluded_rows.append(row)
                result.skipped.append({"path": rec.path, "reason": f"episode {row['episode_id']} "
                                       f"(key {row['key']}) excluded by the labels"})
                continue
            finish_row(row, q_flags, q_reasons)
            row["_quality_streams"] = q.streams
            plans.append(Planned(rec, seg, row))
    order = {r["key"]: i for i, r in enumerate(prev_rows)}
    plans.sort(key=lambda p: (order.get(p.row["key"], len(order)), p.row["session"],
                              p.row["start_ns"], p.row["key"]))
    result.new_episodes = sum(1 for p in plans if p.row["key"] not in order)
    rows = [p.row for p in plans]
    result.notes.extend(labels.unmatched(rows + excluded_rows))
    assign_splits(rows, ctx.cfg.split)
    for p in plans:
        p.row["quality_streams"] = p.row.pop("_quality_streams")
    return plans


def software() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("demofab", "zarr", "numpy", "mcap", "rosbags"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def _fingerprint(plans: list[Planned], labels: Labels, cfg: CurateConfig) -> str:
    text = json.dumps({"keys": sorted(p.row["key"] for p in plans),
                       "labels": labels.fingerprint(), "config": cfg.to_dict(),
                       "format": FORMAT_VERSION, "ingest": INGEST_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _prev_fingerprint(path: Path) -> str:
    try:
        meta = json.loads((path / "zarr.json").read_text())
        return str(meta["attributes"]["demofab"].get("fingerprint", ""))
    except (OSError, ValueError, KeyError):
        return ""


@dataclass
class _Staged:
    """The new version's temporary directory, the record of the files written into it
    (for the manifest), and the early writer of camera frames, if any."""

    tmp: Path
    stack: ExitStack
    written: WrittenFiles
    early: EarlyPayloads | None

    @classmethod
    def start(cls, name_dir: Path, version: int, cfg: CurateConfig, early: bool) -> _Staged:
        name_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".v{version}.tmp-", dir=name_dir))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a release is for others to read
        stack = ExitStack()
        written = stack.enter_context(WrittenFiles())
        return cls(tmp, stack, written, EarlyPayloads(tmp, cfg, written) if early else None)

    def abandon(self) -> None:
        try:
            if self.early is not None:
                self.early.close()
            self.stack.close()
        except Exception:  # noqa: BLE001,S110 - the directory goes anyway
            pass
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _publish(name_dir: Path, name: str, version: int, prev: tuple[int, Path] | None,
             plans: list[Planned], ctx: _Context, fp: str, staged: _Staged) -> Path:
    tmp = staged.tmp
    attrs = {"name": name, "version": version,
             "parent_version": prev[0] if prev else None,
             "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "fingerprint": fp, "software": software()}
    try:
        write_release(tmp, plans, ctx.cfg, attrs, ctx.roles, staged.early, staged.written)
    finally:
        staged.stack.close()  # every file hashed and synced: the record is complete
    written = staged.written
    write_manifest(tmp, name, version, written)
    for dirpath, _, names in os.walk(tmp):
        for n in names:
            os.chmod(os.path.join(dirpath, n), 0o444)
    fsync_tree(tmp, done=written)
    final = name_dir / f"v{version}"
    if final.exists():
        raise CurationError(f"{final} already exists; releases are immutable")
    os.rename(tmp, final)
    fsync_path(name_dir)
    return final
