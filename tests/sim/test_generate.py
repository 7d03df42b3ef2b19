"""The generation driver: what is kept does not depend on the workers, failed attempts stay
out of the session with their reason, and a run continues where it stopped."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from mcap.reader import make_reader

from recorder.contract import EPISODE_METADATA, SIM_METADATA, read_session_state
from sim.errors import SimError
from sim.generate import (
    JOURNAL_FILE,
    Driver,
    Journal,
    RunSpec,
    Summary,
    attempt_seed,
    generate,
    reason_key,
)


def joint_states(session: Path) -> dict[str, list[tuple[int, bytes]]]:
    """Every /joint_states message of every episode of a session: file -> (log time, CDR)."""
    out = {}
    for f in sorted(session.glob("episode_*.mcap")):
        with open(f, "rb") as fh:
            out[f.name] = [(m.log_time, m.data) for _, _, m in
                           make_reader(fh).iter_messages(topics=["/joint_states"])]
    return out


def journal(session: Path) -> list[dict]:
    return [json.loads(line) for line in (session / JOURNAL_FILE).read_text().splitlines()]


def attempts(session: Path) -> dict[int, dict]:
    return {r["index"]: r for r in journal(session) if "outcome" in r}


def test_attempt_seeds_are_reproducible_distinct_and_depend_on_the_run_seed() -> None:
    seeds = [attempt_seed(7, i) for i in range(2000)]
    assert seeds == [attempt_seed(7, i) for i in range(2000)]
    assert len(set(seeds)) == len(seeds)
    assert attempt_seed(8, 0) != seeds[0]
    with pytest.raises(SimError, match="non-negative"):
        attempt_seed(-1, 0)


def test_reasons_with_different_figures_count_together() -> None:
    assert reason_key("place", "cube 3.1 cm from the bin") == \
        reason_key("place", "cube 12 cm from the bin") == "place: cube # cm from the bin"
    assert reason_key("", "") == "no reason given"


SPEC = RunSpec("pick_place", 1, seed=0, cameras=False)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Summary]:
    """A run of SPEC on one worker, shared by the tests that only read it (or copy it)."""
    out = tmp_path_factory.mktemp("one") / "s"
    return out, generate(SPEC, out, workers=1)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Summary]:
    """The same run on two workers (attempts run ahead, in parallel)."""
    out = tmp_path_factory.mktemp("two") / "s"
    return out, generate(SPEC, out, workers=2)


@pytest.mark.slow
def test_one_and_two_workers_keep_the_same_episodes_bit_for_bit(
        one_worker: tuple[Path, Summary], two_workers: tuple[Path, Summary]) -> None:
    (one_dir, one), (two_dir, two) = one_worker, two_workers
    assert one.kept == two.kept == 1
    a, b = joint_states(one_dir), joint_states(two_dir)
    assert list(a) == ["episode_0000.mcap"]
    assert a == b and all(len(v) > 100 for v in a.values())
    # the kept episodes are the first successes in attempt order, in both runs
    for out in (one_dir, two_dir):
        recs = attempts(out)
        firsts = sorted(i for i, r in recs.items() if r["outcome"] == "success")[:1]
        written = [r["index"] for r in journal(out) if "episode" in r]
        assert written == firsts


@pytest.mark.slow
def test_failed_attempts_stay_out_of_the_session_with_their_reason(
        one_worker: tuple[Path, Summary]) -> None:
    out, s = one_worker
    recs = attempts(out)
    failed = [r for r in recs.values() if r["outcome"] == "failure"]
    state = read_session_state(out)
    assert state is not None and len(state.episodes) == 1 and not state.discarded
    assert s.attempted == len(recs) and s.kept == 1
    assert s.success_rate == pytest.approx(s.successes / s.attempted, abs=1e-4)
    assert sum(s.failures_by_reason.values()) == len(failed)
    for r in failed:
        assert r["reason"] and "episode" not in r
    for f in out.glob("episode_*.mcap"):  # every episode in the session is a success
        with open(f, "rb") as fh:
            md = {m.name: m.metadata for m in make_reader(fh).iter_metadata()}
        assert md[EPISODE_METADATA]["outcome"] == "success"
        generation = json.loads(md[SIM_METADATA]["provenance"])["generation"]
        assert generation["run_seed"] == SPEC.seed and generation["command"] == "generate"
    kept_steps = sum(recs[r["index"]]["steps"] for r in journal(out) if "episode" in r)
    assert s.render_saved_fraction == pytest.approx(
        1 - kept_steps / sum(r["steps"] for r in recs.values()), abs=1e-3)


@pytest.mark.slow
def test_a_finished_run_reruns_as_a_no_op_and_a_larger_n_continues_it(
        tmp_path: Path, one_worker: tuple[Path, Summary]) -> None:
    out = tmp_path / "s"
    shutil.copytree(one_worker[0], out)
    before = joint_states(out)
    again = generate(SPEC, out)
    assert (again.kept, again.attempted_this_run, again.kept_this_run) == (1, 0, 0)
    more = generate(dataclasses.replace(SPEC, n=2), out, workers=2)
    assert more.kept == 2 and more.resumed_episodes == 1
    after = joint_states(out)
    assert {k: after[k] for k in before} == before and len(after) == 2


@pytest.mark.slow
def test_an_episode_cut_short_mid_write_is_dropped_and_written_again(
        tmp_path: Path, one_worker: tuple[Path, Summary]) -> None:
    from recorder.contract import STATE_FILE, session_state_yaml
    from recorder.session import Session
    from sim.episode import sim_profile

    whole = one_worker[0]
    out = tmp_path / "cut"
    shutil.copytree(whole, out)
    # what a kill in the middle of writing the episode leaves: the journal knows the
    # attempt succeeded, the session lists no episode and has the episode's .part
    state = read_session_state(out)
    assert state is not None
    (out / state.episodes[0].file).unlink()
    (out / STATE_FILE).write_text(session_state_yaml(dataclasses.replace(state, episodes=())))
    lines = (out / JOURNAL_FILE).read_text().splitlines()
    (out / JOURNAL_FILE).write_text("\n".join(ln for ln in lines if '"episode"' not in ln)
                                    + "\n")
    session = Session(out, sim_profile(cameras=False))
    session.start_episode("pick_place", at_ns=1)
    session.write("/joint_states", next(iter(joint_states(whole).values()))[0][1], 2)
    assert list(out.glob("*.mcap.part"))
    s = generate(SPEC, out)
    assert s.kept == 1 and s.attempted_this_run == 0 and s.kept_this_run == 1
    assert s.dropped_partial == 1
    assert not list(out.glob("*.mcap.part"))
    assert joint_states(out) == joint_states(whole)
    final = read_session_state(out)
    assert final is not None and not final.damaged and final.open_episode is None


@pytest.mark.slow
def test_an_attempt_lost_in_flight_below_a_journaled_one_runs_again(
        tmp_path: Path, one_worker: tuple[Path, Summary],
        two_workers: tuple[Path, Summary]) -> None:
    from recorder.contract import STATE_FILE, session_state_yaml

    out = tmp_path / "hole"
    shutil.copytree(two_workers[0], out)
    # killed while attempt 0 ran, after attempts above it (a success, often) finished:
    # the journal lacks attempt 0, and nothing is kept yet
    state = read_session_state(out)
    assert state is not None
    (out / state.episodes[0].file).unlink()
    (out / STATE_FILE).write_text(session_state_yaml(dataclasses.replace(state, episodes=())))
    lines = [ln for ln in (out / JOURNAL_FILE).read_text().splitlines()
             if '"episode"' not in ln and '"index": 0,' not in ln]
    (out / JOURNAL_FILE).write_text("\n".join(lines) + "\n")
    assert 0 not in attempts(out) and attempts(out)
    s = generate(SPEC, out, workers=2)
    assert s.kept == 1 and 0 in attempts(out)
    assert joint_states(out) == joint_states(one_worker[0])


def test_a_directory_holding_another_run_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "s"
    Driver(RunSpec("pick_place", 2, seed=5, cameras=False), out).open()
    with pytest.raises(SimError, match=r"holds another run \(seed 5 -> 6\)"):
        Driver(RunSpec("pick_place", 2, seed=6, cameras=False), out).open()
    with pytest.raises(SimError, match="cameras false -> true"):
        Driver(RunSpec("pick_place", 2, seed=5, cameras=True), out).open()


def test_a_directory_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SimError, match="not empty and holds no sim_journal.jsonl"):
        Driver(RunSpec("pick_place", 1), tmp_path).open()


def test_a_torn_last_journal_line_is_cut_off_and_a_bad_one_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    good = {"index": 0, "seed": 1, "outcome": "failure", "failed_subtask": "grasp",
            "reason": "dropped", "steps": 10, "seconds": 0.1}
    path.write_text(json.dumps({"run": {"seed": 1}}) + "\n" + json.dumps(good) + "\n"
                    + '{"index": 1, "se')
    state = Journal(path).read()
    assert list(state.attempts) == [0] and state.attempts[0].reason == "dropped"
    assert path.read_text().endswith("}\n")  # the next record starts on its own line
    path.write_text(json.dumps({"run": {}}) + "\nnot json\n")
    with pytest.raises(SimError, match=r"sim_journal.jsonl:2: not a journal record"):
        Journal(path).read()


def test_unknown_task_and_bad_sizes_are_errors(tmp_path: Path) -> None:
    with pytest.raises(SimError, match="unknown task 'stack'.*pick_place"):
        Driver(RunSpec("stack", 1), tmp_path / "a")
    with pytest.raises(SimError, match="--n must be 0 or more"):
        Driver(RunSpec("pick_place", -1), tmp_path / "a")
    with pytest.raises(SimError, match="source .*nope.mcap does not exist"):
        Driver(RunSpec("pick_place", 1, sources=(str(tmp_path / "nope.mcap"),)), tmp_path / "a")
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_max_attempts_ends_a_run_short_with_the_same_prefix(tmp_path: Path) -> None:
    s = generate(RunSpec("pick_place", 50, seed=4, cameras=False, max_attempts=2), tmp_path / "s",
                 workers=2)
    assert s.attempted == 2 and s.kept == s.successes < 50
    assert sorted(attempts(tmp_path / "s")) == [0, 1]


def test_a_session_given_as_source_leaves_out_its_failed_episodes(tmp_path: Path) -> None:
    from mcap.writer import Writer

    from sim.generate import expand_sources

    for name, outcome in (("episode_0000.mcap", "failure"), ("episode_0001.mcap", "success")):
        with open(tmp_path / name, "wb") as fh:
            w = Writer(fh)
            w.start(profile="ros2")
            w.add_metadata(EPISODE_METADATA, {"outcome": outcome})
            w.finish()
    assert expand_sources([str(tmp_path)]) == [tmp_path / "episode_0001.mcap"]
    # a file named on its own is taken as it is
    assert expand_sources([str(tmp_path / "episode_0000.mcap")]) == \
        [tmp_path / "episode_0000.mcap"]
    (tmp_path / "episode_0001.mcap").unlink()
    with pytest.raises(SimError, match="all 1 episodes are failures"):
        expand_sources([str(tmp_path)])
