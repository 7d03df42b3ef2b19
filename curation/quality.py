"""Quality checks per episode and stream: each raised flag comes with its reason."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recorder.contract import HEALTH_METADATA

from .config import QualityConfig
from .decode import COMPRESSED_IMAGE, JOINT_STATE, StreamData
from .ingest import FileRecord
from .segment import Segment, joint_streams


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a stream should look like: from the recording profile, when known."""

    rate_hz: float | None = None
    role: str = "unknown"


@dataclass
class QualityResult:
    flags: set[str] = field(default_factory=set)
    reasons: list[dict[str, str]] = field(default_factory=list)
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)

    def raise_(self, flag: str, stream: str, detail: str) -> None:
        self.flags.add(flag)
        self.reasons.append({"flag": flag, "stream": stream, "detail": detail})


def urdf_limits(text: str) -> dict[str, tuple[float, float]]:
    """Joint position limits from a URDF (revolute and prismatic joints)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return {}
    out = {}
    for j in root.iter("joint"):
        lim = j.find("limit")
        if lim is not None and j.get("type") in ("revolute", "prismatic") and j.get("name"):
            try:
                out[j.get("name", "")] = (float(lim.get("lower", "-inf")),
                                          float(lim.get("upper", "inf")))
            except ValueError:
                continue
    return out


def check_episode(rec: FileRecord, seg: Segment, expect: dict[str, Expectation],
                  limits: dict[str, tuple[float, float]], cfg: QualityConfig,
                  max_latency_ms: float | None = None) -> QualityResult:
    q = QualityResult()
    for flag, detail in rec.problems:
        q.raise_(flag, "", detail)
    duration = (seg.end_ns - seg.start_ns) / 1e9
    if duration < cfg.min_episode_s:
        q.raise_("short", "", f"episode lasts {duration:.3f} s < min_episode_s "
                              f"{cfg.min_episode_s}")
    if seg.method in ("idle", "gripper", "idle+gripper", "whole_file"):
        q.raise_("auto_segmented", "", f"no episode events: boundaries from {seg.method}")
    health = rec.metadata.get(HEALTH_METADATA, {})
    if health.get("flagged") == "true":
        q.raise_("recorder_flagged", "", f"recorder health flags: {health.get('flags', '')}")
    state, _ = joint_streams(rec)
    for topic, sd in rec.streams.items():
        for flag, detail in sd.problems:
            q.raise_(flag, topic, detail)
        a, b = seg.rows(sd)
        exp = expect.get(topic, Expectation())
        m = _stream(q, topic, sd, a, b, exp, seg, cfg, max_latency_ms or cfg.max_latency_ms)
        q.streams[topic] = m
        if sd.type == JOINT_STATE and b > a:
            _joints(q, topic, sd, a, b, limits, cfg, exp)
    for topic, exp in expect.items():
        if exp.rate_hz and topic not in rec.streams:
            q.raise_("missing_stream", topic, f"{topic} (expected {exp.rate_hz:g} Hz) has no "
                                              "message in the episode")
            q.streams[topic] = {"count": 0}
    if state is not None:
        _skew(q, rec, seg, state, cfg)
    return q


def _stream(q: QualityResult, topic: str, sd: StreamData, a: int, b: int, exp: Expectation,
            seg: Segment, cfg: QualityConfig, max_latency_ms: float) -> dict[str, Any]:
    n = b - a
    m: dict[str, Any] = {"count": n}
    if n == 0:
        if exp.rate_hz:
            q.raise_("missing_stream", topic, f"no message in the episode (expected "
                                              f"{exp.rate_hz:g} Hz)")
        return m
    t = np.asarray(sd.time_ns[a:b])
    log = np.asarray(sd.log_time_ns[a:b])
    span = max(int(seg.end_ns - seg.start_ns), int(t[-1] - t[0]), 1)
    rate = n * 1e9 / span if seg.end_ns > seg.start_ns else (n - 1) * 1e9 / span
    m["rate_hz"] = round(rate, 3)
    # order as received: stamps that go back or repeat
    recv = t[np.argsort(sd.order[a:b], kind="stable")] if sd.order is not None else t
    steps_recv = np.diff(recv)
    ooo, dups = int((steps_recv < 0).sum()), int((np.diff(t) == 0).sum())
    m["out_of_order"], m["duplicates"] = ooo, dups
    if ooo:
        i = int(np.flatnonzero(steps_recv < 0)[0])
        q.raise_("out_of_order", topic, f"{ooo} stamps go backwards in receive order (first at "
                                        f"row {a + i + 1}: {recv[i + 1]} after {recv[i]} ns)")
    if dups:
        q.raise_("duplicates", topic, f"{dups} messages repeat the previous stamp")
    if sd.clock == "header_stamp" and n > 2:
        off = log - t
        med = np.median(off)
        jump = np.abs(off - med) > cfg.clock_jump_s * 1e9
        if jump.any():
            i = int(np.flatnonzero(jump)[0])
            q.raise_("clock_jump", topic, f"{int(jump.sum())} stamps are off the receive clock "
                     f"by more than {cfg.clock_jump_s} s (first at row {a + i}: stamp {t[i]}, "
                     f"received {log[i]})")
        lat = off / 1e6
        p99 = float(np.percentile(lat, 99))
        m["latency_p99_ms"] = round(p99, 3)
        if p99 > max_latency_ms:
            q.raise_("latency_high", topic, f"p99 receive latency {p99:.1f} ms > "
                                            f"{max_latency_ms} ms")
    period = _timing(q, topic, sd, t, exp, seg, cfg, m, rate)
    _frozen(q, topic, sd, a, b, t, seg, cfg, period, m)
    return m


def infer_rate(t: np.ndarray) -> float | None:
    """The nominal rate (Hz) of a periodic stream from its sorted stamps: the median
    inter-arrival, which holes and single drops do not move. None when there are too few
    messages or the stream is not periodic (most steps far from the median: messages on
    change, bursts), since gaps and drops mean nothing there."""
    steps = np.diff(t)
    steps = steps[steps > 0]
    if len(steps) < MIN_STEPS:
        return None
    med = float(np.median(steps))
    regular = np.abs(steps - med) < 0.5 * med
    if regular.mean() < MIN_REGULAR:
        return None
    return 1e9 / med


MIN_STEPS = 8        # inter-arrivals needed before a rate is inferred
MIN_REGULAR = 0.6    # share of them within half a period of the median: a periodic stream
MAX_LISTED = 20      # gaps listed per stream in the quality metrics


def _timing(q: QualityResult, topic: str, sd: StreamData, t: np.ndarray, exp: Expectation,
            seg: Segment, cfg: QualityConfig, m: dict[str, Any], rate: float) -> float | None:
    """Rate, gaps, drops and jitter, against the profile's rate or else the rate observed
    in the stream itself. Returns the stream's observed period (ns), None if aperiodic."""
    observed = infer_rate(t)
    nominal, source = exp.rate_hz, "profile"
    if not nominal:
        nominal, source = observed, "inferred"
    if nominal is None:
        return None
    m["nominal_rate_hz"] = round(nominal, 3)
    m["rate_source"] = source
    how = f"{nominal:g} Hz expected" if source == "profile" else \
        f"{nominal:.1f} Hz observed (median inter-arrival)"
    if rate < cfg.min_rate_ratio * nominal:
        q.raise_("rate_low", topic, f"{rate:.1f} Hz measured, {how} "
                                    f"(< {cfg.min_rate_ratio:.0%})")
    period = 1e9 / nominal
    steps = np.diff(t)
    positive = steps[steps > 0]
    # a step of 1.75 periods or more lost a message (jitter alone rarely stretches one so far)
    m["missing_estimate"] = int(np.maximum(np.floor(positive / period + 0.25) - 1, 0).sum())
    # gaps: (time the gap starts, its length), inside the stream and at the episode's edges
    thr = cfg.gap_periods * period
    inner = np.flatnonzero(steps > thr)
    gaps = [(int(t[i]), int(steps[i])) for i in inner]
    if not seg.whole:
        if t[0] - seg.start_ns > thr:
            gaps.insert(0, (int(seg.start_ns), int(t[0] - seg.start_ns)))
        if seg.end_ns - t[-1] > thr:
            gaps.append((int(t[-1]), int(seg.end_ns - t[-1])))
    edges = [int(t[0] - seg.start_ns), int(seg.end_ns - t[-1])] if not seg.whole else []
    longest = max([int(positive.max()) if len(positive) else 0, *edges, 0])
    m["gaps"] = len(gaps)
    m["max_gap_ms"] = round(longest / 1e6, 3)
    m["gap_list"] = [{"after_ns": g0, "length_ms": round(ln / 1e6, 3)}
                     for g0, ln in gaps[:MAX_LISTED]]
    if gaps:
        missing = int(sum(max(round(ln / period) - 1, 0) for _, ln in gaps))
        listed = ", ".join(f"{ln / 1e6:.1f} ms after stamp {g0} "
                           f"({(g0 - seg.start_ns) / 1e9:.3f} s into the episode)"
                           for g0, ln in gaps[:3])
        more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
        q.raise_("gaps", topic, f"{len(gaps)} gaps longer than {cfg.gap_periods:g} periods "
                 f"of {period / 1e6:.3g} ms ({how}; longest {longest / 1e6:.1f} ms): "
                 f"{listed}{more}; ~{missing} messages missing")
        if sd.type == COMPRESSED_IMAGE:
            q.raise_("dropped_frames", topic, f"~{missing} camera frames dropped "
                                              f"({len(gaps)} gaps)")
    if observed is None:
        return None
    # jitter: how far single steps stray from the observed period (drops and gaps apart)
    own = 1e9 / observed
    single = positive[positive < 1.5 * own]
    if len(single) >= MIN_STEPS:
        dev = float(np.percentile(np.abs(single - own), 99))
        m["jitter_p99_ms"] = round(dev / 1e6, 3)
        if dev > cfg.max_jitter_ratio * own:
            q.raise_("jitter", topic, f"p99 step deviation {dev / 1e6:.2f} ms from the observed "
                     f"period {own / 1e6:.3g} ms ({observed:.1f} Hz) > "
                     f"{cfg.max_jitter_ratio:.0%} of it")
    return own


