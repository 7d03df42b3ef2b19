"""Episode writer throughput vs a bare mcap Writer loop and rosbags' Writer.

The humanoid profile for N seconds of robot time is generated in memory first; then the
same messages go through (1) DemoFab's EpisodeWriter with its health accounting and
header-stamp extraction, (2) a bare ``mcap`` Writer loop with the same chunk size and
compression, (3) rosbags' rosbag2 Writer (MCAP storage, its default: no compression).
All run in this one process, one after the other, on one core.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from unittest import mock

from mcap.writer import Writer as McapWriter

if TYPE_CHECKING:
    from recorder.profile import Profile


class Msg(NamedTuple):
    """One generated message, stamped (the synthetic rig stamps every one)."""

    topic: str
    data: bytes
    log_time: int
    publish_time: int


#: one writer under test: (target, profile, messages, args) -> seconds
Run = Callable[["Path", "Profile", "list[Msg]", argparse.Namespace], float]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=60.0, help="robot time to record")
    p.add_argument("--profile", default="humanoid")
    p.add_argument("--compression", default="zstd", choices=["zstd", "lz4", "none"])
    p.add_argument("--level", type=int, default=1, help="zstd level, for ours and the bare loop")
    p.add_argument("--chunk-size", type=int, default=1 << 20)
    p.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    p.add_argument("--repeat", type=int, default=3, help="best of N runs per writer")


def _messages(profile: Profile, seconds: float) -> list[Msg]:
    from recorder.sources.synthetic import RigOptions, SyntheticRig

    rig = SyntheticRig(profile, RigOptions(seed=0, start_ns=1_700_000_000_000_000_000))
    end = rig.t0 + int(seconds * 1e9)
    out: list[Msg] = []
    for m in rig.messages():
        if m.log_time >= end:
            break
        if m.publish_time is None:
            raise RuntimeError(f"the synthetic rig left a message on {m.topic} unstamped")
        out.append(Msg(m.topic, m.data, m.log_time, m.publish_time))
    rig.close()
    return out


def _ours(path: Path, profile: Profile, msgs: list[Msg], args: argparse.Namespace) -> float:
    from recorder.contract import HEALTH_METADATA
    from recorder.writer import EpisodeWriter, WriterOptions

    t = time.perf_counter()
    w = EpisodeWriter(path, profile, WriterOptions(compression=args.compression, level=args.level,
                                                   chunk_size=args.chunk_size))
    write = w.write
    for m in msgs:
        write(m.topic, m.data, m.log_time)  # stamp read from the CDR bytes, as live
    report = w.health.report(msgs[0].log_time, msgs[-1].log_time, w.bytes_written)
    w.close({HEALTH_METADATA: report.metadata()})
    return time.perf_counter() - t


class _ZstdAtLevel:
    """Stands in for the ``zstandard`` module inside ``mcap.writer`` so that the bare loop
    compresses at the same zstd level as ours (mcap's Writer has no level setting)."""

    def __init__(self, level: int) -> None:
        import zstandard

        self._c = zstandard.ZstdCompressor(level=level)

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)


def _bare(path: Path, profile: Profile, msgs: list[Msg], args: argparse.Namespace,
          level: int | None = None) -> float:
    import mcap.writer

    with (contextlib.nullcontext() if level is None
          else mock.patch.object(mcap.writer, "zstandard", _ZstdAtLevel(level))):
        return _bare_loop(path, profile, msgs, args)


def _bare_loop(path: Path, profile: Profile, msgs: list[Msg],
               args: argparse.Namespace) -> float:
    from recorder.writer import COMPRESSIONS, ChannelInfo

    t = time.perf_counter()
    with open(path, "wb") as f:
        w = McapWriter(f, chunk_size=args.chunk_size, compression=COMPRESSIONS[args.compression])
        w.start(profile="ros2", library="bare")
        ids: dict[str, int] = {}
        for spec in profile.topics:
            info = ChannelInfo.for_spec(spec)
            sid = w.register_schema(info.type, "ros2msg", info.schema_text.encode())
            ids[spec.topic] = w.register_channel(spec.topic, "cdr", sid, dict(info.metadata))
        add = w.add_message
        for m in msgs:
            add(ids[m.topic], m.log_time, m.data, m.publish_time)
        w.finish()
    return time.perf_counter() - t


def _rosbags(path: Path, profile: Profile, msgs: list[Msg],
             args: argparse.Namespace) -> float:
    from rosbags.rosbag2 import StoragePlugin, Writer

    from recorder.types import typestore

    store = typestore()
    t = time.perf_counter()
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {s.topic: w.add_connection(s.topic, s.type, typestore=store)
                 for s in profile.topics}
        write = w.write
        for m in msgs:
            write(conns[m.topic], m.log_time, m.data)
    return time.perf_counter() - t


def run(args: argparse.Namespace) -> dict[str, Any]:
    from recorder.profile import load_profile

    profile = load_profile(args.profile)
    msgs = _messages(profile, args.seconds)
    total = sum(len(m.data) for m in msgs)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="demofab-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    best: dict[str, float] = {}
    sizes: dict[str, int] = {}

    def bare_at_level(path: Path, profile: Profile, msgs: list[Msg],
                      args: argparse.Namespace) -> float:
        return _bare(path, profile, msgs, args, level=args.level)

    try:
        for i in range(args.repeat):
            runs: tuple[tuple[str, Run], ...] = (
                ("ours", _ours), ("bare_mcap", bare_at_level),
                ("bare_mcap_level3", _bare), ("rosbags", _rosbags))
            for name, fn in runs:
                target = base / f"{name}_{i}" / ("bag" if name == "rosbags" else "episode.mcap")
                target.parent.mkdir(parents=True, exist_ok=True)
                gc.collect()
                dt = fn(target, profile, msgs, args)
                best[name] = min(best.get(name, float("inf")), dt)
                sizes[name] = sum(p.stat().st_size for p in target.parent.rglob("*") if p.is_file())
                shutil.rmtree(target.parent)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    ours = best["ours"]
    return {
        "bench": "record",
        "profile": profile.name,
        "robot_seconds": args.seconds,
        "messages": len(msgs),
        "payload_mb": round(total / 1e6, 1),
        "compression": args.compression,
        "chunk_size": args.chunk_size,
        "seconds": round(ours, 3),
        "msgs_per_s": round(len(msgs) / ours),
        "mb_per_s": round(total / 1e6 / ours, 1),
        "realtime_factor": round(args.seconds / ours, 1),
        "zstd_level": args.level,
        "bare_mcap_seconds": round(best["bare_mcap"], 3),
        "bare_mcap_level3_seconds": round(best["bare_mcap_level3"], 3),
        "rosbags_seconds": round(best["rosbags"], 3),
        "file_mb": round(sizes["ours"] / 1e6, 1),
        "bare_file_mb": round(sizes["bare_mcap"] / 1e6, 1),
        "rosbags_file_mb": round(sizes["rosbags"] / 1e6, 1),
        "vs_bare_mcap": round(best["bare_mcap"] / ours, 3),
        "vs_rosbags": round(best["rosbags"] / ours, 3),
    }
