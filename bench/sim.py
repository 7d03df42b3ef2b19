"""Simulation: kept demos per core-hour per task with and without cameras, against a bare loop.

Everything runs in a temp dir through ``sim.generate`` (the code behind ``demofab sim
generate|multiply``), on this machine:

* ``demos_per_core_hour`` / ``demos_per_core_hour_no_cameras``: kept episodes per
  worker-hour of each task on one worker, with the profile's three cameras and without.
  The time is the run's, from the first job to the last episode written; the workers'
  start-up (imports, Ray) is left out and reported in ``startup_s``.
* ``vs_bare_loop``: the first task's camera run beside a bare loop, in the same run, of the
  same MuJoCo steps (every attempt's physics and the kept attempts' re-execution) and the
  same renders (every camera frame of the kept episodes, at their resolution), with no
  operator, IK, JPEG, message or file: the bare loop's time over the run's (target >= 0.75).
* ``scaling_2_workers``: the same run (``--scaling-n`` kept, same seed, so the same
  episodes) on 2 workers over 1 worker, kept per second (target >= 1.8).
* ``ray_vs_local``: that run on 2 Ray actors (``ray.init()`` here) over the 2-worker local
  pool (target >= 0.9); ``null`` with ``--no-ray``.
* ``multiply_success_rate``: ``--sources`` episodes of simulated teleoperation (recorded by
  ``sim generate``, cameras off), multiplied over ``--multiply-attempts`` attempts: the
  attempts' physics phase on the 2-worker pool (what decides success; the kept ones are
  not recorded here), successes over attempts (target >= 0.5, so that 1,000 kept demos
  from 10 sources cost at most 2,000 attempts).
* ``render_saved_fraction``: over the camera runs, the share of attempted physics steps
  never rendered, because only kept attempts are re-executed with the cameras.

``--quick`` makes every size small (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.generate import RunSpec, Summary

os.environ.setdefault("MUJOCO_GL", "egl")  # before the first import of mujoco

TARGETS = {"vs_bare_loop": 0.75, "scaling_2_workers": 1.8, "ray_vs_local": 0.9,
           "multiply_success_rate": 0.5}
TASKS = ("pick_place", "handover", "bimanual_lift")
QUICK = {"n_cameras": 1, "n_no_cameras": 1, "scaling_n": 2, "sources": 2,
         "multiply_attempts": 8}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The bench's sizes (``--quick`` for a short run)."""
    p.add_argument("--quick", action="store_true",
                   help="small sizes: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--n-cameras", type=int, default=1, help="kept per task, with cameras")
    p.add_argument("--n-no-cameras", type=int, default=2, help="kept per task, no cameras")
    p.add_argument("--scaling-n", type=int, default=4,
                   help="kept in the 1-, 2-worker and Ray runs (cameras off)")
    p.add_argument("--sources", type=int, default=10, help="source episodes to multiply")
    p.add_argument("--multiply-attempts", type=int, default=200)
    p.add_argument("--max-attempts-per-kept", type=int, default=10,
                   help="a task run gives up after this many attempts per episode to keep")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ray", action="store_true", help="skip ray_vs_local")
    p.add_argument("--keep", help="keep the work directory here")


def _per_core_hour(s: Summary) -> float:
    run = max(s.wall_s - s.startup_s, 1e-9)
    return round(s.kept_this_run / (run * s.workers / 3600), 1)


def _kept_per_s(s: Summary) -> float:
    return float(s.kept_this_run) / max(s.wall_s - s.startup_s, 1e-9)


def _camera_frames(path: Path) -> dict[str, tuple[int, int, int]]:
    """Camera name -> (frames, width, height) of an episode file."""
    import cv2
    import numpy as np
    from mcap.reader import make_reader

    from recorder.types import deserialize

    counts: dict[str, int] = {}
    size: dict[str, tuple[int, int]] = {}
    with open(path, "rb") as fh:
        for _, channel, msg in make_reader(fh).iter_messages():
            if not channel.topic.startswith("/camera/"):
                continue
            cam = channel.topic.split("/")[2]
            counts[cam] = counts.get(cam, 0) + 1
            if cam not in size:
                img = deserialize(msg.data, "sensor_msgs/msg/CompressedImage")
                frame = cv2.imdecode(np.frombuffer(bytes(img.data), np.uint8), cv2.IMREAD_COLOR)
                if frame is None:
                    raise ValueError(f"{path}: a {channel.topic} frame is not a JPEG")
                size[cam] = (int(frame.shape[1]), int(frame.shape[0]))
    return {c: (n, *size[c]) for c, n in counts.items()}


