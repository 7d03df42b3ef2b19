"""Holding a schedule: the deadline waiter is never early and a control call interrupts
it; the playback conditions are restored after playing; garbage is collected only in the
slack between deadlines. (How well the schedule holds is measured by ``bench ros2``.)"""

from __future__ import annotations

import gc
import sys
import threading
import time

import pytest

from recorder.replay import DeadlineWaiter, playback_conditions
from recorder.replay.timing import timer_slack_ns


def test_the_deadline_waiter_never_returns_before_the_deadline():
    waiter = DeadlineWaiter(spin_ns=100_000)
    for k in range(200):
        deadline = time.perf_counter_ns() + (k % 7) * 300_000
        assert waiter.wait_until(deadline)
        assert time.perf_counter_ns() >= deadline


def test_a_control_call_interrupts_a_long_wait():
    wake = threading.Event()
    waiter = DeadlineWaiter(wake=wake)
    threading.Timer(0.05, wake.set).start()
    t0 = time.monotonic()
    assert waiter.wait_until(time.perf_counter_ns() + 30 * 1_000_000_000) is False
    assert time.monotonic() - t0 < 10


def test_playback_conditions_are_restored_afterwards():
    before = (sys.getswitchinterval(), gc.isenabled(), timer_slack_ns())
    with playback_conditions(switch_interval_s=0.0002, freeze_gc=True, timer_slack=1000):
        assert sys.getswitchinterval() == pytest.approx(0.0002)
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0
        if before[2] is not None:
            assert timer_slack_ns() == 1000
    assert (sys.getswitchinterval(), gc.isenabled(), timer_slack_ns()) == before
    assert gc.get_freeze_count() == 0


def test_garbage_is_collected_in_the_slack_before_a_deadline_not_on_it():
    class Node:
        def __init__(self) -> None:
            self.me = self            # a cycle: only the collector frees it

    waiter = DeadlineWaiter(collect_gc=True, gc_every=500, gc_slack_ns=2_000_000)
    with playback_conditions(switch_interval_s=None, freeze_gc=True, timer_slack=None):
        for _ in range(2000):
            Node()
        piled = gc.get_count()[0]
        assert piled >= 500
        waiter.wait_until(time.perf_counter_ns() + 100_000)    # no slack: no collection
        assert waiter.collections == 0
        waiter.wait_until(time.perf_counter_ns() + 20_000_000)  # 20 ms of slack
        assert waiter.collections == 1
        assert gc.get_count()[0] < piled
