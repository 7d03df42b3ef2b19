"""ROS 2 message types: the typestore, schema texts, and cheap header-stamp access.

Standard types come from rosbags' ROS 2 Jazzy store; DemoFab's own types (the
``demofab_msgs`` package) are registered from the ``.msg`` files shipped beside this
module, so every recording embeds their full definition and any reader decodes them
without the package installed.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from .contract import EPISODE_EVENT_TYPE as EPISODE_EVENT_TYPE  # re-exported
from .errors import ProfileError, RecorderError

if TYPE_CHECKING:
    from rosbags.interfaces.typing import Typesdict

_Unpack = Callable[[bytes, int], tuple[int, ...]]
_unpack_le: _Unpack = struct.Struct("<iI").unpack_from
_unpack_be: _Unpack = struct.Struct(">iI").unpack_from
_unpack_u32_le: _Unpack = struct.Struct("<I").unpack_from


@cache
def typestore() -> Typestore:
    """The ROS 2 Jazzy typestore with DemoFab's own messages added."""
    store = get_typestore(Stores.ROS2_JAZZY)
    msgdir = files("recorder") / "msg"
    types: Typesdict = {}
    for entry in sorted(msgdir.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".msg"):
            name = f"demofab_msgs/msg/{entry.name[:-4]}"
            types.update(get_types_from_msg(entry.read_text(), name))
    store.register(types)
    return store


@dataclass(frozen=True, slots=True)
class MessageType:
    """What a recording needs to embed for one ROS 2 type."""

    name: str
    schema_text: str
    type_hash: str  # RIHS01_<hex>, as rosbag2 stores it


@cache
def message_type(name: str) -> MessageType:
    store = typestore()
    if name not in store.fielddefs:
        known = sorted(k for k in store.fielddefs if "/msg/" in k)
        hint = ", ".join(k for k in known if k.split("/")[-1] == name.split("/")[-1]) or "none"
        raise ProfileError(
            f"unknown ROS 2 message type {name!r} (similar known types: {hint})"
        )
    text, _ = store.generate_msgdef(name, ros_version=2)
    return MessageType(name=name, schema_text=text, type_hash=store.hash_rihs01(name))


def has_header(name: str) -> bool:
    """True when the type's first field is a ``std_msgs/Header``."""
    fields = typestore().fielddefs[name][1]
    if not fields:
        return False
    _, (kind, detail) = fields[0]
    return kind == Nodetype.NAME and detail == "std_msgs/msg/Header"


def stamp_reader(name: str) -> Callable[[bytes], int] | None:
    """A function that reads the header stamp (ns) straight from CDR bytes, or None.

    Works without deserialising: the stamp of a message whose first field is a Header
    sits right after the 4-byte encapsulation header; a ``tf2_msgs/TFMessage`` carries
    it in its first transform. Returns -1 where the bytes hold no stamp (empty TF).
    """
    if has_header(name):
        def read(data: bytes) -> int:
            sec, nsec = (_unpack_le if data[1] else _unpack_be)(data, 4)
            return sec * 1_000_000_000 + nsec

        return read
    if name == "tf2_msgs/msg/TFMessage":
        def read_tf(data: bytes) -> int:
            little = data[1]
            (count,) = _unpack_u32_le(data, 4) if little else struct.unpack_from(">I", data, 4)
            if count == 0:
                return -1
            sec, nsec = (_unpack_le if little else _unpack_be)(data, 8)
            return sec * 1_000_000_000 + nsec

        return read_tf
    return None


def serialize(msg: Any, name: str) -> bytes:
    return bytes(typestore().serialize_cdr(msg, name))


def deserialize(data: bytes, name: str) -> Any:
    return typestore().deserialize_cdr(data, name)


@dataclass(frozen=True, slots=True)
class SchemaStore:
    """A typestore built from one schema embedded in a recording, and the name under
    which it holds the schema's own type."""

    store: Typestore
    name: str

    def deserialize(self, data: bytes | memoryview) -> Any:
        return self.store.deserialize_cdr(data, self.name)


def schema_store(typename: str, encoding: str, schema: bytes | str) -> SchemaStore:
    """The typestore of an embedded schema (``ros2msg`` or ``ros2idl``), cached by content.

    rosbags files service types under ``pkg/srv/msg/T`` where rosbag2 names them
    ``pkg/srv/T``; both names are registered, so the type the channel gives is found.
    Raises ``RecorderError`` when the schema does not parse or lacks the type."""
    raw = schema.encode() if isinstance(schema, str) else bytes(schema)
    return _schema_store(typename, encoding, hashlib.sha1(raw).hexdigest(),
                         raw.decode("utf-8", "replace"))


@lru_cache(maxsize=128)
def _schema_store(typename: str, encoding: str, digest: str, text: str) -> SchemaStore:
    try:
        if encoding == "ros2msg":
            types = get_types_from_msg(text, typename)
        elif encoding == "ros2idl":
            types = get_types_from_idl(text)
        else:
            raise RecorderError(f"schema encoding {encoding!r} is not ros2msg or ros2idl")
    except RecorderError:
        raise
    except Exception as exc:  # rosbags raises several types; named here
        raise RecorderError(f"schema of {typename or 'a schemaless channel'} does not parse: "
                            f"{exc}") from exc
    types.update({k.replace("/srv/msg/", "/srv/"): v for k, v in list(types.items())
                  if "/srv/msg/" in k})
    store = get_typestore(Stores.EMPTY)
    store.register(types)
    if typename in store.fielddefs:
        return SchemaStore(store, typename)
    if encoding == "ros2msg" and types:
        return SchemaStore(store, next(iter(types)))
    raise RecorderError(f"schema does not define {typename}")