def _frozen(q: QualityResult, topic: str, sd: StreamData, a: int, b: int, t: np.ndarray,
            seg: Segment, cfg: QualityConfig, period: float | None,
            m: dict[str, Any]) -> None:
    key = "position" if "position" in sd.fields else next(
        (k for k, v in sd.fields.items() if v.dtype.kind == "f"), None)
    if key is None or b - a < 3:
        return
    x = np.asarray(sd.fields[key][a:b]).reshape(b - a, -1)
    same = (x[1:] == x[:-1]).all(axis=1)
    if not same.any():
        return
    # longest run of identical consecutive rows, in time
    d = np.diff(np.concatenate([[0], same.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    lengths = t[ends] - t[starts]
    i = int(np.argmax(lengths))
    # long in time, and over several periods of the stream (a slow stream repeats a value)
    limit = max(cfg.frozen_s * 1e9, cfg.frozen_periods * period if period else 0.0)
    if lengths[i] > limit:
        t0 = int(t[starts[i]])
        m["frozen_from_ns"], m["frozen_s"] = t0, round(float(lengths[i]) / 1e9, 3)
        q.raise_("frozen", topic, f"{key} unchanged for {lengths[i] / 1e9:.2f} s from stamp "
                                  f"{t0} ({(t0 - seg.start_ns) / 1e9:.3f} s into the episode; "
                                  f"{ends[i] - starts[i] + 1} messages)")


def _joints(q: QualityResult, topic: str, sd: StreamData, a: int, b: int,
            limits: dict[str, tuple[float, float]], cfg: QualityConfig,
            exp: Expectation) -> None:
    names = sd.attrs.get("joint_names") or []
    if "position" not in sd.fields:
        return
    pos = np.asarray(sd.fields["position"][a:b])
    if limits and names:
        idx = [i for i, nm in enumerate(names) if nm in limits]
        if idx:
            lo = np.array([limits[names[i]][0] for i in idx])
            hi = np.array([limits[names[i]][1] for i in idx])
            p = pos[:, idx]
            over = (p < lo - cfg.limit_tolerance) | (p > hi + cfg.limit_tolerance)
            if over.any():
                r, c = (int(v[0]) for v in np.nonzero(over))
                j = names[idx[c]]
                q.raise_("joint_limits", topic, f"{int(over.any(axis=1).sum())} messages "
                         f"outside joint limits (first: {j} = {p[r, c]:.4f} outside "
                         f"[{lo[c]:.4f}, {hi[c]:.4f}] at stamp {int(sd.time_ns[a + r])})")
    if len(pos) < 8:
        return
    t = np.asarray(sd.time_ns[a:b])
    dt = np.diff(t)
    med = float(np.median(dt)) if len(dt) else 0.0
    if med <= 0:
        return
    jerk = np.diff(pos, n=3, axis=0) / (med / 1e9) ** 3
    # windows spanning a gap or a stamp glitch are not jerk
    regular = np.abs(dt - med) < 0.5 * med
    ok = regular[:-2] & regular[1:-1] & regular[2:]
    jerk = np.nan_to_num(np.abs(jerk[ok]))
    if len(jerk) < 8:
        return
    base = np.median(jerk, axis=0)
    mad = np.median(np.abs(jerk - base), axis=0) * 1.4826
    floor = np.maximum(mad, 1e-6 + 1e-3 * np.maximum(base, 1.0))
    z = (jerk - base) / floor
    hit = z > cfg.jerk_sigma
    if hit.any():
        r, c = (int(v[0]) for v in np.nonzero(hit))
        q.raise_("jerk_spike", topic, f"{int(hit.any(axis=1).sum())} jerk spikes (first: "
                 f"{names[c] if c < len(names) else c} at {z[r, c]:.0f} robust deviations)")


def _skew(q: QualityResult, rec: FileRecord, seg: Segment, state: StreamData,
          cfg: QualityConfig) -> None:
    if state.clock != "header_stamp":
        return
    a, b = seg.rows(state)
    if b - a < 2:
        return
    ref = float(np.median(np.asarray(state.log_time_ns[a:b]) - np.asarray(state.time_ns[a:b])))
    for topic, sd in rec.streams.items():
        if sd.type != COMPRESSED_IMAGE or sd.clock != "header_stamp":
            continue
        c, d = seg.rows(sd)
        if d - c < 2:
            continue
        lag = float(np.median(np.asarray(sd.log_time_ns[c:d]) - np.asarray(sd.time_ns[c:d])))
        skew_ms = (lag - ref) / 1e6
        q.streams.setdefault(topic, {})["skew_ms"] = round(skew_ms, 3)
        if abs(skew_ms) > cfg.max_camera_skew_ms:
            q.raise_("camera_skew", topic, f"camera stamps are {skew_ms:+.1f} ms off the joint "
                     f"clock ({state.topic}); limit {cfg.max_camera_skew_ms} ms")
