"""Suspect copies as luma frames: release directories (a whole copy or a few of its
files), loose images (JPEG, PNG, ...), videos, and directories of any of them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import FingerprintError
from .mark import ANALYSIS, analysis, luma
from .release import camera_streams, frames_of

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "Suspect", "content_sha256", "read_suspects"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm"})
_VIDEO_FRAMES = 2000  # frames read from one video at most


@dataclass
class Suspect:
    """Suspect frames at analysis size ``[n, *ANALYSIS]``, what they came from, and the
    ``release_sha256`` of every release manifest among the inputs."""

    frames: np.ndarray
    inputs: list[str] = field(default_factory=list)
    release_sha256s: set[str] = field(default_factory=set)


def _release_frames(base: Path) -> list[tuple[str, bytes]]:
    def read(rel: str) -> bytes:
        p = base / rel
        if not p.is_file():
            raise FileNotFoundError(rel)
        return p.read_bytes()

    return [(f"{base}:{c}:{i}", f) for c in camera_streams(read)
            for i, f in enumerate(frames_of(read, c))]


def content_sha256(base: Path) -> str:
    """The ``release_sha256`` of the files under ``base`` as they are (sha256 of the lines
    ``"<sha256>  <path>"`` of every file but ``manifest.json``, sorted by path): equal to an
    export's only when every file is byte-identical to it. The manifest's own claim is
    not trusted (a subset or an edited copy may carry it unchanged)."""
    lines = []
    for p in sorted(base.rglob("*")):
        rel = p.relative_to(base).as_posix()
        if p.is_file() and rel != "manifest.json":
            digest = hashlib.sha256()
            with open(p, "rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
            lines.append((rel, f"{digest.hexdigest()}  {rel}\n"))
    return hashlib.sha256("".join(line for _, line in sorted(lines)).encode()).hexdigest()


def _video_frames(path: Path, limit: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise FingerprintError(f"{path}: not a video this build of OpenCV can read")
        frames: list[np.ndarray] = []
        while len(frames) < limit:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    finally:
        cap.release()
    if not frames:
        raise FingerprintError(f"{path}: the video has no frame that decodes")
    return frames


def read_suspects(paths: Sequence[str | Path], *, max_frames: int = 256) -> Suspect:
    """The frames of ``paths`` (at most ``max_frames``, spread evenly over them all).
    A directory holding ``zarr.json`` is read as a release (its camera streams); another
    directory is walked for images and videos. FingerprintError naming the path when
    one is missing, unreadable, or yields no frame."""
    if not paths:
        raise FingerprintError("no suspect file given")
    encoded: list[tuple[str, bytes]] = []
    decoded: list[np.ndarray] = []
    out = Suspect(np.zeros((0, *ANALYSIS), np.float32))

    def add(path: Path, top: bool) -> None:
        if path.is_dir():
            if (path / "zarr.json").is_file():
                try:
                    encoded.extend(_release_frames(path))
                except (FingerprintError, OSError, ValueError) as exc:
                    raise FingerprintError(f"{path}: a release directory whose camera frames "
                                           f"cannot be read: {exc}") from exc
                out.release_sha256s.add(content_sha256(path))
                return
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                    add(child, False)
            return
        if not path.is_file():
            raise FingerprintError(f"{path}: no such file or directory")
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            decoded.extend(_video_frames(path, _VIDEO_FRAMES))
        elif suffix in IMAGE_SUFFIXES or top:
            encoded.append((str(path), path.read_bytes()))

    for p in paths:
        add(Path(p), True)
        out.inputs.append(str(p))
    n = len(encoded) + len(decoded)
    if n == 0:
        raise FingerprintError(f"{', '.join(map(str, paths))}: no camera frame, image or video "
                               f"frame found")
    keep = set(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int).tolist())
    frames = [analysis(luma(data, where)) for i, (where, data) in enumerate(encoded) if i in keep]
    frames += [analysis(y) for i, y in enumerate(decoded, start=len(encoded)) if i in keep]
    out.frames = np.stack(frames).astype(np.float32)
    return out
