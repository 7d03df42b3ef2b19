"""Reading ahead of the schedule, so that reading and decompressing never delay a publish.

Two readers with one interface (:class:`Reader`), both decoding the timeline in log-time
order into batches of ``(a_ns, p_ns, topic, data, episode position)`` (a: absolute
playback time over loops, p: position within the selection):

* :class:`ProcessReadAhead` (the default) reads in a child process (``feeder.py``), so
  parsing MCAP records never holds the player's GIL: a reader thread that holds the GIL
  when the player wakes delays the publish until the interpreter's switch interval forces
  it to let go, or, on a loaded machine, until the scheduler runs that thread again. The
  player itself reads the pipe, in the slack before a deadline, so no other thread of
  its process wants the GIL while it plays.
* :class:`ReadAhead` reads in a thread; it steps aside (sleeps, releasing the GIL) when
  the player's next deadline (:attr:`Reader.due_ns`, which the player sets before it
  waits) is about to come.

Both fill a buffer up to ``depth`` messages and then wait until the player has used half
of them, so the reading wakes once per half buffer rather than once per batch.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Final, Protocol

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

    def poll(self) -> None:
        """Slack before a deadline: do a little of the reading here, if any."""

    def take(self, timeout: float) -> Batch | Marker | None: ...

    def close(self) -> None: ...


class _Buffer:
    """The bounded buffer between the reader thread and the player, with hysteresis."""

    BATCH = 64

    def __init__(self, depth: int) -> None:
        self.high = max(depth, 2 * self.BATCH)
        self.low = self.high // 2
        self.error: BaseException | None = None
        self.due_ns = 0                  # the player's next deadline (perf_counter ns)
        self.wakeups = 0                 # times the producer resumed after a full buffer
        self._batches: deque[Batch | Marker] = deque()
        self._buffered = 0
        self._cond = threading.Condition(threading.Lock())
        self._halt = threading.Event()
        self._full = False

    def _take(self, timeout: float) -> Batch | Marker | None:
        with self._cond:
            if not self._batches and not self._cond.wait_for(lambda: self._batches, timeout):
                return None
            item = self._batches.popleft()
            if not isinstance(item, Marker):
                self._buffered -= len(item)
                if self._full and self._buffered <= self.low:
                    self._cond.notify_all()
            return item

    def _put(self, item: Batch | Marker) -> bool:
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
                self._buffered += len(item)
            self._cond.notify_all()
            return True

    def _halt_now(self) -> None:
        with self._cond:
            self._halt.set()
            self._batches.clear()
            self._cond.notify_all()


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

    def poll(self) -> None:
        """Nothing to do: the thread reads by itself."""

    def take(self, timeout: float) -> Batch | Marker | None:
        """The next batch, :data:`END`, or None when nothing came within ``timeout`` s."""
        return self._take(timeout)

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


class ProcessReadAhead:
    """Reads ``timeline`` from position ``p0`` (ns) in a child process (``feeder.py``).

    No thread of its own: the player reads the pipe (non-blocking) in the slack before a
    deadline (:meth:`poll`) and when it runs out (:meth:`take`), so no other thread of the
    player's process wants the GIL while it plays. It reads until ``depth`` messages are
    buffered, then leaves the pipe alone until half of them are used: the feeder, blocked
    on the full pipe meanwhile, wakes once per half buffer."""

    BATCH = 64
    #: bytes read from the pipe per :meth:`poll` (a few tens of microseconds of copying)
    POLL_BYTES = 1 << 16
    #: payload bytes that end a batch early (camera frames): see ``feeder``
    BATCH_BYTES = 1 << 16

    def __init__(self, timeline: Timeline, topics: list[str], p0: int, loop: bool,
                 depth: int) -> None:
        self.topics = topics
        self.high = max(depth, 2 * self.BATCH)
        self.low = self.high // 2
        self.error: BaseException | None = None
        self.due_ns = 0
        self.wakeups = 0                 # times reading resumed after a full buffer
        self._config = {
            "episodes": [[str(e.path), e.offset_ns, e.start_ns, e.duration_ns, e.messages]
                         for e in timeline.episodes],
            "topics": topics, "p0": p0, "loop": loop, "batch": self.BATCH,
            "batch_bytes": self.BATCH_BYTES,
            "period": max(timeline.duration_ns, 1_000_000),
        }
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._raw = bytearray()
        self._frames: deque[bytes | Batch | Marker] = deque()
        self._buffered = 0               # messages in _frames
        self._reading = True
        self._ended = False              # the end frame (or the end of the pipe) came

    def start(self) -> None:
        if not self.topics:
            self._frames.append(END)
            self._ended = True
            return
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(feeder.__file__)), json.dumps(self._config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, bufsize=0,
            start_new_session=True)   # ^C in a terminal goes to the player, not to it
        assert self._proc.stdout is not None
        self._fd = self._proc.stdout.fileno()
        os.set_blocking(self._fd, False)

    def poll(self) -> None:
        """Read what the pipe holds (up to :attr:`POLL_BYTES`) when the buffer wants it,
        and parse the next batch, so that :meth:`take` at a deadline has nothing to do."""
        frames = self._frames
        if frames and isinstance(frames[0], bytes):
            frames[0] = _parse(frames[0], self.topics)
            return
        if self._ended:
            return
        if self._buffered >= self.high:
            self._reading = False
        elif self._buffered <= self.low and not self._reading:
            self._reading = True
            self.wakeups += 1
        if self._reading:
            self._read()

    def take(self, timeout: float) -> Batch | Marker | None:
        """The next batch, :data:`END`, or None when nothing came within ``timeout`` s."""
        if not self._frames:
            deadline = time.monotonic() + timeout
            while not self._frames and not self._ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if select.select([self._fd], [], [], left)[0]:
                    self._read()
            if not self._frames:
                return END
        item = self._frames.popleft()
        batch = _parse(item, self.topics) if isinstance(item, bytes) else item
        if isinstance(batch, list) and batch and not isinstance(batch[0], Marker):
            self._buffered -= len(batch)   # a batch frame: messages only (LOOP comes alone)
        return batch

    def close(self) -> None:
        self._ended = True
        self._frames.clear()
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def _read(self) -> None:
        try:
            chunk = os.read(self._fd, self.POLL_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            self._end(exc)
            return
        if not chunk:
            status = self._proc.wait() if self._proc is not None else None
            self._end(OSError(f"the read-ahead process ended without an end frame "
                              f"(exit status {status})"))
            return
        raw = self._raw
        raw += chunk
        header = feeder.HEADER
        off = 0
        with memoryview(raw) as view:   # one copy per frame body, none of the rest
            while len(raw) - off >= header.size:
                kind, size = header.unpack_from(raw, off)
                start = off + header.size
                if len(raw) - start < size:
                    break
                body = bytes(view[start:start + size])
                off = start + size
                if kind == b"B":
                    self._frames.append(body)
                    self._buffered += feeder.COUNT.unpack_from(body)[0]
                elif kind == b"L":
                    self._frames.append([LOOP])
                else:
                    self._end(OSError(body.decode(errors="replace")) if body else None)
                    break
        del raw[:off]

    def _end(self, error: BaseException | None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self._frames.append(END)
        self._ended = True


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


