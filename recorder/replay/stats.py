"""Timing statistics of a playback: the publish-error histogram and the run's counters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JitterStats", "ReplayStats"]


class JitterStats:
    """Histogram of publish timing errors (actual - scheduled) with 1 us bins up to 100 ms;
    beyond that, exact values are kept. Early publishes (negative errors) count as 0."""

    BINS = 100_000

    def __init__(self) -> None:
        self.hist = [0] * self.BINS
        self.over: list[int] = []
        self.count = 0
        self.max_ns = 0

    def add(self, err_ns: int) -> None:
        us = err_ns // 1000 if err_ns > 0 else 0
        if us < self.BINS:
            self.hist[us] += 1
        else:
            self.over.append(err_ns)
        if err_ns > self.max_ns:
            self.max_ns = err_ns
        self.count += 1

    def percentile_ms(self, q: float) -> float:
        if self.count == 0:
            return 0.0
        rank = max(1, int(q / 100.0 * self.count + 0.999999))
        acc = 0
        for us, n in enumerate(self.hist):
            acc += n
            if acc >= rank:
                return min((us + 0.5) / 1000.0, self.max_ns / 1e6)
        over = sorted(self.over)
        return over[min(rank - acc, len(over)) - 1] / 1e6

    def summary(self) -> dict[str, float]:
        return {"p50": round(self.percentile_ms(50), 4), "p99": round(self.percentile_ms(99), 4),
                "max": round(self.max_ns / 1e6, 4), "count": self.count}


@dataclass
class ReplayStats:
    """What a playback did: messages published per topic, /clock messages, loops, timing error."""

    published: Counter[str] = field(default_factory=Counter)  # per published (remapped) topic
    clock_messages: int = 0
    wall_s: float = 0.0
    played_s: float = 0.0          # playback-timeline seconds covered (all passes)
    loops: int = 0                 # completed passes beyond the first
    stopped: bool = False          # ended by stop() rather than the end of the selection
    gc_collections: int = 0        # garbage collections the player ran between deadlines
    reader_wakeups: int = 0        # times the read-ahead thread resumed reading
    jitter: JitterStats = field(default_factory=JitterStats)

    @property
    def messages(self) -> int:
        return sum(self.published.values())

    @property
    def jitter_ms(self) -> dict[str, float]:
        return self.jitter.summary()

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "published": dict(sorted(self.published.items())),
                "clock_messages": self.clock_messages, "duration_s": round(self.wall_s, 3),
                "played_s": round(self.played_s, 3), "loops": self.loops,
                "stopped": self.stopped, "gc_collections": self.gc_collections,
                "reader_wakeups": self.reader_wakeups, "jitter_ms": self.jitter_ms}
