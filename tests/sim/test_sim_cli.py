"""``demofab sim``: the JSON summary, resume after SIGKILL, one-line errors for bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader

from recorder.contract import EPISODE_METADATA, PART_SUFFIX, SIM_METADATA, read_session_state
from sim.generate import JOURNAL_FILE


def sim(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "demofab.cli", "sim", *args], capture_output=True,
                          text=True, timeout=300, **kw)  # type: ignore[call-overload]


def joint_states(session: Path) -> dict[str, list[tuple[int, bytes]]]:
    out = {}
    for f in sorted(session.glob("episode_*.mcap")):
        with open(f, "rb") as fh:
            out[f.name] = [(m.log_time, m.data) for _, _, m in
                           make_reader(fh).iter_messages(topics=["/joint_states"])]
    return out


def run_args(out: Path, n: int = 2, *extra: str) -> list[str]:
    return ["generate", "--task", "pick_place", "--n", str(n), "--seed", "3", "--no-cameras",
            "--out", str(out), *extra]


@pytest.mark.slow
def test_generate_prints_one_json_summary_its_episode_replays_and_multiplies(tmp_path: Path) -> None:
    p = sim(*run_args(tmp_path / "s", 1, "--json"))
    assert p.returncode == 0, p.stderr
    (line,) = p.stdout.strip().splitlines()
    s = json.loads(line)
    for key in ("attempted", "kept", "success_rate", "demos_per_core_hour",
                "failures_by_reason", "workers", "backend", "wall_s", "render_saved_fraction"):
        assert key in s
    assert s["kept"] == 1 and s["attempted"] >= 1 and s["backend"] == "local"
    assert s["demos_per_core_hour"] > 0 and 0 < s["success_rate"] <= 1
    r = sim("replay", str(tmp_path / "s" / s["episodes"][0]), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["success"] is True and report["sim_episode"] is True
    # against itself a sim episode drifts by its recorded sensor noise only
    assert report["max_joint_error_rad"] < 10 * report["sensor_noise_std_rad"] + 1e-9

    # ... and it is a source to multiply
    source = tmp_path / "s" / s["episodes"][0]
    m = sim("multiply", "--source", str(tmp_path / "s"), "--task", "pick_place", "--n", "1",
            "--seed", "1", "--no-cameras", "--out", str(tmp_path / "m"), "--json")
    assert m.returncode == 0, m.stderr
    ms = json.loads(m.stdout)
    assert ms["command"] == "multiply" and ms["kept"] == 1
    with open(tmp_path / "m" / ms["episodes"][0], "rb") as fh:
        md = {r.name: r.metadata for r in make_reader(fh).iter_metadata()}
    assert md[EPISODE_METADATA]["operator"] == "sim-multiply"
    sources = json.loads(md[SIM_METADATA]["sources"])
    assert [x["sha256"] for x in sources] == [hashlib.sha256(source.read_bytes()).hexdigest()]


N_RESUME = 2


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "s"
    p = sim(*run_args(out, N_RESUME))
    assert p.returncode == 0, p.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_run_killed_or_interrupted_continues_to_the_same_episodes(
        tmp_path: Path, uninterrupted: Path, sig: signal.Signals) -> None:
    n = N_RESUME
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "demofab.cli", "sim",
                             *run_args(out, n, "--workers", "2")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            lines = (out / JOURNAL_FILE).read_text().splitlines() \
                if (out / JOURNAL_FILE).exists() else []
            if any('"episode"' in ln for ln in lines):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, sig)  # the driver and its workers (its own group), as Ctrl-C does
        _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        last = err.decode().strip().splitlines()[-2:]
        assert last[0].startswith("demofab sim: ") and \
            last[0].endswith(f"episodes are in {out}; run the same command again to continue")
        assert last[1] == "demofab sim: interrupted"
    state = read_session_state(out)
    assert state is not None and 1 <= len(state.episodes) < n
    again = sim(*run_args(out, n, "--workers", "2", "--json"))
    assert again.returncode == 0, again.stderr
    s = json.loads(again.stdout)
    assert s["kept"] == n and s["resumed_episodes"] == len(state.episodes)
    assert joint_states(out) == joint_states(uninterrupted)
    assert not list(out.glob(f"*{PART_SUFFIX}"))
    final = read_session_state(out)
    assert final is not None and final.open_episode is None and not final.damaged
    assert [e.file for e in final.episodes] == [f"episode_{i:04d}.mcap" for i in range(n)]


def _one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("demofab sim: error: ")
    return lines[0]


def test_unknown_task_is_a_one_line_error_listing_the_tasks(tmp_path: Path) -> None:
    line = _one_line_error(sim("generate", "--task", "juggle", "--n", "1", "--out",
                               str(tmp_path / "s")))
    assert "juggle" in line and "pick_place" in line
    assert not (tmp_path / "s").exists()


def test_missing_source_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    line = _one_line_error(sim("multiply", "--source", str(tmp_path / "gone.mcap"), "--task",
                               "pick_place", "--n", "1", "--out", str(tmp_path / "s")))
    assert f"source {tmp_path / 'gone.mcap'} does not exist" in line


def test_corrupt_mcap_source_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"\x89MCAP0\r\n" + os.urandom(300))
    line = _one_line_error(sim("multiply", "--source", str(bad), "--task", "pick_place",
                               "--n", "1", "--out", str(tmp_path / "s")))
    assert str(bad) in line


def test_replay_of_a_missing_episode_is_a_one_line_error(tmp_path: Path) -> None:
    line = _one_line_error(sim("replay", str(tmp_path / "episode_0000.mcap")))
    assert line.endswith(f"episode {tmp_path / 'episode_0000.mcap'} does not exist")


def test_missing_config_is_a_one_line_error(tmp_path: Path) -> None:
    line = _one_line_error(sim(*run_args(tmp_path / "s", 1, "--config",
                                         str(tmp_path / "r.yaml"))))
    assert line.endswith(f"--config {tmp_path / 'r.yaml'} does not exist")
