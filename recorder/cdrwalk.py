"""Walking CDR bytes with a type's field definitions: the rules every walker shares, and
:class:`CdrEnd`, the true end of a message that a transport padded.

A ROS 2 message in CDR (XCDR1, as rosbag2 stores it) is a 4-byte encapsulation header
(byte 1 is 1 for little endian) and then the fields in order, each primitive aligned to
its own size counted from the end of the header, each string and sequence a ``uint32``
length prefix followed by its elements (a string's length counts its NUL). These rules are
here once: the DDS source trims or zeroes padding with :class:`CdrEnd`, and
``curation.cdr`` finds the offset of every field for decoding in bulk.

Samples that cross processes arrive padded to a multiple of 4 bytes, from Cyclone and
Fast DDS alike; Fast DDS pads with zeros, Cyclone leaves the padding of large
(fragmented) samples uninitialised. Only types whose end can be unaligned (a trailing
string or ``uint8[]``: CompressedImage, Image, ...) are walked to find the end; types that
always end on 4 bytes (JointState, Imu, PoseStamped, TFMessage) cost nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from rosbags.interfaces import Nodetype
from rosbags.interfaces.typing import Fielddefs, FieldDesc
from rosbags.typesys.store import Typestore

from .errors import RecorderError
from .types import typestore

#: bytes before the CDR origin: the encapsulation header
HEADER = 4
#: size (and alignment) of each primitive type in CDR
PRIMITIVE_SIZES = {"bool": 1, "byte": 1, "octet": 1, "char": 1, "int8": 1, "uint8": 1,
                   "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8,
                   "uint64": 8, "float32": 4, "float64": 8}
STRINGS = ("string", "wstring")

U32 = Callable[[bytes, int], tuple[int, ...]]
_U32: dict[bool, U32] = {True: struct.Struct("<I").unpack_from,
                         False: struct.Struct(">I").unpack_from}


class CdrError(RecorderError, ValueError):
    """The bytes do not hold a message of the type (too short, bad lengths), or the type
    is not one a walker knows."""


def is_little_endian(data: bytes) -> bool:
    """Whether a CDR message is little endian (byte 1 of its encapsulation header)."""
    return len(data) < 2 or bool(data[1] & 1)


def u32_reader(little: bool) -> U32:
    """``struct``'s ``unpack_from`` for one ``uint32`` of this byte order."""
    return _U32[little]


