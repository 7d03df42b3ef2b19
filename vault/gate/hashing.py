"""The hashes the gate matches outputs against inputs with, all numpy-vectorised.

**Byte blocks.** The hash of ``B`` bytes ``b[0..B)`` is ``sum T[b[j]] * P**j`` modulo
2**64, ``T`` a fixed table of random 64-bit words and ``P`` odd. Because ``P`` is odd it
has an inverse modulo 2**64, so the hash of the window at every offset ``i`` of a buffer is
``(C[i + B] - C[i]) * P**-i`` with ``C`` the running sum of ``T[b[m]] * P**m``: a few
passes over the buffer whatever ``B`` is (:func:`window_hashes`), exactly equal to the hash
of the same bytes taken alone (:func:`block_hashes`).

**Numbers.** A value is rounded to ``digits`` significant digits and coded as one int64
(:func:`quantise`); a window of ``k`` consecutive codes hashes to ``sum mix(code[i + j]) *
Q[j]`` (:func:`sequence_hashes`). :func:`informative` says which windows carry information
(enough distinct values, not evenly stepped).

**Sets.** :class:`HashSet` holds sorted hashes with a bitmap in front, so that looking up
millions of hashes that are mostly absent costs one gather each."""

from __future__ import annotations

import numpy as np

__all__ = ["HashSet", "block_hashes", "informative", "mix64", "quantise", "sequence_hashes",
           "window_hashes"]

_P = np.uint64(0x9E3779B97F4A7C15 | 1)
_P_INV = np.uint64(pow(int(_P), -1, 1 << 64))
_TABLE = np.random.default_rng(0x6A7E).integers(0, 2**63, size=256, dtype=np.uint64) * np.uint64(2) + 1
_Q = np.random.default_rng(0x51DE).integers(0, 2**63, size=64, dtype=np.uint64) * np.uint64(2) + 1
SEGMENT = 1 << 22  # bytes hashed per pass of window_hashes

_POWERS: list[np.ndarray] = []


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``P**m`` and ``P**-m`` for ``m < n`` at least (uint64, wrapping); grown, never shrunk."""
    if not _POWERS or len(_POWERS[0]) < n:
        n = max(n, SEGMENT + 4096)
        with np.errstate(over="ignore"):
            pw = np.full(n, _P, dtype=np.uint64)
            pw[0] = 1
            np.multiply.accumulate(pw, out=pw)
            ipw = np.full(n, _P_INV, dtype=np.uint64)
            ipw[0] = 1
            np.multiply.accumulate(ipw, out=ipw)
        _POWERS[:] = [pw, ipw]
    return _POWERS[0], _POWERS[1]


def block_hashes(data: np.ndarray, starts: np.ndarray, block: int) -> np.ndarray:
    """The hash of ``data[s:s + block]`` for each ``s`` of ``starts`` (uint8 data)."""
    pw, _ = _powers(block + 1)
    out = np.empty(len(starts), dtype=np.uint64)
    step = max(1, (1 << 21) // block)
    cols = np.arange(block, dtype=np.int64)
    for i in range(0, len(starts), step):
        s = starts[i:i + step].astype(np.int64)
        vals = _TABLE[data[s[:, None] + cols[None, :]]]
        with np.errstate(over="ignore"):
            vals *= pw[None, :block]
            out[i:i + step] = vals.sum(axis=1, dtype=np.uint64)
    return out


def window_hashes(data: np.ndarray, block: int) -> np.ndarray:
    """The hash of the ``block`` bytes at every offset of ``data`` (uint8), one per offset
    ``0 .. len - block``. Memory is about 40 bytes per byte of ``data``: callers pass
    segments (:data:`SEGMENT`)."""
    n = len(data) - block + 1
    if n <= 0:
        return np.empty(0, dtype=np.uint64)
    pw, ipw = _powers(len(data) + 1)
    with np.errstate(over="ignore"):
        c = np.empty(len(data) + 1, dtype=np.uint64)
        c[0] = 0
        np.cumsum(_TABLE[data] * pw[:len(data)], out=c[1:])
        h = c[block:] - c[:n]
        h *= ipw[:n]
    return h


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over an int64/uint64 array (a bijection that spreads bits)."""
    z = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


_NAN_CODE = np.int64(-(1 << 62))
_POSINF_CODE = np.int64(1 << 62)
_NEGINF_CODE = np.int64(-(1 << 62) + 1)


with np.errstate(over="ignore"):
    _TEN = 10.0 ** np.arange(-340, 340, dtype=np.float64)  # _TEN[e + 340] == 10**e (inf above 1e308)
_LOG10_2 = float(np.log10(2.0))


