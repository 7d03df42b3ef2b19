"""Timing rules shared by the benchmarks."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def best_of(fns: list[Callable[[], None]], repeat: int) -> list[float]:
    """Best time of each function over ``repeat`` rounds, the functions taking turns in
    each round so that a busy machine slows both sides alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            gc.collect()
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


__all__ = ["best_of"]
