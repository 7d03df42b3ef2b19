"""Clean room: the sandbox's overhead on a loader-bound training loop, and the output gate.

* ``sandbox_vs_bare``: one training loop (the DemoFab loader, :class:`ReleaseDataset`,
  over a release curated in the run from synthetic-rig episodes: joint positions and the
  head camera's JPEG frames decoded; a tiny numpy model, one gradient step per batch of
  32 samples) run as a clean-room job in the sandbox (bubblewrap, the limits, the
  supervisor polling) beside the same script run by the same interpreter outside it,
  both reading the same copy of the release on a tmpfs (where the clean room decrypts
  inputs), best of ``--repeat`` each, taking turns, with one thread for BLAS and OpenCV
  on both sides (the sandbox has no /sys, so libraries that count CPUs there would
  otherwise run with other thread counts inside and out). The figure is bare loop time over
  sandboxed loop time, measured inside the script (target >= 0.9);
  ``sandbox_start_s`` and ``bare_start_s`` are the whole process's wall time minus the
  loop (bwrap's set-up and the interpreter's start and imports).
* ``gate_s_per_gb``: the output gate's time per GB of outputs, from
  ``bench.gate_bench.gate_throughput`` (the gate's own measure, with its reference: plain
  SHA-256 of the same bytes), when the gate is installed; null otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGETS = {"sandbox_vs_bare": 0.9}
HEAD = "camera.head.image_raw.compressed"

LOOP = '''
import json, sys, time
from pathlib import Path
import numpy as np
from curation.loader import ReleaseDataset

def main(inputs, outputs, samples):
    import cv2
    cv2.setNumThreads(1)  # as numpy's BLAS: the sandbox hides /sys, so thread counts would differ
    t0 = time.perf_counter()
    ds = ReleaseDataset(inputs, keys=["joint_states/position", "HEAD/data"])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ds))
    w = np.zeros((64, 1))
    n, loss = 0, 0.0
    for start in range(0, samples, 32):
        idx = order[[(start + k) % len(ds) for k in range(32)]]
        batch = [ds[int(i)] for i in idx]
        img = np.stack([b["HEAD/data"][::8, ::8, 0].reshape(-1)[:64] for b in batch]) / 255.0
        y = np.stack([b["joint_states/position"][:1] for b in batch])
        err = img @ w - y
        loss = float(np.mean(err ** 2))
        w -= 0.1 * img.T @ err / len(batch)
        n += len(batch)
    loop = time.perf_counter() - t0
    Path(outputs, "metrics.json").write_text(json.dumps({"loop_s": loop, "samples": n, "loss": loss}))

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else SAMPLES)
'''


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per episode")
    p.add_argument("--samples", type=int, default=640, help="training samples per run")
    p.add_argument("--repeat", type=int, default=5, help="best of N runs each")
    p.add_argument("--gate-mb", type=float, default=32.0, help="outputs the gate checks (MB)")
    p.add_argument("--dir", default=None, help="where to build the release (default: temp)")


def _bare(code: Path, inputs: Path, out: Path) -> float:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(out), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, str(code / "loop.py"), str(inputs), str(out)], env=env,
                   check=True)
    return time.perf_counter() - t


def _sandboxed(code: Path, inputs: Path, out: Path, logs: Path) -> float:
    from vault.jobs.sandbox import JobLimits, run_sandboxed

    t = time.perf_counter()
    res = run_sandboxed(code, inputs, out, logs, ["/job/code/loop.py", "/job/input", "/job/out"],
                        JobLimits(cpu_s=600, wall_s=600, memory_bytes=4 << 30))
    wall = time.perf_counter() - t
    if res.state != "succeeded":
        raise RuntimeError(f"the sandboxed loop {res.state}: {res.message}: "
                           f"{(logs / 'stderr.log').read_text()[-2000:]}")
    return wall


def _loop_s(out: Path) -> tuple[float, int]:
    m = json.loads((out / "metrics.json").read_text())
    return float(m["loop_s"]), int(m["samples"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    from vault.jobs.sandbox import private_tmpfs

    from .vault_http import _release

    with tempfile.TemporaryDirectory(prefix="demofab-bench-cleanroom-", dir=args.dir) as tmp:
        base = Path(tmp)
        release = _release(base, args.episodes, args.seconds)
        code = base / "code"
        code.mkdir()
        (code / "loop.py").write_text(LOOP.replace("HEAD", HEAD).replace(
            "SAMPLES", str(args.samples)))
        size = sum(p.stat().st_size for p in release.rglob("*") if p.is_file())
        with private_tmpfs("demofab-bench-") as work:
            inputs = work / "input"
            shutil.copytree(release, inputs)
            best = {"sandbox": (float("inf"), 0.0), "bare": (float("inf"), 0.0)}
            samples = 0
            for r in range(args.repeat):
                for kind in ("sandbox", "bare"):  # taking turns: a busy machine slows both
                    out, logs = work / f"out-{kind}-{r}", work / f"logs-{kind}-{r}"
                    out.mkdir()
                    logs.mkdir()
                    wall = (_sandboxed(code, inputs, out, logs) if kind == "sandbox"
                            else _bare(code, inputs, out))
                    loop, samples = _loop_s(out)
                    if loop < best[kind][0]:
                        best[kind] = (loop, wall - loop)
        result: dict[str, Any] = {
            "sandbox_vs_bare": round(best["bare"][0] / best["sandbox"][0], 3),
            "sandbox_loop_s": round(best["sandbox"][0], 3), "bare_loop_s": round(best["bare"][0], 3),
            "sandbox_start_s": round(best["sandbox"][1], 3), "bare_start_s": round(best["bare"][1], 3),
            "samples": samples, "release_mb": round(size / 1e6, 1), "targets": TARGETS}
        result |= _gate(release, base / "gate", args.gate_mb)
    return result


def _gate(release: Path, workdir: Path, total_mb: float) -> dict[str, Any]:
    """The gate's own measure, when the gate is installed."""
    try:
        from bench.gate_bench import gate_throughput  # type: ignore[import-not-found, unused-ignore]
    except ModuleNotFoundError as exc:
        return {"gate_s_per_gb": None, "gate_note": f"no output gate here ({exc.name})"}
    workdir.mkdir(parents=True, exist_ok=True)
    got: dict[str, Any] = gate_throughput(release, total_mb=total_mb, workdir=workdir)
    return got
