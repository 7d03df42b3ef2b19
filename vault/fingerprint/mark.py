"""The watermark: a keyed spread-spectrum pattern in the luma of camera frames, and the
correlation that finds it again.

**Pattern.** Each export has a code: ``HMAC-SHA256(fingerprint key, label)`` seeds a
generator that draws a grid ``w`` of ``GRID = 24 x 32`` independent ±1 values (rows x
columns). The grid is defined over the frame's normalised coordinates, so it means the
same thing at any resolution.

**Signs.** Each frame ``f`` gets a keyed sign ``e_f = ±1``, a bit of
``HMAC-SHA256(key, label || sha256(original frame bytes))``: the pattern averages to zero
over a stream, so no pixel of a copy is on average brighter or darker than the original
(a model trained on it sees no constant offset), and the sign is the same in any subset of
the release (it depends on the frame, not on its row).

**Embedding.** ``Y' = Y + e_f * a * U(w)``: ``U`` upsamples the grid to the frame (bicubic, so
the pattern is smooth: cells of 20 x 20 pixels at 640 x 480, nothing a JPEG quantiser or a
resize removes), ``a`` is the amplitude in 8-bit luma levels (``AMPLITUDE``, 1.5: PSNR
~45 dB and SSIM 0.998 with the re-encoding, ``demofab bench fingerprint``). The frame is
decoded, the pattern added to its luma (chroma untouched), clipped to 0..255 and
re-encoded in its own format (JPEG at ``QUALITY`` 90).

**Detection** of a suspect frame ``s`` (any size: it is brought to ``ANALYSIS`` = 96 x 128
luma by area averaging) yields a grid-shaped evidence ``t``:

* *informed*, when the frame matches an original frame of the release the candidates were
  exported from (:class:`Originals`: the best normalised correlation of 24 x 32
  thumbnails, of the originals as they are and centre-cropped by ``ZOOMS``, >= ``MATCH``):
  the suspect is registered to the original ``o`` (an affine map found by OpenCV's ECC
  from the matched zoom, so a centred crop or a small shift lines the pattern up again),
  then ``t = D(m * (s - (alpha o + beta)))``: the residual after the least-squares fit of
  ``o`` (so brightness and contrast changes cancel) over the pixels ``m`` the suspect
  covers, area-averaged onto the grid (``D``, the adjoint of ``U`` up to a constant);
* *blind* otherwise: ``t = D(s - G(s))``, the frame less its Gaussian blur (the scene's
  large structures). Much weaker: a static textured background is not averaged out.

Evidence of several frames adds up after each is scaled to unit norm and signed with the
candidate's sign of the original it matched: ``T = sum e_f t_f/|t_f|`` (a blind frame's
sign is unknown: +1, so blind evidence of many frames cancels). The score of a code is
``z = <w, T> / |T|``. For a code that was NOT embedded, ``T`` is independent of its ``w``
and ``<w, T>`` is a Rademacher sum with variance ``|T|^2``:
``z`` has mean 0 and variance 1 whatever the image, and Hoeffding's inequality bounds its
tail, ``P(z >= x) <= exp(-x^2 / 2)``, with no assumption on the content. The scores of
unused keyed patterns (the null) show the same distribution empirically. The embedded
pattern scores up to ``sqrt(768) = 27.7`` (``T`` proportional to ``w``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import FingerprintError

__all__ = ["AMPLITUDE", "ANALYSIS", "GRID", "MATCH", "QUALITY", "ZOOMS", "Code", "Evidence",
           "FrameChange", "Originals", "analysis", "code", "codes", "embed_frame", "evidence",
           "frame_change", "luma", "pattern", "scores"]

GRID = (24, 32)
"""Rows and columns of the pattern grid."""
ANALYSIS = (96, 128)
"""Rows and columns of the luma a suspect frame is compared at."""
AMPLITUDE = 1.5
"""The pattern's amplitude in 8-bit luma levels."""
QUALITY = 90
"""The JPEG quality of re-encoded frames."""
MATCH = 0.9
"""The thumbnail correlation at which a suspect frame is taken to be an original's copy."""
_BLUR_SIGMA = 2.0  # analysis pixels (half a grid cell): the blind detector's background
_LABEL = b"demofab-fingerprint/v1\0"


