"""Replay: play episodes, sessions or MCAP files onto ROS 2 / DDS topics, on time.

The player is independent of any middleware: it publishes raw CDR bytes through a
:class:`Publisher` backend (``recorder.dds.DdsPublisher`` without ROS 2,
``recorder.ros2pub.RclpyPublisher`` with rclpy, :class:`MemoryPublisher` for tests).

Timeline. A selection is one episode file, several, or a session directory (its
episodes in the order of ``metadata.yaml``). Each episode keeps its recorded spacing;
episodes follow each other with ``episode_gap_s`` between them (0 by default; ``None``
keeps the recorded gaps). Positions (``start_offset_s``, :meth:`Player.seek`, progress)
are seconds on that timeline, from the first message of the first selected episode.
``/clock`` carries the *recorded* time (the log time of the message being played).

Timing. Every message is scheduled against the monotonic clock
(``anchor_wall + (t - anchor_t) / rate``); the player waits with an interruptible sleep for
the bulk and busy-waits the last ``busy_wait_s`` (1 ms). The error of each publish
(actual - scheduled) goes into a histogram (1 us bins): :attr:`Player.stats` has p50,
p99 and max. Messages are read lazily with the ``mcap`` reader in log-time order by a
read-ahead thread, so decompressing a chunk never delays a publish. While playing,
the interpreter's GIL switch interval is lowered to ``switch_interval_s`` (0.2 ms; the
default 5 ms lets the reader thread hold the GIL for up to 5 ms) and restored after.

Control. :meth:`Player.pause`, :meth:`resume`, :meth:`toggle_pause`, :meth:`seek`,
:meth:`set_rate` and :meth:`stop` are thread-safe: a terminal key handler or a ROS 2
service callback calls them while :meth:`play` runs in another thread (or use
:meth:`start` / :meth:`wait`).

Example::

    from recorder.replay import Player, ReplayOptions
    from recorder.dds import DdsPublisher

    with DdsPublisher(domain_id=0) as pub:
        player = Player("session_dir", pub, ReplayOptions(rate=1.0, clock_hz=100))
        stats = player.play()
    print(stats.jitter_ms)   # {'p50': ..., 'p99': ..., 'max': ...}
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml

from .errors import RecorderError
from .profile import Qos

__all__ = [
    "CLOCK_QOS", "CLOCK_TOPIC", "CLOCK_TYPE", "EpisodeRef", "JitterStats", "MemoryPublisher",
    "Player", "Publisher", "ReplayError", "ReplayOptions", "ReplayStats", "Timeline", "TopicInfo",
    "clock_cdr", "parse_remap", "qos_from_metadata",
]

NS = 1_000_000_000
CLOCK_TOPIC = "/clock"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
#: rclcpp::ClockQoS: best effort, keep last 1 (what rosbag2 and rclpy's TimeSource use)
CLOCK_QOS = Qos(reliability="best_effort", durability="volatile", history="keep_last", depth=1)

ProgressCallback = Callable[[float, int, int], None]


class ReplayError(RecorderError):
    """A selection cannot be played (missing file, unknown topic or episode, bad option)."""


# --------------------------------------------------------------------------- backends
@runtime_checkable
class Publisher(Protocol):
    """Where the player sends messages. ``create`` is called once per topic before the
    first message; ``publish`` gets the CDR bytes as recorded (4-byte encapsulation
    header included). A backend may also define ``publish_clock(ns)``; otherwise the
    player creates ``/clock`` (``rosgraph_msgs/msg/Clock``) itself and publishes its CDR."""

    def create(self, topic: str, msgtype: str, qos: Qos) -> Any: ...

    def publish(self, handle: Any, data: bytes) -> None: ...


class MemoryPublisher:
    """Keeps what was published: ``(topic, data, perf_counter_ns at publish)`` tuples."""

    def __init__(self) -> None:
        self.created: dict[str, tuple[str, Qos]] = {}
        self.sent: list[tuple[str, bytes, int]] = []
        self._lock = threading.Lock()

    def create(self, topic: str, msgtype: str, qos: Qos) -> str:
        self.created[topic] = (msgtype, qos)
        return topic

    def publish(self, handle: str, data: bytes) -> None:
        self.sent.append((handle, data, time.perf_counter_ns()))

    def topic(self, name: str) -> list[tuple[bytes, int]]:
        return [(d, t) for topic, d, t in self.sent if topic == name]


def clock_cdr(ns: int) -> bytes:
    """``rosgraph_msgs/msg/Clock`` for ``ns`` (nanoseconds), as CDR bytes."""
    from .types import serialize, typestore

    T = typestore().types
    msg = T[CLOCK_TYPE](clock=T["builtin_interfaces/msg/Time"](sec=ns // NS, nanosec=ns % NS))
    return serialize(msg, CLOCK_TYPE)


# --------------------------------------------------------------------------- options
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
    rate: float = 1.0                     # playback speed: 2.0 plays twice as fast
    loop: bool = False                    # start over at the end, until stopped
    start_offset_s: float = 0.0           # seconds into the selection
    topics: tuple[str, ...] | None = None  # recorded topics to play (None: all)
    remap: Mapping[str, str] = field(default_factory=dict)  # recorded topic -> topic to publish
    clock_hz: float | None = None         # publish /clock at this rate (None: no /clock)
    episodes: tuple[int, ...] | None = None  # episode indices of a session (None: all)
    episode_gap_s: float | None = 0.0     # pause between episodes; None keeps the recorded gaps
    start_paused: bool = False
    busy_wait_s: float = 0.001            # spin (instead of sleeping) for the last ~1 ms
    read_ahead: int = 4096                # messages decoded ahead of the schedule
    switch_interval_s: float | None = 0.0002  # GIL switch interval while playing (None: leave)
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


# --------------------------------------------------------------------------- timeline
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
        offers = yaml.safe_load(text)
    except yaml.YAMLError:
        return Qos()
    if isinstance(offers, dict):
        offers = [offers]
    if not isinstance(offers, list) or not offers:
        return Qos()

    def norm(o: dict[str, Any], key: str, default: str) -> str:
        v = o.get(key, default)
        if isinstance(v, int):
            return _QOS_INT[key].get(v, default)
        v = str(v).lower()
        return v if v in _QOS_INT[key].values() else default

    offers = [o for o in offers if isinstance(o, dict)]
    if not offers:
        return Qos()
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
class Timeline:
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
        refs: list[tuple[Path, int, int, int, dict[str, TopicInfo], dict[str, str], int]] = []
        for pos, (path, index) in enumerate(files):
            refs.append(_scan(path, index if index is not None else pos))
        if episodes is not None:
            have = [r[1] for r in refs]
            missing = [i for i in episodes if i not in have]
            if missing:
                raise ReplayError(f"{source}: no episode {', '.join(map(str, missing))} "
                                  f"(episodes: {', '.join(map(str, have)) or 'none'})")
            wanted = list(dict.fromkeys(episodes))
            refs = sorted((r for r in refs if r[1] in wanted), key=lambda r: wanted.index(r[1]))
        all_topics: dict[str, TopicInfo] = {}
        not_cdr: set[str] = set()
        for path, _, _, _, tinfo, encodings, _ in refs:
            for name, enc in encodings.items():
                if enc != "cdr":
                    not_cdr.add(name)
                    continue
                t = tinfo[name]
                seen = all_topics.get(name)
                if seen is not None and seen.type != t.type:
                    raise ReplayError(f"{path}: topic {name} is {t.type}, but {seen.type} in "
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
        first_start = min(r[2] for r in refs)
        for path, index, start, end, tinfo, _, _ in refs:
            if gap_s is None:
                offset = start - first_start
            n = sum(t.messages for name, t in tinfo.items() if name in played)
            out.append(EpisodeRef(path, index, start, end, offset, n,
                                  {k: v for k, v in tinfo.items() if k in played}))
            if gap_s is not None:
                offset += (end - start) + int(gap_s * NS)
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
        index: dict[str, int] = {}
        state = src / "demofab_session.yaml"
        if state.is_file():
            raw = yaml.safe_load(state.read_text()) or {}
            index = {str(e["file"]): int(e["index"]) for e in raw.get("episodes") or []}
        meta = src / "metadata.yaml"
        if meta.is_file():
            info = (yaml.safe_load(meta.read_text()) or {}).get("rosbag2_bagfile_information", {})
            names = [str(n) for n in info.get("relative_file_paths") or []]
        else:
            names = sorted(p.name for p in src.glob("*.mcap"))
        if not names:
            raise ReplayError(f"{src}: no finished episodes (no .mcap files listed)")
        out.extend((src / n, index.get(n)) for n in names)
    return out


def _scan(path: Path, default_index: int
          ) -> tuple[Path, int, int, int, dict[str, TopicInfo], dict[str, str], int]:
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
                if md.name == "demofab.episode" and "episode_index" in md.metadata:
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
    return path, index, st.message_start_time, st.message_end_time, topics, encodings, \
        st.message_count


# --------------------------------------------------------------------------- stats
class JitterStats:
    """Histogram of publish timing errors (actual - scheduled) with 1 us bins up to 100 ms;
    beyond that, exact values are kept."""

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
    published: Counter[str] = field(default_factory=Counter)  # per published (remapped) topic
    clock_messages: int = 0
    wall_s: float = 0.0
    played_s: float = 0.0          # playback-timeline seconds covered (all passes)
    loops: int = 0                 # completed passes beyond the first
    stopped: bool = False          # ended by stop() rather than the end of the selection
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
                "stopped": self.stopped, "jitter_ms": self.jitter_ms}


# --------------------------------------------------------------------------- reading
_END = object()
_LOOP = object()


class _ReadAhead(threading.Thread):
    """Reads the timeline from position ``p0`` in log-time order into a bounded queue of
    batches ``[(a_ns, p_ns, topic, data, episode_pos), ...]`` (a: absolute playback time
    over loops, p: position within the selection)."""

    BATCH = 64

    def __init__(self, timeline: Timeline, topics: list[str], p0: int, loop: bool,
                 depth: int) -> None:
        super().__init__(name="demofab-replay-reader", daemon=True)
        self.timeline, self.topics, self.p0, self.loop = timeline, topics, p0, loop
        self.out: queue.Queue[Any] = queue.Queue(maxsize=max(2, depth // self.BATCH))
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def _put(self, item: Any) -> bool:
        while not self.halt.is_set():
            try:
                self.out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        from mcap.reader import make_reader

        tl = self.timeline
        period = max(tl.duration_ns, 1_000_000)
        topics = self.topics
        base, p0 = 0, self.p0
        batch: list[tuple[int, int, str, bytes, int]] = []
        if not topics:
            self._put(_END)
            return
        try:
            while not self.halt.is_set():
                for pos, ep in enumerate(tl.episodes):
                    if ep.offset_ns + ep.duration_ns < p0 or not ep.messages or not topics:
                        continue
                    start = ep.start_ns + max(0, p0 - ep.offset_ns)
                    shift = base + ep.offset_ns - ep.start_ns
                    with open(ep.path, "rb") as f:
                        it = make_reader(f).iter_messages(topics=topics, starting_at=start,
                                                          log_time_order=True)
                        for _, channel, msg in it:
                            a = msg.log_time + shift
                            batch.append((a, a - base, channel.topic, msg.data, pos))
                            if len(batch) >= self.BATCH:
                                if not self._put(batch):
                                    return
                                batch = []
                            if self.halt.is_set():
                                return
                if not self.loop:
                    break
                base += period
                p0 = 0
                batch.append(_LOOP)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - handed to the player thread
            self.error = exc
        if batch:
            self._put(batch)
        self._put(_END)

    def close(self) -> None:
        self.halt.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.out.get_nowait()
        self.join(timeout=2.0)


# --------------------------------------------------------------------------- player
class Player:
    """Plays a selection onto a :class:`Publisher`. See the module docstring."""

    def __init__(self, source: str | Path | Sequence[str | Path], publisher: Publisher,
                 options: ReplayOptions | None = None, *,
                 on_progress: ProgressCallback | None = None) -> None:
        self.options = opt = options or ReplayOptions()
        self.publisher = publisher
        self.on_progress = on_progress
        self.remap = parse_remap(opt.remap)
        self.timeline = Timeline.open(source, episodes=opt.episodes, topics=opt.topics,
                                      gap_s=opt.episode_gap_s)
        unknown = [t for t in self.remap if t not in self.timeline.topics and t != CLOCK_TOPIC]
        if unknown:
            raise ReplayError(f"remap: no topic {', '.join(unknown)} in the selection (topics: "
                              f"{', '.join(sorted(self.timeline.topics))})")
        self.duration_ns = self.timeline.duration_ns
        if opt.start_offset_s * NS > self.duration_ns:
            raise ReplayError(f"start offset {opt.start_offset_s:.3f} s is past the end of the "
                              f"selection ({self.duration_ns / NS:.3f} s)")
        self.total = self.timeline.messages
        self.unpublished: list[str] = []   # topics whose publisher the backend could not create
        self.stats = ReplayStats()
        self._handles: dict[str, Any] | None = None
        self._clock_handle: Any = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._paused = opt.start_paused
        self._rate = opt.rate
        self._stop = False
        self._seek_to: int | None = None
        self._p = int(opt.start_offset_s * NS)   # position of the last published message
        self._episode = self.timeline.episode_at(self._p)
        self._index = 0
        self._thread: threading.Thread | None = None
        self._running = False

    # -- read-only state ----------------------------------------------------------------
    @property
    def duration_s(self) -> float:
        return self.duration_ns / NS

    @property
    def position_s(self) -> float:
        """Playback position (seconds into the selection) of the last published message."""
        return self._p / NS

    @property
    def index(self) -> int:
        return self._index

    @property
    def episode(self) -> EpisodeRef:
        return self.timeline.episodes[self._episode]

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def running(self) -> bool:
        return self._running

    def output_topic(self, topic: str) -> str:
        return self.remap.get(topic, topic)

    # -- control (any thread) -------------------------------------------------------------
    def pause(self) -> None:
        with self._lock:
            self._paused = True
        self._wake.set()

    def resume(self) -> None:
        with self._lock:
            self._paused = False
        self._wake.set()

    def toggle_pause(self) -> bool:
        """Pause or resume; returns True when now paused."""
        with self._lock:
            self._paused = not self._paused
            paused = self._paused
        self._wake.set()
        return paused

    def seek(self, t_s: float) -> None:
        """Jump to ``t_s`` seconds into the selection (clamped to it); keeps pause state."""
        p = min(max(int(t_s * NS), 0), self.duration_ns)
        with self._lock:
            self._seek_to = p
        self._wake.set()

    def set_rate(self, rate: float) -> None:
        if not rate > 0:
            raise ReplayError(f"rate must be positive, got {rate}")
        with self._lock:
            self._rate = float(rate)
        self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._stop = True
        self._wake.set()

    # -- running ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the publishers (``play`` does it when not done; call it early to give
        subscribers time to discover them)."""
        if self._handles is not None:
            return
        handles = {}
        for name, info in self.timeline.topics.items():
            h = self.publisher.create(self.output_topic(name), info.type, info.qos)
            if h is None:   # the backend cannot publish this type: do not read the topic
                self.unpublished.append(name)
                continue
            handles[name] = h
        if self.unpublished:
            self.total = sum(t.messages for n, t in self.timeline.topics.items() if n in handles)
        if self.options.clock_hz and not hasattr(self.publisher, "publish_clock"):
            self._clock_handle = self.publisher.create(self.output_topic(CLOCK_TOPIC), CLOCK_TYPE,
                                                       CLOCK_QOS)
        if self.options.clock_hz:
            clock_cdr(0)  # loads the typestore now rather than at the first tick
        self._handles = handles

    def start(self) -> threading.Thread:
        """Play in a background thread; :meth:`wait` returns the stats."""
        if self._thread is not None:
            raise ReplayError("this player was already started")
        self.prepare()
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self.play()
            except BaseException as exc:  # noqa: BLE001 - re-raised by wait()
                self._error = exc

        self._thread = threading.Thread(target=run, name="demofab-replay", daemon=True)
        self._running = True
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> ReplayStats:
        if self._thread is None:
            raise ReplayError("wait() without start()")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise ReplayError(f"replay still running after {timeout} s")
        if self._error is not None:
            raise self._error
        return self.stats

    def _publish_clock(self, p_ns: int) -> None:
        ns = self.timeline.recorded_ns(p_ns)
        if self._clock_handle is None:
            self.publisher.publish_clock(ns)  # type: ignore[attr-defined]
        else:
            self.publisher.publish(self._clock_handle, clock_cdr(ns))
        self.stats.clock_messages += 1

    def _wait_until(self, deadline: int, busy_ns: int) -> bool:
        """Sleep, then spin, until ``deadline`` (perf_counter ns). False when a control
        call woke us first."""
        while True:
            remaining = deadline - time.perf_counter_ns()
            if remaining <= 0:
                return True
            if remaining > busy_ns:
                if self._wake.wait((remaining - busy_ns) / NS):
                    return False
            else:
                while time.perf_counter_ns() < deadline:
                    pass
                return True

    def play(self) -> ReplayStats:
        """Play the selection in this thread; returns when it ends or on :meth:`stop`."""
        self.prepare()
        handles = self._handles
        assert handles is not None
        opt = self.options
        publish = self.publisher.publish
        out_topic = {t: self.output_topic(t) for t in handles}
        stats = self.stats
        jitter = stats.jitter
        published = stats.published
        busy_ns = int(opt.busy_wait_s * NS)
        clock_period = int(NS / opt.clock_hz) if opt.clock_hz else 0
        progress_ns = int(opt.progress_every_s * NS)
        on_progress = self.on_progress
        total = self.total
        old_switch = sys.getswitchinterval()
        if opt.switch_interval_s:
            sys.setswitchinterval(opt.switch_interval_s)
        self._running = True
        wall0 = time.perf_counter_ns()

        p = self._p
        reader = _ReadAhead(self.timeline, list(handles), p, opt.loop, opt.read_ahead)
        reader.start()
        buf: deque[Any] = deque()
        # schedule: message at absolute playback time a is due at
        #   anchor_wall + (a - anchor_a) / rate   (perf_counter ns)
        anchor_wall, anchor_a = wall0, p
        seg_a = a_last = p              # played_s accounting: from seg_a to a_last
        paused_a: int | None = None     # where the playback was paused (absolute time)
        anchor_pending = True           # (re)start the schedule when the first message is read
        rate = self._rate
        next_clock = wall0 if clock_period else 0
        next_progress = wall0
        index = int(round(total * p / self.duration_ns)) if self.duration_ns else 0

        def now_a(now: int) -> int:
            """Absolute playback time at wall time ``now``, kept between the last published
            and the next message."""
            cur = anchor_a + int((now - anchor_wall) * rate)
            if buf and buf[0] is not _LOOP:
                cur = min(cur, buf[0][0])
            return max(cur, a_last)

        def pos_of(a: int) -> int:
            """Position within the selection for absolute time ``a``."""
            if buf and buf[0] is not _LOOP:
                return max(0, buf[0][1] - (buf[0][0] - a))
            return self._p + (a - a_last)

        try:
            while True:
                # -- control --------------------------------------------------------------
                self._wake.clear()
                with self._lock:
                    stop, paused, seek_to, new_rate = (self._stop, self._paused, self._seek_to,
                                                       self._rate)
                    self._seek_to = None
                now = time.perf_counter_ns()
                if stop:
                    stats.stopped = True
                    break
                if seek_to is not None:
                    reader.close()
                    reader = _ReadAhead(self.timeline, list(handles), seek_to, opt.loop, opt.read_ahead)
                    reader.start()
                    buf.clear()
                    stats.played_s += max(0, a_last - seg_a) / NS
                    anchor_wall, anchor_a = now, seek_to
                    seg_a = a_last = seek_to
                    if paused_a is not None:
                        paused_a = seek_to
                    self._p = p = seek_to
                    self._episode = self.timeline.episode_at(p)
                    index = int(round(total * p / self.duration_ns)) if self.duration_ns else 0
                    self._index = index
                    anchor_pending = True
                if new_rate != rate:   # re-anchor at the current position
                    anchor_a = paused_a if paused_a is not None else now_a(now)
                    anchor_wall, rate = now, new_rate
                if paused:
                    if paused_a is None:
                        paused_a = now_a(now)
                    if clock_period and now >= next_clock:
                        self._publish_clock(pos_of(paused_a))
                        next_clock = now + clock_period
                    if on_progress is not None and now >= next_progress:
                        on_progress(pos_of(paused_a) / NS, index, total)
                        next_progress = now + progress_ns
                    self._wake.wait(clock_period / NS if clock_period else 0.1)
                    continue
                if paused_a is not None:   # resumed: carry on from where we paused
                    anchor_wall, anchor_a, paused_a = now, paused_a, None

                # -- next message --------------------------------------------------------
                if not buf:
                    try:
                        item = reader.out.get(timeout=0.05)
                    except queue.Empty:
                        continue
                    if item is _END:
                        if reader.error is not None:
                            raise ReplayError(f"reading the selection failed: {reader.error}") \
                                from reader.error
                        break
                    buf.extend(item)
                    if anchor_pending:   # start (or seek) the schedule once data is at hand
                        anchor_wall, anchor_pending = time.perf_counter_ns(), False
                        next_clock = anchor_wall if clock_period else 0
                    continue
                head = buf[0]
                if head is _LOOP:
                    buf.popleft()
                    stats.loops += 1
                    index = 0
                    continue
                a = head[0]
                deadline = anchor_wall + int((a - anchor_a) / rate)
                if clock_period and next_clock < deadline - busy_ns:
                    if not self._wait_until(next_clock, busy_ns):
                        continue
                    self._publish_clock(pos_of(now_a(next_clock)))
                    next_clock += clock_period
                    t = time.perf_counter_ns()
                    if next_clock < t:   # fell behind: no burst of stale clocks
                        next_clock = t + clock_period
                    continue
                if not self._wait_until(deadline, busy_ns):
                    continue
                buf.popleft()
                t = time.perf_counter_ns()
                publish(handles[head[2]], head[3])
                jitter.add(t - deadline)
                published[out_topic[head[2]]] += 1
                a_last = a
                self._p = p = head[1]
                self._episode = head[4]
                index += 1
                self._index = index
                if on_progress is not None and t >= next_progress:
                    on_progress(p / NS, index, total)
                    next_progress = t + progress_ns
        finally:
            reader.close()
            stats.played_s += max(0, a_last - seg_a) / NS
            stats.wall_s = (time.perf_counter_ns() - wall0) / NS
            if opt.switch_interval_s:
                sys.setswitchinterval(old_switch)
            self._running = False
        if on_progress is not None:
            on_progress(self._p / NS, index, total)
        return stats


def iter_selection(source: str | Path | Sequence[str | Path], *,
                   topics: Sequence[str] | None = None) -> Iterator[tuple[str, bytes, int]]:
    """Every message of a selection in playback order: ``(topic, data, log_time)``."""
    tl = Timeline.open(source, topics=topics)
    from mcap.reader import make_reader

    for ep in tl.episodes:
        with open(ep.path, "rb") as f:
            for _, ch, msg in make_reader(f).iter_messages(topics=list(tl.topics),
                                                           log_time_order=True):
                yield ch.topic, msg.data, msg.log_time