def align(pos: int, size: int) -> int:
    """``pos`` (a byte offset in the message, header included) moved up to the next
    multiple of ``size`` counted from the CDR origin."""
    return HEADER + ((pos - HEADER + size - 1) // size) * size


def fields_of(store: Typestore, typename: str) -> Fielddefs:
    """The field definitions of ``typename``; ``CdrError`` when the store lacks it."""
    try:
        return store.fielddefs[typename][1]
    except KeyError:
        raise CdrError(f"type {typename} is not defined") from None


# A compiled skip: (data, position relative to the CDR origin, u32 reader) -> position
# after the field. u32 reads add the 4 header bytes themselves.
Skip = Callable[[bytes, int, U32], int]


def _skip_struct_dummy(d: bytes, p: int, u32: U32) -> int:
    return p + 1   # an empty ROS 2 message is one uint8 member on the wire


def _skip_string(d: bytes, p: int, u32: U32) -> int:
    p = (p + 3) & ~3
    return p + 4 + int(u32(d, p + HEADER)[0])


def _skip_primitive(size: int) -> Skip:
    m = size - 1
    return lambda d, p, u32: ((p + m) & ~m) + size


def _skip_primitive_array(size: int, n: int) -> Skip:
    m = size - 1
    return lambda d, p, u32: ((p + m) & ~m) + n * size if n else p


def _skip_array(inner: Skip, n: int) -> Skip:
    def skip(d: bytes, p: int, u32: U32) -> int:
        for _ in range(n):
            p = inner(d, p, u32)
        return p

    return skip


def _skip_primitive_sequence(size: int) -> Skip:
    m = size - 1

    def skip(d: bytes, p: int, u32: U32) -> int:
        p = (p + 3) & ~3
        n = int(u32(d, p + HEADER)[0])
        p += 4
        return ((p + m) & ~m) + n * size if n else p

    return skip


def _skip_sequence(inner: Skip) -> Skip:
    def skip(d: bytes, p: int, u32: U32) -> int:
        p = (p + 3) & ~3
        n = int(u32(d, p + HEADER)[0])
        p += 4
        for _ in range(n):
            p = inner(d, p, u32)
        return p

    return skip


def _skip_fields(parts: list[Skip]) -> Skip:
    def skip(d: bytes, p: int, u32: U32) -> int:
        for part in parts:
            p = part(d, p, u32)
        return p

    return skip


class CdrEnd:
    """The end of a CDR message, for stripping (or zeroing) the padding a transport
    appends.

    Per type, a plan is compiled once from the typestore: it says whether the end can be
    unaligned at all (only then is the message walked), and how to skip each field. The
    walk reads only sequence and string lengths; arrays of primitives are skipped in one
    step.
    """

    def __init__(self, store: Typestore | None = None) -> None:
        self.store: Typestore = store or typestore()
        self._plans: dict[str, Skip | None] = {}
        self._structs: dict[str, Skip] = {}

    def _end_align(self, node: FieldDesc) -> int:
        """The alignment (1, 2, 4 or 8) that the end position of a field is sure to have."""
        if node[0] == Nodetype.BASE:
            name = node[1][0]
            return 1 if name in STRINGS else PRIMITIVE_SIZES[name]
        if node[0] == Nodetype.NAME:
            fields = fields_of(self.store, node[1])
            return self._end_align(fields[-1][1]) if fields else 1
        elem, n = node[1]
        if node[0] == Nodetype.ARRAY:
            return self._end_align(elem) if n else 1
        return min(4, self._end_align(elem))   # a sequence: empty, it ends on its length

    def _skip(self, node: FieldDesc) -> Skip:
        if node[0] == Nodetype.BASE:
            name = node[1][0]
            if name == "string":
                return _skip_string
            if name not in PRIMITIVE_SIZES:
                raise CdrError(f"cannot walk CDR of base type {name!r}")
            return _skip_primitive(PRIMITIVE_SIZES[name])
        if node[0] == Nodetype.NAME:
            return self._struct(node[1])
        elem, n = node[1]
        size = PRIMITIVE_SIZES.get(elem[1][0]) if elem[0] == Nodetype.BASE else None
        if node[0] == Nodetype.ARRAY:
            return _skip_primitive_array(size, n) if size else _skip_array(self._skip(elem), n)
        return _skip_primitive_sequence(size) if size else _skip_sequence(self._skip(elem))

    def _struct(self, name: str) -> Skip:
        got = self._structs.get(name)
        if got is None:
            fields = fields_of(self.store, name)
            got = _skip_fields([self._skip(node) for _, node in fields]) if fields \
                else _skip_struct_dummy
            self._structs[name] = got
        return got

    def plan(self, ros_type: str) -> Skip | None:
        """How to walk a message of ``ros_type``; None when it always ends on a 4-byte
        boundary (then padding to 4 adds nothing)."""
        if ros_type not in self._plans:
            align4 = self._end_align((Nodetype.NAME, ros_type)) >= 4
            self._plans[ros_type] = None if align4 else self._struct(ros_type)
        return self._plans[ros_type]

    def trimmer(self, ros_type: str) -> Callable[[bytes], bytes]:
        """A function that returns the message without trailing padding."""
        skip = self.plan(ros_type)
        if skip is None:
            return bytes

        def trim(data: bytes) -> bytes:
            try:
                end = HEADER + skip(data, 0, _U32[is_little_endian(data)])
            except struct.error:
                raise CdrError(f"{ros_type}: CDR message of {len(data)} bytes is truncated "
                               "(a length prefix lies past its end)") from None
            if end > len(data):
                raise CdrError(f"{ros_type}: CDR message of {len(data)} bytes is truncated "
                               f"(its fields need {end})")
            return bytes(data[:end]) if end < len(data) else bytes(data)

        return trim

    def zeroer(self, ros_type: str) -> Callable[[bytes], bytes]:
        """A function that keeps the padded length but sets the padding bytes to zero
        (Cyclone leaves them uninitialised in fragmented samples)."""
        trim = self.trimmer(ros_type)
        if self.plan(ros_type) is None:
            return trim

        def zero(data: bytes) -> bytes:
            body = trim(data)
            return body + bytes(len(data) - len(body)) if len(body) < len(data) else body

        return zero


__all__ = [
    "HEADER", "PRIMITIVE_SIZES", "STRINGS", "U32", "CdrEnd", "CdrError", "Skip", "align",
    "fields_of", "is_little_endian", "u32_reader",
]
