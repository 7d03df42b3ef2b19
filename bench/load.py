"""Loader throughput: random training samples from a release vs memmap, bare JPEG decode
and LeRobot.

Builds its own release (synthetic humanoid rig -> MCAP session -> ``curate``) in a temp
dir, then measures on one core, best of ``--repeat`` runs each:

* ``lowdim_vs_memmap``: random windows (the current ``joint_states/position`` plus
  ``--window`` future ``joint_commands/position`` at ``--rate`` Hz, aligned on the int64
  clocks, with pad masks) from ``ReleaseDataset``, against ``np.memmap`` over the same
  arrays dumped as ``.npy`` with the same clock alignment done in numpy. Target >= 0.5.
* ``image_vs_decode``: random camera frames (all cameras) decoded by ``ReleaseDataset``,
  against bare ``cv2.imdecode`` of the same JPEG bytes held in memory. Target >= 0.7.
* ``vs_lerobot``: the same samples (the same episode and 30 fps frame; state, 16 actions
  at 30 fps with pad masks, every camera's current frame decoded) from
  ``ReleaseDataset(clock=30)`` against ``LeRobotDataset`` over our LeRobot export of just
  those features, run in ``.venv-lerobot`` (``tools/lerobot-venv.sh`` builds it) when it
  exists; ``null`` with the reason otherwise. Both sides run pinned to the same core, warm,
  best of ``--repeat`` passes; the first samples are checked equal. Target >= 3.
* ``vs_zarr_python``: random single rows of every numeric array of the release's streams
  read by ``ShardedArrayReader`` (the loader's Zarr reader) with its chunk cache off and
  by zarr-python, taking turns, best of ``--repeat``: our rows per second over
  zarr-python's; ``zarr_read`` holds the rates and ``vs_zarr_python_cached``, the same
  with the loader's LRU of decoded chunks. The first rows are checked equal.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .timing import best_of
from .zarr_baseline import compare_reads

TARGETS = {"lowdim_vs_memmap": 0.5, "image_vs_decode": 0.7, "vs_lerobot": 3.0}
LEROBOT_PYTHON = Path(__file__).resolve().parent.parent / ".venv-lerobot" / "bin" / "python"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--episode-seconds", type=float, default=4.0)
    p.add_argument("--samples", type=int, default=20_000, help="random low-dim windows per run")
    p.add_argument("--frames", type=int, default=600, help="random camera frames per run")
    p.add_argument("--window", type=int, default=16, help="future actions per window")
    p.add_argument("--rate", type=float, default=50.0, help="action rate of the window (Hz)")
    p.add_argument("--repeat", type=int, default=5, help="best of N runs per reader")
    p.add_argument("--lerobot-samples", type=int, default=200)
    p.add_argument("--lerobot-python", default=str(LEROBOT_PYTHON),
                   help="python of a venv with lerobot installed")
    p.add_argument("--dir", default=None, help="where to build the release (default: temp)")
    p.add_argument("--zarr-reads", type=int, default=3000,
                   help="random rows per run for vs_zarr_python")
    p.add_argument("--seed", type=int, default=0)


def build_release(base: Path, episodes: int, seconds: float) -> Path:
    """A release of ``episodes`` synthetic humanoid episodes, curated from real MCAP files."""
    from curation import curate
    from recorder.control import Plan, Recorder
    from recorder.profile import load_profile
    from recorder.session import Session
    from recorder.sources.synthetic import RigOptions, SyntheticRig

    profile = load_profile("humanoid")
    session = Session(base / "session", profile)
    rig = SyntheticRig(profile, RigOptions(seed=0, start_ns=1_700_000_000_000_000_000))
    Recorder(session, rig, Plan(episodes=episodes, episode_seconds=seconds,
                                task="pick up the box", operator="bench")).run(
        handle_signals=False)
    return curate([base / "session"], base / "releases", "bench").release


def _lowdim(release: Path, tmp: Path, args: argparse.Namespace, rng: np.random.Generator,
            ) -> dict[str, Any]:
    from curation.loader import ReleaseDataset, ReleaseReader

    deltas = [i / args.rate for i in range(args.window)]
    ds = ReleaseDataset(release, keys=["joint_states/position"],
                        delta_timestamps={"joint_commands/position": deltas})
    idx = [int(i) for i in rng.integers(0, len(ds), args.samples)]

    # The memmap reference: the same arrays as plain .npy files, the same alignment.
    rel = ReleaseReader(release)
    for stream in ("joint_states", "joint_commands"):
        np.save(tmp / f"{stream}.npy", rel.field(stream, "position").read())
    state = np.load(tmp / "joint_states.npy", mmap_mode="r")
    action = np.load(tmp / "joint_commands.npy", mmap_mode="r")
    ref_episode = rel.episode_of_rows("joint_states", np.arange(len(state)))
    ref_time = rel.times("joint_states")
    act_time, act_bounds = rel.times("joint_commands"), rel.bounds("joint_commands")
    ref_bounds = rel.bounds("joint_states")
    d_ns = np.round(np.array(deltas) * 1e9).astype(np.int64)

    def memmap_sample(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        e = ref_episode[i]
        t = ref_time[i]
        t1 = ref_time[ref_bounds[e, 1] - 1]
        b0, b1 = act_bounds[e]
        q = t + d_ns
        rows = np.searchsorted(act_time[b0:b1], np.minimum(q, t1), side="right") - 1
        return state[i], action[np.maximum(rows, 0) + b0], q > t1

    for i in idx[:50]:  # same values, or the comparison means nothing
        ours, ref = ds[i], memmap_sample(i)
        np.testing.assert_array_equal(ours["joint_states/position"], ref[0])
        np.testing.assert_array_equal(ours["joint_commands/position"], ref[1])
        np.testing.assert_array_equal(ours["joint_commands/position_is_pad"], ref[2])

    def run_ours() -> None:
        for i in idx:
            ds[i]

    def run_memmap() -> None:
        for i in idx:
            memmap_sample(i)

    run_ours()  # warm: chunks decoded into the LRU, files in the page cache
    ours_s, memmap_s = best_of([run_ours, run_memmap], args.repeat)
    return {
        "lowdim_windows_per_s": round(len(idx) / ours_s),
        "memmap_windows_per_s": round(len(idx) / memmap_s),
        "lowdim_vs_memmap": round(memmap_s / ours_s, 3),
    }


def _images(release: Path, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    import cv2

    from curation.loader import ReleaseDataset, ReleaseReader

    rel = ReleaseReader(release)
    cams = [s.name for s in rel.streams.values() if s.is_camera]
    sets = [ReleaseDataset(release, clock=c, keys=[f"{c}/data"]) for c in cams]
    picks = [(int(c), int(rng.integers(0, len(sets[c])))) for c in rng.integers(0, len(cams),
                                                                                 args.frames)]
    payloads = [rel.payload(cams[c], i) for c, i in picks]  # clock row i == stream row i
    np.testing.assert_array_equal(
        sets[picks[0][0]][picks[0][1]][f"{cams[picks[0][0]]}/data"],
        cv2.imdecode(np.frombuffer(payloads[0], np.uint8), cv2.IMREAD_COLOR_RGB))

    def run_ours() -> None:
        for c, i in picks:
            sets[c][i]

    def run_decode() -> None:
        for data in payloads:
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)

    run_ours()
    ours_s, decode_s = best_of([run_ours, run_decode], args.repeat)
    return {
        "image_frames_per_s": round(len(picks) / ours_s),
        "decode_frames_per_s": round(len(picks) / decode_s),
        "image_vs_decode": round(decode_s / ours_s, 3),
        "cameras": len(cams),
    }


_LEROBOT_SCRIPT = r"""
import json, os, sys, time
args = json.loads(open(sys.argv[2]).read())
if hasattr(os, "sched_setaffinity"):  # one core, like our side; before torch starts threads
    os.sched_setaffinity(0, {args["cpu"]})
