"""Model weights in safetensors: the header checked, the tensors read by the ``safetensors``
library, their numbers and any image-shaped tensor handed to the matchers.

The header must be a JSON object of tensors with an allowed dtype, at most ``st_max_ndim``
dimensions and ``data_offsets`` whose span is exactly ``prod(shape) * itemsize``; the
spans must tile the bytes after the header with no gap, no overlap and nothing after
(``safetensors.deserialize`` refuses a file it does not cover too); ``__metadata__``, a map
of strings, has a size cap. Each float or integer tensor is a sequence in storage order,
and the columns of its last dimension are sequences too (a stream ``[rows, joints]`` stored
as is); tensors shaped like images (``H x W``, ``H x W x C``, ``C x H x W``, with H and W
at least 32) are images for the perceptual check."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import safetensors

from .content import Content, Image, Sequence
from .hashing import quantise
from .phash import to_gray
from .policy import GatePolicy, IndexConfig
from .textual import encoded_blobs

__all__ = ["DTYPES", "parse_safetensors"]

_CODES_AT_ONCE = 1 << 22  # elements of a tensor rounded in one go

#: safetensors dtype -> (numpy dtype, itemsize); BF16 is read as the top half of a float32
DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("<f8", 8), "F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2),
    "I64": ("<i8", 8), "I32": ("<i4", 4), "I16": ("<i2", 2), "I8": ("i1", 1),
    "U64": ("<u8", 8), "U32": ("<u4", 4), "U16": ("<u2", 2), "U8": ("u1", 1), "BOOL": ("u1", 1),
}


def _header(data: bytes, policy: GatePolicy, content: Content) -> dict[str, Any] | None:
    (n,) = struct.unpack("<Q", data[:8])
    if n > policy.st_max_header:
        content.block("size", f"a header of {n} bytes (the cap is {policy.st_max_header})", byte_offset=8)
        return None
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, RecursionError) as exc:
        content.block("structure", f"the header is not JSON: {exc}", byte_offset=8)
        return None
    if not isinstance(header, dict):
        content.block("structure", "the header is not a JSON object", byte_offset=8)
        return None
    meta = header.pop("__metadata__", None)
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in meta.items()):
            content.block("structure", "__metadata__ is not a map of strings to strings", byte_offset=8)
        elif len(json.dumps(meta)) > policy.st_max_metadata:
            content.block("size", f"__metadata__ holds {len(json.dumps(meta))} bytes (the cap is "
                          f"{policy.st_max_metadata})", byte_offset=8)
    if len(header) > policy.st_max_tensors:
        content.block("size", f"{len(header)} tensors (the cap is {policy.st_max_tensors})")
        return None
    return header


def _spans(header: dict[str, Any], body: int, policy: GatePolicy, content: Content) -> bool:
    """True when every tensor is sane and the spans tile the ``body`` bytes exactly."""
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if not isinstance(info, dict):
            content.block("structure", f"tensor {name!r}: not an object in the header", tensor=name)
            return False
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPES:
            content.block("structure", f"tensor {name!r}: dtype {dtype!r} is not allowed "
                          f"(allowed: {', '.join(DTYPES)})", tensor=name)
            return False
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            content.block("structure", f"tensor {name!r}: shape {shape!r} is not a list of sizes",
                          tensor=name)
            return False
        if len(shape) > policy.st_max_ndim:
            content.block("structure", f"tensor {name!r}: {len(shape)} dimensions (the cap is "
                          f"{policy.st_max_ndim})", tensor=name)
            return False
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            content.block("structure", f"tensor {name!r}: data_offsets {offsets!r} malformed", tensor=name)
            return False
        need = math.prod(shape) * DTYPES[dtype][1]
        if offsets[1] - offsets[0] != need:
            content.block("structure", f"tensor {name!r}: data_offsets span {offsets[1] - offsets[0]} bytes, "
                          f"its shape {shape} of {dtype} needs {need}", tensor=name)
            return False
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    at = 0
    for begin, end, name in spans:
        if begin != at:
            what = "a gap of" if begin > at else "an overlap of"
            content.block("structure", f"tensor {name!r}: {what} {abs(begin - at)} bytes before it "
                          f"(data_offsets start at {begin}, the previous tensor ends at {at})", tensor=name)
            return False
        at = end
    if at != body:
        content.block("structure", f"the tensors cover {at} of the {body} bytes after the header "
                      f"({body - at:+d} bytes unaccounted for)", byte_offset=body)
        return False
    return True


def _images(name: str, arr: np.ndarray, policy: GatePolicy) -> list[Image]:
    shape = arr.shape
    if len(shape) < 2:
        return []
    if len(shape) >= 3 and shape[-1] in (1, 3, 4) and min(shape[-3:-1]) >= 32:
        stack, layout = arr.reshape(-1, *shape[-3:]), "HWC"
    elif len(shape) >= 3 and shape[-3] in (1, 3, 4) and min(shape[-2:]) >= 32:
        stack, layout = np.moveaxis(arr.reshape(-1, *shape[-3:]), 1, -1), "CHW"
    elif min(shape[-2:]) >= 32:
        stack, layout = arr.reshape(-1, *shape[-2:]), "HW"
    else:
        return []
    out = []
    for i in range(min(len(stack), policy.max_images_per_tensor)):
        img = np.ascontiguousarray(stack[i])
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[:, :, 0]
        out.append(Image(to_gray(img), {"tensor": name, "image": i, "layout": layout}))
    return out


def parse_safetensors(data: bytes, policy: GatePolicy, cfg: IndexConfig) -> Content:
    content = Content("safetensors")
    header = _header(data, policy, content)
    if header is None:
        return content
    (n,) = struct.unpack("<Q", data[:8])
    content.blobs += encoded_blobs(data[8:8 + n].decode("utf-8", "replace"), {"safetensors": "header"},
                                   cfg.block_bytes)  # base64 in __metadata__ or in tensor names
    if not _spans(header, len(data) - 8 - n, policy, content):
        return content
    try:
        tensors = safetensors.deserialize(data)  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - the library's SafetensorError and its panics
        content.block("structure", f"the safetensors library refuses it: {exc}")
        return content
    for name, t in tensors:
        dtype = str(t["dtype"])
        raw = np.frombuffer(t["data"], dtype=DTYPES[dtype][0])
        if dtype == "BF16":
            arr = (raw.astype(np.uint32) << 16).view(np.float32)
        elif dtype == "BOOL":
            continue
        else:
            arr = raw
        arr = arr.reshape(t["shape"])
        if arr.size < cfg.window:
            continue  # too small for a window, let alone an image
        # rounded once for both orders when small; a large tensor is rounded piece by piece
        # as the matcher goes, so memory stays flat whatever the size of the weights
        codes = quantise(arr.ravel(), cfg.digits, cfg.zero_below) if arr.size <= _CODES_AT_ONCE else None
        content.sequences.append(Sequence(arr.ravel(), {"tensor": name, "order": "storage"}, "element",
                                          codes=codes))
        if arr.ndim >= 2 and arr.shape[-1] > 1 and arr.size // arr.shape[-1] >= cfg.window:
            rows = arr.size // arr.shape[-1]
            cols = arr.reshape(rows, -1)
            by_column = None if codes is None else np.ascontiguousarray(codes.reshape(rows, -1).T)
            for j in range(cols.shape[1]):
                content.sequences.append(Sequence(cols[:, j], {"tensor": name, "column": j}, "row",
                                                  codes=None if by_column is None else by_column[j]))
        content.images += _images(name, arr, policy)
    return content
