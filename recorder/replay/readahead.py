"""Reading ahead of the schedule, so that reading and decompressing never delay a publish.

Two readers with one interface (:class:`Reader`), both decoding the timeline in log-time
order into batches of ``(a_ns, p_ns, topic, data, episode position)`` (a: absolute
playback time over loops, p: position within the selection):

* :class:`ProcessReadAhead` (the default) reads in a child process (``feeder.py``), so
  parsing MCAP records never holds the player's GIL: a reader thread that holds the GIL
  when the player wakes delays the publish until the interpreter's switch interval forces
  it to let go, or, on a loaded machine, until the scheduler runs that thread again. A
  thread of the player's receives the frames (the GIL released while it waits on the
  pipe); the player parses a batch when it takes it.
* :class:`ReadAhead` reads in a thread; it steps aside (sleeps, releasing the GIL) when
  the player's next deadline (:attr:`Reader.due_ns`, which the player sets before it
  waits) is about to come.

Both fill a buffer up to ``depth`` messages and then wait until the player has used half
of them, so they wake once per half buffer rather than once per batch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Final, Protocol

from . import feeder
from .timeline import Timeline

__all__ = ["END", "LOOP", "Batch", "Item", "Marker", "ProcessReadAhead", "ReadAhead", "Reader"]

#: (a_ns, p_ns, topic, data, episode position)
Item = tuple[int, int, str, bytes, int]


class Marker:
    """A sentinel in the stream of batches."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END: Final = Marker("END")     # nothing follows
LOOP: Final = Marker("LOOP")   # in a batch: the selection starts over here

Batch = list[Item | Marker]


class Reader(Protocol):
    """What the player needs of a read-ahead."""

    error: BaseException | None
    due_ns: int
    wakeups: int

    def start(self) -> None: ...

    def take(self, timeout: float) -> Batch | Marker | None: ...

    def close(self) -> None: ...


class _Buffer:
    """The bounded buffer between a producer (thread) and the player, with hysteresis."""

    BATCH = 64

    def __init__(self, depth: int) -> None:
        self.high = max(depth, 2 * self.BATCH)
        self.low = self.high // 2
        self.error: BaseException | None = None
        self.due_ns = 0                  # the player's next deadline (perf_counter ns)
        self.wakeups = 0                 # times the producer resumed after a full buffer
        self._batches: deque[Batch | bytes | Marker] = deque()
        self._buffered = 0
        self._cond = threading.Condition(threading.Lock())
        self._halt = threading.Event()
        self._full = False

    def _take(self, timeout: float) -> Batch | bytes | Marker | None:
        with self._cond:
            if not self._batches and not self._cond.wait_for(lambda: self._batches, timeout):
                return None
            item = self._batches.popleft()
            if not isinstance(item, Marker):
                self._buffered -= _count(item)
                if self._full and self._buffered <= self.low:
                    self._cond.notify_all()
            return item

    def _put(self, item: Batch | bytes | Marker) -> bool:
        """Append ``item`` (waiting while the buffer is full); False once halted."""
        with self._cond:
            if self._buffered >= self.high:
                self._full = True
                self._cond.wait_for(lambda: self._halt.is_set() or self._buffered <= self.low)
                self._full = False
                self.wakeups += 1
            if self._halt.is_set():
                return False
            self._batches.append(item)
            if not isinstance(item, Marker):
                self._buffered += _count(item)
            self._cond.notify_all()
            return True

    def _halt_now(self) -> None:
        with self._cond:
            self._halt.set()
            self._batches.clear()
            self._cond.notify_all()


def _count(item: Batch | bytes) -> int:
    return len(item) if isinstance(item, list) else feeder.COUNT.unpack_from(item)[0]