def pattern(key: bytes, label: str) -> np.ndarray:
    """The ±1 grid (float32, ``GRID``) of ``label`` under the fingerprint ``key``."""
    seed = hmac.new(key, _LABEL + label.encode(), hashlib.sha256).digest()
    rng = np.random.default_rng(int.from_bytes(seed, "big"))
    return (rng.integers(0, 2, GRID, dtype=np.int8) * 2 - 1).astype(np.float32)


@dataclass(frozen=True)
class Code:
    """One export's code: its grid, and the keyed ±1 sign of each frame, drawn from the
    SHA-256 of the original frame's bytes (so it is the same in any subset of the release,
    whatever the rows are renumbered to), so that the pattern averages to zero over the
    frames."""

    key: bytes
    label: str
    grid: np.ndarray

    def signs(self, digests: Sequence[bytes]) -> np.ndarray:
        """The signs (float32, ±1) of the frames whose SHA-256 digests are ``digests``."""
        head = _LABEL + f"{self.label}\0sign\0".encode()
        return np.array([1.0 if hmac.new(self.key, head + d, hashlib.sha256).digest()[0] & 1
                         else -1.0 for d in digests], np.float32)


def code(key: bytes, label: str) -> Code:
    """The :class:`Code` of ``label`` under ``key``."""
    return Code(key, label, pattern(key, label))


def codes(key: bytes, labels: Iterable[str]) -> list[Code]:
    """The codes of ``labels``."""
    return [code(key, label) for label in labels]


