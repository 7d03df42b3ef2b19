"""Recovery: turn an episode cut short (crash, kill -9, power loss, full disk) into a valid,
indexed MCAP holding every intact chunk. File-level salvage lives in ``salvage``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .contract import CRASHED_SUFFIX
from .salvage import RecoveryResult, recover_file, salvage
from .writer import PART_SUFFIX

if TYPE_CHECKING:
    from .session import Session


def recover_session(directory: Path, *, session: Session) -> list[RecoveryResult]:
    """Recover every episode of ``session`` that was being written when it stopped."""
    from .session import EPISODE_METADATA, HEALTH_METADATA, EpisodeInfo, episode_metadata

    results = []
    names = {p.name[: -len(PART_SUFFIX)] for p in directory.glob(f"*.mcap{PART_SUFFIX}")}
    names |= {p.name[: -len(CRASHED_SUFFIX)] for p in directory.glob(f"*.mcap{CRASHED_SUFFIX}")}
    for name in sorted(names):
        final = directory / name
        part = directory / (name + PART_SUFFIX)
        crashed = directory / (name + CRASHED_SUFFIX)
        if crashed.exists():
            part.unlink(missing_ok=True)  # an interrupted earlier recovery: start again
        else:
            os.replace(part, crashed)
        res = salvage(crashed, final, session.profile, session.options)
        cur = session.current
        ev = res.start_event or {}
        if cur is not None and cur.file == name:
            info = cur
        else:
            info = EpisodeInfo(index=int(ev.get("index", session.next_index)),
                               episode_id=str(ev.get("episode_id", "")), file=name,
                               task=str(ev.get("task", "")), operator=str(ev.get("operator", "")),
                               start_ns=int(ev.get("stamp_ns", res.first_ns)))
        info.end_ns = max(res.last_ns, info.start_ns)
        info.outcome, info.ended_by = "unknown", "recovered"
        report = res.writer.health.report(info.start_ns, info.end_ns, res.writer.bytes_written)
        info.counts = res.writer.counts()
        info.messages = sum(info.counts.values())
        info.flags = [*report.flags, "recovered"]
        info.flagged = True
        md = episode_metadata(info, session.name, session.profile, session.robot)
        md.update({"recovered": "true", "recovered_bytes": str(res.kept_bytes),
                   "damaged_bytes": str(res.total_bytes), "cut_reason": res.cut_reason})
        health = report.metadata()
        health["flagged"], health["flags"] = "true", ",".join(info.flags)
        res.writer.close({EPISODE_METADATA: md, HEALTH_METADATA: health})
        crashed.unlink()
        if session.current is info:
            session.current = None
        session.episodes.append(info)
        session.episodes.sort(key=lambda e: e.index)
        results.append(res)
    if not results and session.current is not None and not (directory / session.current.file).exists():
        session.current = None  # the open episode never reached the disk
    return results


__all__ = ["CRASHED_SUFFIX", "RecoveryResult", "recover_file", "recover_session", "salvage"]
