"""What an output file is, from its bytes (never from its name): the allowed kinds, and a
name for everything else so that the reviewer reads "a JPEG image", not "not allowed"."""

from __future__ import annotations

import json
import struct
from typing import Any

__all__ = ["PNG_SIGNATURE", "detect", "other_type"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG image"),
    (0, b"GIF87a", "GIF image"), (0, b"GIF89a", "GIF image"),
    (0, b"II*\x00", "TIFF image"), (0, b"MM\x00*", "TIFF image"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 image"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (0, b"qoif", "QOI image"), (0, b"\x76\x2f\x31\x01", "OpenEXR image"),
    (0, b"PK\x03\x04", "zip archive (also .npz, torch .pt, .docx)"),
    (0, b"PK\x05\x06", "zip archive (empty)"),
    (0, b"\x1f\x8b", "gzip data"), (0, b"\x28\xb5\x2f\xfd", "zstd data"), (0, b"BZh", "bzip2 data"),
    (0, b"\xfd7zXZ\x00", "xz data"), (0, b"7z\xbc\xaf\x27\x1c", "7-zip archive"),
    (0, b"\x04\x22\x4d\x18", "lz4 frame"), (0, b"Rar!\x1a\x07", "RAR archive"),
    (257, b"ustar", "tar archive"),
    (0, b"\x93NUMPY", "NumPy .npy array"), (0, b"\x89HDF\r\n\x1a\n", "HDF5 file"),
    (0, b"\x89MCAP", "MCAP recording"), (0, b"PAR1", "Parquet file"), (0, b"ARROW1", "Arrow IPC file"),
    (0, b"SQLite format 3\x00", "SQLite database"), (0, b"%PDF", "PDF document"),
    (0, b"\x7fELF", "ELF executable"), (0, b"\x00asm", "WebAssembly module"),
    (0, b"OggS", "Ogg media"), (0, b"fLaC", "FLAC audio"), (0, b"ID3", "MP3 audio"),
    (0, b"\x1aE\xdf\xa3", "Matroska/WebM video"), (0, b"\x08\x01\x12", "protobuf (ONNX?) data"),
    (0, b"\x80\x02", "Python pickle"), (0, b"\x80\x03", "Python pickle"), (0, b"\x80\x04", "Python pickle"),
    (0, b"\x80\x05", "Python pickle"),
)


def other_type(data: bytes) -> str | None:
    """The name of a known format that is not an allowed output, or None."""
    for offset, magic, name in _MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return name
    if data[:4] == b"RIFF" and len(data) >= 12:
        return {b"WEBP": "WebP image", b"WAVE": "WAV audio", b"AVI ": "AVI video"}.get(
            data[8:12], "RIFF container")
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return f"ISO media ({data[8:12].decode('latin-1').strip()}: MP4, HEIC or AVIF)"
    if data[:2] == b"BM" and len(data) >= 26 and struct.unpack("<I", data[2:6])[0] == len(data):
        return "BMP image"
    return None


def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def detect(data: bytes, name: str) -> tuple[str, str | None, Any]:
    """``(kind, text, doc)``: kind is ``png``, ``safetensors``, ``json``, ``csv``, ``text`` (with
    the decoded text for the last three) or the name of another format (not allowed). A text
    file is a CSV when named ``.csv``/``.tsv``, JSON when it parses as a JSON object or array
    (or is named ``.json``: then a parse error is reported), else text (a log); ``doc`` is
    the parsed JSON (None if it did not parse)."""
    if data.startswith(PNG_SIGNATURE):
        return "png", None, None
    other = other_type(data)
    if other is not None:
        return other, None, None
    if _is_safetensors(data):
        return "safetensors", None, None
    if b"\x00" in data:
        return "binary data of unknown type", None, None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"binary data of unknown type (not UTF-8 text at byte {exc.start})", None, None
    lower = name.lower()
    if lower.endswith((".csv", ".tsv")):
        return "csv", text, None
    doc: Any = None
    if text.lstrip()[:1] in ("{", "["):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            doc = None
        else:
            return "json", text, doc
    if lower.endswith(".json"):
        return "json", text, None
    return "text", text, None
