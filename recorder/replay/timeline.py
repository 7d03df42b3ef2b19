"""The playback timeline: which files a selection holds, in which order, and where each
sits in time.

A selection is one episode file, several, or a session directory (its episodes in the
order of its bag listing, ``contract.BAG_METADATA``, with the indices of the session
state) or a rosbag2 bag of MCAP files. Each episode keeps its recorded spacing; episodes follow
each other with ``gap_s`` between them (``None`` keeps the recorded gaps). Positions are
nanoseconds on that timeline, from the first message of the first selected episode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..contract import (
    BAG_METADATA,
    EPISODE_METADATA,
    MCAP_SUFFIX,
    read_bag_listing,
    read_session_state,
)
from ..errors import RecorderError
from ..profile import Qos
from .errors import ReplayError

__all__ = ["EpisodeRef", "Timeline", "TopicInfo", "qos_from_metadata"]

NS = 1_000_000_000

_QOS_INT = {"reliability": {1: "reliable", 2: "best_effort"},
            "durability": {1: "transient_local", 2: "volatile"},
            "history": {1: "keep_last", 2: "keep_all"}}


def qos_from_metadata(text: str | None) -> Qos:
    """The QoS to publish with, from a channel's ``offered_qos_profiles`` (rosbag2 YAML,
    strings or the older integer enums). Like ``ros2 bag play``: reliable only when every
    recorded publisher was, transient_local only when every one was; the deepest history.
    No metadata: the ROS 2 default (reliable, volatile, keep last 10)."""
    if not text:
        return Qos()
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return Qos()
    raw = [loaded] if isinstance(loaded, dict) else loaded
    if not isinstance(raw, list):
        return Qos()
    offers: list[dict[str, Any]] = [o for o in raw if isinstance(o, dict)]
    if not offers:
        return Qos()

    def norm(o: dict[str, Any], key: str, default: str) -> str:
        v = o.get(key, default)
        if isinstance(v, int):
            return _QOS_INT[key].get(v, default)
        v = str(v).lower()
        return v if v in _QOS_INT[key].values() else default

    rel = [norm(o, "reliability", "reliable") for o in offers]
    dur = [norm(o, "durability", "volatile") for o in offers]
    hist = [norm(o, "history", "keep_last") for o in offers]
    depth = max(int(o.get("depth", 10) or 0) for o in offers)
    return Qos(
        reliability="reliable" if all(r == "reliable" for r in rel) else "best_effort",
        durability="transient_local" if all(d == "transient_local" for d in dur) else "volatile",
        history="keep_all" if all(h == "keep_all" for h in hist) else "keep_last",
        depth=max(depth, 1),
    )


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """One recorded topic of a selection: its name, type, recorded QoS and message count."""

    topic: str
    type: str
    qos: Qos
    messages: int


@dataclass(frozen=True, slots=True)
class EpisodeRef:
    """One file of the selection and where it sits on the playback timeline."""

    path: Path
    index: int            # episode index (the session's, else the file's metadata, else order)
    start_ns: int         # log time of its first message
    end_ns: int           # log time of its last message
    offset_ns: int        # its first message's position on the playback timeline
    messages: int         # messages on the topics that will be played
    topics: Mapping[str, TopicInfo]

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class _Scan:
    """What one file's summary says."""

    path: Path
    index: int
    start_ns: int
    end_ns: int
    topics: dict[str, TopicInfo]
    encodings: dict[str, str]


