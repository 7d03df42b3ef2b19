"""Measurements of what fingerprinting changes and of how well it identifies, on a real
release and its fingerprinted copies (``demofab bench fingerprint`` reports them).

* :func:`pixel_statistics`: the luma distribution of every frame (mean, standard
  deviation, quantiles) of the source and of the copy;
* :func:`learning_check`: a tiny policy-like model, ridge regression from downscaled
  frames (16 x 12 luma) to the joint positions synced to each frame, trained on the
  source and on the copy and both tested on held-out episodes of the SOURCE (leave one
  episode out): if the pattern changed what a model learns, the copy-trained model would
  do worse on real frames;
* :func:`attack_matrix`: the score of the recipient's pattern and the best score of the
  other recipients' after each attack (JPEG, resizing, crops, brightness, averaging of
  several copies, a few frames), from the same informed detector as identification.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from ..subset import ReadFile, _Array
from .mark import Code, Originals, analysis, evidence, luma, scores
from .release import camera_streams, frames_of

__all__ = ["ATTACKS", "attack_matrix", "learning_check", "originals_of", "pixel_statistics"]

_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)

Image = np.ndarray
Attack = Callable[[Image], Image]


def _jpeg(q: int) -> Attack:
    def run(img: Image) -> Image:
        return np.asarray(cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1],
                                       cv2.IMREAD_GRAYSCALE))
    return run


def _crop(f: float) -> Attack:
    def run(img: Image) -> Image:
        h, w = img.shape[:2]
        dy, dx = int(h * f / 2), int(w * f / 2)
        return img[dy:h - dy, dx:w - dx]
    return run


ATTACKS: dict[str, Attack] = {
    "none": lambda img: img,
    "jpeg_75": _jpeg(75),
    "jpeg_50": _jpeg(50),
    "jpeg_30": _jpeg(30),
    "half_size": lambda img: np.asarray(cv2.resize(img, None, fx=0.5, fy=0.5,
                                                   interpolation=cv2.INTER_AREA)),
    "224x224_jpeg_75": lambda img: _jpeg(75)(np.asarray(cv2.resize(img, (224, 224),
                                                                   interpolation=cv2.INTER_AREA))),
    "64x48": lambda img: np.asarray(cv2.resize(img, (64, 48), interpolation=cv2.INTER_AREA)),
    "brightness_contrast": lambda img: np.clip(img.astype(np.float32) * 1.2 + 15, 0, 255
                                               ).astype(np.uint8),
    "blur_sigma_2": lambda img: np.asarray(cv2.GaussianBlur(img, (0, 0), 2.0)),
    "crop_2pct": _crop(0.02),
    "crop_10pct": _crop(0.10),
    "crop_25pct": _crop(0.25),
    "crop_off_centre": lambda img: img[img.shape[0] // 16:, img.shape[1] // 12:],
}
"""Attacks on a luma frame (uint8, 2-D)."""


def _frames(read: ReadFile) -> list[bytes]:
    return [f for c in camera_streams(read) for f in frames_of(read, c)]


def pixel_statistics(read_source: ReadFile, read_copy: ReadFile) -> dict[str, Any]:
    """Luma mean, standard deviation and quantiles over every pixel of every frame, of the
    source and of the copy, and the largest absolute difference of the quantiles."""
    out: dict[str, Any] = {}
    for name, read in (("source", read_source), ("copy", read_copy)):
        ys = np.concatenate([luma(f).ravel() for f in _frames(read)]).astype(np.float32)
        out[name] = {"mean": float(ys.mean()), "std": float(ys.std()),
                     "q": [float(x) for x in np.quantile(ys, _QUANTILES)]}
    out["max_quantile_shift"] = max(abs(a - b) for a, b in zip(out["source"]["q"],
                                                                out["copy"]["q"], strict=True))
    return out


def _dataset(read: ReadFile, camera: str, target: str, field: str
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (16x12 luma / 255), targets (the synced row's ``field``) and the episode
    of each frame of ``camera``."""
    import json

    def arr(path: str) -> np.ndarray:
        a = _Array(path, json.loads(read(f"{path}/zarr.json")), read)
        return a.rows(0, a.shape[0])

    sync = arr(f"sync/{camera}__to__{target}").astype(np.int64)
    y_all = arr(f"streams/{target}/{field}").astype(np.float64)
    bounds = arr(f"streams/{camera}/episode_bounds")
    frames = frames_of(read, camera)
    ok = sync >= 0
    x = np.stack([cv2.resize(luma(f), (16, 12), interpolation=cv2.INTER_AREA).ravel() / 255.0
                  for f in frames]).astype(np.float64)
    episode = np.searchsorted(bounds[:, 1], np.arange(len(frames)), side="right")
    return x[ok], np.nan_to_num(y_all[sync[ok]]), episode[ok]


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
    w = np.linalg.solve(xs.T @ xs + lam * np.eye(xs.shape[1]), xs.T @ (y - y.mean(0)))
    return w, mu, sd


