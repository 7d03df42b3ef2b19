"""What the player is asked to do: :class:`ReplayOptions` and ros2-style remap rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import ReplayError

__all__ = ["READERS", "ReplayOptions", "parse_remap"]

#: where messages are read ahead of the schedule (see :mod:`recorder.replay.readahead`)
READERS = ("process", "thread")


def parse_remap(rules: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["/a:=/b", ...]`` (ros2 style) to ``{"/a": "/b"}``."""
    if rules is None:
        return {}
    if isinstance(rules, Mapping):
        return dict(rules)
    out: dict[str, str] = {}
    for rule in rules:
        src, sep, dst = rule.partition(":=")
        if not sep or not src.strip() or not dst.strip():
            raise ReplayError(f"remap rule {rule!r} is not of the form /from:=/to")
        src, dst = src.strip(), dst.strip()
        for name in (src, dst):
            if not name.startswith("/"):
                raise ReplayError(f"remap rule {rule!r}: topic {name!r} must start with '/'")
        out[src] = dst
    return out


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How a selection is played: rate, loop, start offset, /clock, remapping, topic filter, QoS, timing."""

    rate: float = 1.0                     # playback speed: 2.0 plays twice as fast
    loop: bool = False                    # start over at the end, until stopped
    start_offset_s: float = 0.0           # seconds into the selection
    topics: tuple[str, ...] | None = None  # recorded topics to play (None: all)
    remap: Mapping[str, str] = field(default_factory=dict)  # recorded topic -> topic to publish
    clock_hz: float | None = None         # publish /clock at this rate (None: no /clock)
    episodes: tuple[int, ...] | None = None  # episode indices of a session (None: all)
    episode_gap_s: float | None = 0.0     # pause between episodes; None keeps the recorded gaps
    start_paused: bool = False
    busy_wait_s: float = 0.0002           # spin (instead of sleeping) for the last 0.2 ms
    read_ahead: int = 4096                # messages decoded ahead of the schedule
    reader: str = "process"               # read ahead in a child "process" or a "thread"
    switch_interval_s: float | None = 0.0002  # GIL switch interval while playing (None: leave)
    freeze_gc: bool = True                # no automatic garbage collection while playing
    progress_every_s: float = 0.1         # wall seconds between progress callbacks

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ReplayError(f"rate must be positive, got {self.rate}")
        if self.start_offset_s < 0:
            raise ReplayError(f"start offset must be >= 0 s, got {self.start_offset_s}")
        if self.clock_hz is not None and not self.clock_hz > 0:
            raise ReplayError(f"clock rate must be positive, got {self.clock_hz} Hz")
        if self.episode_gap_s is not None and self.episode_gap_s < 0:
            raise ReplayError(f"episode gap must be >= 0 s, got {self.episode_gap_s}")
        if self.busy_wait_s < 0:
            raise ReplayError(f"busy wait must be >= 0 s, got {self.busy_wait_s}")
        if self.reader not in READERS:
            raise ReplayError(f"reader must be one of {', '.join(READERS)}, got {self.reader!r}")
        if self.read_ahead < 1:
            raise ReplayError(f"read-ahead must be >= 1 message, got {self.read_ahead}")
