"""Replay: play episodes, sessions or MCAP files onto ROS 2 / DDS topics, on time.

The player is independent of any middleware: it publishes raw CDR bytes through a
:class:`Publisher` backend, picked by name from a registry (:func:`make_publisher`):
``dds`` (``recorder.dds.DdsPublisher``, no ROS 2), ``ros2``
(``recorder.ros2pub.RclpyPublisher``, rclpy); :class:`MemoryPublisher` for tests.

The modules, one concern each:

* :mod:`.timeline` — what a selection holds (episode files in session order, topics, QoS)
  and where each episode sits on the playback timeline. Positions (``start_offset_s``,
  :meth:`Player.seek`, progress) are seconds on that timeline, from the first message of
  the first selected episode; ``/clock`` carries the *recorded* time.
* :mod:`.options` — :class:`ReplayOptions` and ros2-style remap rules.
* :mod:`.publishers` — the :class:`Publisher` interface, the registry of backends,
  :class:`MemoryPublisher` and ``/clock``.
* :mod:`.timing` — waiting to a deadline (sleep to just before it, spin the rest) and the
  interpreter settings that keep other threads from delaying a wake-up (GIL switch
  interval, garbage collection, timer slack); ``bench ros2`` times a bare loop with it.
* :mod:`.readahead` — decoding messages ahead of the schedule, in a child process
  (:mod:`.feeder`, the default) or a thread.
* :mod:`.stats` — the publish-error histogram (:class:`JitterStats`) and
  :class:`ReplayStats`.
* :mod:`.player` — :class:`Player`, the loop, and its thread-safe control calls
  (:meth:`Player.pause`, :meth:`~Player.resume`, :meth:`~Player.toggle_pause`,
  :meth:`~Player.seek`, :meth:`~Player.set_rate`, :meth:`~Player.stop`), which a terminal
  key handler or a ROS 2 service callback calls while :meth:`Player.play` runs in another
  thread (or use :meth:`Player.start` / :meth:`Player.wait`).

Example::

    from recorder.dds import DdsPublisher     # or make_publisher("dds", domain_id=0)
    from recorder.replay import Player, ReplayOptions

    with DdsPublisher(domain_id=0) as pub:
        player = Player("session_dir", pub, ReplayOptions(rate=1.0, clock_hz=100))
        stats = player.play()
    print(stats.jitter_ms)   # {'p50': ..., 'p99': ..., 'max': ...}
"""

from __future__ import annotations

from .errors import ReplayError
from .options import ReplayOptions, parse_remap
from .player import Player, ProgressCallback
from .publishers import (
    CLOCK_QOS,
    CLOCK_TOPIC,
    CLOCK_TYPE,
    PUBLISHERS,
    ClockPublisher,
    MemoryPublisher,
    Publisher,
    PublisherFactory,
    clock_cdr,
    make_publisher,
    publisher_names,
    register_publisher,
)
from .stats import JitterStats, ReplayStats
from .timeline import EpisodeRef, Timeline, TopicInfo, qos_from_metadata
from .timing import DeadlineWaiter, playback_conditions

__all__ = [
    "CLOCK_QOS", "CLOCK_TOPIC", "CLOCK_TYPE", "PUBLISHERS", "ClockPublisher", "DeadlineWaiter",
    "EpisodeRef", "JitterStats", "MemoryPublisher", "Player", "ProgressCallback", "Publisher",
    "PublisherFactory", "ReplayError", "ReplayOptions", "ReplayStats", "Timeline", "TopicInfo",
    "clock_cdr", "make_publisher", "parse_remap", "playback_conditions", "publisher_names",
    "qos_from_metadata", "register_publisher",
]
