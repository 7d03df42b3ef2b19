"""Live health of a recording: per-topic rate, gaps, order, latency; disk free and time left.

The episode writer appends each message's receive time and stamp to two ``array('q')``
per topic (a few tens of nanoseconds a message); every figure is computed from those
arrays with numpy when asked for, over the whole episode or over a recent window.
"""

from __future__ import annotations

import json
import shutil
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .profile import HealthThresholds, Profile, TopicSpec


class TopicTrack:
    """Receive times and stamps of one topic, appended by the writer."""

    __slots__ = ("spec", "log", "stamp", "seq", "bytes")

    def __init__(self, spec: TopicSpec) -> None:
        self.spec = spec
        self.log = array("q")
        self.stamp = array("q")
        self.seq = array("q")  # only filled by sources that know sequence numbers
        self.bytes = 0


@dataclass(frozen=True, slots=True)
class TopicHealth:
    """One topic's health: messages, observed vs expected rate, gaps, messages likely missed."""
    topic: str
    count: int
    expected_hz: float | None
    rate_hz: float
    gaps: int
    missing_estimate: int
    max_gap_ms: float
    out_of_order: int
    duplicates: int
    seq_gaps: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The recorder's health over an episode: per-topic rates and gaps, disk and write rate."""
    start_ns: int
    end_ns: int
    topics: tuple[TopicHealth, ...]
    disk_free_bytes: int
    bytes_written: int
    seconds_left: float | None  # disk time left at the current write rate
    flags: tuple[str, ...] = field(default=())

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def metadata(self) -> dict[str, str]:
        """The report as an MCAP Metadata record (string values only)."""
        return {
            "flagged": "true" if self.flagged else "false",
            "flags": ",".join(self.flags),
            "disk_free_bytes": str(self.disk_free_bytes),
            "bytes_written": str(self.bytes_written),
            "topics": json.dumps([asdict(t) for t in self.topics], separators=(",", ":")),
        }


def _topic_health(track: TopicTrack, start_ns: int, end_ns: int,
                  th: HealthThresholds, lo: int = 0) -> TopicHealth:
    spec = track.spec
    log = np.frombuffer(track.log, dtype=np.int64)[lo:]
    stamp = np.frombuffer(track.stamp, dtype=np.int64)[lo:]
    n = len(log)
    duration = max(end_ns - start_ns, 1)
    rate = n * 1e9 / duration if n else 0.0
    flags: list[str] = []
    gaps = missing = ooo = dups = seq_gaps = 0
    max_gap_ms = 0.0
    lat50 = lat99 = latmax = None
    if n:
        valid = stamp >= 0
        st = stamp[valid] if not valid.all() else stamp
        steps = np.diff(st)
        ooo = int((steps < 0).sum())
        dups = int((steps == 0).sum())
        if spec.rate_hz:
            period = 1e9 / spec.rate_hz
            limit = th.gap_periods * period
            # silence before the first and after the last message counts as well
            edges = np.array([log[0] - start_ns, end_ns - log[-1]], dtype=np.int64)
            all_steps = np.concatenate([steps[steps > 0], edges])
            big = all_steps[all_steps > limit]
            gaps = len(big)
            missing = int(np.maximum(np.rint(big / period) - 1, 0).sum())
            max_gap_ms = float(all_steps.max() / 1e6) if len(all_steps) else 0.0
        if len(st) == n:
            lat = (log - stamp) / 1e6
            lat50, lat99, latmax = (float(x) for x in np.percentile(lat, [50, 99, 100]))
        if len(track.seq) > 1:
            seq = np.frombuffer(track.seq, dtype=np.int64)[lo:]
            d = np.diff(seq)
            seq_gaps = int(np.maximum(d - 1, 0).sum())
    if spec.rate_hz:
        if rate < th.min_rate_ratio * spec.rate_hz:
            flags.append("no_messages" if n == 0 else "rate_low")
        if gaps > th.max_gaps:
            flags.append("gaps")
    if ooo:
        flags.append("out_of_order")
    if seq_gaps:
        flags.append("sequence_gaps")
    if lat99 is not None and lat99 > th.max_latency_ms:
        flags.append("latency_high")
    return TopicHealth(
        topic=spec.topic, count=n, expected_hz=spec.rate_hz, rate_hz=round(rate, 3),
        gaps=gaps, missing_estimate=missing, max_gap_ms=round(max_gap_ms, 3),
        out_of_order=ooo, duplicates=dups, seq_gaps=seq_gaps,
        latency_p50_ms=None if lat50 is None else round(lat50, 3),
        latency_p99_ms=None if lat99 is None else round(lat99, 3),
        latency_max_ms=None if latmax is None else round(latmax, 3),
        flags=tuple(flags),
    )


class HealthMonitor:
    """Health accounting for one episode."""

    def __init__(self, profile: Profile, disk_path: Path) -> None:
        self.profile = profile
        self.thresholds = profile.health
        self.disk_path = disk_path
        self.tracks: dict[str, TopicTrack] = {}

    def track(self, spec: TopicSpec) -> TopicTrack:
        t = self.tracks.get(spec.topic)
        if t is None:
            t = self.tracks[spec.topic] = TopicTrack(spec)
        return t

    def report(self, start_ns: int, end_ns: int, bytes_written: int,
               window_ns: int | None = None) -> HealthReport:
        """Health over the episode so far, or over its last ``window_ns`` of log time."""
        lo_ns = start_ns if window_ns is None else max(start_ns, end_ns - window_ns)
        topics: list[TopicHealth] = []
        for spec in self.profile.topics:
            track = self.tracks.get(spec.topic) or TopicTrack(spec)
            lo = 0
            if lo_ns > start_ns and len(track.log):
                lo = int(np.searchsorted(np.frombuffer(track.log, dtype=np.int64), lo_ns))
            topics.append(_topic_health(track, lo_ns, end_ns, self.thresholds, lo))
        for topic, track in self.tracks.items():
            if not any(t.topic == topic for t in topics):
                topics.append(_topic_health(track, lo_ns, end_ns, self.thresholds))
        free = shutil.disk_usage(self.disk_path).free
        elapsed = (end_ns - start_ns) / 1e9
        rate = bytes_written / elapsed if elapsed > 0 else 0.0
        seconds_left = free / rate if rate > 0 else None
        flags = [f"{f}:{t.topic}" for t in topics for f in t.flags]
        if free < self.thresholds.min_disk_free_gb * 1e9:
            flags.append("disk_low")
        return HealthReport(
            start_ns=lo_ns, end_ns=end_ns, topics=tuple(topics), disk_free_bytes=free,
            bytes_written=bytes_written, seconds_left=seconds_left, flags=tuple(flags),
        )