def learning_check(read_source: ReadFile, read_copy: ReadFile, *, target: str = "joint_states",
                   field: str = "position", lam: float = 10.0) -> dict[str, Any]:
    """Leave-one-episode-out test MSE (joint positions, rad^2) of ridge models trained on
    the source's frames and on the copy's, both tested on the source; with the spread of
    the folds as the noise to compare the difference with."""
    source_loss: list[float] = []
    copy_loss: list[float] = []
    for camera in sorted(camera_streams(read_source)):
        xs, ys, ep = _dataset(read_source, camera, target, field)
        xc, yc, _ = _dataset(read_copy, camera, target, field)
        for e in np.unique(ep):
            train, test = ep != e, ep == e
            if train.sum() < 4 or not test.any():
                continue
            for x_train, y_train, losses in ((xs, ys, source_loss), (xc, yc, copy_loss)):
                w, mu, sd = _ridge(x_train[train], y_train[train], lam)
                pred = ((xs[test] - mu) / sd) @ w + y_train[train].mean(0)
                losses.append(float(np.mean((pred - ys[test]) ** 2)))
    a, b = np.array(source_loss), np.array(copy_loss)
    return {"folds": len(a), "loss_trained_on_source": float(a.mean()),
            "loss_trained_on_copy": float(b.mean()), "loss_difference": float((b - a).mean()),
            "fold_std": float(a.std()), "difference_std": float((b - a).std()),
            "relative_difference": float((b - a).mean() / a.mean())}


def originals_of(read: ReadFile) -> Originals:
    """The camera frames of a release as :class:`Originals`."""
    frames = _frames(read)
    return Originals(np.stack([analysis(luma(f)) for f in frames]),
                     [hashlib.sha256(f).digest() for f in frames])


def attack_matrix(read_source: ReadFile, copies: Sequence[ReadFile], grids: Sequence[Code], *,
                  attacks: dict[str, Attack] | None = None, frames: int = 64,
                  averaged: Sequence[int] = (2, 4, 8)) -> dict[str, Any]:
    """For each attack: ``z`` of copy 0's pattern from ``frames`` attacked frames of copy
    0, ``z_1`` from one frame only, and the best ``z`` of the other copies' patterns (the
    false candidates). ``averaged``: the pixel average of the first k copies, the score of
    each of the k patterns (its minimum) and of the others."""
    originals = originals_of(read_source)
    copy_frames = [_frames(r) for r in copies]
    pick = np.linspace(0, len(copy_frames[0]) - 1, min(frames, len(copy_frames[0]))).astype(int)
    out: dict[str, Any] = {}
    for name, attack in (attacks or ATTACKS).items():
        suspects = np.stack([analysis(attack(luma(copy_frames[0][i]))) for i in pick])
        z = scores(evidence(suspects, originals), grids)
        z1 = scores(evidence(suspects[:1], originals), grids)
        out[name] = {"z": round(float(z[0]), 2), "z_1_frame": round(float(z1[0]), 2),
                     "z_other_max": round(float(np.max(z[1:])), 2),
                     "informed": evidence(suspects, originals).informed}
    for k in averaged:
        if k > len(copies):
            continue
        mean = [np.mean([luma(copy_frames[j][i]).astype(np.float32) for j in range(k)], axis=0)
                for i in pick]
        suspects = np.stack([analysis(_jpeg(90)(np.rint(m).astype(np.uint8))) for m in mean])
        z = scores(evidence(suspects, originals), grids)
        out[f"average_of_{k}_copies"] = {"z_min_of_colluders": round(float(z[:k].min()), 2),
                                         "z_other_max": round(float(z[k:].max()), 2)
                                         if k < len(grids) else None}
    return out