def attempt_outcomes(spec: RunSpec, count: int, workers: int) -> dict[str, Any]:
    """Attempts ``0 .. count-1`` of ``spec``, physics only, on a local pool: successes over
    attempts, the failures by reason, attempts per core-hour."""
    from collections import Counter

    from sim.backends import JobFailed, LocalBackend
    from sim.generate import AttemptResult, Driver, reason_key

    driver = Driver(spec, Path(tempfile.gettempdir()) / "unused")  # only for its jobs
    pool = LocalBackend(workers)
    results: dict[int, AttemptResult] = {}
    t = time.perf_counter()
    try:
        nxt = 0
        while len(results) < count:
            while nxt < count and pool.idle():
                pool.submit(nxt, driver.job(nxt))
                nxt += 1
            for key, res in pool.wait(timeout=1.0):
                if isinstance(res, JobFailed):
                    raise RuntimeError(f"multiply attempt {key} failed: {res.error}")
                results[key] = res
    finally:
        pool.close()
    wall = time.perf_counter() - t
    ok = sum(r.success for r in results.values())
    fails = Counter(reason_key(r.failed_subtask, r.reason)
                    for r in results.values() if not r.success)
    return {"attempted": count, "successes": ok, "success_rate": round(ok / count, 4),
            "attempts_per_core_hour": round(count / (wall * workers / 3600), 1),
            "wall_s": round(wall, 1), "failures_by_reason": dict(fails.most_common())}


