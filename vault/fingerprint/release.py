"""A fingerprinted copy of a release: every camera frame carries one export's pattern, with
the export's keyed sign for its stream and row (:mod:`vault.fingerprint.mark`); everything
else is byte for byte the source's.

:func:`fingerprint_release` reads the source through ``read_file`` (plaintext bytes of a
release file, as :mod:`vault.subset` does) and returns only the files that change: each
camera stream's ``data/values`` and ``data/offsets`` (the frames re-encoded, so their
sizes change), the root ``zarr.json`` (attribute ``fingerprinted``, which names no
recipient) and ``manifest.json`` (the sha256 and size of every changed file and a new
``release_sha256``). The arrays keep their source metadata (codecs, chunks, shards); they
are written by the same sharded encoder as a derived release.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..subset import ReadFile, _Array
from .errors import FingerprintError
from .mark import AMPLITUDE, QUALITY, Code, FrameChange, embed_frame, frame_change

__all__ = ["FORMAT", "camera_streams", "fingerprint_release", "frames_of"]

FORMAT = "demofab.fingerprint/1"
_SAMPLE = 32  # frames per export whose change is measured (PSNR, SSIM)


def _json(read_file: ReadFile, path: str) -> dict[str, Any]:
    try:
        doc = json.loads(read_file(path))
    except FileNotFoundError:
        raise FingerprintError(f"release file {path} is missing") from None
    except ValueError as exc:
        raise FingerprintError(f"release file {path} is malformed: {exc}") from exc
    if not isinstance(doc, dict):
        raise FingerprintError(f"release file {path} is not a JSON object")
    return doc


def camera_streams(read_file: ReadFile) -> dict[str, str]:
    """The release's camera streams (a ragged ``data`` field with a ``camera`` attribute)
    and their frame format."""
    root = _json(read_file, "zarr.json")
    attrs = (root.get("attributes") or {}).get("demofab")
    if not isinstance(attrs, dict):
        raise FingerprintError("zarr.json: not a DemoFab release (no attributes.demofab)")
    out = {}
    for name in attrs.get("streams") or []:
        sattrs = _json(read_file, f"streams/{name}/zarr.json").get("attributes") or {}
        camera = sattrs.get("camera")
        if isinstance(camera, dict) and "data" in (sattrs.get("ragged") or []):
            out[str(name)] = str(camera.get("format") or "jpeg").lower()
    return out


def _arrays(read_file: ReadFile, stream: str) -> tuple[_Array, _Array]:
    base = f"streams/{stream}/data"
    return (_Array(f"{base}/values", _json(read_file, f"{base}/values/zarr.json"), read_file),
            _Array(f"{base}/offsets", _json(read_file, f"{base}/offsets/zarr.json"), read_file))


def frames_of(read_file: ReadFile, stream: str) -> list[bytes]:
    """The encoded frames of a camera stream, in row order."""
    values, offsets = _arrays(read_file, stream)
    off = offsets.rows(0, offsets.shape[0]).astype(np.int64)
    if len(off) == 0 or off[0] != 0 or np.any(np.diff(off) < 0) or off[-1] != values.shape[0]:
        raise FingerprintError(f"streams/{stream}/data/offsets: not 0..{values.shape[0]} "
                               f"non-decreasing")
    blob = values.rows(0, values.shape[0]).tobytes()
    return [blob[int(a):int(b)] for a, b in zip(off[:-1], off[1:], strict=True)]


def fingerprint_release(read_file: ReadFile, mark_code: Code, *,
                        amplitude: float = AMPLITUDE, quality: int = QUALITY,
                        workers: int | None = None,
                        progress: Callable[[str, int], None] | None = None,
                        ) -> tuple[dict[str, bytes], FrameChange, int]:
    """The files of the fingerprinted copy that differ from the source (``{path: bytes}``),
    the measured change of a sample of its frames, and the number of frames marked.
    ``read_file`` reads the source release (a stored release, or a derived one). Frames
    are re-encoded on ``workers`` threads (OpenCV releases the GIL)."""
    out: dict[str, bytes] = {}
    sample_before: list[bytes] = []
    sample_after: list[bytes] = []
    count = 0
    n_workers = workers or min(8, os.cpu_count() or 1)
    cams = camera_streams(read_file)
    with ThreadPoolExecutor(n_workers) as pool:
        for stream, fmt in cams.items():
            values, offsets = _arrays(read_file, stream)
            frames = frames_of(read_file, stream)
            signs = mark_code.signs([hashlib.sha256(f).digest() for f in frames])

            def mark(item: tuple[int, bytes], stream: str = stream, fmt: str = fmt,
                     signs: np.ndarray = signs) -> bytes:
                row, data = item
                return embed_frame(data, mark_code.grid, amplitude=amplitude * float(signs[row]),
                                   fmt=fmt, quality=quality, where=f"stream {stream} row {row}")

            marked = list(pool.map(mark, enumerate(frames)))
            sizes = np.array([len(m) for m in marked], np.int64)
            values.encode(np.frombuffer(b"".join(marked), np.uint8), out)
            offsets.encode(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), out)
            step = max(1, len(frames) * len(cams) // _SAMPLE)
            count += len(frames)
            sample_before += frames[::step]
            sample_after += marked[::step]
            if progress is not None:
                progress(stream, len(frames))
    if not cams:
        raise FingerprintError("the release has no camera stream: there is nothing to carry a "
                               "fingerprint (only camera frames are marked)")
    root = _json(read_file, "zarr.json")
    attrs = dict(root["attributes"]["demofab"], fingerprinted={
        "format": FORMAT, "streams": sorted(cams), "amplitude": amplitude, "quality": quality})
    root = dict(root, attributes=dict(root["attributes"], demofab=attrs))
    out["zarr.json"] = json.dumps(root, indent=2).encode()
    manifest_name = str(attrs.get("manifest") or "manifest.json")
    manifest = _json(read_file, manifest_name)
    stale = tuple(f"streams/{s}/data/{a}/c/" for s in cams for a in ("values", "offsets"))
    files = {k: v for k, v in (manifest.get("files") or {}).items() if not k.startswith(stale)}
    for path, data in out.items():
        files[path] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    lines = "".join(f"{v['sha256']}  {k}\n" for k, v in sorted(files.items()))
    manifest = dict(manifest, files=dict(sorted(files.items())),
                    release_sha256=hashlib.sha256(lines.encode()).hexdigest())
    out[manifest_name] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    return out, frame_change(sample_before, sample_after), count
