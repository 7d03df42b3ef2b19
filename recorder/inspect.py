"""``demofab inspect``: what is in an episode file, a session, or any rosbag2 MCAP bag.

Every file is read record by record with chunk CRCs checked, so counts are exact and a
damaged file is reported with the byte offset where it breaks. Each channel is decoded
once (its first message) with the schema embedded in the file, so a channel that cannot
be decoded is reported without failing the rest.
"""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcap.exceptions import McapError
from mcap.records import (
    Attachment,
    Channel,
    Chunk,
    DataEnd,
    Footer,
    Header,
    Message,
    Metadata,
    Schema,
)
from mcap.stream_reader import StreamReader, breakup_chunk

from .contract import (
    BAG_METADATA,
    EPISODE_METADATA,
    HEALTH_METADATA,
    MCAP_SUFFIX,
    PART_SUFFIX,
    read_bag_listing,
)
from .errors import CorruptFileError, RecorderError
from .types import schema_store


@dataclass
class _Chan:
    topic: str
    type: str
    encoding: str
    schema_encoding: str
    schema: bytes
    count: int = 0
    first_ns: int = -1
    last_ns: int = -1
    sample: bytes | None = None


@dataclass
class FileScan:
    path: Path
    size: int
    profile: str = ""
    library: str = ""
    chunks: int = 0
    compression: set[str] = field(default_factory=set)
    channels: dict[int, _Chan] = field(default_factory=dict)
    metadata: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(c.count for c in self.channels.values())


def scan_file(path: Path) -> FileScan:
    """Read every record of an MCAP file; raise CorruptFileError where it breaks."""
    size = path.stat().st_size
    scan = FileScan(path=path, size=size)
    schemas: dict[int, Schema] = {}
    offset = 0

    def add(rec: Channel) -> None:
        sch = schemas.get(rec.schema_id)
        scan.channels.setdefault(rec.id, _Chan(
            rec.topic, sch.name if sch else "", rec.message_encoding,
            sch.encoding if sch else "", sch.data if sch else b""))

    def count(msg: Message) -> None:
        ch = scan.channels.get(msg.channel_id)
        if ch is None:
            raise CorruptFileError(path, offset, f"message on unknown channel {msg.channel_id}")
        ch.count += 1
        t = msg.log_time
        if ch.first_ns < 0 or t < ch.first_ns:
            ch.first_ns = t
        if t > ch.last_ns:
            ch.last_ns = t
        if ch.sample is None:
            ch.sample = bytes(msg.data)

    with open(path, "rb") as f:
        reader = StreamReader(f, emit_chunks=True, validate_crcs=True)
        complete = False
        try:
            for rec in reader.records:
                if isinstance(rec, Header):
                    scan.profile, scan.library = rec.profile, rec.library
                elif isinstance(rec, Schema):
                    schemas[rec.id] = rec
                elif isinstance(rec, Channel):
                    add(rec)
                elif isinstance(rec, Chunk):
                    scan.chunks += 1
                    scan.compression.add(rec.compression or "none")
                    for inner in breakup_chunk(rec, validate_crc=True):
                        if isinstance(inner, Message):
                            count(inner)
                        elif isinstance(inner, Schema):
                            schemas[inner.id] = inner
                        elif isinstance(inner, Channel):
                            add(inner)
                elif isinstance(rec, Message):
                    count(rec)
                elif isinstance(rec, Metadata):
                    scan.metadata.append((rec.name, dict(rec.metadata)))
                elif isinstance(rec, Attachment):
                    scan.attachments.append({"name": rec.name, "media_type": rec.media_type,
                                             "size": len(rec.data)})
                elif isinstance(rec, DataEnd):
                    pass
                elif isinstance(rec, Footer):
                    complete = True
                offset = f.tell()
        except CorruptFileError:
            raise
        except (McapError, ValueError, EOFError, IndexError, UnicodeDecodeError, struct.error) as exc:
            what = str(exc) or type(exc).__name__
            if offset >= size or "EndOfFile" in type(exc).__name__:
                what = "file is truncated (incomplete record)"
            raise CorruptFileError(path, offset, what) from None
        if not complete:
            raise CorruptFileError(path, offset, "file is truncated (no footer)")
    return scan


def _decode_problem(ch: _Chan) -> str:
    """Empty when the channel decodes with its embedded schema, else why not."""
    if ch.encoding != "cdr":
        return "" if ch.encoding == "json" else f"message encoding {ch.encoding!r} is not CDR"
    if ch.sample is None:
        return ""
    try:
        store = schema_store(ch.type, ch.schema_encoding, ch.schema)
    except RecorderError as exc:   # names the type, or the encoding that is not ROS 2's
        return str(exc)
    try:
        store.deserialize(ch.sample)
    except Exception as exc:  # noqa: BLE001 - reported per channel, not fatal
        return f"cannot decode {ch.type or 'schemaless'} with the embedded schema: {exc}"
    return ""


