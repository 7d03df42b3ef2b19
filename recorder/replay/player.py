"""The player loop: :class:`Player` plays a :class:`~recorder.replay.timeline.Timeline`
onto a :class:`~recorder.replay.publishers.Publisher`, on time.

Every message is scheduled against ``time.perf_counter_ns``
(``anchor_wall + (t - anchor_t) / rate``) and waited for with a
:class:`~recorder.replay.timing.DeadlineWaiter` (sleep to just before, spin the rest);
while playing, :func:`~recorder.replay.timing.playback_conditions` holds the GIL switch
interval short, automatic garbage collection off and the timer slack fine. Messages come
from a :class:`~recorder.replay.readahead.ReadAhead` thread. The error of each publish
(actual - scheduled) goes into :attr:`Player.stats`.

Control calls (:meth:`Player.pause`, :meth:`~Player.resume`, :meth:`~Player.seek`,
:meth:`~Player.set_rate`, :meth:`~Player.stop`) are thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import ReplayError
from .options import ReplayOptions, parse_remap
from .publishers import CLOCK_QOS, CLOCK_TOPIC, CLOCK_TYPE, ClockPublisher, Publisher, clock_cdr
from .readahead import Item, Marker, ProcessReadAhead, ReadAhead, Reader
from .stats import ReplayStats
from .timeline import EpisodeRef, Timeline
from .timing import DeadlineWaiter, playback_conditions

__all__ = ["Player", "ProgressCallback"]

NS = 1_000_000_000

#: ``on_progress(position_s, index, total)``
ProgressCallback = Callable[[float, int, int], None]


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
        self._control = 0                 # bumped by every control call (under the lock)
        self._wake = threading.Event()
        self._paused = opt.start_paused
        self._rate = opt.rate
        self._stop = False
        self._seek_to: int | None = None
        self._p = int(opt.start_offset_s * NS)   # position of the last published message
        self._episode = self.timeline.episode_at(self._p)
        self._index = 0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
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

    @property
    def finished(self) -> bool:
        """Whether playback started with :meth:`start` has ended (or failed)."""
        return self._thread is not None and not self._thread.is_alive()

    @property
    def error(self) -> BaseException | None:
        """What ended playback started with :meth:`start` with an error (None: nothing)."""
        return self._error

    def output_topic(self, topic: str) -> str:
        return self.remap.get(topic, topic)

    # -- control (any thread) -------------------------------------------------------------
    def pause(self) -> None:
        with self._lock:
            self._control += 1
            self._paused = True
        self._wake.set()

    def resume(self) -> None:
        with self._lock:
            self._control += 1
            self._paused = False
        self._wake.set()

    def toggle_pause(self) -> bool:
        """Pause or resume; returns True when now paused."""
        with self._lock:
            self._control += 1
            self._paused = not self._paused
            paused = self._paused
        self._wake.set()
        return paused

    def seek(self, t_s: float) -> None:
        """Jump to ``t_s`` seconds into the selection (clamped to it); keeps pause state."""
        p = min(max(int(t_s * NS), 0), self.duration_ns)
        with self._lock:
            self._control += 1
            self._seek_to = p
        self._wake.set()

    def set_rate(self, rate: float) -> None:
        if not rate > 0:
            raise ReplayError(f"rate must be positive, got {rate}")
        with self._lock:
            self._control += 1
            self._rate = float(rate)
        self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._control += 1
            self._stop = True
        self._wake.set()

    # -- running ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the publishers (``play`` does it when not done; call it early to give
        subscribers time to discover them)."""
        if self._handles is not None:
            return
        handles: dict[str, Any] = {}
        for name, info in self.timeline.topics.items():
            h = self.publisher.create(self.output_topic(name), info.type, info.qos)
            if h is None:   # the backend cannot publish this type: do not read the topic
                self.unpublished.append(name)
                continue
            handles[name] = h
        if self.unpublished:
            self.total = sum(t.messages for n, t in self.timeline.topics.items() if n in handles)
        if self.options.clock_hz and not isinstance(self.publisher, ClockPublisher):
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
        self._error = None

        def run() -> None:
            try:
                self.play()
            except BaseException as exc:  # noqa: BLE001 - re-raised by wait()
                self._error = exc

        self._thread = threading.Thread(target=run, name="demofab-replay", daemon=True)
        self._running = True
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s for playback started with :meth:`start` to end;
        whether it has ended (its error, if any, is :attr:`error`)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

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
        if isinstance(self.publisher, ClockPublisher):
            self.publisher.publish_clock(ns)
        else:
            self.publisher.publish(self._clock_handle, clock_cdr(ns))
        self.stats.clock_messages += 1

    def _reader(self, topics: list[str], p0: int) -> Reader:
        """A started read-ahead from ``p0``: the child process, else (when no process can
        be started, e.g. an embedded interpreter) the thread."""
        opt = self.options
        if opt.reader == "process":
            proc = ProcessReadAhead(self.timeline, topics, p0, opt.loop, opt.read_ahead)
            try:
                proc.start()
                return proc
            except OSError:
                pass
        reader = ReadAhead(self.timeline, topics, p0, opt.loop, opt.read_ahead)
        reader.start()
        return reader

    def play(self) -> ReplayStats:
        """Play the selection in this thread; returns when it ends or on :meth:`stop`."""
        self.prepare()
        opt = self.options
        with playback_conditions(switch_interval_s=opt.switch_interval_s,
                                 freeze_gc=opt.freeze_gc):
            self._play()
        if self.on_progress is not None:
            self.on_progress(self._p / NS, self._index, self.total)
        return self.stats

    def _play(self) -> None:
        handles = self._handles
        assert handles is not None
        opt = self.options
        publish = self.publisher.publish
        out_topic = {t: self.output_topic(t) for t in handles}
        stats = self.stats
        jitter = stats.jitter
        published = stats.published
        busy_ns = int(opt.busy_wait_s * NS)
        waiter = DeadlineWaiter(busy_ns, self._wake, collect_gc=opt.freeze_gc)
        wait_until = waiter.wait_until
        clock_period = int(NS / opt.clock_hz) if opt.clock_hz else 0
        progress_ns = int(opt.progress_every_s * NS)
        on_progress = self.on_progress
        total = self.total
        self._running = True
        wall0 = time.perf_counter_ns()

        p = self._p
        reader = self._reader(list(handles), p)
        waiter.on_slack = reader.poll      # the reading done in the slack before a deadline
        buf: deque[Item | Marker] = deque()
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
        seen = -1                        # the control calls taken in so far
        paused = False

        def now_a(now: int) -> int:
            """Absolute playback time at wall time ``now``, kept between the last published
            and the next message."""
            cur = anchor_a + int((now - anchor_wall) * rate)
            head = buf[0] if buf else None
            if isinstance(head, tuple):
                cur = min(cur, head[0])
            return max(cur, a_last)

        def pos_of(a: int) -> int:
            """Position within the selection for absolute time ``a``."""
            head = buf[0] if buf else None
            if isinstance(head, tuple):
                return max(0, head[1] - (head[0] - a))
            return self._p + (a - a_last)

        try:
            while True:
                # -- control (only when a control call came) --------------------------------
                if self._wake.is_set():
                    self._wake.clear()
                if self._control != seen:
                    with self._lock:
                        seen = self._control
                        stop, paused, seek_to, new_rate = (self._stop, self._paused,
                                                           self._seek_to, self._rate)
                        self._seek_to = None
                    if stop:
                        stats.stopped = True
                        break
                    now = time.perf_counter_ns()
                    if seek_to is not None:
                        reader.close()
                        stats.reader_wakeups += reader.wakeups
                        reader = self._reader(list(handles), seek_to)
                        waiter.on_slack = reader.poll
                        buf.clear()
                        stats.played_s += max(0, a_last - seg_a) / NS
                        anchor_wall, anchor_a = now, seek_to
                        seg_a = a_last = seek_to
                        if paused_a is not None or paused:
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
                    now = time.perf_counter_ns()
                    if paused_a is None:   # before the first message the schedule has not started
                        paused_a = a_last if anchor_pending else now_a(now)
                    if clock_period and now >= next_clock:
                        self._publish_clock(pos_of(paused_a))
                        next_clock = now + clock_period
                    if on_progress is not None and now >= next_progress:
                        on_progress(pos_of(paused_a) / NS, index, total)
                        next_progress = now + progress_ns
                    self._wake.wait(clock_period / NS if clock_period else 0.1)
                    continue
                if paused_a is not None:   # resumed: carry on from where we paused
                    anchor_wall, anchor_a, paused_a = time.perf_counter_ns(), paused_a, None

                # -- next message --------------------------------------------------------
                if not buf:
                    item = reader.take(timeout=0.05)
                    if item is None:
                        continue
                    if not isinstance(item, list):   # END
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
                if not isinstance(head, tuple):   # LOOP
                    buf.popleft()
                    stats.loops += 1
                    self._index = index = 0
                    continue
                a = head[0]
                deadline = anchor_wall + int((a - anchor_a) / rate)
                if clock_period and next_clock < deadline - busy_ns:
                    reader.due_ns = next_clock
                    if not wait_until(next_clock):
                        continue
                    self._publish_clock(pos_of(now_a(next_clock)))
                    next_clock += clock_period
                    t = time.perf_counter_ns()
                    if next_clock < t:   # fell behind: no burst of stale clocks
                        next_clock = t + clock_period
                    continue
                reader.due_ns = deadline
                if not wait_until(deadline):
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
            stats.gc_collections += waiter.collections
            stats.reader_wakeups += reader.wakeups
            self._running = False