def _decode(data: bytes, flags: int, where: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise FingerprintError(f"{where}: the frame ({len(data)} bytes) does not decode as an "
                               f"image")
    return img


def embed_frame(data: bytes, grid: np.ndarray, *, amplitude: float = AMPLITUDE,
                fmt: str = "jpeg", quality: int = QUALITY, where: str = "frame") -> bytes:
    """The frame ``data`` (encoded, ``fmt`` jpeg or png) with ``grid`` added to its luma,
    re-encoded in the same format."""
    img = _decode(data, cv2.IMREAD_COLOR, where)
    h, w = img.shape[:2]
    ycc = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    ycc[..., 0] += amplitude * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    out = cv2.cvtColor(np.clip(np.rint(ycc), 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2BGR)
    if fmt == "jpeg":
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    elif fmt == "png":
        ok, enc = cv2.imencode(".png", out)
    else:
        raise FingerprintError(f"{where}: frames in format {fmt!r} cannot be fingerprinted "
                               f"(jpeg or png)")
    if not ok:
        raise FingerprintError(f"{where}: the fingerprinted frame could not be encoded")
    return enc.tobytes()


def luma(data: bytes, where: str = "frame") -> np.ndarray:
    """The luma (uint8, 2-D) of an encoded frame."""
    return _decode(data, cv2.IMREAD_GRAYSCALE, where)


def analysis(y: np.ndarray) -> np.ndarray:
    """A luma frame (any size, uint8 or float) as float32 ``ANALYSIS`` (area averaging)."""
    return cv2.resize(y.astype(np.float32), ANALYSIS[::-1], interpolation=cv2.INTER_AREA)


def _to_grid(a: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.resize(a, GRID[::-1], interpolation=cv2.INTER_AREA), np.float32)


def _thumbs(frames: np.ndarray) -> np.ndarray:
    """Zero-mean unit-norm grid thumbnails ``[n, 768]`` of analysis frames ``[n, *ANALYSIS]``."""
    t = np.stack([_to_grid(f).ravel() for f in frames]) if len(frames) else np.zeros((0, 768))
    t = t - t.mean(axis=1, keepdims=True)
    norm = np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
    return np.asarray(t / norm, np.float32)


ZOOMS = (1.0, 1.18, 1.43)
"""Centre zooms of the originals a suspect is also matched against (crops of about 0, 15
and 30 % of each side), and the starting points of its registration."""
_ECC = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5)


def _zoom(z: float) -> np.ndarray:
    """The affine map ``x -> c + (x - c) / z`` of analysis coordinates (c the centre): the
    original's point that a suspect cropped to ``1/z`` of each side shows at ``x``."""
    h, w = ANALYSIS
    cx, cy = (w - 1) / 2, (h - 1) / 2
    return np.array([[1 / z, 0, cx - cx / z], [0, 1 / z, cy - cy / z]], np.float32)


class Originals:
    """The original frames of a release at analysis size, to match suspects against (also
    centre-cropped by :data:`ZOOMS`)."""

    def __init__(self, frames: np.ndarray, digests: Sequence[bytes]) -> None:
        self.frames = frames.astype(np.float32).reshape(-1, *ANALYSIS)
        #: the SHA-256 of each original frame's bytes (what its sign is drawn from)
        self.digests = list(digests)
        banks = []
        for z in ZOOMS:
            m = _zoom(z)
            view = np.stack([cv2.warpAffine(f, m, ANALYSIS[::-1],
                                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
                             for f in self.frames]) if len(self.frames) else self.frames
            banks.append(_thumbs(view))
        self._thumbs = np.stack(banks)  # [zoom, n, 768]

    def __len__(self) -> int:
        return len(self.frames)

    def match(self, suspects: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each suspect analysis frame: the index of the best-matching original, the
        thumbnails' correlation (-1..1), and the zoom (index into :data:`ZOOMS`)."""
        n = len(suspects)
        if not len(self.frames) or not n:
            return np.full(n, -1, np.int64), np.full(n, -1.0), np.zeros(n, np.int64)
        sim = np.einsum("sd,znd->szn", _thumbs(suspects), self._thumbs).reshape(n, -1)
        flat = sim.argmax(axis=1)
        zoom, best = np.divmod(flat, len(self.frames))
        return best, sim[np.arange(n), flat], zoom


def _registered(s: np.ndarray, o: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    """``s`` brought into ``o``'s coordinates (an affine map ``W``, ``s(W x) ~ o(x)``, found
    by ECC from the matched zoom) and the mask of the pixels it covers."""
    start = _zoom(1 / ZOOMS[zoom])
    try:
        _, warp = cv2.findTransformECC(o, s, start.copy(), cv2.MOTION_AFFINE, _ECC,
                                       np.ones(o.shape, np.uint8), 5)
    except cv2.error:  # did not converge: keep the matched zoom
        warp = start
    size = ANALYSIS[::-1]
    inverse = cv2.WARP_INVERSE_MAP
    moved = cv2.warpAffine(s, warp, size, flags=cv2.INTER_LINEAR | inverse)
    mask = cv2.warpAffine(np.ones_like(s), warp, size, flags=cv2.INTER_NEAREST | inverse)
    return moved, cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0.5


@dataclass(frozen=True)
class Evidence:
    """The evidence of some frames: each contributing frame's grid-shaped residual scaled
    to unit norm (``units``, ``[m, 768]``), the digest of the original each informed one
    was matched to (None for a blind one), and how many were informed and blind."""

    units: np.ndarray
    ids: tuple[bytes | None, ...]
    informed: int
    blind: int

    @property
    def frames(self) -> int:
        """Frames that contributed."""
        return self.informed + self.blind


def evidence(suspects: np.ndarray, originals: Originals | None = None) -> Evidence:
    """The evidence of suspect analysis frames ``[n, *ANALYSIS]``: informed for those that
    match an original (:data:`MATCH`; registered to it first, so crops and small shifts
    line the pattern up again), blind for the others; when any is informed, only the
    informed ones count (a blind term only adds the scene's noise to them)."""
    suspects = suspects.astype(np.float32).reshape(-1, *ANALYSIS)
    matched = np.zeros(len(suspects), bool)
    best = zoom = np.zeros(len(suspects), np.int64)
    if originals is not None and len(originals):
        best, sim, zoom = originals.match(suspects)
        matched = sim >= MATCH
    terms: list[np.ndarray] = []
    ids: list[bytes | None] = []
    if matched.any() and originals is not None:
        for s, j, z in zip(suspects[matched], best[matched], zoom[matched], strict=True):
            o = originals.frames[j]
            moved, mask = _registered(s, o, int(z))
            if mask.sum() < mask.size // 4:
                continue
            design = np.stack([o[mask], np.ones(int(mask.sum()), np.float32)], axis=1)
            coef, *_ = np.linalg.lstsq(design, moved[mask], rcond=None)
            terms.append(_to_grid(np.where(mask, moved - (coef[0] * o + coef[1]), 0)
                                  .astype(np.float32)))
            ids.append(originals.digests[int(j)])
    else:
        for s in suspects:
            terms.append(_to_grid(s - cv2.GaussianBlur(s, (0, 0), _BLUR_SIGMA)))
            ids.append(None)
    keep = [i for i, t in enumerate(terms) if float(np.linalg.norm(t)) > 1e-6]
    units = (np.stack([terms[i].ravel() / np.linalg.norm(terms[i]) for i in keep])
             if keep else np.zeros((0, GRID[0] * GRID[1]), np.float32))
    informed = len(keep) if matched.any() else 0
    return Evidence(units.astype(np.float32), tuple(ids[i] for i in keep), informed,
                    0 if informed else len(keep))


def scores(ev: Evidence, candidates: Sequence[Code]) -> np.ndarray:
    """``z = <w, T> / |T|`` of each code, ``T = sum_f s_f t_f`` its signed evidence: each
    informed frame's residual times the code's sign for the matched original (a blind
    frame's sign is unknown: +1). Zeros where there is no evidence."""
    out = np.zeros(len(candidates))
    if not len(ev.units):
        return out
    known = [i for i, d in enumerate(ev.ids) if d is not None]
    for k, c in enumerate(candidates):
        signs = np.ones(len(ev.ids), np.float32)
        signs[known] = c.signs([d for d in ev.ids if d is not None])
        total = signs @ ev.units
        norm = float(np.linalg.norm(total))
        if norm > 1e-9:
            out[k] = float(c.grid.ravel() @ total) / norm
    return out


@dataclass(frozen=True)
class FrameChange:
    """What fingerprinting did to frames (luma, 8-bit levels): PSNR and SSIM of the
    fingerprinted frames against the originals, the largest change of one pixel, and the
    change of the mean and of the standard deviation of the luma."""

    frames: int
    psnr_db: float
    ssim: float
    max_abs: int
    mean_shift: float
    std_shift: float
    bytes_before: int
    bytes_after: int

    def as_dict(self) -> dict[str, float | int]:
        """JSON-able."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def g(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mu_a, mu_b = g(a), g(b)
    va, vb, cov = g(a * a) - mu_a ** 2, g(b * b) - mu_b ** 2, g(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(ssim.mean())


def frame_change(before: Sequence[bytes], after: Sequence[bytes]) -> FrameChange:
    """:class:`FrameChange` of encoded frames ``after`` against ``before`` (same order)."""
    sq, n_px, ssim, max_abs, d_mean, d_std = 0.0, 0, 0.0, 0, 0.0, 0.0
    for i, (x, y) in enumerate(zip(before, after, strict=True)):
        a = luma(x, f"frame {i}").astype(np.float32)
        b = luma(y, f"frame {i}").astype(np.float32)
        diff = b - a
        sq += float(np.square(diff).sum())
        n_px += diff.size
        max_abs = max(max_abs, int(np.abs(diff).max()))
        ssim += _ssim(a, b)
        d_mean += float(b.mean() - a.mean())
        d_std += float(b.std() - a.std())
    n = max(len(before), 1)
    mse = sq / max(n_px, 1)
    return FrameChange(len(before), float(10 * np.log10(255 ** 2 / mse)) if mse else float("inf"),
                       ssim / n, max_abs, d_mean / n, d_std / n, sum(map(len, before)),
                       sum(map(len, after)))