@dataclass(frozen=True, slots=True)
class Timeline:
    """The episodes of a selection laid end to end on one playback clock, with their topics."""

    episodes: tuple[EpisodeRef, ...]
    topics: Mapping[str, TopicInfo]   # played topics, merged over the episodes
    skipped: tuple[str, ...]          # recorded topics not played (filtered or not CDR)

    @property
    def duration_ns(self) -> int:
        last = self.episodes[-1]
        return last.offset_ns + last.duration_ns

    @property
    def messages(self) -> int:
        return sum(e.messages for e in self.episodes)

    def episode_at(self, p_ns: int) -> int:
        """Position of the episode playing at ``p_ns`` (the previous one in a gap)."""
        k = 0
        for i, e in enumerate(self.episodes):
            if e.offset_ns <= p_ns:
                k = i
        return k

    def recorded_ns(self, p_ns: int) -> int:
        """Recorded time (log time) at playback position ``p_ns``."""
        e = self.episodes[self.episode_at(p_ns)]
        return e.start_ns + (p_ns - e.offset_ns)

    @staticmethod
    def open(source: str | Path | Sequence[str | Path], *, episodes: Sequence[int] | None = None,
             topics: Sequence[str] | None = None, gap_s: float | None = 0.0) -> Timeline:
        files = _selection_files(source)
        scans = [_scan(path, index if index is not None else pos)
                 for pos, (path, index) in enumerate(files)]
        if episodes is not None:
            have = [s.index for s in scans]
            missing = [i for i in episodes if i not in have]
            if missing:
                raise ReplayError(f"{source}: no episode {', '.join(map(str, missing))} "
                                  f"(episodes: {', '.join(map(str, have)) or 'none'})")
            wanted = list(dict.fromkeys(episodes))
            scans = sorted((s for s in scans if s.index in wanted),
                           key=lambda s: wanted.index(s.index))
        all_topics: dict[str, TopicInfo] = {}
        not_cdr: set[str] = set()
        for s in scans:
            for name, enc in s.encodings.items():
                if enc != "cdr":
                    not_cdr.add(name)
                    continue
                t = s.topics[name]
                seen = all_topics.get(name)
                if seen is not None and seen.type != t.type:
                    raise ReplayError(f"{s.path}: topic {name} is {t.type}, but {seen.type} in "
                                      "an earlier episode of the selection")
                all_topics[name] = TopicInfo(name, t.type, seen.qos if seen else t.qos,
                                             (seen.messages if seen else 0) + t.messages)
        if topics is not None:
            unknown = [t for t in topics if t not in all_topics]
            if unknown:
                raise ReplayError(f"{source}: no CDR topic {', '.join(unknown)} in the selection "
                                  f"(topics: {', '.join(sorted(all_topics))})")
            played = {t: all_topics[t] for t in all_topics if t in topics}
        else:
            played = all_topics
        skipped = tuple(sorted((set(all_topics) - set(played)) | not_cdr))
        out: list[EpisodeRef] = []
        offset = 0
        first_start = min(s.start_ns for s in scans)
        for s in scans:
            if gap_s is None:
                offset = s.start_ns - first_start
            n = sum(t.messages for name, t in s.topics.items() if name in played)
            out.append(EpisodeRef(s.path, s.index, s.start_ns, s.end_ns, offset, n,
                                  {k: v for k, v in s.topics.items() if k in played}))
            if gap_s is not None:
                offset += (s.end_ns - s.start_ns) + int(gap_s * NS)
        if gap_s is None:
            out.sort(key=lambda e: e.offset_ns)
        return Timeline(tuple(out), played, skipped)


def _selection_files(source: str | Path | Sequence[str | Path]) -> list[tuple[Path, int | None]]:
    """Files of a selection, with the episode index the session gives them (if any)."""
    if isinstance(source, (str, Path)):
        sources = [Path(source)]
    else:
        sources = [Path(s) for s in source]
        if not sources:
            raise ReplayError("nothing to play: the selection is empty")
    out: list[tuple[Path, int | None]] = []
    for src in sources:
        if not src.exists():
            raise ReplayError(f"{src} does not exist")
        if not src.is_dir():
            out.append((src, None))
            continue
        try:
            state = read_session_state(src)
            listing = read_bag_listing(src)
        except ReplayError:
            raise
        except RecorderError as exc:
            raise ReplayError(str(exc)) from exc
        index = state.episode_indices() if state is not None else {}
        if listing is not None:
            if listing.storage and listing.storage != "mcap":
                raise ReplayError(f"{listing.path}: the bag is stored as {listing.storage!r}; "
                                  "replay reads MCAP bags only")
            names = list(listing.files)
            missing = [n for n in names if not (src / n).is_file()]
            if missing:
                raise ReplayError(f"{listing.path} lists {', '.join(missing)}, which "
                                  f"{'is' if len(missing) == 1 else 'are'} not in {src}")
        else:
            names = sorted(p.name for p in src.glob(f"*{MCAP_SUFFIX}"))
        if not names:
            raise ReplayError(f"{src}: no finished episodes (no {MCAP_SUFFIX} files "
                              f"{'listed in ' + BAG_METADATA if listing is not None else 'in it'})")
        out.extend((src / n, index.get(n)) for n in names)
    return out


def _scan(path: Path, default_index: int) -> _Scan:
    from mcap.reader import make_reader

    try:
        with open(path, "rb") as f:
            reader = make_reader(f)
            summary = reader.get_summary()
            if summary is None or summary.statistics is None:
                raise ReplayError(f"{path}: MCAP file has no summary (unfinished or damaged; "
                                  "try 'demofab recover')")
            index = default_index
            for md in reader.iter_metadata():
                if md.name == EPISODE_METADATA and "episode_index" in md.metadata:
                    index = int(md.metadata["episode_index"])
    except ReplayError:
        raise
    except Exception as exc:
        raise ReplayError(f"{path}: cannot read as MCAP: {exc}") from exc
    st = summary.statistics
    counts = st.channel_message_counts
    topics: dict[str, TopicInfo] = {}
    encodings: dict[str, str] = {}
    for cid, ch in summary.channels.items():
        schema = summary.schemas.get(ch.schema_id)
        typ = schema.name if schema is not None else ""
        n = counts.get(cid, 0)
        prev = topics.get(ch.topic)
        topics[ch.topic] = TopicInfo(ch.topic, typ, qos_from_metadata(
            ch.metadata.get("offered_qos_profiles")), n + (prev.messages if prev else 0))
        encodings[ch.topic] = ch.message_encoding
    return _Scan(path, index, st.message_start_time, st.message_end_time, topics, encodings)
