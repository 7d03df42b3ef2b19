"""The clean room end to end: an approved job runs on the real data in the sandbox, its
outputs and logs reach the output review through the real gate, and only what the
reviewers release comes out; a job that copies an input camera frame into a declared
output gets it blocked, and that file is never released."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vault.pgserver import release_dir  # noqa: F401
from tests.vault.test_jobs import CODE, TRAIN, approve, mock_dir, reqs  # noqa: F401
from tests.vault.test_outputs import Env, gate_cache, make_env  # noqa: F401
from vault.db import Forbidden, ReviewError
from vault.jobs import JobLimits, Jobs, read_code
from vault.jobs.outputs_tables import OutputState

LEAK = '''"""Writes its metrics, and a camera frame of its input disguised as a plot."""

import json
from pathlib import Path

from curation.loader import ReleaseReader


def main(inputs: Path, outputs: Path) -> None:
    rel = ReleaseReader(inputs)
    frame = rel.payload("camera.head.image_raw.compressed", 3)
    (outputs / "metrics.json").write_text(json.dumps({"frames_seen": 1}))
    (outputs / "plots").mkdir()
    (outputs / "plots" / "loss.png").write_bytes(frame)
'''


@pytest.fixture(scope="module")
def cleanroom(tmp_path_factory: pytest.TempPathFactory, release_dir: Path,  # noqa: F811
              mock_dir: Path, gate_cache: Path) -> Iterator[tuple[Env, Jobs]]:  # noqa: F811
    """One vault with a mock release and a jobs service for the module."""
    env = make_env(tmp_path_factory.mktemp("cleanroom"), release_dir, gate_cache=gate_cache)
    env.vault.put_mock("pick", 1, mock_dir)
    jobs = Jobs(env.vault)
    yield env, jobs
    jobs.close()
    env.vault.close()


def real_run(env: Env, jobs: Jobs, code: dict[str, bytes], **spec: object) -> int:
    """Submit as alice, run on the mock, approve as rev1, run on the real data; the job's id."""
    job = jobs.submit(env["alice"], code, requirements=reqs(), **(TRAIN | spec))  # type: ignore[arg-type]
    mock = jobs.wait(job.runs[0].id, 180)
    assert mock.state == "succeeded", (mock.message, jobs.logs(mock.id, env["alice"]))
    approve(jobs, env.vault, job.id)
    real = jobs.wait(jobs.get(job.id).runs[-1].id, 180)
    assert real.state == "succeeded", real.message
    return job.id


@pytest.mark.slow
def test_an_approved_jobs_real_run_reaches_the_lab_only_through_gate_review_and_release(
        cleanroom: tuple[Env, Jobs]) -> None:
    env, jobs = cleanroom
    job_id = real_run(env, jobs, read_code(CODE / "train.py"))
    [out] = env.outputs.list(env["alice"], job_id=job_id)
    assert out.state is OutputState.PENDING
    assert {f.name for f in out.files} == {"metrics.json", "logs/stdout.log", "logs/stderr.log"}
    assert {f.gate_verdict for f in out.files} == {"pass"}, [f.gate_findings for f in out.files]
    with pytest.raises(Forbidden, match="only released outputs"):
        env.outputs.download(out.id, "metrics.json", env["alice"])
    env.outputs.submit(out.id, env["alice"])
    env.vote_all(out.id, "rev1")
    env.release_set(out.id, "rev1")
    metrics = json.loads(env.outputs.download(out.id, "metrics.json", env["alice"])[1])
    assert metrics["samples"] > 0 and metrics["last_loss"] < metrics["first_loss"]
    log = env.outputs.download(out.id, "logs/stdout.log", env["alice"])[1].decode()
    assert "trained on" in log


@pytest.mark.slow
def test_a_frame_a_job_copies_into_a_declared_plot_is_blocked_and_never_released(
        cleanroom: tuple[Env, Jobs]) -> None:
    env, jobs = cleanroom
    job_id = real_run(env, jobs, {"leak.py": LEAK.encode()}, name="leak", entry="leak:main",
                      outputs=[{"pattern": "metrics.json", "type": "json"},
                               {"pattern": "plots/*.png", "type": "png"}],
                      limits=JobLimits(cpu_s=60, wall_s=90, memory_bytes=4 << 30,
                                       output_bytes=4 << 20))
    [out] = env.outputs.list(env["alice"], job_id=job_id)
    plot = out.file("plots/loss.png")
    assert plot.blocked, plot.gate_findings
    assert "frame_copy" in {f.get("kind") for f in plot.gate_findings}, plot.gate_findings
    env.outputs.submit(out.id, env["alice"])
    with pytest.raises(Forbidden, match="blocked by the output gate"):
        env.outputs.vote(out.id, "plots/loss.png", env["rev1"], "approve")
    env.vote_all(out.id, "rev1", "reject", "an input camera frame")
    with pytest.raises(ReviewError, match="not approved|blocked"):
        env.outputs.prepare_release(out.id, env["rev1"])
    with pytest.raises(Forbidden, match="only released outputs"):
        env.outputs.download(out.id, "plots/loss.png", env["alice"])
