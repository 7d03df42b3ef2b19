"""CDR layouts: where each field of a ROS 2 message sits, for decoding in bulk with numpy.

A message's CDR layout is fixed once the lengths of its strings and sequences are known.
``layout`` walks one message with the type's field definitions and returns the byte
offset of every numeric field and every length prefix; every other message of the stream
whose length prefixes hold the same values has the same layout, so a stream of thousands
of messages decodes as a handful of numpy slices of an ``[N, L]`` byte matrix. A trailing
byte sequence (``CompressedImage.data``) is a *tail blob*: its length may vary per message.
The CDR rules themselves (alignment, primitive sizes, byte order, type lookup) are
:mod:`recorder.cdrwalk`'s, shared with the DDS source's padding trimmer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.typesys.store import Typestore

from recorder.cdrwalk import (
    HEADER,
    PRIMITIVE_SIZES,
    STRINGS,
    CdrError,
    align,
    fields_of,
    is_little_endian,
    u32_reader,
)

BASE: Final = Nodetype.BASE
NAME: Final = Nodetype.NAME
ARRAY: Final = Nodetype.ARRAY
SEQUENCE: Final = Nodetype.SEQUENCE
SIZES = PRIMITIVE_SIZES
DTYPES = {"bool": "b1", "byte": "u1", "octet": "u1", "char": "u1", "int8": "i1",
          "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
          "int64": "i8", "uint64": "u8", "float32": "f4", "float64": "f8"}


class LayoutError(CdrError):
    """The bytes do not hold a message of the type (too short, bad lengths), or the type
    has a field that is not decoded in bulk."""


@dataclass
class Leaf:
    """A numeric field: one or more contiguous blocks, and its shape per message."""

    path: tuple[str, ...]
    base: str
    shape: tuple[int, ...]
    blocks: list[tuple[int, int]] = field(default_factory=list)  # (offset, count)


@dataclass
class StrLeaf:
    path: tuple[str, ...]
    shape: tuple[int, ...]
    spans: list[tuple[int, int]] = field(default_factory=list)  # (offset, length w/o NUL)


@dataclass
class Layout:
    little: bool
    size: int                          # bytes covered (the whole message without tail)
    leaves: dict[tuple[str, ...], Leaf]
    strings: dict[tuple[str, ...], StrLeaf]
    prefixes: list[tuple[int, int]]    # (offset, value) of every u32 length prefix
    tail: tuple[tuple[str, ...], int] | None = None  # (path, offset of its length prefix)
    structs: dict[tuple[str, ...], list[str]] = field(default_factory=dict)


class _Walker:
    def __init__(self, store: Typestore, data: bytes, allow_tail: bool) -> None:
        self.store = store
        self.data = data
        self.little = is_little_endian(data)
        self.u32 = u32_reader(self.little)
        self.leaves: dict[tuple[str, ...], Leaf] = {}
        self.strings: dict[tuple[str, ...], StrLeaf] = {}
        self.prefixes: list[tuple[int, int]] = []
        self.structs: dict[tuple[str, ...], list[str]] = {}
        self.allow_tail = allow_tail
        self.tail: tuple[tuple[str, ...], int] | None = None

    def need(self, pos: int, n: int) -> None:
        if pos + n > len(self.data):
            raise LayoutError(f"message ends at byte {len(self.data)}, field needs {pos + n}")

    def count(self, pos: int) -> tuple[int, int]:
        pos = align(pos, 4)
        self.need(pos, 4)
        (n,) = self.u32(self.data, pos)
        self.prefixes.append((pos, n))
        return n, pos + 4

    def base(self, name: str, pos: int, path: tuple[str, ...], shape: tuple[int, ...],
             n: int) -> int:
        if name in STRINGS:
            if name == "wstring":
                raise LayoutError("wstring fields are not decoded in bulk")
            sleaf = self.strings.setdefault(path, StrLeaf(path, shape))
            for _ in range(n):
                length, pos = self.count(pos)
                self.need(pos, length)
                sleaf.spans.append((pos, max(length - 1, 0)))
                pos += length
            return pos
        size = SIZES.get(name)
        if size is None:
            raise LayoutError(f"unknown base type {name}")
        if n:
            pos = align(pos, size)
            self.need(pos, size * n)
        leaf = self.leaves.setdefault(path, Leaf(path, name, shape))
        leaf.blocks.append((pos, n))
        return pos + size * n

    def struct(self, typename: str, pos: int, path: tuple[str, ...],
               shape: tuple[int, ...], last: bool) -> int:
        fields = fields_of(self.store, typename)
        if path not in self.structs:
            self.structs[path] = [f for f, _ in fields]
        for i, (fname, node) in enumerate(fields):
            p = path + (fname,)
            is_last = last and i == len(fields) - 1
            if node[0] == NAME:
                pos = self.struct(node[1], pos, p, shape, is_last)
                continue
            if node[0] == BASE:
                pos = self.base(node[1][0], pos, p, shape, 1)
                continue
            elem, length = node[1]
            if node[0] == SEQUENCE:
                if (is_last and self.allow_tail and elem[0] == BASE
                        and SIZES.get(elem[1][0]) == 1 and not shape):
                    length, pos = self.count(pos)
                    self.prefixes.pop()  # a tail blob may vary in length
                    self.tail = (p, pos - 4)
                    return pos + length
                length, pos = self.count(pos)
            sub_shape = shape + (length,)
            if elem[0] == BASE:
                pos = self.base(elem[1][0], pos, p, sub_shape, length)
                continue
            for _ in range(length):
                pos = self.struct(elem[1], pos, p, sub_shape, False)
            if length == 0:
                self._empty(elem[1], p, sub_shape)
        return pos

    def _empty(self, typename: str, path: tuple[str, ...], shape: tuple[int, ...]) -> None:
        """Record the leaves of a sequence of structs that is empty in this message."""
        for fname, node in fields_of(self.store, typename):
            p = path + (fname,)
            if node[0] == NAME:
                self._empty(node[1], p, shape)
            elif node[0] == BASE and node[1][0] not in STRINGS:
                self.leaves.setdefault(p, Leaf(p, node[1][0], shape))
            elif node[0] == BASE:
                self.strings.setdefault(p, StrLeaf(p, shape))


def layout(store: Typestore, typename: str, data: bytes, *,
           allow_tail: bool = True) -> Layout:
    """The layout of one CDR message (raises LayoutError when it does not fit)."""
    if len(data) < HEADER:
        raise LayoutError(f"message of {len(data)} bytes has no CDR header")
    w = _Walker(store, data, allow_tail)
    try:
        end = w.struct(typename, HEADER, (), (), True)
    except LayoutError:
        raise
    except CdrError as exc:   # a type the store lacks
        raise LayoutError(str(exc)) from None
    except (struct.error, IndexError) as exc:
        raise LayoutError(str(exc)) from None
    return Layout(w.little, end if w.tail is None else w.tail[1] + 4, w.leaves, w.strings,
                  w.prefixes, w.tail, w.structs)


def matches(lay: Layout, mat: np.ndarray) -> np.ndarray:
    """Which rows of a byte matrix have the layout's length prefixes (bool [N])."""
    ok = np.ones(len(mat), dtype=bool)
    if not lay.prefixes:
        return ok
    dt = np.dtype("<u4" if lay.little else ">u4")
    for o, v in lay.prefixes:
        ok &= _column(mat, o, 1, dt)[:, 0] == v
    return ok


