"""DDS types for ROS 2 messages, built from rosbags' typestore.

ROS 2 type ``pkg/msg/T`` is the DDS type ``pkg::msg::dds_::T_``; DDS matches types by
name, so what matters is that name and the field layout. The types come from
:func:`recorder.types.typestore`, so DemoFab's own ``demofab_msgs`` work too.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from rosbags.interfaces import Nodetype
from rosbags.interfaces.typing import FieldDesc
from rosbags.typesys.store import Typestore

from ..types import typestore
from .errors import DdsError, require_cyclonedds

if TYPE_CHECKING:
    from cyclonedds.idl import IdlStruct


def dds_type_name(ros_type: str) -> str:
    """``sensor_msgs/msg/JointState`` -> ``sensor_msgs::msg::dds_::JointState_``."""
    parts = ros_type.split("/")
    if len(parts) != 3:
        raise DdsError(f"message type {ros_type!r} is not of the form pkg/msg/Name")
    pkg, kind, name = parts
    return f"{pkg}::{kind}::dds_::{name}_"


class DdsTypes:
    """cyclonedds ``IdlStruct`` classes for ROS 2 message types, made once per type (and
    thread-safe: the source and a publisher may share one)."""

    def __init__(self, store: Typestore | None = None) -> None:
        self.store: Typestore = store or typestore()
        self._cache: dict[str, type[IdlStruct]] = {}
        self._lock = threading.Lock()

    def _field(self, node: FieldDesc) -> object:
        """The member annotation (a runtime type expression) for one field."""
        import cyclonedds.idl.types as t

        # cyclonedds' array/sequence/bounded_str are subscripted at run time to build
        # annotations; their __class_getitem__ is untyped, hence these Any aliases
        array: Any = t.array
        sequence: Any = t.sequence
        bounded_str: Any = t.bounded_str
        base: dict[str, object] = {
            "bool": bool, "byte": t.byte, "char": t.uint8, "int8": t.int8, "uint8": t.uint8,
            "int16": t.int16, "uint16": t.uint16, "int32": t.int32, "uint32": t.uint32,
            "int64": t.int64, "uint64": t.uint64, "float32": t.float32, "float64": t.float64}
        if node[0] == Nodetype.BASE:
            name, bound = node[1]
            if name == "string":
                return bounded_str[bound] if bound else str
            if name not in base:
                raise DdsError(f"no DDS mapping for ROS 2 base type {name!r}")
            return base[name]
        if node[0] == Nodetype.NAME:
            return self._get(node[1])
        elem, n = node[1]
        inner = self._field(elem)
        if node[0] == Nodetype.ARRAY:
            return array[inner, n]
        return sequence[inner, n] if n else sequence[inner]

    def _get(self, ros_type: str) -> type[IdlStruct]:
        cls = self._cache.get(ros_type)
        if cls is not None:
            return cls
        require_cyclonedds()
        import cyclonedds.idl.types as t
        from cyclonedds.idl import make_idl_struct
        from cyclonedds.idl.annotations import final

        try:
            fields = self.store.fielddefs[ros_type][1]
        except KeyError:
            raise DdsError(f"unknown ROS 2 message type {ros_type!r}") from None
        members = {name: self._field(node) for name, node in fields}
        if not members:   # an empty ROS 2 message has one uint8 member on the wire
            members = {"structure_needs_at_least_one_member": t.uint8}
        cls = final(make_idl_struct(ros_type.replace("/", "_"), dds_type_name(ros_type), members))
        self._cache[ros_type] = cls
        return cls

    def get(self, ros_type: str) -> type[IdlStruct]:
        """The DDS type of ``ros_type`` (``DdsError`` when the typestore lacks it)."""
        with self._lock:
            return self._get(ros_type)

    def type_hash(self, ros_type: str) -> str:
        """The RIHS01 type hash, as rmw advertises it."""
        return self.store.hash_rihs01(ros_type)


__all__ = ["DdsTypes", "dds_type_name"]
