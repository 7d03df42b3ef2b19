"""Output gate: seconds per GB of a run's outputs, beside plain SHA-256 of the same files.

Builds (or takes, ``--release``) a release and its gate index, then writes a mixed set of
honest outputs of ``--mb`` MB in all: safetensors weights (half the bytes), CSV
metrics, metrics JSON, PNG plots and text logs, and times :func:`vault.gate.check` over
them (best of ``--repeat``) against reading and hashing the same files with SHA-256 in
the same run. ``gate_s_per_gb`` is seconds per 10**9 bytes of outputs; per-type figures
beside it (``by_type``). ``bench/cleanroom.py`` calls :func:`gate_throughput`."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .timing import best_of

_SHARES = {"safetensors": 0.5, "csv": 0.15, "json": 0.1, "png": 0.2, "text": 0.05}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--release", default=None, help="a release version directory (default: build one)")
    p.add_argument("--mb", type=float, default=32.0, help="MB of outputs to check")
    p.add_argument("--repeat", type=int, default=2, help="best of N runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", default=None, help="where to write the outputs (default: temp)")


def _plot(rng: np.random.Generator, h: int = 600, w: int = 800) -> np.ndarray:
    import cv2

    img = np.full((h, w, 3), 255, np.uint8)
    cv2.rectangle(img, (60, 30), (w - 20, h - 50), (0, 0, 0), 1)
    heat = cv2.GaussianBlur(rng.normal(size=(h - 80, w - 80)).astype(np.float32), (0, 0), 3)
    heat = ((heat - heat.min()) / (np.ptp(heat) + 1e-9) * 255).astype(np.uint8)
    img[30:h - 50, 60:w - 20] = cv2.applyColorMap(heat, cv2.COLORMAP_VIRIDIS)
    cv2.putText(img, "attention map", (w // 2 - 60, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
    return img


def write_outputs(out: Path, total_bytes: int, seed: int = 0) -> dict[str, list[Path]]:
    """Honest outputs of a training run, about ``total_bytes`` in all, by type."""
    import cv2
    import safetensors.numpy as stn

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {k: [] for k in _SHARES}
    budget = {k: int(v * total_bytes) for k, v in _SHARES.items()}
    n = 0
    while budget["safetensors"] > 0:
        rows = max(8, min(budget["safetensors"], 64 << 20) // (4 * 512))
        p = out / f"weights_{n}.safetensors"
        p.write_bytes(stn.save({f"layer{i}.weight": rng.normal(0, 0.05, (rows // 4, 512)).astype(np.float32)
                                for i in range(4)}))
        budget["safetensors"] -= p.stat().st_size
        files["safetensors"].append(p)
        n += 1
    while budget["csv"] > 0:
        p = out / f"metrics_{len(files['csv'])}.csv"
        steps = np.arange(max(10, min(150, budget["csv"] // 40)))  # per epoch: below the dump rule
        loss = 2.0 * np.exp(-steps / 500) + rng.normal(0, 0.01, len(steps))
        with open(p, "w") as fh:
            fh.write("epoch,loss,lr,grad_norm,success\n")
            for s, v in zip(steps, loss, strict=True):
                grad = abs(rng.normal(1, 0.2))
                fh.write(f"{s},{v:.5f},{1e-3 * 0.999**s:.6g},{grad:.4f},{rng.uniform():.3f}\n")
        budget["csv"] -= p.stat().st_size
        files["csv"].append(p)
    while budget["json"] > 0:
        p = out / f"eval_{len(files['json'])}.json"
        count = max(10, min(40_000, budget["json"] // 10))
        p.write_text(json.dumps({"loss": rng.normal(1, 0.1, count).round(5).tolist(), "success_rate": 0.8}))
        budget["json"] -= p.stat().st_size
        files["json"].append(p)
    while budget["png"] > 0:
        p = out / f"plot_{len(files['png'])}.png"
        side = int(np.clip(np.sqrt(budget["png"] / 1.2), 160, 600))
        ok, buf = cv2.imencode(".png", _plot(rng, side, side * 4 // 3))
        p.write_bytes(buf.tobytes())
        budget["png"] -= p.stat().st_size
        files["png"].append(p)
    while budget["text"] > 0:
        p = out / f"stdout_{len(files['text'])}.log"
        with open(p, "w") as fh:
            for i in range(max(10, min(20_000, budget["text"] // 60))):
                fh.write(f"[train] epoch {i // 1000} step {i} loss {rng.uniform(0.1, 2):.4f} it/s 41.2\n")
        budget["text"] -= p.stat().st_size
        files["text"].append(p)
    return files


def _sha256_files(paths: list[Path]) -> None:
    for p in paths:
        hashlib.sha256(p.read_bytes()).digest()


def gate_throughput(release: Path | None = None, *, total_mb: float = 32.0, workdir: Path | None = None,
                    seed: int = 0, repeat: int = 2) -> dict[str, Any]:
    """Gate seconds per GB of outputs (``gate_s_per_gb``) beside SHA-256 of the same files
    (``hash_s_per_gb``), on the index of ``release`` (built here when None)."""
    from vault.gate import InputIndex, check

    tmp = Path(tempfile.mkdtemp(prefix="gate-bench-", dir=workdir))
    try:
        if release is None:
            from .load import build_release

            release = build_release(tmp / "release", episodes=4, seconds=4.0)
        t = time.perf_counter()
        index = InputIndex.build(release)
        build_s = time.perf_counter() - t
        by_type = write_outputs(tmp / "outputs", int(total_mb * 1e6), seed)
        paths = [p for ps in by_type.values() for p in ps]
        nbytes = sum(p.stat().st_size for p in paths)
        reports: list[Any] = []

        def gate() -> None:
            reports.append(check(paths, index))

        gate_s, hash_s = best_of([gate, lambda: _sha256_files(paths)], repeat)
        per_type = {}
        for kind, ps in by_type.items():
            b = sum(p.stat().st_size for p in ps)
            t = time.perf_counter()
            check(ps, index)
            took = time.perf_counter() - t
            per_type[kind] = {"mb": round(b / 1e6, 2), "s_per_gb": round(took / b * 1e9, 2)}
        report = reports[-1]
        return {
            "gate_s_per_gb": round(gate_s / nbytes * 1e9, 2),
            "hash_s_per_gb": round(hash_s / nbytes * 1e9, 3),
            "gate_vs_hash": round(gate_s / hash_s, 1),
            "by_type": per_type,
            "index_build_s": round(build_s, 3),
            "index_frames": index.frames,
            "index_windows": len(index.win_hash),
            "index_columns": index.columns,
            "output_mb": round(nbytes / 1e6, 2),
            "output_files": len(paths),
            "blocked_files": len(report.blocked),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    return gate_throughput(Path(args.release) if args.release else None, total_mb=args.mb,
                           workdir=Path(args.dir) if args.dir else None, seed=args.seed, repeat=args.repeat)
