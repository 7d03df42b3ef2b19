"""Mock releases: the real release's layout with content from the simulator.

A lab sees a dataset's description and its **mock release** before any grant. The mock has
the real release's layout exactly — the same streams, arrays, dtypes, per-row shapes, rows
per episode, chunking and codecs, rates, episode count and durations, episode-table columns
and sync indices — so a lab builds and tests its loader and its jobs on it, and it opens
with curation's loader as the real release does. Not one byte of the provider's data is in
it: clocks start at the simulator's epoch, joint streams carry simulated G1 motion (the sim
scene driven through smooth joint targets in physics, sampled at each row's time), camera
streams carry JPEG frames rendered by the sim scene at the stream's size, other numeric
streams carry simulated poses and signals of the right shape, and labels are generic
("mock task 1", "mock-operator-1"). What is kept from the real release is structure only:
names of streams, fields, joints and frames, constants such as frame ids, nominal rates,
the curation config, and the split of each episode.

The tree is walked from the real release's ``zarr.json`` documents, so every group and
array of the real release has its counterpart: arrays are written with
:func:`curation.zwrite.write_array` with the real array's chunk and shard sizes, codecs and
attributes, sync indices are computed from the mock clocks by curation's own rule
(:func:`curation.writer.sync_index`), statistics by :func:`curation.stats.describe`, and the
manifest by :func:`curation.manifest.write_manifest`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as _field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import ReleaseError
from curation.manifest import MANIFEST, write_manifest
from curation.release import episode_table, release_attrs, resolve
from curation.stats import QUANTILES, describe
from curation.writer import measured_rate_hz, sync_index
from curation.zwrite import write_array, write_group, write_json

from .errors import VaultError

__all__ = ["MOCK_EPOCH_NS", "MockError", "MockSignals", "build_mock", "simulate_signals"]

#: first mock clock (2026-01-01T00:00:00Z, the simulator's epoch); episodes follow each
#: other in slots of 10 minutes
MOCK_EPOCH_NS = 1_767_225_600 * 1_000_000_000
_SLOT_NS = 600 * 1_000_000_000
#: seconds of simulated motion; longer episodes play it back and forth
_CLIP_S = 4.0
_LATENCY_NS = 2_000_000
_JPEG_QUALITY = 85


class MockError(VaultError):
    """A mock release cannot be built (unreadable real release, simulator failure)."""


# --------------------------------------------------------------------------------------
# Simulated signals
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MockSignals:
    """One simulated clip of the G1, sampled at every physics step.

    ``q``, ``qd``, ``tau``, ``ctrl``: (steps, 43) in ``joint_names`` order; ``vec3``:
    (steps, K, 3) positions and velocities of palms, torso and objects; ``quat``: (steps, K,
    4) their orientations as x, y, z, w; ``frames``: per (camera, width, height) the JPEG
    frames rendered at ``frame_steps``."""

    dt: float
    joint_names: tuple[str, ...]
    q: np.ndarray
    qd: np.ndarray
    tau: np.ndarray
    ctrl: np.ndarray
    vec3: np.ndarray
    quat: np.ndarray
    frame_steps: np.ndarray
    frames: dict[tuple[str, int, int], list[bytes]]

    @property
    def steps(self) -> int:
        """Physics steps in the clip."""
        return int(self.q.shape[0])

    @property
    def flat(self) -> np.ndarray:
        """Every signal of a step side by side: (steps, F)."""
        n = self.steps
        return np.concatenate([self.q, self.qd, self.tau, self.ctrl,
                               self.vec3.reshape(n, -1), self.quat.reshape(n, -1)], axis=1)


def simulate_signals(cameras: list[tuple[str, int, int]], *, seed: int = 0,
                     seconds: float = _CLIP_S, frames_per_camera: int = 4) -> MockSignals:
    """Drive the sim scene's G1 through smooth joint targets (sums of sines around the rest
    pose, from ``seed``) in physics for ``seconds``, recording every step; render
    ``frames_per_camera`` frames of each ``(camera, width, height)`` along the way."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from sim.episode import encode_jpeg
    from sim.errors import SimError
    from sim.scenes import Scene
    from sim.tasks import get_task

    rng = np.random.default_rng([seed, 0x6D6F636B])
    with _SCENE_LOCK:
        scene = _SCENES.pop() if _SCENES else None
    if scene is None:
        try:
            scene = Scene(get_task("pick_place").default_layout())
        except SimError as exc:
            raise MockError(f"mock release: the sim scene does not build: {exc}") from exc
    scene.reset()
    try:
        steps = max(2, int(round(seconds / scene.dt)))
        nj = len(scene.joint_names)
        home = scene.home_ctrl()
        lo, hi = scene.ctrl_range[:, 0], scene.ctrl_range[:, 1]
        reach = np.minimum(home - lo, hi - home)
        amp = np.clip(reach, 0.0, None) * rng.uniform(0.2, 0.6, nj)
        freq = rng.uniform(0.15, 0.7, (2, nj))
        phase = rng.uniform(0.0, 2 * math.pi, (2, nj))
        bodies = [b for b in ("torso_link", "head_link", "pelvis")
                  if _has_body(scene, b)]
        objects = list(scene.object_names)
        k = 2 + len(bodies) + len(objects)
        q = np.empty((steps, nj))
        qd = np.empty((steps, nj))
        tau = np.empty((steps, nj))
        ctrl = np.empty((steps, nj))
        pos = np.empty((steps, k, 3))
        quat = np.empty((steps, k, 4))
        frame_steps = np.linspace(0, steps - 1, max(1, frames_per_camera)).round().astype(int)
        frames: dict[tuple[str, int, int], list[bytes]] = {c: [] for c in cameras}
        for i in range(steps):
            t = i * scene.dt
            wave = 0.5 * (np.sin(2 * math.pi * freq[0] * t + phase[0])
                          + np.sin(2 * math.pi * freq[1] * t + phase[1]))
            target = home + amp * wave
            scene.set_ctrl(target)
            scene.step()
            q[i], qd[i], tau[i], ctrl[i] = scene.qpos(), scene.qvel(), scene.effort(), scene.ctrl()
            poses = [scene.palm_pose("left"), scene.palm_pose("right")]
            poses += [scene.body_pose(b) for b in bodies]
            poses += [scene.object_pose(o) for o in objects]
            for j, (p, qw) in enumerate(poses):
                pos[i, j] = p
                quat[i, j] = (qw[1], qw[2], qw[3], qw[0])
            if i in frame_steps:
                for cam, w, h in cameras:
                    frames[(cam, w, h)].append(encode_jpeg(scene.render(cam, w, h),
                                                           _JPEG_QUALITY))
    except SimError as exc:
        scene.close()
        raise MockError(f"mock release: simulation failed: {exc}") from exc
    with _SCENE_LOCK:  # kept for the next mock of this process (compiling takes seconds)
        _SCENES.append(scene)
    vel = np.gradient(pos, scene.dt, axis=0)
    return MockSignals(scene.dt, tuple(scene.joint_names), q, qd, tau, ctrl,
                       np.concatenate([pos, vel], axis=1), quat, frame_steps, frames)