def quantise(values: np.ndarray, digits: int, zero_below: float) -> np.ndarray:
    """Each value rounded to ``digits`` significant digits, as one int64 code
    (mantissa * 2048 + decimal exponent); values smaller than ``zero_below`` in magnitude
    are 0. The same number printed with more digits, or cast to float32, gets the same
    code (but at a rounding boundary)."""
    with np.errstate(invalid="ignore", over="ignore"):
        v = np.asarray(values, dtype=np.float64).ravel()
    a = np.abs(v)
    with np.errstate(invalid="ignore"):
        live = a >= max(zero_below, 1e-300)  # False for NaN
    live &= a < np.inf
    everything = bool(live.all())
    x = v if everything else v[live]
    ax = a if everything else a[live]
    _, e2 = np.frexp(ax)
    e = np.floor((e2 - 1) * _LOG10_2).astype(np.int64)  # floor(log10|x|), or one less
    e += ax >= _TEN[e + 341]
    m = np.rint(x * _TEN[digits - 1 - e + 340])
    over = np.abs(m) >= _TEN[digits + 340]  # 9.996 -> 1000 at 3 digits: 100e+1
    if over.any():
        e[over] += 1
        m[over] = np.rint(x[over] * _TEN[digits - 1 - e[over] + 340])
    coded = m.astype(np.int64) * 2048 + (e + 1024)
    if everything:
        return coded
    codes = np.zeros(v.shape, dtype=np.int64)
    codes[live] = coded
    if len(x) != len(v):
        codes[np.isnan(v)] = _NAN_CODE
        codes[np.isposinf(v)] = _POSINF_CODE
        codes[np.isneginf(v)] = _NEGINF_CODE
    return codes


def _scaled(codes: np.ndarray) -> np.ndarray:
    """The rounded values that :func:`quantise` coded, times ``10**(digits - 1)`` (NaN for
    NaN and infinities): proportional to the values, which is all a step test needs."""
    m = codes // 2048
    e = codes - m * 2048 - 1024
    values: np.ndarray = m * np.power(10.0, np.clip(e, -330, 330).astype(np.float64))
    values[(codes == _NAN_CODE) | (codes == _POSINF_CODE) | (codes == _NEGINF_CODE)] = np.nan
    values[codes == 0] = 0.0
    return values


def sequence_hashes(codes: np.ndarray, k: int) -> np.ndarray:
    """The hash of the ``k`` codes at every offset of ``codes`` (``len - k + 1`` of them)."""
    n = len(codes) - k + 1
    if n <= 0:
        return np.empty(0, dtype=np.uint64)
    mixed = mix64(codes)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h += mixed[j:j + n] * _Q[j]
    return h  # the codes were mixed: the weighted sum's top bits are spread already


def informative(codes: np.ndarray, k: int, min_distinct: int) -> np.ndarray:
    """For each window of ``k`` codes: True when it holds at least ``min_distinct``
    distinct values and its steps are not all equal (a constant, a value dithering between
    two or three levels, a counter, a steady ramp say nothing about the data)."""
    n = len(codes) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=bool)
    srt = np.sort(np.lib.stride_tricks.sliding_window_view(codes, k), axis=1)
    distinct: np.ndarray = 1 + np.count_nonzero(srt[:, 1:] != srt[:, :-1], axis=1)
    steps = np.diff(_scaled(codes))
    with np.errstate(invalid="ignore"):
        differs = ~np.isclose(steps[1:], steps[:-1], rtol=1e-6, atol=0.0)
    other = np.concatenate(([0, 0], np.cumsum(differs)))
    n_other = other[k - 1:] - other[1:n + 1]  # step changes inside each window
    keep: np.ndarray = (distinct >= min_distinct) & (n_other > 0)
    return keep


class HashSet:
    """Sorted uint64 hashes (with a payload row per hash) and a table of their top bits
    (one byte each, at least 8 entries per hash and at most 64 MiB), so a lookup of a hash
    that is not there is mostly one gather."""

    def __init__(self, hashes: np.ndarray) -> None:
        order = np.argsort(hashes, kind="stable")
        self.order = order.astype(np.int64)       # position in the caller's arrays
        self.sorted = np.ascontiguousarray(hashes[order], dtype=np.uint64)
        bits = 16
        while (1 << bits) < 8 * max(1, len(hashes)) and bits < 26:
            bits += 1
        self._shift = np.uint64(64 - bits)
        self._table = np.zeros(1 << bits, dtype=bool)
        self._table[(self.sorted >> self._shift).view(np.int64)] = True

    def __len__(self) -> int:
        return len(self.sorted)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(where, rows)``: positions in ``hashes`` found in the set, and for each the
        caller's row of the first equal hash in the set."""
        if len(self.sorted) == 0 or len(hashes) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        maybe = np.flatnonzero(self._table[(hashes >> self._shift).view(np.int64)])
        if len(maybe) == 0:
            return maybe.astype(np.int64), np.empty(0, dtype=np.int64)
        cand = hashes[maybe]
        pos = np.searchsorted(self.sorted, cand)
        pos_c = np.minimum(pos, len(self.sorted) - 1)
        hit = self.sorted[pos_c] == cand
        return maybe[hit].astype(np.int64), self.order[pos_c[hit]]
