"""Episode quality flags: bit positions (part of the release format) and score weights."""

from __future__ import annotations

FLAG_BITS: dict[str, int] = {
    "truncated": 0, "decode_error": 1, "out_of_order": 2, "duplicates": 3, "clock_jump": 4,
    "rate_low": 5, "gaps": 6, "dropped_frames": 7, "frozen": 8, "joint_limits": 9,
    "jerk_spike": 10, "camera_skew": 11, "missing_stream": 12, "auto_segmented": 13,
    "short": 14, "recorder_flagged": 15, "latency_high": 16, "profile_invalid": 17,
    "jitter": 18,
}

# The score is the product of (1 - weight) over the raised flags: 1.0 is a clean episode.
WEIGHTS: dict[str, float] = {
    "truncated": 0.3, "decode_error": 0.3, "out_of_order": 0.1, "duplicates": 0.05,
    "clock_jump": 0.2, "rate_low": 0.15, "gaps": 0.1, "dropped_frames": 0.1, "frozen": 0.2,
    "joint_limits": 0.15, "jerk_spike": 0.1, "camera_skew": 0.1, "missing_stream": 0.3,
    "auto_segmented": 0.0, "short": 0.2, "recorder_flagged": 0.05, "latency_high": 0.05,
    "profile_invalid": 0.05, "jitter": 0.05,
}

# Flags about the input file itself (not one stream): ``release show`` prints their reasons.
FILE_FLAGS = ("truncated", "decode_error", "profile_invalid")


def flag_mask(names: list[str] | set[str]) -> int:
    mask = 0
    for n in names:
        mask |= 1 << FLAG_BITS[n]
    return mask


def flag_names(mask: int) -> list[str]:
    """The names of the quality flags set in ``mask`` (bits as in FLAG_BITS)."""
    return [n for n, b in FLAG_BITS.items() if mask >> b & 1]


def score(names: set[str] | list[str]) -> float:
    s = 1.0
    for n in set(names):
        s *= 1.0 - WEIGHTS.get(n, 0.0)
    return round(s, 4)
