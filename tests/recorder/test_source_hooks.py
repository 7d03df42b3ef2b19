"""What a source from another stage (the simulator) relies on: extra metadata records at
stop, a profile with more topics, episode control from the source itself (``bind``), and
sources found through the ``demofab.sources`` entry points."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from mcap.reader import make_reader

from recorder.contract import EPISODE_METADATA, SIM_METADATA, read_session_state
from recorder.control import Command, Recorder
from recorder.errors import SessionError
from recorder.profile import TopicSpec
from recorder.session import Session
from recorder.sources import ENTRY_POINT_GROUP, RawMessage, make_source
from recorder.sources.synthetic import RigOptions, SyntheticRig

from .conftest import T0


def _metadata(path):
    with open(path, "rb") as f:
        return {r.name: dict(r.metadata) for r in make_reader(f).iter_metadata()}


def test_stop_adds_metadata_records_but_not_over_the_recorders_own(tmp_path, humanoid):
    s = Session(tmp_path / "s", humanoid)
    s.start_episode("pick", "sim", at_ns=T0)
    with pytest.raises(SessionError, match="demofab.episode"):
        s.stop_episode("success", at_ns=T0 + 10, metadata={EPISODE_METADATA: {"task": "x"}})
    info = s.stop_episode("success", at_ns=T0 + 10,
                          metadata={SIM_METADATA: {"seed": "7", "task": "pick_place"}})
    md = _metadata(s.dir / info.file)
    assert md[SIM_METADATA] == {"seed": "7", "task": "pick_place"}
    assert md[EPISODE_METADATA]["task"] == "pick"


def test_a_source_profile_with_more_topics_is_adopted_and_kept(tmp_path, humanoid):
    extra = TopicSpec(topic="/sim/ground_truth", type="tf2_msgs/msg/TFMessage",
                      role="ground_truth", rate_hz=100)
    wider = replace(humanoid, topics=(*humanoid.topics, extra))
    s = Session(tmp_path / "s", humanoid)
    s.adopt_profile(wider)
    state = read_session_state(s.dir)
    assert state is not None
    assert "/sim/ground_truth" in [t["topic"] for t in state.profile["topics"]]
    narrower = replace(humanoid, topics=humanoid.topics[1:])
    with pytest.raises(SessionError, match="/joint_states"):
        Session(tmp_path / "s", wider).adopt_profile(narrower)
    with pytest.raises(SessionError, match="not the session's"):
        s.adopt_profile(replace(wider, name="other"))


class _Operator:
    """A rig that starts, marks and ends its own episodes, as the simulator does."""

    clock = "sim"

    def __init__(self, profile) -> None:
        self.rig = SyntheticRig(profile, RigOptions(seed=1, start_ns=T0))
        self.controller: Recorder | None = None

    def bind(self, controller: Recorder) -> None:
        self.controller = controller
        controller.plan = replace(controller.plan, autostart=False)

    def messages(self) -> Iterator[RawMessage]:
        assert self.controller is not None, "bind() comes before the first message"
        q = self.controller.commands
        for i, msg in enumerate(self.rig.messages()):
            t = msg.log_time - T0
            if i == 0 or i == 3000:
                q.put(Command("start", task="handover"))
            elif i in (1000, 4000):
                q.put(Command("mark", outcome="subtask", label="grasp"))
            elif i == 2000:
                q.put(Command("stop", outcome="failure"))
            elif i == 5000:
                q.put(Command("stop", outcome="success"))
            elif t > 10e9:
                return
            yield msg

    def close(self) -> None:
        self.rig.close()


def test_a_bound_source_drives_episode_control(tmp_path, humanoid):
    s = Session(tmp_path / "s", humanoid)
    done = Recorder(s, _Operator(humanoid)).run(handle_signals=False)
    assert [(e.task, e.outcome) for e in done] == [("handover", "failure"),
                                                    ("handover", "success")]
    assert all(e.messages > 900 for e in done)


def test_sources_of_other_stages_come_from_entry_points(humanoid):
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert "sim" in names  # declared by pyproject for the simulator
    with pytest.raises(Exception, match="unknown source 'nope'.*synthetic"):
        make_source("nope", humanoid)
