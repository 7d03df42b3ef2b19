"""Per-feature statistics over a whole release, with exact quantiles."""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def quantiles(flat: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """``np.quantile(flat, qs, axis=0)`` (linear method, no NaN), computed on the
    transposed copy so that each column is partitioned in contiguous memory, once for
    all quantiles: about 1.5x faster than numpy's strided partition per quantile."""
    n = len(flat)
    pos = np.asarray(qs, dtype=np.float64) * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    cols = np.partition(np.ascontiguousarray(flat.T), np.unique(np.concatenate([lo, hi])),
                        axis=1)
    t = np.broadcast_to((pos - lo)[:, None], (len(qs), flat.shape[1]))
    a, b = cols[:, lo].T, cols[:, hi].T
    d = b - a  # numpy's _lerp, so the values are numpy's to the last bit
    out = a + d * t
    np.subtract(b, d * (1 - t), out=out, where=t >= 0.5)
    return out


def describe(arr: np.ndarray) -> dict[str, Any] | None:
    """Statistics per element of the trailing shape over all rows (NaN left out)."""
    a = np.asarray(arr)
    if a.dtype.kind not in "iuf" or a.ndim == 0:
        return None
    shape = list(a.shape[1:])
    flat = a.reshape(len(a), -1).astype(np.float64, copy=False)
    n = len(flat)
    nan = np.isnan(flat) if a.dtype.kind == "f" else None
    has_nan = nan is not None and bool(nan.any())
    count = (n - nan.sum(axis=0)) if nan is not None and has_nan else np.full(flat.shape[1], n)
    out: dict[str, Any] = {"dtype": a.dtype.name, "shape": shape,
                           "count": count.reshape(shape).tolist()}
    if n == 0 or flat.shape[1] == 0:
        return out | {"mean": None, "std": None, "min": None, "max": None, "q": {}}
    with np.errstate(all="ignore"):
        if has_nan:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(flat, axis=0), np.nanstd(flat, axis=0)
                lo, hi = np.nanmin(flat, axis=0), np.nanmax(flat, axis=0)
                qs = np.nanquantile(flat, QUANTILES, axis=0)
        else:
            mean, std = flat.mean(axis=0), flat.std(axis=0)
            lo, hi = flat.min(axis=0), flat.max(axis=0)
            qs = quantiles(flat, QUANTILES)

    def lst(x: np.ndarray) -> Any:
        return np.where(np.isfinite(x), x, np.nan).reshape(shape).tolist()

    out.update(mean=lst(mean), std=lst(std), min=lst(lo), max=lst(hi),
               q={str(q): lst(qs[i]) for i, q in enumerate(QUANTILES)})
    return out
