"""Crash safety: signals finish the open episode; kill -9 and a full disk leave finished
episodes intact and the open one recoverable up to its last complete chunk."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader

from recorder.inspect import inspect_path

pytestmark = pytest.mark.slow


def demofab(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "demofab.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def record_args(out: Path, *extra: str) -> list[str]:
    return ["record", "--source", "synthetic", "--out", str(out), "--task", "t", *extra]


def wait_for_part(out: Path, min_bytes: int, proc: subprocess.Popen,
                  timeout: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"recorder exited early ({proc.returncode}): "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        parts = list(out.glob("*.mcap.part"))
        if parts and parts[0].stat().st_size >= min_bytes:
            return parts[0]
        time.sleep(0.05)
    raise AssertionError(f"no .part file of {min_bytes} bytes in {out}")


def listed(out: Path) -> list[str]:
    meta = yaml.safe_load((out / "metadata.yaml").read_text())
    return meta["rosbag2_bagfile_information"]["relative_file_paths"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_the_open_episode_cleanly(tmp_path, sig):
    out = tmp_path / "s"
    p = demofab(*record_args(out, "--episodes", "1", "--episode-seconds", "600", "--realtime"))
    wait_for_part(out, 2_000_000, p)
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert listed(out) == ["episode_0000.mcap"]
    report = inspect_path(out)
    (ep,) = report["episodes"]
    assert ep["outcome"] == "unknown" and ep["ended_by"] == "signal"
    # everything up to the signal is kept: at least what had reached the .part
    assert (out / "episode_0000.mcap").stat().st_size >= 2_000_000
    assert ep["messages"] > 500
    assert not list(out.glob("*.part"))


def test_kill_9_then_recover_keeps_every_complete_chunk(tmp_path):
    out = tmp_path / "s"
    first = demofab(*record_args(out, "--episodes", "1", "--episode-seconds", "0.5"))
    assert first.wait(timeout=60) == 0
    p = demofab(*record_args(out, "--episodes", "1", "--episode-seconds", "600", "--realtime"))
    part = wait_for_part(out, 6_000_000, p)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    assert part.exists()
    finished = (out / "episode_0000.mcap").read_bytes()

    r = demofab("recover", str(out))
    stdout, stderr = r.communicate(timeout=60)
    assert r.returncode == 0, stderr
    assert "recovered" in stdout and "episode_0001.mcap" in stdout
    assert (out / "episode_0000.mcap").read_bytes() == finished  # untouched
    assert listed(out) == ["episode_0000.mcap", "episode_0001.mcap"]
    with open(out / "episode_0001.mcap", "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        md = {m.name: m.metadata for m in reader.iter_metadata()}
    assert summary.statistics.message_count > 1000
    assert md["demofab.episode"]["recovered"] == "true"
    assert md["demofab.episode"]["ended_by"] == "recovered"
    assert md["demofab.episode"]["task"] == "t"  # from the START event in the data
    with AnyReader([out]) as reader:
        assert reader.message_count == sum(1 for _ in reader.messages())
    report = inspect_path(out)
    assert [e["flagged"] for e in report["episodes"]] == [False, True]
    assert "recovered" in report["episodes"][1]["flags"]


def test_reopening_a_crashed_session_recovers_it_first(tmp_path):
    out = tmp_path / "s"
    p = demofab(*record_args(out, "--episodes", "1", "--episode-seconds", "600", "--realtime"))
    wait_for_part(out, 6_000_000, p)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    again = demofab(*record_args(out, "--episodes", "1", "--episode-seconds", "0.3"))
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "recovered episode_0000.mcap" in err
    assert listed(out) == ["episode_0000.mcap", "episode_0001.mcap"]


def _limit_file_size(nbytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


def test_full_disk_stops_the_episode_with_a_clear_error_and_harms_nothing(tmp_path):
    out = tmp_path / "s"
    ok = demofab(*record_args(out, "--episodes", "1", "--episode-seconds", "0.5"))
    assert ok.wait(timeout=60) == 0
    finished = (out / "episode_0000.mcap").read_bytes()
    # every file may grow to 4 MB only: the next, long episode hits the limit
    p = demofab(*record_args(out, "--episodes", "1", "--episode-seconds", "30"),
                preexec_fn=_limit_file_size(4_000_000))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in err
    assert "disk full" in lines[0] and "episode_0001.mcap.part" in lines[0]
    assert (out / "episode_0000.mcap").read_bytes() == finished
    assert listed(out) == ["episode_0000.mcap"]
    # with space again, the cut episode is recovered up to its last complete chunk
    r = demofab("recover", str(out))
    stdout, _ = r.communicate(timeout=60)
    assert r.returncode == 0 and "episode_0001.mcap" in stdout
    assert listed(out) == ["episode_0000.mcap", "episode_0001.mcap"]
    assert (out / "episode_0001.mcap").stat().st_size < 4_000_000
