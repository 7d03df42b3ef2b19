"""The sim source: simulated episodes recorded by the recorder, episode control included."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from curation.mcapread import read_mcap
from recorder.contract import EVENTS_TOPIC, SIM_METADATA, EventKind, read_session_state
from recorder.control import Plan, Recorder
from recorder.sources import SOURCES, Source, make_source
from recorder.types import deserialize
from sim.episode import GROUND_TRUTH_TOPIC, sim_profile
from sim.errors import SimError
from sim.randomize import Draw
from sim.scenes import Layout
from sim.source import SimSource, episode_seed, register
from sim.trace import Trace
from tests.sim.test_episode import LAYOUT, scripted_trace

STEPS = 150


def runner(task: str, layout: Layout, seed: int, action_noise_rad: float = 0.0) -> Trace:
    """The scripted arm motion; every other seed fails its lift."""
    return scripted_trace(layout, STEPS, seed=seed, success=seed % 2 == 0)


def record(tmp_path: Path, episodes: int, **kw: object) -> tuple[Recorder, SimSource]:
    from recorder.session import Session

    profile = sim_profile(cameras=False)
    session = Session(tmp_path / "s", profile)
    source = SimSource(profile, task="pick_place", cameras=False, runner=runner,
                       **kw)  # type: ignore[arg-type]
    rec = Recorder(session, source, Plan(episodes=episodes, task="pick_place"))
    rec.run(handle_signals=False)  # binds the source before the first message
    return rec, source


def events_of(path: Path) -> list[tuple[str, str, str]]:
    content = read_mcap(path.read_bytes())
    for ch in content.channels.values():
        if ch.topic == EVENTS_TOPIC:
            evs = [deserialize(bytes(d), ch.type) for d in ch.data]
            return [(EventKind(e.kind).name, e.label, e.outcome) for e in evs]
    return []


def test_the_source_records_the_asked_episodes_with_marks_and_outcomes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sim.randomize._default_layout", lambda task: LAYOUT)
    rec, source = record(tmp_path, 3, seed=5)
    assert rec.stop_reason == "done"
    state = read_session_state(tmp_path / "s")
    assert state is not None
    seeds = [episode_seed(5, i) for i in range(3)]
    outcomes = ["success" if s % 2 == 0 else "failure" for s in seeds]
    assert [e.outcome for e in state.episodes] == outcomes
    assert [e.task for e in state.episodes] == ["pick_place"] * 3
    assert [e.operator for e in state.episodes] == ["sim-expert"] * 3
    for info, seed, outcome in zip(state.episodes, seeds, outcomes, strict=True):
        path = tmp_path / "s" / info.file
        kinds = events_of(path)
        want = [("START", "", ""), ("SUBTASK", "grasp", ""), ("SUBTASK", "lift", "")]
        if outcome == "failure":
            want.append(("NOTE", "failed lift: cube below 0.75 m", ""))
        assert kinds == [*want, ("STOP", "", outcome)]
        assert info.counts["/joint_states"] >= STEPS
        assert info.counts[GROUND_TRUTH_TOPIC] >= STEPS // 5
        assert not info.flagged, info.flags
        content = read_mcap(path.read_bytes())
        sim = content.metadata[SIM_METADATA]
        assert int(sim["seed"]) == seed
        assert Draw.from_dict(json.loads(sim["draw"])).seed == seed
    # the episodes follow one another on the sim clock
    assert all(a.end_ns < b.start_ns for a, b in itertools.pairwise(state.episodes))


def test_the_same_seed_records_the_same_joint_states(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sim.randomize._default_layout", lambda task: LAYOUT)
    record(tmp_path / "a", 1, seed=2)
    record(tmp_path / "b", 1, seed=2)

    def joint_states(d: Path) -> list[bytes]:
        content = read_mcap((d / "s" / "episode_0000.mcap").read_bytes())
        ch = next(c for c in content.channels.values() if c.topic == "/joint_states")
        return [bytes(x) for x in ch.data]

    assert joint_states(tmp_path / "a") == joint_states(tmp_path / "b")


def test_without_bind_the_source_only_yields_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sim.randomize._default_layout", lambda task: LAYOUT)
    source = SimSource(sim_profile(cameras=False), episodes=2, cameras=False, runner=runner)
    assert isinstance(source, Source)
    counts = Counter(m.topic for m in source.messages())
    hold = round(0.2 / 0.002)
    assert counts["/joint_states"] == 2 * (STEPS + hold)
    assert [a[0] for a in source.attempts] == [episode_seed(0, 0), episode_seed(0, 1)]


def test_the_source_is_found_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(SOURCES, "sim", raising=False)
    src = make_source("sim", sim_profile(), task="handover", episodes=2, seed=1)
    assert isinstance(src, SimSource)
    assert (src.task, src.episodes, src.seed, src.clock) == ("handover", 2, 1, "sim")
    with pytest.raises(SimError, match="the sim source has no option fps"):
        make_source("sim", sim_profile(), fps=3)
    register()  # registering again replaces the factory, nothing else
    assert isinstance(make_source("sim", sim_profile()), SimSource)


def test_episode_seeds_differ_between_episodes_and_runs() -> None:
    seeds = {episode_seed(s, i) for s in range(3) for i in range(4)}
    assert len(seeds) == 12
    assert episode_seed(7, 1) == episode_seed(7, 1)


def test_demofab_record_source_sim_records_the_episodes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from demofab.cli import main

    monkeypatch.setattr("sim.randomize._default_layout", lambda task: LAYOUT)
    monkeypatch.setattr("sim.source.expert_runner", runner)
    out = tmp_path / "session"
    assert main(["record", "--source", "sim", "--task", "pick_place", "--episodes", "2",
                 "--seed", "4", "--no-cameras", "--out", str(out), "--json"]) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [e["task"] for e in done] == ["pick_place"] * 2
    assert [e["outcome"] for e in done] == \
        ["success" if episode_seed(4, i) % 2 == 0 else "failure" for i in range(2)]
    state = read_session_state(out)
    assert state is not None
    assert GROUND_TRUTH_TOPIC in [t["topic"] for t in state.profile["topics"]]
    assert all(e.counts[GROUND_TRUTH_TOPIC] > 0 for e in state.episodes)


@pytest.mark.slow
def test_the_real_expert_records_an_episode(tmp_path: Path) -> None:
    pytest.importorskip("sim.expert")
    from recorder.session import Session

    profile = sim_profile(cameras=False)
    session = Session(tmp_path / "s", profile)
    source = SimSource(profile, task="pick_place", episodes=1, cameras=False)
    rec = Recorder(session, source, Plan(episodes=1))
    rec.run(handle_signals=False)
    state = read_session_state(tmp_path / "s")
    assert state is not None and len(state.episodes) == 1
    assert state.episodes[0].outcome in ("success", "failure")


def test_without_an_episode_count_the_source_runs_until_closed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sim.randomize._default_layout", lambda task: LAYOUT)
    source = SimSource(sim_profile(cameras=False), cameras=False, runner=runner)
    seen = 0
    for m in source.messages():
        seen += m.topic == "/joint_states"
        if seen == 2 * (STEPS + 100) + 10:  # in the third episode (0.2 s hold each)
            source.close()
    assert len(source.attempts) == 3
    assert source.is_closed()


def test_cameras_are_recorded_up_to_the_stop(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder.session import Session

    monkeypatch.setattr("sim.randomize._default_layout", lambda task: LAYOUT)
    profile = sim_profile()
    session = Session(tmp_path / "s", profile)

    def short(task: str, layout: Layout, seed: int, action_noise_rad: float = 0.0) -> Trace:
        return scripted_trace(layout, 60, seed=seed)

    source = SimSource(profile, episodes=1, runner=short, image_size=(64, 48))
    done = Recorder(session, source, Plan(episodes=1)).run(handle_signals=False)
    assert len(done) == 1 and not done[0].flagged, done[0].flags
    for cam in ("head", "left_wrist", "right_wrist"):
        assert done[0].counts[f"/camera/{cam}/image_raw/compressed"] >= 6  # 0.22 s at 30 Hz
