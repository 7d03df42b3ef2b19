"""Fingerprinted exports: frame change, what a model learns, robustness, cost.

A release is curated in the run from synthetic-rig episodes (three cameras at 640x480,
``--episodes`` x ``--seconds``); ``--copies`` fingerprinted copies are made with a random
key (one pattern each). Reported:

* ``fingerprint_s_per_frame`` beside ``reencode_s_per_frame``, the same frames decoded and
  re-encoded at the same quality without a pattern (the reference), and their ratio;
* ``frame_change``: PSNR, SSIM, largest per-pixel change, mean and std shift of the luma,
  and ``size_ratio`` (copy frame bytes / source frame bytes);
* ``pixel_statistics``: the luma distribution of source and copy;
* ``learning``: leave-one-episode-out loss of a ridge model (frames -> joint positions)
  trained on the source and on the copy, both tested on the source, with the folds' spread;
  ``learning_reencoded_only``: the same for a copy re-encoded at the same quality with no
  pattern (the reference: what re-encoding alone changes);
* ``attacks``: the recipient's ``z`` and the best false candidate's after each attack, and
  for the pixel average of several copies; ``unmarked_z_max``: the best score any pattern
  gets on the unmarked source after any attack (what a false positive would need).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# the vault's modules are imported by the run: `demofab bench` lists this benchmark
# without the vault extra installed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per episode")
    p.add_argument("--copies", type=int, default=5, help="fingerprinted copies (recipients)")
    p.add_argument("--frames", type=int, default=64, help="suspect frames per attack")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from vault.fingerprint.mark import (
        QUALITY,
        analysis,
        codes,
        embed_frame,
        evidence,
        frame_change,
        luma,
        scores,
    )
    from vault.fingerprint.measure import (
        ATTACKS,
        attack_matrix,
        learning_check,
        originals_of,
        pixel_statistics,
    )
    from vault.fingerprint.release import camera_streams, fingerprint_release, frames_of

    from .vault_http import _release

    with tempfile.TemporaryDirectory(prefix="demofab-bench-fp-") as tmp:
        release = _release(Path(tmp), args.episodes, args.seconds)

        def read_source(rel: str) -> bytes:
            if not (release / rel).is_file():
                raise FileNotFoundError(rel)
            return (release / rel).read_bytes()

        key = os.urandom(32)
        grids = codes(key, (f"bench/{i}" for i in range(args.copies)))
        frames = [f for c in camera_streams(read_source) for f in frames_of(read_source, c)]
        t0 = time.perf_counter()
        copies = [fingerprint_release(read_source, g)[0] for g in grids[:1]]
        t_mark = time.perf_counter() - t0
        copies += [fingerprint_release(read_source, g)[0] for g in grids[1:]]
        plain = fingerprint_release(read_source, grids[0], amplitude=0.0)[0]  # re-encoded only
        flat = grids[0].grid
        t0 = time.perf_counter()
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # as fingerprint_release
            list(pool.map(lambda f: embed_frame(f, flat, amplitude=0.0, quality=QUALITY), frames))
        t_reencode = time.perf_counter() - t0

        def reader(files: dict[str, bytes]) -> Any:
            return lambda rel: files[rel] if rel in files else read_source(rel)

        reads = [reader(c) for c in copies]
        marked = [f for c in camera_streams(reads[0]) for f in frames_of(reads[0], c)]
        change = frame_change(frames, marked).as_dict()
        change["size_ratio"] = round(change["bytes_after"] / change["bytes_before"], 3)
        originals = originals_of(read_source)
        pick = np.linspace(0, len(frames) - 1, min(args.frames, len(frames))).astype(int)
        unmarked = 0.0
        for attack in ATTACKS.values():
            sus = np.stack([analysis(attack(luma(frames[i]))) for i in pick])
            unmarked = max(unmarked, float(np.abs(scores(evidence(sus, originals), grids)).max()))
        return {
            "frames": len(frames), "copies": args.copies,
            "fingerprint_s_per_frame": round(t_mark / len(frames), 5),
            "reencode_s_per_frame": round(t_reencode / len(frames), 5),
            "fingerprint_vs_reencode": round(t_mark / t_reencode, 2),
            "frame_change": {k: round(v, 4) if isinstance(v, float) else v
                             for k, v in change.items()},
            "pixel_statistics": pixel_statistics(read_source, reads[0]),
            "learning": learning_check(read_source, reads[0]),
            "learning_reencoded_only": learning_check(read_source, reader(plain)),
            "attacks": attack_matrix(read_source, reads, grids, frames=args.frames,
                                     averaged=[k for k in (2, 4) if k < args.copies]),
            "unmarked_z_max": round(unmarked, 2),
        }