def session_files(path: Path) -> tuple[list[Path], list[Path]]:
    """The MCAP files of a session or bag directory (those its rosbag2 metadata lists, or
    every MCAP file when it has none), and any unfinished ``.part`` files."""
    listing = read_bag_listing(path)
    if listing is not None:
        files = [path / p for p in listing.files]
        missing = [str(p) for p in files if not p.exists()]
        if missing:
            raise RecorderError(f"{listing.path}: lists files that do not exist: "
                                f"{', '.join(missing)}")
    else:
        files = sorted(path.glob(f"*{MCAP_SUFFIX}"))
    parts = sorted(path.glob(f"*{MCAP_SUFFIX}{PART_SUFFIX}"))
    if not files and not parts:
        raise RecorderError(f"{path}: no MCAP files and no {BAG_METADATA}")
    return files, parts


def inspect_path(path: Path | str) -> dict[str, Any]:
    """Summarise an episode file or a session folder: topics, counts, span, metadata, health."""
    path = Path(path)
    if not path.exists():
        raise RecorderError(f"{path} does not exist")
    parts: list[Path] = []
    if path.is_dir():
        files, parts = session_files(path)
    else:
        files = [path]
    scans = [scan_file(p) for p in files]
    topics: dict[str, dict[str, Any]] = {}
    span: dict[str, list[int]] = defaultdict(lambda: [-1, -1])
    for scan in scans:
        for ch in scan.channels.values():
            t = topics.setdefault(ch.topic, {"topic": ch.topic, "type": ch.type, "count": 0,
                                             "rate_hz": 0.0, "encoding": ch.encoding,
                                             "decodable": True, "problem": ""})
            t["count"] += ch.count
            if ch.type != t["type"]:
                t["problem"] = f"type differs between files: {t['type']} and {ch.type}"
            problem = _decode_problem(ch)
            if problem and not t["problem"]:
                t["decodable"], t["problem"] = False, problem
            if ch.count:
                s = span[ch.topic]
                s[0] = ch.first_ns if s[0] < 0 else min(s[0], ch.first_ns)
                s[1] = max(s[1], ch.last_ns)
    # rate over each file's own span, so gaps between episodes do not dilute it
    for topic, t in topics.items():
        n = 0
        dur = 0
        for scan in scans:
            for ch in scan.channels.values():
                if ch.topic == topic and ch.count > 1:
                    n += ch.count - 1
                    dur += ch.last_ns - ch.first_ns
        t["rate_hz"] = round(n * 1e9 / dur, 3) if dur > 0 else 0.0
    episodes = []
    for scan in scans:
        md = dict(scan.metadata)
        ep = md.get(EPISODE_METADATA)
        if ep is None:
            continue
        health = md.get(HEALTH_METADATA, {})
        episodes.append({
            "file": str(scan.path), "index": int(ep.get("episode_index", -1)),
            "episode_id": ep.get("episode_id", ""), "task": ep.get("task", ""),
            "operator": ep.get("operator", ""), "outcome": ep.get("outcome", "unknown"),
            "ended_by": ep.get("ended_by", ""),
            "start_ns": int(ep.get("start_ns", 0)), "end_ns": int(ep.get("end_ns", 0)),
            "messages": scan.messages, "flagged": health.get("flagged") == "true",
            "flags": [f for f in health.get("flags", "").split(",") if f],
        })
    starts = [s[0] for s in span.values() if s[0] >= 0]
    ends = [s[1] for s in span.values() if s[1] >= 0]
    return {
        "path": str(path),
        "files": [{"path": str(s.path), "size": s.size, "messages": s.messages,
                   "chunks": s.chunks, "compression": sorted(s.compression),
                   "profile": s.profile, "library": s.library,
                   "attachments": s.attachments,
                   "metadata": sorted({name for name, _ in s.metadata})} for s in scans],
        "unfinished": [str(p) for p in parts],
        "messages": sum(s.messages for s in scans),
        "start_ns": min(starts, default=0), "end_ns": max(ends, default=0),
        "duration_s": round((max(ends, default=0) - min(starts, default=0)) / 1e9, 6),
        "topics": sorted(topics.values(), key=lambda t: t["topic"]),
        "episodes": sorted(episodes, key=lambda e: (e["index"], e["file"])),
    }


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]{report['path']}[/]: {len(report['files'])} file(s), "
              f"{report['messages']} messages, {report['duration_s']:.2f} s")
    tt = Table("topic", "type", "count", "rate Hz", "decodes")
    for t in report["topics"]:
        tt.add_row(t["topic"], t["type"], str(t["count"]), f"{t['rate_hz']:.1f}",
                   "yes" if t["decodable"] else f"[red]no[/]: {t['problem']}")
    con.print(tt)
    if report["episodes"]:
        et = Table("#", "file", "task", "operator", "outcome", "s", "messages", "health")
        for e in report["episodes"]:
            et.add_row(str(e["index"]), Path(e["file"]).name, e["task"], e["operator"],
                       e["outcome"], f"{(e['end_ns'] - e['start_ns']) / 1e9:.1f}",
                       str(e["messages"]),
                       "[red]flagged: " + ", ".join(e["flags"]) + "[/]" if e["flagged"] else "ok")
        con.print(et)
    for p in report["unfinished"]:
        con.print(f"[yellow]unfinished episode {p}: run 'demofab recover' on the session[/]")


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
