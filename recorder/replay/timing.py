"""Holding a schedule from Python: waiting to a deadline, and the interpreter settings
that keep other threads from delaying the wake-up.

Where the time goes when a Python thread waits for a deadline on a busy machine, and
what this module does about each:

* **Timer wake-ups.** A sleep ends up to the thread's *timer slack* late (50 us by
  default on Linux) plus the time the scheduler takes to run the woken thread. A thread
  that spins instead keeps a core but uses up its share of it: on a loaded machine the
  scheduler then preempts it for whole time slices (milliseconds), while a thread that
  slept gets the CPU back quickly when it wakes. So :class:`DeadlineWaiter` sleeps to
  ``spin_ns`` before the deadline and spins only that rest (0.2 ms by default), and
  :func:`playback_conditions` sets the thread's timer slack to 1 us.
* **GIL hand-offs.** A woken thread must take the GIL back; a thread that holds it (the
  read-ahead thread parsing MCAP records) lets go only after the interpreter's switch
  interval (5 ms by default). :func:`playback_conditions` lowers it while playing.
* **Garbage collection.** A collection runs in whichever thread allocates when the
  counters say so, and a full one walks every object of the process (milliseconds with
  rclpy and a type store loaded). :func:`playback_conditions` freezes what exists before
  playing (``gc.freeze``) and turns automatic collection off; :meth:`DeadlineWaiter.idle`
  runs the young generation when the next deadline is far enough away.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["DeadlineWaiter", "playback_conditions", "timer_slack_ns"]

NS = 1_000_000_000
_PR_SET_TIMERSLACK = 29
_PR_GET_TIMERSLACK = 30


def _prctl() -> ctypes._FuncPointer | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    fn: ctypes._FuncPointer | None = getattr(libc, "prctl", None)
    if fn is not None:
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]
    return fn


_PRCTL = _prctl()


def timer_slack_ns(new: int | None = None) -> int | None:
    """The calling thread's timer slack (Linux); sets it to ``new`` when given and returns
    the previous value. None where the platform has no timer slack."""
    if _PRCTL is None:
        return None
    old = int(_PRCTL(_PR_GET_TIMERSLACK, 0, 0, 0, 0))
    if old < 0:
        return None
    if new is not None:
        _PRCTL(_PR_SET_TIMERSLACK, max(1, new), 0, 0, 0)
    return old


@contextlib.contextmanager
def playback_conditions(*, switch_interval_s: float | None = 0.0002, freeze_gc: bool = True,
                        timer_slack: int | None = 1000) -> Iterator[None]:
    """Run the body with a short GIL switch interval, automatic garbage collection off
    (what exists is frozen first) and a fine timer slack for the calling thread; all
    restored after. ``None`` / ``False`` leaves a setting as it is."""
    old_switch = sys.getswitchinterval()
    was_enabled = gc.isenabled()
    old_slack = timer_slack_ns(timer_slack) if timer_slack is not None else None
    if switch_interval_s:
        sys.setswitchinterval(switch_interval_s)
    if freeze_gc:
        gc.collect()
        gc.freeze()
        gc.disable()
    try:
        yield
    finally:
        if freeze_gc:
            gc.unfreeze()
            if was_enabled:
                gc.enable()
        if switch_interval_s:
            sys.setswitchinterval(old_switch)
        if old_slack is not None:
            timer_slack_ns(old_slack)


class DeadlineWaiter:
    """Waits until a deadline on ``time.perf_counter_ns``: sleeps on ``wake`` (so another
    thread can interrupt the wait) until ``spin_ns`` before it, then spins.

    ``on_slack``: called before sleeping when the deadline is at least ``slack_ns`` away
    (the player reads ahead there); it must return well within that time.

    ``collect_gc``: run the garbage collector (with automatic collection off) once
    ``gc_every`` allocations piled up and the next deadline is at least ``gc_slack_ns``
    away, so that a collection never lands on a deadline (unless ``GC_FORCE`` allocations
    piled up with no such slack: then it runs anyway, so memory stays bounded)."""

    GC_FORCE = 50_000

    def __init__(self, spin_ns: int = 200_000, wake: threading.Event | None = None, *,
                 on_slack: Callable[[], None] | None = None, slack_ns: int = 500_000,
                 collect_gc: bool = False, gc_every: int = 2000,
                 gc_slack_ns: int = 2_000_000) -> None:
        self.spin_ns = spin_ns
        self.on_slack = on_slack
        self.slack_ns = slack_ns
        self.wake = wake if wake is not None else threading.Event()
        self.collect_gc = collect_gc
        self.gc_every = gc_every
        self.gc_slack_ns = gc_slack_ns
        self.collections = 0

    def wait_until(self, deadline: int) -> bool:
        """True at the deadline (never before it); False when ``wake`` was set first."""
        clock = time.perf_counter_ns
        remaining = deadline - clock()
        if remaining <= 0:
            return True
        if self.on_slack is not None and remaining > self.slack_ns:
            self.on_slack()
            remaining = deadline - clock()
        if self.collect_gc and (remaining > self.gc_slack_ns
                                or gc.get_count()[0] >= self.GC_FORCE):
            self.idle()
            remaining = deadline - clock()
        if remaining > self.spin_ns:
            if self.wake.wait((remaining - self.spin_ns) / NS):
                return False
        while clock() < deadline:
            pass
        return True

    def idle(self, force: bool = False) -> None:
        """Slack before the next deadline: collect the generations whose counts piled up
        (the thresholds of automatic collection, ``gc_every`` for the youngest)."""
        young, middle, old = gc.get_count()
        if young >= self.gc_every or (force and young):
            generation = 2 if old >= 10 else 1 if middle >= 10 else 0
            gc.collect(generation)
            self.collections += 1
