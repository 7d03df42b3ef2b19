"""The backends: a worker killed mid-job is replaced and the job gives the same result, a
job that raises comes back as a failure, and Ray on a real local cluster writes the same
episodes as the local pool."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader

from sim.backends import JobFailed, LocalBackend, make_backend
from sim.errors import SimError
from sim.generate import AttemptJob, AttemptResult, Driver, RunSpec, attempt_seed


def _job(index: int, seed: int = 4) -> AttemptJob:
    driver = Driver(RunSpec("pick_place", 1, seed=seed, cameras=False), "/nonexistent")
    return driver.job(index)


def _results(backend: LocalBackend, count: int, timeout: float = 120) -> dict[int, object]:
    got: dict[int, object] = {}
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.update(backend.wait(timeout=1.0))
    return got


def test_unknown_backend_and_bad_worker_counts_are_errors() -> None:
    with pytest.raises(SimError, match="unknown backend 'dask'; backends: local, ray"):
        make_backend("dask", 1)
    with pytest.raises(SimError, match="--workers must be at least 1, not 0"):
        make_backend("local", 0)
    with pytest.raises(SimError, match="--address is for --backend ray"):
        make_backend("local", 1, address="127.0.0.1:6379")


@pytest.mark.slow
def test_a_worker_killed_mid_attempt_is_replaced_and_the_attempt_runs_again() -> None:
    job = _job(0)
    pool = LocalBackend(1)
    try:
        pool.submit(0, job)
        undisturbed = _results(pool, 1)[0]
        assert isinstance(undisturbed, AttemptResult)
        before = {p.pid for p in multiprocessing.active_children()}
        pool.submit(1, job)
        time.sleep(0.2)
        (victim,) = [p for p in multiprocessing.active_children()
                     if p.name == "demofab-sim-worker"]
        os.kill(victim.pid, signal.SIGKILL)
        again = _results(pool, 1)[1]
        assert isinstance(again, AttemptResult)
        assert (again.success, again.steps, again.reason) == \
            (undisturbed.success, undisturbed.steps, undisturbed.reason)
        if undisturbed.trace is not None:
            assert again.trace is not None
            assert again.trace.ctrl.tobytes() == undisturbed.trace.ctrl.tobytes()
        assert victim.pid in before
        workers = [p.pid for p in multiprocessing.active_children()
                   if p.name == "demofab-sim-worker"]
        assert len(workers) == 1 and workers[0] != victim.pid
        assert pool.idle() == 1
    finally:
        pool.close()


def test_a_job_that_raises_comes_back_as_a_failure_naming_the_error() -> None:
    pool = LocalBackend(1)
    try:
        pool.submit(7, "not a job")
        (key, result), = _results(pool, 1).items()
        assert key == 7 and isinstance(result, JobFailed) and not result.worker_died
        assert result.error.startswith("SimError: a sim worker runs AttemptJob or RecordJob, "
                                       "not str")
    finally:
        pool.close()


def test_attempt_jobs_carry_their_seed_from_the_run_seed() -> None:
    job = _job(5, seed=9)
    assert (job.index, job.run_seed, job.seed) == (5, 9, attempt_seed(9, 5))
    assert job.t0_ns > _job(4, seed=9).t0_ns


def _joint_states(session: Path) -> dict[str, list[tuple[int, bytes]]]:
    out = {}
    for f in sorted(session.glob("episode_*.mcap")):
        with open(f, "rb") as fh:
            out[f.name] = [(m.log_time, m.data) for _, _, m in
                           make_reader(fh).iter_messages(topics=["/joint_states"])]
    return out


RAY_SCRIPT = """
set -u
ip link set lo up
"$RAY" start --head --node-ip-address 127.0.0.1 --port 6391 --include-dashboard=false \
    --disable-usage-stats --num-cpus 2 > "$WORK/ray-start.log" 2>&1 || exit 90
"$PY" -m demofab.cli sim generate --task pick_place --n 1 --seed 3 --no-cameras --workers 2 \
    --backend ray --address 127.0.0.1:6391 --out "$WORK/ray" --json > "$WORK/ray.json"
rc=$?
"$RAY" stop --force > /dev/null 2>&1
exit $rc
"""


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_ray_on_a_local_cluster_writes_the_same_episodes_as_the_local_pool(
        tmp_path: Path) -> None:
    # the cluster runs in its own network namespace (loopback only, so Ray binds 127.0.0.1)
    # and PID namespace (so `ray stop` sees only this cluster, and nothing outlives the test)
    env = {**os.environ, "WORK": str(tmp_path), "PY": sys.executable,
           "RAY": str(Path(sys.executable).parent / "ray"), "RAY_AUTH_MODE": "disabled"}
    p = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "bash", "-c",
                        RAY_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    log = (tmp_path / "ray-start.log").read_text() if (tmp_path / "ray-start.log").exists() else ""
    assert p.returncode == 0, p.stderr[-3000:] + log[-2000:]
    ray = json.loads((tmp_path / "ray.json").read_text())
    assert ray["backend"] == "ray" and ray["workers"] == 2 and ray["kept"] == 1
    from sim.generate import generate

    local = generate(RunSpec("pick_place", 1, seed=3, cameras=False), tmp_path / "local",
                     workers=1)
    assert local.kept == 1
    a, b = _joint_states(tmp_path / "ray"), _joint_states(tmp_path / "local")
    assert list(a) == list(b) and a == b
