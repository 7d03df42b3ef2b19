"""Curation ingest: MB/s from MCAP recordings into a new Zarr release, vs a bare mcap read.

Records a synthetic session (or uses --input), then in the same run: reads every file
with the ``mcap`` library's reader (every message, no decoding: the reference), and
curates the same files into a fresh release (hash, decode, segment, check, write, manifest,
fsync), alternating the two ``--repeat`` times. ``vs_mcap_read`` is curate MB/s over
mcap-read MB/s, best run against best run (target >= 0.5); ``vs_mcap_read_medians`` is
the same ratio over the median runs, for how noisy the machine was.

``vs_zarr_python``: every array of the last release written again from memory by
``curation.zwrite`` (hashed and fsynced through the record of written files, as a release
is) and by zarr-python (same shards, chunks and codecs, then fsynced), taking turns, best
of ``--repeat``: zarr-python's time over ours (``release_write`` holds both times).

``mcapread_vs_mcap_library`` and ``cdr_vs_rosbags``: the hand-written MCAP reader and CDR
column decoder against the libraries they replace, on the same files (``bench.fastpaths``;
``fast_paths`` holds the times).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", help="recordings to ingest (default: a synthetic session)")
    parser.add_argument("--episodes", type=int, default=6, help="synthetic episodes")
    parser.add_argument("--episode-seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of each side, alternating; the best of each is compared")
    parser.add_argument("--keep", help="keep the work directory here")


def _record(out: Path, episodes: int, seconds: float) -> Path:
    from recorder.cli import open_session
    from recorder.contract import ROBOT_DESCRIPTION
    from recorder.control import Plan, Recorder
    from recorder.sources import make_source
    from recorder.urdf import urdf_from_profile

    session = open_session(out, "humanoid")
    session.robot_description = (ROBOT_DESCRIPTION, "application/xml",
                                 urdf_from_profile(session.profile))
    source = make_source("synthetic", session.profile, seed=1)
    Recorder(session, source, Plan(episodes=episodes, episode_seconds=seconds, task="bench",
                                   operator="bench", autostart=True)).run()
    return out


def _mcap_read(files: list[Path]) -> int:
    from mcap.reader import make_reader

    n = 0
    for f in files:
        with open(f, "rb") as fh:
            for _ in make_reader(fh).iter_messages():
                n += 1
    return n


def run(args: argparse.Namespace) -> dict[str, Any]:
    from curation.inputs import find_inputs
    from curation.pipeline import curate

    from .fastpaths import compare_fast_paths
    from .zarr_baseline import compare_writes

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="demofab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = Path(args.input) if args.input else _record(work / "session", args.episodes,
                                                          args.episode_seconds)
        files = [f.path for f in find_inputs([src])[0]]
        size = sum(f.stat().st_size for f in files)
        for f in files:  # the same warm page cache for both sides
            f.read_bytes()
        read_s, cur_s = [], []
        messages = 0
        result = None
        for i in range(max(1, args.repeat)):
            t = time.perf_counter()
            messages = _mcap_read(files)
            read_s.append(time.perf_counter() - t)
            out = work / f"releases{i}"
            t = time.perf_counter()
            result = curate([src], out, "bench")
            cur_s.append(time.perf_counter() - t)
            if i + 1 < max(1, args.repeat):
                shutil.rmtree(out, ignore_errors=True)
        assert result is not None
        writes = compare_writes(result.release, work / "rewrite", args.repeat)
        fast = compare_fast_paths(files, min(3, args.repeat))
        shutil.rmtree(out, ignore_errors=True)
        read_mbps = size / min(read_s) / 1e6
        cur_mbps = size / min(cur_s) / 1e6
        return {
            "files": len(files), "input_mb": round(size / 1e6, 2), "messages": messages,
            "episodes": result.episodes,
            "mb_per_s": round(cur_mbps, 1), "mcap_read_mb_per_s": round(read_mbps, 1),
            "vs_mcap_read": round(cur_mbps / read_mbps, 3),
            "curate_s": round(min(cur_s), 3), "mcap_read_s": round(min(read_s), 3),
            "curate_median_s": round(statistics.median(cur_s), 3),
            "mcap_read_median_s": round(statistics.median(read_s), 3),
            "vs_mcap_read_medians": round(statistics.median(read_s) / statistics.median(cur_s), 3),
            "repeat": len(cur_s),
            "target_vs_mcap_read": 0.5,
            "vs_zarr_python": writes.pop("vs_zarr_python"), "release_write": writes,
            "mcapread_vs_mcap_library": fast.pop("mcapread_vs_mcap_library"),
            "cdr_vs_rosbags": fast.pop("cdr_vs_rosbags"), "fast_paths": fast,
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
