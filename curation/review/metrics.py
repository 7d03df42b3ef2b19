"""Per-episode motion figures and the outliers of a release (robust z-scores).

An episode is an outlier when:

* ``length``: its duration is more than ``Z_LIMIT`` robust deviations from the release's
  median duration;
* ``jerk``: the RMS joint jerk of its reference joint stream (third difference of the
  positions over the median stamp step, windows across a gap left out, as in
  ``curation.quality``) is more than ``Z_LIMIT`` robust deviations above the release's
  median, on a log scale (jerk spans decades);
* ``motionless``: its mean joint speed is below ``MOTIONLESS_RAD_S``, or more than
  ``Z_LIMIT`` robust deviations below the release's median on a log scale;
* ``gaps``: the quality checks raised ``gaps``, ``dropped_frames`` or ``rate_low``.

A robust deviation is 1.4826 x the median absolute deviation, with a floor (5% of the
median for lengths, ``LOG_FLOOR`` decades for jerk and speed), so that a release of
identical episodes has no outliers and one very different episode stands out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..loader import ReleaseReader

Z_LIMIT = 3.5
MOTIONLESS_RAD_S = 0.02
LOG_FLOOR = 0.1  # decades: with Z_LIMIT, a jerk or speed 2.2x off the median at least
GAP_FLAGS = ("gaps", "dropped_frames", "rate_low")
OUTLIER_KINDS = ("length", "jerk", "motionless", "gaps")


@dataclass(frozen=True)
class Motion:
    """Motion figures of one episode (None when the episode has too few joint rows)."""

    jerk_rms: float | None
    speed: float | None


def joint_stream(reader: ReleaseReader) -> str | None:
    """The joint stream the figures come from: the sync reference when it holds positions,
    else the first JointState stream with positions."""
    ref = reader.sync_reference
    candidates = ([ref] if ref else []) + sorted(reader.streams)
    for name in candidates:
        info = reader.streams.get(name)
        if info is not None and info.attributes.get("type") == "sensor_msgs/msg/JointState" \
                and "position" in info.fields:
            return name
    return None


def episode_motion(t: np.ndarray, pos: np.ndarray) -> Motion:
    """RMS jerk (rad/s^3) and mean joint speed (L2 over joints, rad/s) of one episode."""
    if len(pos) < 8:
        return Motion(None, None)
    dt = np.diff(t)
    med = float(np.median(dt))
    if med <= 0:
        return Motion(None, None)
    p = np.nan_to_num(pos.reshape(len(pos), -1).astype(np.float64, copy=False))
    speed = float(np.mean(np.linalg.norm(np.diff(p, axis=0), axis=1) / (med / 1e9)))
    regular = np.abs(dt - med) < 0.5 * med
    ok = regular[:-2] & regular[1:-1] & regular[2:]
    jerk = np.diff(p, n=3, axis=0)[ok] / (med / 1e9) ** 3
    jerk_rms = float(np.sqrt(np.mean(jerk * jerk))) if jerk.size else None
    return Motion(jerk_rms, speed)


def release_motion(reader: ReleaseReader) -> list[Motion]:
    """The motion figures of every episode of the release, in table order."""
    stream = joint_stream(reader)
    n = len(reader.episodes)
    if stream is None:
        return [Motion(None, None)] * n
    bounds = reader.bounds(stream)
    times = reader.times(stream)
    positions = reader.field(stream, "position")
    out = []
    for e in range(n):
        a, b = (int(x) for x in bounds[e])
        out.append(episode_motion(times[a:b], positions.read(a, b)) if b > a
                   else Motion(None, None))
    return out


def robust_z(values: list[float | None], floor: float | None = None) -> list[float | None]:
    """(v - median) / max(1.4826 MAD, floor, 1e-9) of each value (None stays None);
    ``floor`` defaults to 5% of the median's magnitude."""
    have = np.array([v for v in values if v is not None], dtype=np.float64)
    if len(have) == 0:
        return [None] * len(values)
    med = float(np.median(have))
    mad = float(np.median(np.abs(have - med))) * 1.4826
    scale = max(mad, 0.05 * abs(med) if floor is None else floor, 1e-9)
    return [None if v is None else (v - med) / scale for v in values]


def _log(v: float | None) -> float | None:
    return math.log10(v) if v is not None and v > 0 else None


def outliers(rows: list[dict[str, Any]], motion: list[Motion]) -> list[dict[str, Any]]:
    """For each row: ``outliers`` (kinds, see the module doc), ``z_length``, ``z_jerk``,
    ``z_speed``."""
    z_len = robust_z([float(r.get("duration_s") or 0.0) for r in rows])
    z_jerk = robust_z([_log(m.jerk_rms) for m in motion], LOG_FLOOR)
    z_speed = robust_z([_log(m.speed) for m in motion], LOG_FLOOR)
    out = []
    for r, m, zl, zj, zs in zip(rows, motion, z_len, z_jerk, z_speed, strict=True):
        flags = set(r.get("flag_names") or [])
        kinds = []
        if zl is not None and abs(zl) > Z_LIMIT:
            kinds.append("length")
        if zj is not None and zj > Z_LIMIT:
            kinds.append("jerk")
        if m.speed is not None and (m.speed < MOTIONLESS_RAD_S or zs is not None and zs < -Z_LIMIT):
            kinds.append("motionless")
        if flags & set(GAP_FLAGS):
            kinds.append("gaps")
        out.append({"outliers": kinds, "z_length": _round(zl), "z_jerk": _round(zj),
                    "z_speed": _round(zs)})
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)