class ReadAhead(_Buffer):
    """Reads ``timeline`` from position ``p0`` (ns) in a thread of this process."""

    #: how close to the player's deadline the reader stops to let the player run
    YIELD_NS = 300_000

    def __init__(self, timeline: Timeline, topics: list[str], p0: int, loop: bool,
                 depth: int) -> None:
        super().__init__(depth)
        self.timeline, self.topics, self.p0, self.loop = timeline, topics, p0, loop
        self._thread = threading.Thread(target=self._run, name="demofab-replay-reader",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def take(self, timeout: float) -> Batch | Marker | None:
        """The next batch, :data:`END`, or None when nothing came within ``timeout`` s."""
        item = self._take(timeout)
        assert not isinstance(item, bytes)
        return item

    def close(self) -> None:
        self._halt_now()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _step_aside(self) -> None:
        """Sleep through the player's deadline when it is about to come."""
        due = self.due_ns
        now = time.perf_counter_ns()
        if -50_000 < due - now < self.YIELD_NS:
            time.sleep((due - now + 100_000) / 1e9)

    def _run(self) -> None:
        from mcap.reader import make_reader

        tl = self.timeline
        period = max(tl.duration_ns, 1_000_000)
        topics = self.topics
        base, p0 = 0, self.p0
        batch: Batch = []
        step_aside = self._step_aside
        try:
            while topics and not self._halt.is_set():
                for pos, ep in enumerate(tl.episodes):
                    if ep.offset_ns + ep.duration_ns < p0 or not ep.messages:
                        continue
                    start = ep.start_ns + max(0, p0 - ep.offset_ns)
                    shift = base + ep.offset_ns - ep.start_ns
                    with open(ep.path, "rb") as f:
                        it = make_reader(f, validate_crcs=True).iter_messages(
                            topics=topics, starting_at=start, log_time_order=True)
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


class ProcessReadAhead(_Buffer):
    """Reads ``timeline`` from position ``p0`` (ns) in a child process (``feeder.py``)."""

    def __init__(self, timeline: Timeline, topics: list[str], p0: int, loop: bool,
                 depth: int) -> None:
        super().__init__(depth)
        self.topics = topics
        self._config = {
            "episodes": [[str(e.path), e.offset_ns, e.start_ns, e.duration_ns, e.messages]
                         for e in timeline.episodes],
            "topics": topics, "p0": p0, "loop": loop, "batch": self.BATCH,
            "period": max(timeline.duration_ns, 1_000_000),
        }
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._receive, name="demofab-replay-receiver",
                                        daemon=True)

    def start(self) -> None:
        if not self.topics:
            self._put(END)
            return
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(feeder.__file__)), json.dumps(self._config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, bufsize=1 << 20,
            start_new_session=True)   # ^C in a terminal goes to the player, not to it
        self._thread.start()

    def take(self, timeout: float) -> Batch | Marker | None:
        """The next batch, :data:`END`, or None when nothing came within ``timeout`` s."""
        item = self._take(timeout)
        return _parse(item, self.topics) if isinstance(item, bytes) else item

    def close(self) -> None:
        self._halt_now()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if proc is not None:
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def _receive(self) -> None:
        feeder.polite()   # this thread (Linux: the calling thread only)
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        pipe: IO[bytes] = proc.stdout
        header = feeder.HEADER
        try:
            while not self._halt.is_set():
                raw = pipe.read(header.size)
                if len(raw) < header.size:
                    raise OSError(f"the read-ahead process ended without an end frame "
                                  f"(exit status {proc.wait()})")
                kind, size = header.unpack(raw)
                body = pipe.read(size) if size else b""
                if len(body) < size:
                    raise OSError("the read-ahead process ended in the middle of a frame")
                if kind == b"B":
                    if not self._put(body):
                        return
                elif kind == b"L":
                    if not self._put([LOOP]):
                        return
                else:
                    if body:
                        self.error = OSError(body.decode(errors="replace"))
                    break
        except (OSError, ValueError) as exc:
            if self._halt.is_set():
                return
            self.error = exc
        self._put(END)


def _parse(body: bytes, topics: list[str]) -> Batch:
    """A batch frame's body as a batch."""
    (n,) = feeder.COUNT.unpack_from(body)
    start = feeder.COUNT.size
    end = start + n * feeder.ENTRY.size
    out: Batch = []
    append = out.append
    off = end
    for a, p, topic, pos, size in feeder.ENTRY.iter_unpack(body[start:end]):
        append((a, p, topics[topic], body[off:off + size], pos))
        off += size
    return out