def bare_loop(out: Path, spec: RunSpec) -> dict[str, Any]:
    """The same MuJoCo steps and renders as the run of ``spec`` in ``out``, bare: each
    journaled attempt's commands stepped on its scene, then each kept attempt's commands
    again with its episode's camera frames rendered (as many per camera, at even
    intervals, at their resolution). The commands come from running the attempts again
    (untimed). Returns the time and the counts."""
    import json

    import numpy as np

    from sim.generate import Driver, Worker
    from sim.scenes import Scene

    lines = [json.loads(x) for x in (out / "sim_journal.jsonl").read_text().splitlines()]
    attempts = {r["index"]: r for r in lines if "outcome" in r and r["steps"] > 0}
    kept = {r["index"]: r["episode"] for r in lines if "episode" in r}
    frames = {i: _camera_frames(out / f) for i, f in kept.items()}
    driver, worker = Driver(spec, out), Worker()
    traces = {i: worker.physics(driver.job(i)) for i in sorted(attempts)}
    steps = renders = 0
    t = time.perf_counter()
    for i, trace in traces.items():
        scene = Scene(trace.layout)
        for phase in ("physics", "record") if i in kept else ("physics",):
            scene.reset()
            n = trace.steps
            due = {cam: set(np.linspace(0, n - 1, k).astype(int).tolist())
                   for cam, (k, _, _) in frames[i].items()} if phase == "record" else {}
            for s in range(n):
                scene.set_ctrl(trace.ctrl[s])
                scene.step()
                for cam, at in due.items():
                    if s in at:
                        _, w, h = frames[i][cam]
                        scene.render(cam, w, h)
                        renders += 1
            steps += n
        scene.close()
    return {"s": round(time.perf_counter() - t, 3), "steps": steps, "renders": renders}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; the figures (printed as the last line by ``demofab bench``)."""
    import sys

    from sim.generate import RunSpec, generate

    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="demofab-bench-sim-"))
    work.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if getattr(args, "json", False) else \
        (lambda *a: print(*a, file=sys.stderr, flush=True))
    t_all = time.perf_counter()
    try:
        cam: dict[str, float] = {}
        nocam: dict[str, float] = {}
        success: dict[str, float] = {}
        startup: dict[str, float] = {}
        render_steps = [0, 0]  # (never rendered, attempted) over the camera runs
        first_cam = None
        for task in args.tasks:
            say(f"[sim bench] {task}: {args.n_cameras} kept with cameras")
            cap = args.max_attempts_per_kept
            s = generate(RunSpec(task, args.n_cameras, seed=args.seed,
                                 max_attempts=cap * args.n_cameras), work / f"{task}-cam")
            cam[task] = _per_core_hour(s)
            startup["local_1"] = s.startup_s
            render_steps[0] += s.attempted_steps - s.recorded_steps
            render_steps[1] += s.attempted_steps
            if first_cam is None and s.kept:
                first_cam = (task, s)
            say(f"[sim bench] {task}: {args.n_no_cameras} kept without cameras")
            s = generate(RunSpec(task, args.n_no_cameras, seed=args.seed, cameras=False,
                                 max_attempts=cap * args.n_no_cameras), work / f"{task}-nocam")
            nocam[task] = _per_core_hour(s)
            success[task] = s.success_rate
        if first_cam is None:
            raise RuntimeError(f"no task kept an episode with cameras in {cap} attempts per "
                               "episode; the bare-loop comparison needs one")
        task0, cam0 = first_cam
        say(f"[sim bench] bare loop of the {task0} camera run")
        bare = bare_loop(work / f"{task0}-cam", RunSpec(task0, args.n_cameras, seed=args.seed))
        vs_bare = round(bare["s"] / max(cam0.wall_s - cam0.startup_s, 1e-9), 3)

        say(f"[sim bench] scaling: {args.scaling_n} kept on 1 and 2 workers")
        spec = RunSpec(task0, args.scaling_n, seed=args.seed + 1, cameras=False)
        one = generate(spec, work / "scale-1", workers=1)
        two = generate(spec, work / "scale-2", workers=2)
        scaling = round(_kept_per_s(two) / _kept_per_s(one), 3)
        startup["local_2"] = two.startup_s
        ray_vs_local: float | None = None
        ray_note = "skipped (--no-ray)"
        if not args.no_ray:
            say("[sim bench] the same on 2 Ray actors")
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray = generate(spec, work / "scale-ray", workers=2, backend="ray")
            ray_vs_local = round(_kept_per_s(ray) / _kept_per_s(two), 3)
            startup["ray_2"] = ray.startup_s
            ray_note = f"{ray.kept} kept in {ray.wall_s - ray.startup_s:.1f} s"

        say(f"[sim bench] multiply: {args.sources} sources, {args.multiply_attempts} attempts")
        src = generate(RunSpec(task0, args.sources, seed=args.seed + 2, cameras=False),
                       work / "sources", workers=2)
        mul = attempt_outcomes(RunSpec(task0, args.multiply_attempts, seed=args.seed + 3,
                                       sources=(str(work / "sources"),), cameras=False),
                               args.multiply_attempts, workers=2)
        return {
            "demos_per_core_hour": cam,
            "demos_per_core_hour_no_cameras": nocam,
            "success_rate": success,
            "vs_bare_loop": vs_bare,
            "bare_loop": {**bare, "generation_s": round(cam0.wall_s - cam0.startup_s, 3),
                          "task": task0, "kept": cam0.kept, "attempted": cam0.attempted},
            "scaling_2_workers": scaling,
            "scaling_runs": {"kept": spec.n, "task": task0,
                             "run_s_1": round(one.wall_s - one.startup_s, 3),
                             "run_s_2": round(two.wall_s - two.startup_s, 3)},
            "ray_vs_local": ray_vs_local, "ray": ray_note,
            "multiply_success_rate": mul["success_rate"],
            "multiply": {"sources": src.kept, **mul},
            "render_saved_fraction": round(render_steps[0] / render_steps[1], 4)
            if render_steps[1] else 0.0,
            "startup_s": startup,
            "targets": TARGETS,
            "quick": bool(args.quick),
            "cpus": os.cpu_count(),
            "total_s": round(time.perf_counter() - t_all, 1),
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


__all__ = ["QUICK", "TARGETS", "TASKS", "add_arguments", "bare_loop", "run"]