def extract(lay: Layout, mat: np.ndarray) -> dict[tuple[str, ...], np.ndarray]:
    """Numeric leaves of every row of ``mat`` (rows share the layout): arrays [N, *shape]."""
    out: dict[tuple[str, ...], np.ndarray] = {}
    order = "<" if lay.little else ">"
    n = len(mat)
    for path, leaf in lay.leaves.items():
        size = SIZES[leaf.base]
        dt = np.dtype(order + DTYPES[leaf.base]) if size > 1 else np.dtype(DTYPES[leaf.base])
        total = sum(c for _, c in leaf.blocks)
        if total == 0:
            out[path] = np.zeros((n, *leaf.shape), dtype=dt.newbyteorder("="))
            continue
        native = dt.newbyteorder("=")
        # typed strided views of the byte matrix, copied element by element (not byte
        # by byte); unaligned offsets are fine for numpy's copy loops
        views = [_column(mat, o, c, dt) for o, c in leaf.blocks if c]
        arr = views[0].astype(native) if len(views) == 1 else \
            np.concatenate(views, axis=1).astype(native, copy=False)
        out[path] = arr.reshape((n, *leaf.shape))
    return out


_U1 = np.dtype(np.uint8)


def _column(mat: np.ndarray, offset: int, count: int, dt: np.dtype) -> np.ndarray:
    """``count`` values of type ``dt`` at byte ``offset`` of every row of ``mat`` (a view)."""
    mat = np.ascontiguousarray(mat)
    if not len(mat):
        return np.zeros((0, count), dtype=dt)
    return np.ndarray((len(mat), count), dtype=dt, buffer=mat, offset=offset,
                      strides=(mat.strides[0], dt.itemsize))


def strings(lay: Layout, mat: np.ndarray) -> dict[tuple[str, ...], list[list[str]] | list[str]]:
    """String leaves per row; a string the same in every row comes back once (list of one)."""
    out: dict[tuple[str, ...], Any] = {}
    for path, leaf in lay.strings.items():
        if not leaf.spans:
            out[path] = [[]] if leaf.shape else [""]
            continue
        # compare each span across rows in place (strided views, no gathered copy)
        lo = min(o for o, _ in leaf.spans)
        hi = max(o + ln for o, ln in leaf.spans)
        block = _column(mat, lo, hi - lo, _U1)  # all spans and the prefixes between them
        same = len(mat) <= 1 or bool((block == block[0]).all()) or all(
            bool((c == c[0]).all()) for c in (_column(mat, o, ln, _U1)
                                               for o, ln in leaf.spans if ln))
        decoded = []
        for r in range(1 if same else len(mat)):
            row = mat[r]
            parts = [bytes(row[o:o + ln]).decode("utf-8", "replace") for o, ln in leaf.spans]
            decoded.append(parts if leaf.shape else parts[0])
        out[path] = decoded
    return out
