"""PNG plots: the chunk structure walked and checked before a pixel is decoded.

Allowed: the critical chunks (``IHDR``, ``PLTE``, one run of ``IDAT``, ``IEND``) and the
ancillary chunks of colour and metadata (``tRNS``, ``gAMA``, ``cHRM``, ``sRGB``, ``iCCP``
up to a cap, ``sBIT``, ``bKGD``, ``pHYs``, ``tIME``), and text chunks (``tEXt``, ``zTXt``,
``iTXt``) with a known keyword and a few hundred bytes of text. Blocked: APNG's ``acTL``,
``fcTL`` and ``fdAT`` (frames a viewer may never show), every other chunk, bad CRCs, bytes
after ``IEND``, compressed image data longer than the image needs or followed by more
bytes, and images over the pixel cap. Then OpenCV decodes the image, which must have the
header's size."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import cv2
import numpy as np

from .content import Blob, Content, Image
from .phash import to_gray
from .policy import GatePolicy
from .sniff import PNG_SIGNATURE

__all__ = ["parse_png"]

_ANCILLARY = {"tRNS", "gAMA", "cHRM", "sRGB", "iCCP", "sBIT", "bKGD", "pHYs", "tIME"}
_TEXT = {"tEXt", "zTXt", "iTXt"}
_APNG = {"acTL", "fcTL", "fdAT"}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _raw_size(width: int, height: int, depth: int, color: int, interlace: int) -> int:
    """Bytes of the filtered scanlines the IHDR calls for."""
    bpp = _CHANNELS[color] * depth

    def size(w: int, h: int) -> int:
        return h * (1 + (w * bpp + 7) // 8) if w and h else 0

    if not interlace:
        return size(width, height)
    return sum(size(-(-(width - x0) // dx), -(-(height - y0) // dy)) for x0, y0, dx, dy in _ADAM7)


def _text_of(ctype: str, body: bytes, limit: int) -> tuple[str, bytes | None]:
    """``(keyword, text)`` of a text chunk, the text inflated to at most ``limit + 1`` bytes
    (None when it does not inflate)."""
    keyword, _, rest = body.partition(b"\x00")
    name = keyword.decode("latin-1")
    if ctype == "tEXt":
        return name, rest
    if ctype == "zTXt":
        compressed = rest[1:]
    else:  # iTXt: flag, method, language\0, translated keyword\0, text
        flag = rest[:1] == b"\x01"
        _, _, tail = rest[2:].partition(b"\x00")
        _, _, text = tail.partition(b"\x00")
        if not flag:
            return name, text
        compressed = text
    d = zlib.decompressobj()
    try:
        return name, d.decompress(compressed, limit + 1)
    except zlib.error:
        return name, None


def parse_png(data: bytes, policy: GatePolicy) -> Content:
    content = Content("png")
    pos, seen_idat, idat_done, text_total = len(PNG_SIGNATURE), False, False, 0
    idat: list[bytes] = []
    ihdr: tuple[int, ...] | None = None
    ended = damaged = False
    while pos < len(data):
        if pos + 12 > len(data):
            content.block("structure", f"cut off: {len(data) - pos} byte(s) at offset {pos} are not a chunk",
                          byte_offset=pos)
            return content
        length, raw_type = struct.unpack(">I4s", data[pos:pos + 8])
        ctype = raw_type.decode("latin-1")
        end = pos + 12 + length
        if not raw_type.isalpha() or end > len(data):
            content.block("structure", f"bad chunk {ctype!r} of length {length} at offset {pos}",
                          byte_offset=pos)
            return content
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:end])
        if zlib.crc32(raw_type + body) != crc:
            content.block("structure", f"chunk {ctype} at offset {pos}: CRC mismatch", byte_offset=pos)
            damaged = True
        where = {"byte_offset": pos, "chunk": ctype, "chunk_bytes": length}
        if ihdr is None and ctype != "IHDR":
            content.block("structure", f"the first chunk is {ctype}, not IHDR", **where)
            return content
        if ctype == "IHDR":
            if ihdr is not None or length != 13:
                content.block("structure", f"a second or malformed IHDR at offset {pos}", **where)
                return content
            ihdr = struct.unpack(">IIBBBBB", body)
            if ihdr[3] not in _CHANNELS or ihdr[6] not in (0, 1):
                content.block("structure", f"IHDR colour type {ihdr[3]} / interlace {ihdr[6]} invalid",
                              **where)
                return content
        elif ctype == "IDAT":
            if idat_done:
                content.block("structure", f"a second run of IDAT chunks at offset {pos}", **where)
            seen_idat = True
            idat.append(body)
        elif ctype == "IEND":
            ended = True
            if end < len(data):
                content.block("structure", f"{len(data) - end} byte(s) after IEND at offset {end}",
                              byte_offset=end, trailing_bytes=len(data) - end)
                content.blobs.append(Blob(data[end:], {"byte_offset": end, "part": "after IEND"}))
            break
        elif ctype in _APNG:
            content.block("structure", f"animated PNG chunk {ctype} at offset {pos} (APNG frames are not "
                          "allowed: a viewer may show only the first)", **where)
        elif ctype in _TEXT:
            keyword, text = _text_of(ctype, body, policy.png_text_max)
            size = len(text) if text is not None else length
            text_total += size
            if keyword not in policy.png_text_keywords:
                content.block("structure", f"text chunk {ctype} with keyword {keyword!r} at offset {pos} "
                              f"(allowed: {', '.join(policy.png_text_keywords)})", **where)
            elif text is None or size > policy.png_text_max:
                amount = "undecodable" if text is None else f"over {policy.png_text_max}"
                content.block("structure", f"text chunk {ctype} {keyword!r} at offset {pos} holds "
                              f"{amount} bytes of text", **where)
            elif text_total > policy.png_text_total:
                content.block("structure", f"text chunks hold {text_total} bytes (the cap is "
                              f"{policy.png_text_total})", **where)
        elif ctype == "iCCP" and length > policy.png_iccp_max:
            content.block("structure", f"iCCP colour profile of {length} bytes (the cap is "
                          f"{policy.png_iccp_max})", **where)
        elif ctype not in _ANCILLARY and ctype != "PLTE":
            content.block("structure", f"chunk {ctype} ({length} bytes) at offset {pos} is not allowed "
                          "in a plot", **where)
        if seen_idat and ctype != "IDAT":
            idat_done = True
        pos = end
    if ihdr is None or not ended:
        content.block("structure", "no IHDR" if ihdr is None else "no IEND: the file is cut off",
                      byte_offset=len(data))
        return content
    width, height, depth, color, _, _, interlace = ihdr
    if width * height > policy.png_max_pixels:
        content.block("size", f"{width}x{height} pixels (the cap is {policy.png_max_pixels})")
        return content
    if not _check_idat(content, b"".join(idat), _raw_size(width, height, depth, color, interlace)) or damaged:
        return content  # blocked already; the decoder would only fail noisily
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.shape[:2] != (height, width):
        content.block("structure", f"does not decode to the {width}x{height} image its header declares")
        return content
    content.images.append(Image(to_gray(img), {"png": "image", "size": [width, height]}))
    content.blobs.append(Blob(_file_order(img), {"png": "pixels", "row_bytes": _row_bytes(img)}))
    return content


def _check_idat(content: Content, compressed: bytes, expected: int) -> bool:
    """Whether the image data inflates to what the image needs (True also when more follows,
    so that the pixels are still searched)."""
    d = zlib.decompressobj()
    try:
        raw = d.decompress(compressed, expected + 1)
    except zlib.error as exc:
        content.block("structure", f"the image data does not inflate: {exc}")
        return False
    if len(raw) > expected:
        content.block("structure", f"the image data inflates past the {expected} bytes the image needs "
                      "(extra data hidden in IDAT)")
    elif not d.eof:
        content.block("structure", f"the image data is cut off ({len(raw)} of {expected} bytes)")
        return False
    elif d.unused_data:
        content.block("structure", f"{len(d.unused_data)} byte(s) after the end of the compressed image data")
    return True


def _file_order(img: np.ndarray) -> bytes:
    """The pixels in the PNG's own channel and byte order (OpenCV gives BGR, native endian)."""
    px = img
    if px.ndim == 3 and px.shape[2] == 3:
        px = px[:, :, ::-1]
    elif px.ndim == 3 and px.shape[2] == 4:
        px = px[:, :, [2, 1, 0, 3]]
    if px.dtype == np.uint16:
        px = px.astype(">u2")
    return np.ascontiguousarray(px).tobytes()


def _row_bytes(img: np.ndarray) -> int:
    return int(img.shape[1] * (img.shape[2] if img.ndim == 3 else 1) * img.dtype.itemsize)


def png_region(where: dict[str, Any], offset: int) -> dict[str, Any]:
    """A byte offset in the pixels blob as a pixel row and column."""
    row_bytes = int(where.get("row_bytes") or 1)
    return {"pixel_row": offset // row_bytes, "pixel_byte_in_row": offset % row_bytes}
