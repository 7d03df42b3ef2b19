"""Live recording health as ROS 2 diagnostics, without ROS: plain records that the node turns
into ``diagnostic_msgs/DiagnosticStatus`` messages (and that tests check without rclpy).

One status per profile topic (level from the health flags of the recent window, key-values
rate/expected/count/gaps/latency) and one for the session (state, episode, disk free, time
left). Levels are the ``DiagnosticStatus`` constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recorder.health import HealthReport

OK, WARN, ERROR, STALE = 0, 1, 2, 3
#: health flags that mean data is missing altogether (everything else is a warning)
ERROR_FLAGS = frozenset({"no_messages", "not_subscribed"})
PREFIX = "demofab_recorder"


@dataclass(frozen=True, slots=True)
class Status:
    name: str
    level: int
    message: str
    hardware_id: str = ""
    values: tuple[tuple[str, str], ...] = field(default=())


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
    return str(value)


def topic_level(flags: tuple[str, ...] | list[str]) -> int:
    if not flags:
        return OK
    return ERROR if any(f in ERROR_FLAGS for f in flags) else WARN


def health_statuses(report: HealthReport | None, *, state: str, hardware_id: str = "",
                    topics: list[str] | None = None,
                    skipped: dict[str, str] | None = None,
                    episode: dict[str, object] | None = None,
                    session_dir: str = "", disk_free_bytes: int | None = None,
                    error: str = "") -> list[Status]:
    """Statuses for one ``/diagnostics`` message.

    ``report`` is a ``recorder.health.HealthReport`` over the recent window, or None when no
    episode is recording. ``topics`` lists the profile's topics in order; ``skipped`` maps a
    topic the node could not subscribe to (its message package is missing) to the reason.
    """
    skipped = skipped or {}
    by_topic = {t.topic: t for t in report.topics} if report is not None else {}
    names = list(topics) if topics is not None else list(by_topic)
    out: list[Status] = []
    for name in names:
        th = by_topic.get(name)
        if name in skipped:
            out.append(Status(f"{PREFIX}: {name}", ERROR, f"not recorded: {skipped[name]}",
                              hardware_id, (("flags", "not_subscribed"),)))
            continue
        if report is None or th is None:
            out.append(Status(f"{PREFIX}: {name}", OK, state, hardware_id))
            continue
        level = topic_level(th.flags)
        message = "ok" if not th.flags else ", ".join(th.flags)
        values: tuple[tuple[str, str], ...] = (
            ("rate_hz", _fmt(th.rate_hz)),
            ("expected_hz", _fmt(th.expected_hz)),
            ("count", _fmt(th.count)),
            ("gaps", _fmt(th.gaps)),
            ("missing_estimate", _fmt(th.missing_estimate)),
            ("max_gap_ms", _fmt(th.max_gap_ms)),
            ("latency_p50_ms", _fmt(th.latency_p50_ms)),
            ("latency_p99_ms", _fmt(th.latency_p99_ms)),
            ("out_of_order", _fmt(th.out_of_order)),
            ("sequence_gaps", _fmt(th.seq_gaps)),
            ("flags", ",".join(th.flags)),
        )
        out.append(Status(f"{PREFIX}: {name}", level, message, hardware_id, values))
    # the session: state, disk free, time left
    free = report.disk_free_bytes if report is not None else disk_free_bytes
    seconds_left = report.seconds_left if report is not None else None
    disk_low = report is not None and "disk_low" in report.flags
    level = ERROR if (disk_low or error) else OK
    message = error or ("disk low" if disk_low else state)
    session: list[tuple[str, str]] = [("state", state), ("session", session_dir)]
    for k, v in (episode or {}).items():
        session.append((k, _fmt(v)))
    session += [
        ("disk_free_bytes", _fmt(free)),
        ("disk_free_gb", _fmt(None if free is None else round(free / 1e9, 3))),
        ("bytes_written", _fmt(report.bytes_written if report is not None else None)),
        ("seconds_left", _fmt(None if seconds_left is None else round(seconds_left, 1))),
    ]
    out.append(Status(f"{PREFIX}: session", level, message, hardware_id, tuple(session)))
    return out