#: compiled scenes of this process, reset and reused by the next mock
_SCENES: list[Any] = []
_SCENE_LOCK = threading.Lock()


def _has_body(scene: Any, name: str) -> bool:
    import mujoco

    return int(mujoco.mj_name2id(scene.model, mujoco.mjtObj.mjOBJ_BODY, name)) >= 0


# --------------------------------------------------------------------------------------
# The real release's tree
# --------------------------------------------------------------------------------------


def _nodes(root: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(relative path, zarr.json document) of every group and array, parents first."""
    for meta in sorted(root.rglob("zarr.json"), key=lambda p: (len(p.parts), str(p))):
        rel = meta.parent.relative_to(root).as_posix()
        try:
            doc = json.loads(meta.read_text())
        except (OSError, ValueError) as exc:
            raise MockError(f"{meta}: unreadable Zarr metadata: {exc}") from exc
        yield ("" if rel == "." else rel), doc


def _layout(doc: dict[str, Any]) -> tuple[int, int, bool]:
    """(chunk rows, shard rows, compressed) of a curation array."""
    grid = doc["chunk_grid"]["configuration"]["chunk_shape"]
    codecs = doc.get("codecs") or []
    if len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed":
        conf = codecs[0]["configuration"]
        inner = conf["chunk_shape"]
        compress = any(c.get("name") == "zstd" for c in conf.get("codecs") or [])
        return int(inner[0]), int(grid[0]), compress
    compress = any(c.get("name") == "zstd" for c in codecs)
    return int(grid[0]), int(grid[0]), compress


def _read_real(path: Path) -> np.ndarray:
    """A small array of the real release (clocks are never read: only counts and bounds)."""
    from curation.loader import ShardedArrayReader

    return ShardedArrayReader(path).read()


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------


@dataclass
class _StreamPlan:
    name: str
    attrs: dict[str, Any]
    counts: np.ndarray          # rows per episode (from the real episode bounds)
    time_ns: np.ndarray = _field(default_factory=lambda: np.zeros(0, np.int64))
    #: the sim step each row samples
    clip_step: np.ndarray = _field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def bounds(self) -> np.ndarray:
        ends = np.cumsum(self.counts)
        return np.stack([ends - self.counts, ends], axis=1).astype(np.int64)


def _camera_of(stream: str, attrs: dict[str, Any], index: int) -> str:
    from sim.scenes import CAMERAS

    text = f"{stream} {attrs.get('topic', '')}".lower()
    for cam in sorted(CAMERAS, key=len, reverse=True):
        if cam in text or cam.replace("_", ".") in text or cam.replace("_", "/") in text:
            return cam
    names = sorted(CAMERAS)
    return names[index % len(names)]


def _camera_size(real: Path, stream: str, attrs: dict[str, Any]) -> tuple[int, int]:
    cam = attrs.get("camera") or {}
    if cam.get("width") and cam.get("height"):
        return int(cam["width"]), int(cam["height"])
    # no declared size: the first frame's header gives the shape (its pixels are not used)
    import cv2

    from curation.loader import ReleaseReader

    reader = ReleaseReader(real)

    img = cv2.imdecode(np.frombuffer(reader.payload(stream, 0), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MockError(f"{real}: stream {stream}: first frame does not decode; cannot size "
                        "the mock frames")
    return int(img.shape[1]), int(img.shape[0])


def build_mock(release_path: Path | str, out_dir: Path | str, *, seed: int = 0,
               frames_per_camera: int = 4) -> Path:
    """Write the mock of the release version at ``release_path`` into ``out_dir/v<N>``
    (N = the real version; replaced if present) and return that directory.

    Same layout as the real release (see the module docstring), content from the
    simulator, seeded by ``seed``. Raises :class:`MockError` naming the file or stream
    when the real release cannot be read or the simulator fails."""
    try:
        real = resolve(release_path)
        attrs = release_attrs(real)
        table = episode_table(real)
    except ReleaseError as exc:
        raise MockError(f"mock release: {exc}") from exc
    version = int(attrs["version"])
    out_root = Path(out_dir)
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / f"v{version}"
    tmp = Path(tempfile.mkdtemp(prefix=f".v{version}.mock-", dir=out_root))
    try:
        _build(real, attrs, table, tmp, seed, frames_per_camera)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _build(real: Path, attrs: dict[str, Any], table: list[dict[str, Any]], out: Path,
           seed: int, frames_per_camera: int) -> None:
    ne = len(table)
    rng = np.random.default_rng([seed, 0x7661756C74])
    durations = [max(0, int(r.get("end_ns", 0)) - int(r.get("start_ns", 0))) for r in table]
    slots = [max(_SLOT_NS, d + 10**9) for d in durations]
    starts = MOCK_EPOCH_NS + np.concatenate([[0], np.cumsum(slots[:-1])]).astype(np.int64) \
        if ne else np.zeros(0, np.int64)
    nodes = list(_nodes(real))
    docs = dict(nodes)

    # streams: rows per episode from the real bounds, mock clocks
    streams: dict[str, _StreamPlan] = {}
    for name in attrs.get("streams") or []:
        g = docs.get(f"streams/{name}")
        if g is None:
            raise MockError(f"{real}: stream {name} has no streams/{name}/zarr.json")
        b = _read_real(real / "streams" / name / "episode_bounds").reshape(-1, 2)
        if len(b) != ne:
            raise MockError(f"{real}: stream {name}: episode_bounds has {len(b)} rows, the "
                            f"episode table {ne}")
        streams[name] = _StreamPlan(name, dict(g.get("attributes") or {}),
                                    (b[:, 1] - b[:, 0]).astype(np.int64))
    clip_s = min(_CLIP_S, max([d / 1e9 for d in durations] + [0.5]))
    cams: list[tuple[str, int, int]] = []
    cam_of: dict[str, tuple[str, int, int]] = {}
    for i, (name, st) in enumerate(streams.items()):
        if "camera" in st.attrs or st.attrs.get("role") == "camera":
            if int(st.counts.sum()) == 0:
                continue
            w, h = _camera_size(real, name, st.attrs)
            key = (_camera_of(name, st.attrs, i), w, h)
            cam_of[name] = key
            if key not in cams:
                cams.append(key)
    sig = simulate_signals(cams, seed=seed, seconds=clip_s, frames_per_camera=frames_per_camera)
    phases = rng.uniform(0.0, clip_s, ne)
    for st in streams.values():
        ts, steps = [], []
        rate = st.attrs.get("rate_hz")
        for e in range(ne):
            n = int(st.counts[e])
            span = durations[e]
            period = 1e9 / float(rate) if rate else (span / n if n else 0.0)
            if n and (n - 1) * period > span:
                period = span / n
            offs = np.round(np.arange(n) * period).astype(np.int64)
            ts.append(starts[e] + offs)
            clip = (phases[e] + offs / 1e9) % (2 * clip_s)
            clip = np.where(clip > clip_s, 2 * clip_s - clip, clip)  # back and forth
            steps.append(np.minimum((clip / sig.dt).round().astype(np.int64), sig.steps - 1))
        st.time_ns = np.concatenate(ts) if ts else np.zeros(0, np.int64)
        st.clip_step = np.concatenate(steps) if steps else np.zeros(0, np.int64)

    real_stats = _json(real / str(attrs.get("stats", "stats.json")))
    described = {s: set(f) for s, f in (real_stats.get("streams") or {}).items()}
    stats: dict[str, dict[str, Any]] = {s: {} for s in described}
    for rel, doc in nodes:
        path = out / rel if rel else out
        if doc.get("node_type") == "group":
            write_group(path, _group_attrs(rel, doc, attrs, streams, seed))
            continue
        data = _array_data(rel, doc, streams, sig, cam_of, real)
        chunk_rows, shard_rows, compress = _layout(doc)
        write_array(path, data, chunk_rows, shard_rows, compress,
                    attributes=dict(doc.get("attributes") or {}))
        parts = rel.split("/")
        if len(parts) == 3 and parts[0] == "streams" and parts[2] in described.get(parts[1], ()):
            d = describe(data)
            if d is not None:
                stats.setdefault(parts[1], {})[parts[2]] = d
    rows = _episode_rows(table, streams, starts, durations, seed, rng)
    write_json(out / str(attrs.get("episode_table", "episodes.json")),
               {"format_version": 1, "episodes": rows})
    (out / str(attrs.get("stats", "stats.json"))).write_text(json.dumps(
        {"format_version": 1, "quantiles": list(QUANTILES), "streams": stats}))
    write_manifest(out, str(attrs["name"]), int(attrs["version"]))
    for extra in sorted(p for p in real.iterdir() if p.is_file()):
        if extra.name not in {"zarr.json", MANIFEST, str(attrs.get("stats", "stats.json")),
                              str(attrs.get("episode_table", "episodes.json"))}:
            raise MockError(f"{extra}: a file of the release this mock builder does not know; "
                            "it would be missing from the mock")


def _json(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MockError(f"{path}: unreadable: {exc}") from exc
    return doc


def _group_attrs(rel: str, doc: dict[str, Any], root_attrs: dict[str, Any],
                 streams: dict[str, _StreamPlan], seed: int) -> dict[str, Any]:
    attrs = dict(doc.get("attributes") or {})
    if rel == "":
        a = dict(root_attrs)
        a["created_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        a["fingerprint"] = hashlib.sha256(
            f"demofab.mock:{root_attrs.get('name')}:{root_attrs.get('version')}:{seed}"
            .encode()).hexdigest()
        a["mock"] = {"generator": "vault.mock", "seed": seed,
                     "of": {"name": root_attrs.get("name"), "version": root_attrs.get("version")},
                     "content": "simulated (sim.scenes G1); no provider data"}
        attrs["demofab"] = a
        return attrs
    parts = rel.split("/")
    if len(parts) == 2 and parts[0] == "streams" and parts[1] in streams:
        st = streams[parts[1]]
        attrs["count"] = int(st.counts.sum())
        attrs["measured_rate_hz"] = measured_rate_hz(st.time_ns, st.bounds)
    return attrs


def _array_data(rel: str, doc: dict[str, Any], streams: dict[str, _StreamPlan],
                sig: MockSignals, cam_of: dict[str, tuple[str, int, int]],
                real: Path) -> np.ndarray:
    shape = tuple(int(n) for n in doc["shape"])
    dtype = np.dtype(doc["data_type"] if doc["data_type"] != "bool" else "bool")
    parts = rel.split("/")
    if parts[0] == "sync" and len(parts) == 2:
        a, _, b = parts[1].partition("__to__")
        if a not in streams or b not in streams:
            raise MockError(f"{real / rel}: sync index between unknown streams {a!r}, {b!r}")
        sa, sb = streams[a], streams[b]
        return sync_index(sa.time_ns, sa.bounds, sb.time_ns, sb.bounds)
    if parts[0] != "streams" or len(parts) < 3 or parts[1] not in streams:
        raise MockError(f"{real / rel}: an array outside the release format; cannot mock it")
    st = streams[parts[1]]
    field = "/".join(parts[2:])
    n = int(st.counts.sum())
    if field == "time_ns":
        return st.time_ns
    if field == "log_time_ns":
        return st.time_ns + _LATENCY_NS
    if field == "episode_bounds":
        return st.bounds
    if len(parts) == 4 and parts[3] in ("values", "offsets"):
        payloads = _payloads(st, parts[2], sig, cam_of)
        if parts[3] == "offsets":
            return np.concatenate([[0], np.cumsum([len(p) for p in payloads])]).astype(np.int64)
        return np.frombuffer(b"".join(payloads), np.uint8).copy()
    if shape[:1] != (n,):
        raise MockError(f"{real / rel}: {shape[0] if shape else 0} rows, stream {st.name} has "
                        f"{n}")
    return _numeric(field, shape[1:], dtype, st, sig, doc)


def _payloads(st: _StreamPlan, field: str, sig: MockSignals,
              cam_of: dict[str, tuple[str, int, int]]) -> list[bytes]:
    if st.name in cam_of and field == "data":
        frames = sig.frames[cam_of[st.name]]
        which = np.abs(st.clip_step[:, None] - sig.frame_steps[None, :]).argmin(axis=1)
        return [frames[int(i)] for i in which]
    dt = (st.attrs.get("ragged_dtypes") or {}).get(field)
    if dt:
        flat = sig.flat[st.clip_step]
        return [np.asarray(row[:4], dtype=np.dtype(dt).newbyteorder("<")).tobytes()
                for row in flat]
    return [f"mock {field} {i}".encode() for i in range(len(st.clip_step))]


def _numeric(field: str, tail: tuple[int, ...], dtype: np.dtype[Any], st: _StreamPlan,
             sig: MockSignals, doc: dict[str, Any]) -> np.ndarray:
    rows = st.clip_step
    n = len(rows)
    size = math.prod(tail)
    names = st.attrs.get("joint_names")
    command = st.attrs.get("role") == "action" or "command" in st.name
    if field.endswith("_ns") and dtype.kind in "iu":
        base = np.broadcast_to(st.time_ns.reshape(n, *([1] * len(tail))), (n, *tail))
        return np.ascontiguousarray(base, dtype=dtype)
    if names and field in ("position", "velocity", "effort") and tail == (len(names),):
        src = {"position": sig.ctrl if command else sig.q, "velocity": sig.qd,
               "effort": sig.tau}[field]
        cols = [sig.joint_names.index(j) if j in sig.joint_names else i % len(sig.joint_names)
                for i, j in enumerate(names)]
        values = src[rows][:, cols]
    else:
        fields = (doc.get("attributes") or {}).get("fields")
        last = tail[-1] if tail else 1
        lname = field.lower()
        if last == 4 and (fields == ["x", "y", "z", "w"] or "orientation" in lname
                          or "rotation" in lname or "quat" in lname):
            bank = sig.quat[rows]
        elif last == 3 and (fields == ["x", "y", "z"] or any(
                w in lname for w in ("position", "translation", "velocity", "acceleration"))):
            bank = sig.vec3[rows]
        else:
            bank = sig.flat[rows][:, :, None]
        k = bank.shape[1]
        groups = size // last if last else 0
        if bank.shape[2] == last and groups:
            pick = np.arange(groups) % k
            values = bank[:, pick, :].reshape(n, *tail)
        else:
            flat = bank.reshape(n, -1)
            idx = np.arange(size) % flat.shape[1] if flat.shape[1] else np.zeros(size, int)
            values = flat[:, idx].reshape(n, *tail) if size else np.zeros((n, *tail))
    values = np.asarray(values, dtype=np.float64).reshape(n, *tail)
    if dtype.kind == "f":
        return values.astype(dtype)
    if dtype.kind == "b":
        med = np.median(values) if values.size else 0.0
        return np.asarray(values > med)
    info = np.iinfo(dtype)
    return np.clip(np.round(values * 1000), info.min, info.max).astype(dtype)


def _episode_rows(table: list[dict[str, Any]], streams: dict[str, _StreamPlan],
                  starts: np.ndarray, durations: list[int], seed: int,
                  rng: np.random.Generator) -> list[dict[str, Any]]:
    labels: dict[str, dict[Any, str]] = {"task": {}, "operator": {}, "session": {}}
    prefix = {"task": "mock task", "operator": "mock-operator-", "session": "mock-session-"}

    def generic(col: str, value: Any) -> str:
        seen = labels[col]
        if value not in seen:
            sep = " " if col == "task" else ""
            seen[value] = f"{prefix[col]}{sep}{len(seen) + 1}" if value not in ("", None) else ""
        return seen[value]

    rows = []
    for e, real in enumerate(table):
        start = int(starts[e])
        end = start + durations[e]
        success: bool | None = None if real.get("success") is None \
            else bool(rng.random() < 0.8)
        counts = {s: int(p.counts[e]) for s, p in streams.items()}
        anns = real.get("annotations") or []
        mock: dict[str, Any] = {
            "index": e, "episode_id": f"mock-{e:06d}", "key": f"mock:{seed}:{e}",
            "task": generic("task", real.get("task")), "success": success,
            "outcome": "unknown" if success is None else ("success" if success else "failure"),
            "operator": generic("operator", real.get("operator")),
            "session": generic("session", real.get("session")),
            "robot": real.get("robot", ""), "split": real.get("split", "train"),
            "quality_score": 1.0, "flags": 0, "flag_names": [], "flag_reasons": [],
            "interventions": 0, "notes": [], "start_ns": start, "end_ns": end,
            "duration_s": round(durations[e] / 1e9, 6), "streams": counts,
            "annotations": [
                {"kind": a.get("kind", "subtask"), "label": f"mock subtask {i + 1}",
                 "time_ns": start + (i + 1) * durations[e] // (len(anns) + 1),
                 "source": a.get("source", "event")} for i, a in enumerate(anns)],
            "provenance": {"kind": "sim", "seed": seed, "source_episode": "",
                           "generator": "vault.mock"},
            "quality_streams": {str(p.attrs.get("topic", s)): {
                "count": counts[s], "rate_hz": p.attrs.get("rate_hz")} for s, p in streams.items()},
            "labels_source": {k: "mock" for k in (real.get("labels_source") or {})},
        }
        for col, value in real.items():   # columns the release has beyond the format's
            if col not in mock:
                mock[col] = _generic_value(col, value, e)
        rows.append({k: mock[k] for k in real} | {k: v for k, v in mock.items() if k not in real})
    return rows


def _generic_value(col: str, value: Any, e: int) -> Any:
    if isinstance(value, bool):
        return e % 2 == 0
    if isinstance(value, int):
        return 0
    if isinstance(value, float):
        return 0.0
    if isinstance(value, str):
        return f"mock {col} {e + 1}" if value else ""
    if isinstance(value, list):
        return []
    if isinstance(value, dict):
        return {}
    return None
