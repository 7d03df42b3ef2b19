"""Reading ahead of the schedule: a thread that decodes the timeline in log-time order
into batches, so that reading and decompressing never delay a publish.

It fills its buffer up to ``depth`` messages, then sleeps until the player has used half
of them, so it wakes up once per half buffer rather than once per batch. While it reads,
it steps aside around the player's next deadline (:attr:`ReadAhead.due_ns`, which the
player sets before it waits): it sleeps through the deadline, releasing the GIL, instead
of holding the GIL until the interpreter's switch interval forces it to let go.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Final

from .timeline import Timeline

__all__ = ["END", "LOOP", "Batch", "Item", "Marker", "ReadAhead"]

#: (a_ns, p_ns, topic, data, episode position): a is the absolute playback time over
#: loops, p the position within the selection.
Item = tuple[int, int, str, bytes, int]


class Marker:
    """A sentinel in the stream of batches."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END: Final = Marker("END")     # the last batch: nothing follows
LOOP: Final = Marker("LOOP")   # in a batch: the selection starts over here

Batch = list[Item | Marker]


class ReadAhead(threading.Thread):
    """Reads ``timeline`` from position ``p0`` (ns) in log-time order; the player calls
    :meth:`take` for the next batch and :meth:`close` when done."""

    BATCH = 64
    #: how close to the player's deadline the reader stops to let the player run
    YIELD_NS = 300_000

    def __init__(self, timeline: Timeline, topics: list[str], p0: int, loop: bool,
                 depth: int) -> None:
        super().__init__(name="demofab-replay-reader", daemon=True)
        self.timeline, self.topics, self.p0, self.loop = timeline, topics, p0, loop
        self.high = max(depth, 2 * self.BATCH)
        self.low = self.high // 2
        self.error: BaseException | None = None
        self.due_ns = 0                  # the player's next deadline (perf_counter ns)
        self.wakeups = 0                 # times the reader resumed after a full buffer
        self._batches: deque[Batch | Marker] = deque()
        self._buffered = 0
        self._cond = threading.Condition(threading.Lock())
        self._halt = threading.Event()
        self._full = False

    # -- player side ---------------------------------------------------------------------
    def take(self, timeout: float) -> Batch | Marker | None:
        """The next batch, :data:`END`, or None when nothing came within ``timeout`` s."""
        with self._cond:
            if not self._batches and not self._cond.wait_for(lambda: self._batches, timeout):
                return None
            item = self._batches.popleft()
            if isinstance(item, list):
                self._buffered -= len(item)
                if self._full and self._buffered <= self.low:
                    self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._halt.set()
            self._batches.clear()
            self._cond.notify_all()
        if self.is_alive():
            self.join(timeout=2.0)

    # -- reader side ---------------------------------------------------------------------
    def _put(self, item: Batch | Marker) -> bool:
        with self._cond:
            if self._buffered >= self.high:
                self._full = True
                self._cond.wait_for(lambda: self._halt.is_set() or self._buffered <= self.low)
                self._full = False
                self.wakeups += 1
            if self._halt.is_set():
                return False
            self._batches.append(item)
            if isinstance(item, list):
                self._buffered += len(item)
            self._cond.notify_all()
            return True

    def _step_aside(self) -> None:
        """Sleep through the player's deadline when it is about to come."""
        clock = time.perf_counter_ns
        due = self.due_ns
        now = clock()
        if -50_000 < due - now < self.YIELD_NS:
            time.sleep((due - now + 100_000) / 1e9)

    def run(self) -> None:
        from mcap.reader import make_reader

        tl = self.timeline
        period = max(tl.duration_ns, 1_000_000)
        topics = self.topics
        base, p0 = 0, self.p0
        batch: Batch = []
        if not topics:
            self._put(END)
            return
        step_aside = self._step_aside
        try:
            while not self._halt.is_set():
                for pos, ep in enumerate(tl.episodes):
                    if ep.offset_ns + ep.duration_ns < p0 or not ep.messages:
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
                            step_aside()
                            if self._halt.is_set():
                                return
                if not self.loop:
                    break
                base += period
                p0 = 0
                batch.append(LOOP)
        except BaseException as exc:  # noqa: BLE001 - handed to the player thread
            self.error = exc
        if batch:
            self._put(batch)
        self._put(END)
