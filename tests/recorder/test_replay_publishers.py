"""Replay backends by name, and the public names of ``recorder.replay``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import recorder.replay as replay
from recorder.profile import Qos
from recorder.replay import (
    MemoryPublisher,
    Player,
    ReplayError,
    ReplayOptions,
    make_publisher,
    publisher_names,
    register_publisher,
)

#: what ``recorder.replay`` exported when it was one module; these keep working
EARLIER_NAMES = ["CLOCK_QOS", "CLOCK_TOPIC", "CLOCK_TYPE", "EpisodeRef", "JitterStats",
                 "MemoryPublisher", "Player", "Publisher", "ReplayError", "ReplayOptions",
                 "ReplayStats", "Timeline", "TopicInfo", "clock_cdr", "parse_remap",
                 "qos_from_metadata"]


def test_every_public_name_imports_and_the_earlier_ones_are_still_there():
    assert set(EARLIER_NAMES) <= set(replay.__all__)
    for name in replay.__all__:
        assert getattr(replay, name) is not None, name


def test_the_builtin_backends_are_dds_and_ros2():
    assert {"dds", "ros2"} <= set(publisher_names())


def test_an_unknown_backend_is_refused_with_the_known_ones_listed():
    with pytest.raises(ReplayError, match=r"unknown replay target 'nope'; available: .*dds.*ros2"):
        make_publisher("nope")


def test_a_registered_backend_is_built_by_name_with_the_options(recorded):
    made: list[dict[str, object]] = []

    def factory(**options: object) -> MemoryPublisher:
        made.append(options)
        return MemoryPublisher()

    register_publisher("memory-test", factory)
    try:
        pub = make_publisher("memory-test", domain_id=7)
        assert made == [{"domain_id": 7}]
        session, _, _ = recorded
        Player(session.dir, pub, ReplayOptions(rate=50.0)).play()
        assert isinstance(pub, MemoryPublisher) and pub.sent
        assert all(isinstance(q, Qos) for _, q in pub.created.values())
    finally:
        replay.PUBLISHERS.pop("memory-test", None)


def test_the_replay_command_offers_the_registered_backends_and_refuses_others(tmp_path):
    r = subprocess.run([sys.executable, "-m", "demofab.cli", "replay", str(tmp_path),
                        "--to", "nope"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "invalid choice: 'nope'" in r.stderr and "'dds'" in r.stderr and "'ros2'" in r.stderr
