"""Reading ahead: the child-process reader and the thread reader play the same messages,
a damaged file ends playback with an error, and stopping ends the reading process."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from recorder.replay import MemoryPublisher, Player, ReplayError, ReplayOptions


def played(source: Path, **options: object) -> list[tuple[str, bytes]]:
    pub = MemoryPublisher()
    Player(source, pub, ReplayOptions(rate=50.0, **options)).play()  # type: ignore[arg-type]
    return [(topic, data) for topic, data, _ in pub.sent]


def feeders() -> list[int]:
    """Read-ahead processes that are children of this one (Linux)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"feeder.py" in cmdline:
            out.append(int(entry.name))
    return out


def test_the_process_reader_plays_what_the_thread_reader_plays(recorded):
    session, _, _ = recorded
    by_process = played(session.dir, reader="process")
    by_thread = played(session.dir, reader="thread")
    assert len(by_process) == sum(e.messages for e in session.episodes)
    assert by_process == by_thread


@pytest.mark.parametrize("reader", ["process", "thread"])
def test_a_loop_and_a_seek_replay_the_same_bytes_with_either_reader(recorded, reader):
    session, _, _ = recorded
    pub = MemoryPublisher()
    player = Player(session.dir, pub, ReplayOptions(rate=20.0, loop=True, reader=reader))
    player.start()
    deadline = time.monotonic() + 60
    while player.stats.loops < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    player.stop()
    stats = player.wait(30)
    assert stats.loops >= 1
    first_pass = played(session.dir, reader=reader)
    assert [(t, d) for t, d, _ in pub.sent[:len(first_pass)]] == first_pass


@pytest.mark.parametrize("reader", ["process", "thread"])
def test_a_damaged_chunk_ends_playback_with_an_error_that_says_reading_failed(
        recorded, tmp_path, reader):
    session, _, _ = recorded
    src = session.dir / session.episodes[0].file
    bad = tmp_path / "episode_0000.mcap"
    shutil.copy(src, bad)
    data = bytearray(bad.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4000] = bytes(4000)     # the summary at the end stays readable
    bad.write_bytes(bytes(data))
    player = Player(bad, MemoryPublisher(), ReplayOptions(rate=50.0, reader=reader))
    with pytest.raises(ReplayError, match="reading the selection failed"):
        player.play()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stopping_ends_the_read_ahead_process(recorded):
    session, _, _ = recorded
    pub = MemoryPublisher()
    player = Player(session.dir, pub, ReplayOptions(rate=1.0))
    player.start()
    deadline = time.monotonic() + 30
    while not pub.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert feeders(), "playback reads ahead in a child process"
    player.stop()
    player.wait(30)
    assert feeders() == []
