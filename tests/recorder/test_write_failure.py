"""No write failure is silent: a failed background fsync (EIO) or a full disk (ENOSPC)
ends the episode with a one-line error, keeps it as a damaged ``.part`` listed in the
session state, leaves finished episodes intact, and ``recover`` keeps what reached the
disk. Opening a session recovers nothing by itself and never overwrites a ``.part``."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader

from demofab.cli import main as demofab
from recorder.contract import read_session_state
from recorder.errors import DiskFullError, RecorderError
from recorder.mcapio import ChunkedWriter
from recorder.profile import Profile
from recorder.session import Session
from recorder.sources.synthetic import RigOptions, SyntheticRig
from recorder.writer import WriterOptions

from .conftest import T0

real_fsync = os.fsync


def part_fd(fd: int) -> bool:
    return os.readlink(f"/proc/self/fd/{fd}").endswith(".mcap.part")


class FailingFsync:
    """os.fsync that fails with EIO for episode files, in the writer's background
    thread only: a later fsync on the same file succeeds, as Linux may let it."""

    def __init__(self) -> None:
        self.failed = threading.Event()

    def __call__(self, fd: int) -> None:
        if threading.current_thread().name == "demofab-fsync" and part_fd(fd):
            self.failed.set()
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)


def messages(start_ns: int, profile: Profile) -> Iterator[tuple[str, bytes, int]]:
    rig = SyntheticRig(profile, RigOptions(seed=5, start_ns=start_ns))
    for m in rig.messages():
        assert m is not None
        yield m.topic, m.data, m.log_time


def record_seconds(session: Session, seconds: float, start_ns: int) -> int:
    end = start_ns + int(seconds * 1e9)
    for topic, data, t in messages(start_ns, session.profile):
        if t >= end:
            return t
        session.write(topic, data, t)
    raise AssertionError("the rig ended")


def message_count(path: Path) -> int:
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None and summary.statistics is not None
    return summary.statistics.message_count


def listed(out: Path) -> list[str]:
    meta = yaml.safe_load((out / "metadata.yaml").read_text())
    return list(meta["rosbag2_bagfile_information"]["relative_file_paths"])


@pytest.fixture
def session(tmp_path: Path, humanoid: Profile) -> Session:
    """A session with one finished episode; its writers request an fsync at every chunk."""
    s = Session(tmp_path / "s", humanoid, options=WriterOptions(fsync_interval_s=0.0))
    s.start_episode("first", at_ns=T0)
    end = record_seconds(s, 1.5, T0)
    s.stop_episode("success", at_ns=end)
    return s


def test_a_failed_background_fsync_stops_the_episode_and_marks_it_damaged(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    finished = (session.dir / "episode_0000.mcap").read_bytes()
    fsync = FailingFsync()
    monkeypatch.setattr(os, "fsync", fsync)
    start = T0 + 10**10
    session.start_episode("second", at_ns=start)
    with pytest.raises(RecorderError) as caught:
        for topic, data, t in messages(start, session.profile):
            session.write(topic, data, t)
            assert t < start + 20 * 10**9, "the failed fsync was never reported"
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert fsync.failed.is_set()
    message = str(caught.value)
    assert "\n" not in message
    assert "episode_0001.mcap.part: fsync failed" in message and "damaged" in message

    assert session.writer is None and session.state.value == "idle"
    state = read_session_state(session.dir)
    assert state is not None and state.open_episode is None
    (damaged,) = state.damaged
    assert damaged.file == "episode_0001.mcap" and damaged.flagged
    assert "write_failed" in damaged.flags
    assert [e.file for e in state.episodes] == ["episode_0000.mcap"]
    assert listed(session.dir) == ["episode_0000.mcap"]
    assert (session.dir / "episode_0000.mcap").read_bytes() == finished
    assert message_count(session.dir / "episode_0000.mcap") > 1000
    assert (session.dir / "episode_0001.mcap.part").is_file()

    (result,) = session.recover()
    assert result.messages > 0
    assert listed(session.dir) == ["episode_0000.mcap", "episode_0001.mcap"]
    recovered = session.episodes[-1]
    assert recovered.task == "second" and recovered.ended_by == "recovered"
    assert {"write_failed", "recovered"} <= set(recovered.flags)
    assert message_count(session.dir / "episode_0001.mcap") == result.messages
    assert read_session_state(session.dir).damaged == ()  # type: ignore[union-attr]


def test_a_failed_fsync_is_reported_at_stop_though_the_last_fsync_succeeds(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    fsync = FailingFsync()
    monkeypatch.setattr(os, "fsync", fsync)
    start = T0 + 10**10
    session.start_episode("second", at_ns=start)
    t = start
    for topic, data, t in messages(start, session.profile):
        session.write(topic, data, t)  # the error may surface here, at a chunk ...
        if fsync.failed.is_set():
            break
        assert t < start + 20 * 10**9, "no background fsync was requested"
    with pytest.raises(RecorderError, match=r"episode_0001\.mcap\.part: fsync failed"):
        session.stop_episode("success", at_ns=t)  # ... or here, at the latest
    assert not (session.dir / "episode_0001.mcap").exists()
    assert [e.file for e in session.damaged] == ["episode_0001.mcap"]
    assert listed(session.dir) == ["episode_0000.mcap"]


def test_record_exits_2_with_one_line_when_the_background_fsync_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    args = ["record", "--source", "synthetic", "--out", str(out), "--task", "t",
            "--episodes", "1"]
    assert demofab([*args, "--episode-seconds", "0.5"]) == 0
    finished = (out / "episode_0000.mcap").read_bytes()
    capsys.readouterr()
    fsync = FailingFsync()
    monkeypatch.setattr(os, "fsync", fsync)
    # paced on the wall clock, so the writer's fsync interval (1 s) passes mid-episode
    assert demofab([*args, "--episode-seconds", "3", "--realtime"]) == 2
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert fsync.failed.is_set()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("demofab record: error: ")
    assert "episode_0001.mcap.part: fsync failed" in lines[0]
    raw = yaml.safe_load((out / "demofab_session.yaml").read_text())
    (damaged,) = raw["damaged"]
    assert damaged["file"] == "episode_0001.mcap" and damaged["flagged"] is True
    assert "write_failed" in damaged["flags"]
    assert (out / "episode_0000.mcap").read_bytes() == finished
    assert listed(out) == ["episode_0000.mcap"]

    assert demofab(["recover", str(out)]) == 0
    assert "recovered" in capsys.readouterr().out
    assert listed(out) == ["episode_0000.mcap", "episode_0001.mcap"]
    assert message_count(out / "episode_0001.mcap") > 0


def no_space(self: ChunkedWriter, data: bytes | bytearray | memoryview) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_during_discard_keeps_the_session_usable_and_discards_on_recover(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    start = T0 + 10**10
    session.start_episode("second", at_ns=start)
    end = record_seconds(session, 1.5, start)
    monkeypatch.setattr(ChunkedWriter, "_write", no_space)
    with pytest.raises(DiskFullError, match=r"episode_0001\.mcap\.part: disk full"):
        session.discard_episode(at_ns=end)
    monkeypatch.undo()
    assert session.writer is None and session.state.value == "idle"
    state = read_session_state(session.dir)
    assert state is not None
    assert [(e.file, e.ended_by) for e in state.damaged] == [("episode_0001.mcap", "discard")]

    # space again: recording goes on, past the damaged episode's index
    third = session.start_episode("third", at_ns=end + 10**9)
    assert third.index == 2
    session.stop_episode("success", at_ns=record_seconds(session, 0.5, end + 10**9))
    assert listed(session.dir) == ["episode_0000.mcap", "episode_0002.mcap"]

    (result,) = session.recover()
    assert result.messages > 0
    assert (session.dir / "discarded" / "episode_0001.mcap").is_file()
    assert listed(session.dir) == ["episode_0000.mcap", "episode_0002.mcap"]
    assert [e.file for e in session.discarded] == ["episode_0001.mcap"]
    assert message_count(session.dir / "discarded" / "episode_0001.mcap") == result.messages


def test_a_full_disk_during_stop_keeps_what_was_written_for_recover(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    finished = (session.dir / "episode_0000.mcap").read_bytes()
    start = T0 + 10**10
    session.start_episode("second", at_ns=start)
    end = record_seconds(session, 2.5, start)
    monkeypatch.setattr(ChunkedWriter, "_write", no_space)
    with pytest.raises(DiskFullError) as caught:
        session.stop_episode("success", at_ns=end)
    monkeypatch.undo()
    assert "\n" not in str(caught.value) and "recover" in str(caught.value)
    assert listed(session.dir) == ["episode_0000.mcap"]
    assert (session.dir / "episode_0000.mcap").read_bytes() == finished
    assert [e.file for e in session.damaged] == ["episode_0001.mcap"]

    reopened = Session(session.dir, session.profile)
    assert [e.file for e in reopened.damaged] == ["episode_0001.mcap"]
    (result,) = reopened.recover()
    assert result.messages > 1000  # the chunks closed before the stop
    assert listed(session.dir) == ["episode_0000.mcap", "episode_0001.mcap"]
    assert "recovered" in reopened.episodes[-1].flags


def test_opening_a_session_recovers_nothing_and_new_episodes_skip_its_part_files(
        tmp_path: Path, humanoid: Profile) -> None:
    crashed = Session(tmp_path / "s", humanoid)
    crashed.start_episode("cut short", at_ns=T0)
    record_seconds(crashed, 2.5, T0)
    assert crashed.writer is not None
    crashed.writer.abort(keep=True)  # as if the process was killed: the .part stays
    part = tmp_path / "s" / "episode_0000.mcap.part"
    size = part.stat().st_size

    s = Session(tmp_path / "s", humanoid)
    assert part.stat().st_size == size and not (tmp_path / "s" / "episode_0000.mcap").exists()
    assert [(e.file, e.flags) for e in s.damaged] == [("episode_0000.mcap", ["interrupted"])]
    info = s.start_episode("next", at_ns=T0 + 10**10)
    assert info.index == 1
    s.stop_episode("success", at_ns=record_seconds(s, 0.5, T0 + 10**10))
    assert part.stat().st_size == size
    assert listed(s.dir) == ["episode_0001.mcap"]

    (result,) = s.recover()
    assert result.messages > 0 and not part.exists()
    assert listed(s.dir) == ["episode_0000.mcap", "episode_0001.mcap"]
    assert s.episodes[0].task == "cut short"
    assert {"interrupted", "recovered"} <= set(s.episodes[0].flags)