import numpy as np
import torch
import lerobot
from lerobot.datasets.lerobot_dataset import LeRobotDataset
torch.set_num_threads(1)
ds = LeRobotDataset("demofab/bench", root=sys.argv[1], delta_timestamps={
    "action": [i / args["fps"] for i in range(args["window"])]})
idx = args["indices"]
check = [ds[i] for i in idx[: args["check"]]]
np.savez(sys.argv[3], state=np.stack([s["observation.state"].numpy() for s in check]),
         action=np.stack([s["action"].numpy() for s in check]),
         action_is_pad=np.stack([s["action_is_pad"].numpy() for s in check]),
         **{k: np.stack([(s[k].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                         for s in check]) for k in ds.meta.video_keys})

def run():
    for i in idx:
        ds[i]

run()  # warm: video decoders opened, files in the page cache
best = float("inf")
for _ in range(args["repeat"]):
    t = time.perf_counter()
    run()
    best = min(best, time.perf_counter() - t)
print(json.dumps({"samples_per_s": len(idx) / best, "frames": len(ds),
                  "video_backend": ds.video_backend, "lerobot": lerobot.__version__,
                  "torch": torch.__version__}))
"""


class _OneCore:
    """Pin this process to one core for a block (both sides of ``vs_lerobot`` run on the
    same core, one after the other)."""

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.saved: set[int] | None = None

    def __enter__(self) -> None:
        if hasattr(os, "sched_setaffinity"):
            self.saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {self.cpu})

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            os.sched_setaffinity(0, self.saved)


def _vs_lerobot(release: Path, tmp: Path, args: argparse.Namespace,
                rng: np.random.Generator) -> dict[str, Any]:
    """The same samples on both sides: release episode ``e``, frame ``k`` of the 30 fps grid
    (our sample ``episode_samples(e)[k]``, LeRobot's ``dataset_from_index + k``), each with
    the state, ``--window`` future actions at 30 fps with pad masks and every camera's
    current frame decoded (JPEG by OpenCV here, H.264 by LeRobot's video backend there).
    The export holds only those features, and the first samples are compared."""
    python = Path(args.lerobot_python)
    if not python.exists():
        return {"vs_lerobot": None, "vs_lerobot_reason": (
            f"{python} not found: build it with tools/lerobot-venv.sh (LeRobot and torch "
            "in a venv of their own, never beside DemoFab)")}
    import pyarrow.parquet as pq

    from curation.export import default_features, export_release
    from curation.loader import ReleaseDataset, ReleaseReader

    fps = 30
    rel = ReleaseReader(release)
    feats = [f for f in default_features(rel)
             if f.name in ("observation.state", "action") or f.kind == "image"]
    root = export_release(release, "lerobot", tmp, fps=fps, features=feats, name="bench-lerobot",
                          overwrite=True)
    state = next(f for f in feats if f.name == "observation.state")
    action = next(f for f in feats if f.name == "action")
    cams = {f.name: f.source for f in feats if f.kind == "image"}
    ds = ReleaseDataset(release, clock=float(fps), keys=[state.source, *cams.values()],
                        delta_timestamps={action.source: [i / fps for i in range(args.window)]})
    idx = [int(i) for i in rng.integers(0, len(ds), args.lerobot_samples)]
    episodes = pq.read_table(root / "meta" / "episodes").to_pylist()
    first = {int(r["demofab/release_index"]): int(r["dataset_from_index"]) for r in episodes}

    def theirs_index(i: int) -> int:
        e, _ = ds.locate(i)
        return first[e] + i - ds.episode_samples(e).start

    cpu = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    check = min(5, len(idx))
    spec = tmp / "lerobot-args.json"
    spec.write_text(json.dumps({
        "indices": [theirs_index(i) for i in idx], "fps": fps, "window": args.window,
        "repeat": args.repeat, "check": check, "cpu": cpu}))
    samples = tmp / "lerobot-samples.npz"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp / "hf-home")}  # LeRobot's parquet cache stays in the bench dir
    proc = subprocess.run([str(python), "-c", _LEROBOT_SCRIPT, str(root), str(spec),
                           str(samples)], capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        return {"vs_lerobot": None,
                "vs_lerobot_reason": "LeRobotDataset failed: " + proc.stderr.strip()[-500:]}
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])

    # Same samples, or the comparison means nothing.
    with np.load(samples) as got:
        for j, i in enumerate(idx[:check]):
            ours = ds[i]
            np.testing.assert_array_equal(got["state"][j], ours[state.source].astype(np.float32))
            np.testing.assert_array_equal(got["action_is_pad"][j], ours[action.source + "_is_pad"])
            np.testing.assert_array_equal(got["action"][j],
                                          ours[action.source].astype(np.float32))
            for name, key in cams.items():
                mse = np.mean((got[name][j].astype(np.float64) - ours[key]) ** 2)
                psnr = 10 * np.log10(255**2 / max(mse, 1e-9))
                assert psnr > 30, f"{name} of sample {i}: {psnr:.1f} dB from our JPEG frame"

    def run_ours() -> None:
        for i in idx:
            ds[i]

    with _OneCore(cpu):
        run_ours()
        (ours_s,) = best_of([run_ours], args.repeat)
    rate = len(idx) / ours_s
    return {
        "ours_lerobot_samples_per_s": round(rate, 1),
        "lerobot_samples_per_s": round(theirs["samples_per_s"], 1),
        "vs_lerobot": round(rate / theirs["samples_per_s"], 2),
        "lerobot": {"version": theirs["lerobot"], "torch": theirs["torch"],
                    "video_backend": theirs["video_backend"], "samples": len(idx),
                    "frames": theirs["frames"]},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="demofab-bench-load-"))
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    try:
        t = time.perf_counter()
        release = build_release(base, args.episodes, args.episode_seconds)
        build_s = time.perf_counter() - t
        result: dict[str, Any] = {
            "bench": "load", "episodes": args.episodes,
            "episode_seconds": args.episode_seconds, "build_seconds": round(build_s, 2),
            "window": args.window, "window_rate_hz": args.rate,
        }
        result |= _lowdim(release, base, args, rng)
        result |= _images(release, args, rng)
        result |= _vs_lerobot(release, base, args, rng)
        reads = compare_reads(release, args.zarr_reads, args.repeat, args.seed)
        result["vs_zarr_python"] = reads.pop("vs_zarr_python")
        result["zarr_read"] = reads
        result["targets"] = TARGETS
        result["meets_targets"] = {
            k: (result.get(k) is not None and result[k] >= v) if result.get(k) is not None
            else None for k, v in TARGETS.items()}
        return result
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
