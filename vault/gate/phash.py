"""Perceptual fingerprints of images, and the rectangles of a plot where a frame may be.

A fingerprint is two things of a grayscale image squashed to a square (aspect ignored,
so a frame pasted at another scale or aspect keeps it): the 64-bit DCT hash (the signs of
the 8x8 lowest frequencies but the DC term against their median, as in pHash) and a 16x16
thumbnail. Two images match when their hashes differ in few bits and the thumbnails
correlate: the hash finds candidates among all frames in one vectorised pass, the
thumbnail correlation confirms.

:func:`candidate_regions` proposes the rectangles of an image that could hold a pasted
frame: the whole image, the connected blocks that differ from the background (after an
opening that removes lines, text and markers thinner than a few pixels), and the
connected blocks of dense texture (a photo over a coloured area); each once as found and
once trimmed of rows and columns that are background at its edges, and cut at its seams
(rows or columns that jump across its whole width: pictures laid edge to edge). A plot has a handful;
a photo pasted anywhere, at any scale down to ``min_side`` pixels, is one of them."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["INVERSE", "ORIENTATIONS", "candidate_regions", "fingerprint", "hamming", "oriented_hashes",
           "thumb_correlation", "to_gray", "unit"]

_HASH_SIZE = 32

def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 grayscale of a decoded image (gray, BGR, BGRA; 16-bit scaled down)."""
    img = image
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
        img = np.zeros(img.shape, np.uint8) if hi <= lo else \
            np.nan_to_num((img - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        else:
            img = img[:, :, 0]
    return np.ascontiguousarray(img)


#: the eight ways to lay a square picture down (flips, quarter turns, transposes), and
#: the inverse of each: a flipped or rotated frame (a training augmentation) still matches
ORIENTATIONS: tuple[Callable[[np.ndarray], np.ndarray], ...] = (
    lambda a: a, np.fliplr, np.flipud, lambda a: np.rot90(a, 2), lambda a: np.rot90(a, 1),
    lambda a: np.rot90(a, 3), lambda a: a.T, lambda a: np.rot90(a, 2).T)
INVERSE = (0, 1, 2, 3, 5, 4, 6, 7)


def _dct_hash(small: np.ndarray) -> int:
    coeffs = cv2.dct(np.ascontiguousarray(small))[:8, :8].ravel()
    low = coeffs[1:]
    bits = np.concatenate(([False], low > np.median(low)))
    return int(np.packbits(bits).view(">u8")[0])


def fingerprint(gray: np.ndarray, thumb: int = 16) -> tuple[int, np.ndarray]:
    """``(hash, thumbnail)``: the DCT hash and the ``thumb`` x ``thumb`` uint8 thumbnail."""
    small = cv2.resize(gray, (_HASH_SIZE, _HASH_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    th = cv2.resize(gray, (thumb, thumb), interpolation=cv2.INTER_AREA)
    return _dct_hash(small), th


def oriented_hashes(gray: np.ndarray) -> np.ndarray:
    """The DCT hash of ``gray`` laid down each of the :data:`ORIENTATIONS` ways (uint64 [8])."""
    small = cv2.resize(gray, (_HASH_SIZE, _HASH_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.asarray([_dct_hash(o(small)) for o in ORIENTATIONS], dtype=np.uint64)


def unit(thumbs: np.ndarray) -> np.ndarray:
    """Thumbnails (``[..., t, t]`` uint8) as zero-mean unit-norm float32 vectors."""
    x = thumbs.reshape(*thumbs.shape[:-2], -1).astype(np.float32)
    x -= x.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    out: np.ndarray = x / np.maximum(norm, 1e-6)
    return out


def hamming(hashes: np.ndarray, value: int) -> np.ndarray:
    """Bits differing between each of ``hashes`` (uint64) and ``value``."""
    out: np.ndarray = np.bitwise_count(hashes ^ np.uint64(value)).astype(np.int64)
    return out


def thumb_correlation(units: np.ndarray, thumb: np.ndarray) -> np.ndarray:
    """Correlation of one thumbnail with each of ``units`` (from :func:`unit`)."""
    out: np.ndarray = units @ unit(thumb)
    return out


def _boxes(mask: np.ndarray, min_side: int, min_fill: float) -> list[tuple[int, int, int, int]]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if w >= min_side and h >= min_side and area >= min_fill * w * h:
            out.append((x, y, w, h))
    return out


def _trim(diff: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Shrink ``box`` while its outer rows or columns are mostly background."""
    x, y, w, h = box
    sub = diff[y:y + h, x:x + w]
    rows = sub.mean(axis=1) > 0.5
    cols = sub.mean(axis=0) > 0.5
    if not rows.any() or not cols.any():
        return box
    r0, r1 = int(np.argmax(rows)), int(len(rows) - np.argmax(rows[::-1]))
    c0, c1 = int(np.argmax(cols)), int(len(cols) - np.argmax(cols[::-1]))
    return (x + c0, y + r0, c1 - c0, r1 - r0)


def _seams(profile: np.ndarray, min_side: int) -> list[int]:
    """Positions where a box's rows (or columns) jump across its whole width: the seams
    between pictures laid edge to edge."""
    if len(profile) < 2 * min_side:
        return []
    threshold = max(2.0 * float(np.median(profile)), 12.0)
    out: list[int] = []
    for i in np.argsort(-profile):
        if profile[i] < threshold or len(out) == 4:
            break
        if min_side <= i <= len(profile) - min_side and all(abs(int(i) - s) >= min_side for s in out):
            out.append(int(i))
    return sorted(out)


Box = tuple[int, int, int, int]  # x, y, w, h


def _cells(gray: np.ndarray, box: Box, min_side: int) -> list[Box]:
    """The tiles of ``box`` between its seams (a contact sheet of frames): each run of one
    or two intervals between seams, across and down (a seam inside a picture, such as a
    horizon, splits it in two intervals)."""
    x, y, w, h = box
    sub = gray[y:y + h, x:x + w].astype(np.int16)
    rows = _seams(np.abs(np.diff(sub, axis=0)).mean(axis=1), min_side)
    cols = _seams(np.abs(np.diff(sub, axis=1)).mean(axis=0), min_side)
    if not rows and not cols:
        return []
    def spans(cuts: list[int], size: int) -> list[tuple[int, int]]:
        edges = [0, *[c + 1 for c in cuts], size]
        return [(edges[i], edges[j]) for i in range(len(edges) - 1) for j in (i + 1, i + 2)
                if j < len(edges) and edges[j] - edges[i] >= min_side and (i, j) != (0, len(edges) - 1)]

    return [(x + x0, y + y0, x1 - x0, y1 - y0) for y0, y1 in spans(rows, h) or [(0, h)]
            for x0, x1 in spans(cols, w) or [(0, w)]]


def candidate_regions(gray: np.ndarray, *, min_side: int = 24, limit: int = 96,
                      ) -> list[tuple[int, int, int, int]]:
    """Rectangles ``(x, y, w, h)`` of ``gray`` that may hold a pasted frame, largest first,
    the whole image first of all."""
    h, w = gray.shape
    boxes: list[tuple[int, int, int, int]] = [(0, 0, w, h)]
    if min(h, w) < min_side:
        return boxes
    background = int(np.bincount(gray.ravel(), minlength=256).argmax())
    diff = np.abs(gray.astype(np.int16) - background) > 10
    k = max(3, min(9, min_side // 4)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    solid = cv2.morphologyEx(diff.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    solid = cv2.morphologyEx(solid, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
    found = _boxes(solid, min_side, 0.5)
    lap = np.abs(cv2.Laplacian(gray, cv2.CV_16S, ksize=3)) > 12
    density = cv2.boxFilter(lap.astype(np.float32), -1, (k * 2 + 1, k * 2 + 1))
    found += _boxes(density > 0.3, min_side, 0.5)
    tiles: list[tuple[int, int, int, int]] = []
    for box in found:
        boxes.append(box)
        trimmed = _trim(diff, box)
        if trimmed[2] >= min_side and trimmed[3] >= min_side:
            boxes.append(trimmed)
            tiles += _cells(gray, trimmed, min_side)
    unique: list[tuple[int, int, int, int]] = []
    for box in boxes:
        if box not in unique:
            unique.append(box)
    head, rest = unique[:1], sorted(unique[1:], key=lambda b: -b[2] * b[3])
    rest = rest[:limit // 2] + [t for t in tiles if t not in rest[:limit // 2]] + rest[limit // 2:]
    return (head + rest)[:limit]
