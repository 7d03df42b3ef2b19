"""Episode control through the Python API: start, stop with outcome, discard, re-record,
marks, and the rules that keep a session consistent."""

from __future__ import annotations

import pytest
import yaml
from mcap.reader import make_reader

from recorder.control import Command, Controller, Plan
from recorder.errors import DiskFullError, SessionError
from recorder.mcapio import ChunkedWriter
from recorder.profile import EVENTS_TOPIC
from recorder.session import EventKind, Session, State
from recorder.types import EPISODE_EVENT_TYPE, deserialize

from .conftest import T0


def _events(path):
    with open(path, "rb") as f:
        return [deserialize(m.data, EPISODE_EVENT_TYPE)
                for _, c, m in make_reader(f).iter_messages(topics=[EVENTS_TOPIC])]


def _listed(session):
    meta = yaml.safe_load((session.dir / "metadata.yaml").read_text())
    return meta["rosbag2_bagfile_information"]["relative_file_paths"]


def test_stop_with_failure_discard_and_rerecord(tmp_path, humanoid):
    s = Session(tmp_path / "s", humanoid)
    s.start_episode("wipe table", "ana", at_ns=T0)
    s.mark(EventKind.SUBTASK, "grasp sponge", at_ns=T0 + 10)
    s.mark(EventKind.INTERVENTION, "operator took over", at_ns=T0 + 20)
    failed = s.stop_episode("failure", at_ns=T0 + 100)
    assert failed.outcome == "failure"
    kinds = [(e.kind, e.label, e.outcome) for e in _events(s.dir / failed.file)]
    assert kinds == [(0, "", ""), (3, "grasp sponge", ""), (4, "operator took over", ""),
                     (1, "", "failure")]

    s.start_episode("wipe table", "ana", at_ns=T0 + 200)
    gone = s.discard_episode(at_ns=T0 + 300)
    assert (s.dir / "discarded" / gone.file).exists() and not (s.dir / gone.file).exists()
    assert _listed(s) == [failed.file]

    s.start_episode("wipe table", "ana", at_ns=T0 + 400)
    kept = s.stop_episode("success", at_ns=T0 + 500)
    again = s.rerecord(at_ns=T0 + 600)  # the last finished episode is re-recorded
    assert again.task == "wipe table" and again.index > kept.index
    assert (s.dir / "discarded" / kept.file).exists()
    s.stop_episode("success", at_ns=T0 + 700)
    assert _listed(s) == [failed.file, again.file]
    assert [e.index for e in s.discarded] == [gone.index, kept.index]


def test_commands_that_do_not_fit_the_state_are_refused(tmp_path, humanoid):
    s = Session(tmp_path / "s", humanoid)
    with pytest.raises(SessionError, match="no episode is recording"):
        s.stop_episode("success")
    with pytest.raises(SessionError, match="nothing to re-record"):
        s.rerecord()
    s.start_episode(at_ns=T0)
    with pytest.raises(SessionError, match="still recording"):
        s.start_episode(at_ns=T0 + 1)
    with pytest.raises(SessionError, match="outcome 'great' is not one of"):
        s.stop_episode("great")
    s.stop_episode("success", at_ns=T0 + 5)


def test_reopened_session_continues_numbering_and_keeps_episodes(tmp_path, humanoid):
    s = Session(tmp_path / "s", humanoid)
    s.start_episode("a", at_ns=T0)
    s.stop_episode(at_ns=T0 + 10)
    s2 = Session(tmp_path / "s", humanoid)
    info = s2.start_episode("b", at_ns=T0 + 20)
    s2.stop_episode(at_ns=T0 + 30)
    assert info.index == 1
    assert _listed(s2) == ["episode_0000.mcap", "episode_0001.mcap"]


def test_messages_between_episodes_are_counted_not_recorded(tmp_path, humanoid):
    s = Session(tmp_path / "s", humanoid)
    assert s.write("/imu", b"\x00\x01\x00\x00" + bytes(8), T0) is False
    assert s.between_episodes["/imu"] == 1


def test_unknown_topic_is_an_error_naming_topic_and_profile(tmp_path, humanoid):
    s = Session(tmp_path / "s", humanoid)
    s.start_episode(at_ns=T0)
    with pytest.raises(Exception, match=r"topic '/nope' is not in profile 'humanoid'"):
        s.write("/nope", b"\x00\x01\x00\x00", T0 + 1)
    s.stop_episode(at_ns=T0 + 2)


S = 1_000_000_000


def test_the_controller_applies_commands_and_the_plan_without_a_source_loop(tmp_path, humanoid):
    s = Session(tmp_path / "s", humanoid)
    seen = []
    c = Controller(s, Plan(episodes=2, episode_seconds=1.0, reset_seconds=0.5, task="pour",
                           operator="bo", outcome="failure"),
                   on_event=lambda kind, at, info: seen.append((kind, at - T0, info.index)))
    c.step(T0)                                   # autostart: episode 0
    c.step(T0 + S // 2)
    assert s.state is State.RECORDING
    c.step(T0 + S)                               # its time is up: stopped, reset phase
    assert s.state is State.RESET and s.episodes[0].outcome == "failure"
    c.step(T0 + S + S // 4)
    assert s.current is None                     # still resetting
    c.step(T0 + S + S // 2)                      # episode 1 starts
    assert c.apply(Command("discard"), T0 + 2 * S).index == 1
    c.commands.put(Command("stop"))              # does not fit the reset phase: kept
    c.step(T0 + 2 * S + S // 4)
    assert isinstance(c.error, SessionError) and "no episode is recording" in str(c.error)
    c.step(T0 + 2 * S + S // 2)                  # episode 2 starts
    c.commands.put(Command("mark", "subtask", label="grasp"))
    c.commands.put(Command("stop", "success"))
    c.step(T0 + 3 * S)
    assert c.stopped and c.stop_reason == "done"
    assert [e.index for e in c.finished] == [0, 2]
    assert [(e.outcome, e.task, e.operator) for e in s.episodes] == [
        ("failure", "pour", "bo"), ("success", "pour", "bo")]
    assert seen == [(EventKind.START, 0, 0), (EventKind.STOP, S, 0),
                    (EventKind.START, S + S // 2, 1), (EventKind.DISCARD, 2 * S, 1),
                    (EventKind.START, 2 * S + S // 2, 2), (EventKind.STOP, 3 * S, 2)]
    labels = [e.label for e in _events(s.dir / "episode_0002.mcap")]
    assert labels == ["", "grasp", ""]
    assert _listed(s) == ["episode_0000.mcap", "episode_0002.mcap"]


def test_a_write_failure_in_a_command_ends_the_step_instead_of_being_kept(
        tmp_path, humanoid, monkeypatch):
    s = Session(tmp_path / "s", humanoid)
    c = Controller(s, Plan(autostart=False))
    c.apply(Command("start"), T0)

    def no_space(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ChunkedWriter, "_write", no_space)
    c.commands.put(Command("stop"))
    with pytest.raises(DiskFullError, match="episode_0000.mcap.part: disk full"):
        c.step(T0 + S)
    monkeypatch.undo()
    assert c.error is None and s.writer is None
    assert [e.file for e in s.damaged] == ["episode_0000.mcap"]
