"""curation/cdr.py, the bulk CDR decoder, agrees with rosbags' ``deserialize_cdr``.

Random messages (hypothesis) of every type the recorder's profiles use and of the common
std_msgs, sensor_msgs, geometry_msgs, nav_msgs and tf2_msgs types are serialized by
rosbags, little- and big-endian; rows that share a layout are decoded together the way
curation/decode.py does it (``layout`` of one row, ``matches`` over the byte matrix,
``extract`` and ``strings``, the trailing byte blob by its length prefix), and every
column must equal the field rosbags decodes from the same bytes.

One difference is by design: ROS 2's ``byte`` is an octet, which cdr.py decodes as
``uint8`` and rosbags as ``int8``; the bits are the same, so those are compared mod 256.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curation import cdr
from recorder.types import typestore

PROFILES = Path(__file__).resolve().parents[2] / "recorder" / "profiles"

COMMON = [
    "std_msgs/msg/Header", "std_msgs/msg/String", "std_msgs/msg/Bool", "std_msgs/msg/Byte",
    "std_msgs/msg/Char", "std_msgs/msg/Int8", "std_msgs/msg/UInt16", "std_msgs/msg/Int32",
    "std_msgs/msg/Int64", "std_msgs/msg/UInt64", "std_msgs/msg/Float32",
    "std_msgs/msg/Float64", "std_msgs/msg/ColorRGBA", "std_msgs/msg/Float32MultiArray",
    "std_msgs/msg/Float64MultiArray", "std_msgs/msg/UInt8MultiArray",
    "sensor_msgs/msg/JointState", "sensor_msgs/msg/Imu", "sensor_msgs/msg/CompressedImage",
    "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/MagneticField",
    "sensor_msgs/msg/Temperature", "sensor_msgs/msg/FluidPressure", "sensor_msgs/msg/Range",
    "sensor_msgs/msg/NavSatFix", "sensor_msgs/msg/LaserScan", "sensor_msgs/msg/Joy",
    "sensor_msgs/msg/BatteryState", "sensor_msgs/msg/PointCloud2",
    "geometry_msgs/msg/Point", "geometry_msgs/msg/Vector3", "geometry_msgs/msg/Quaternion",
    "geometry_msgs/msg/Pose", "geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseArray",
    "geometry_msgs/msg/PoseWithCovarianceStamped", "geometry_msgs/msg/Twist",
    "geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/TwistWithCovarianceStamped",
    "geometry_msgs/msg/Wrench", "geometry_msgs/msg/WrenchStamped",
    "geometry_msgs/msg/AccelStamped", "geometry_msgs/msg/Transform",
    "geometry_msgs/msg/TransformStamped", "geometry_msgs/msg/PointStamped",
    "geometry_msgs/msg/Vector3Stamped", "geometry_msgs/msg/QuaternionStamped",
    "geometry_msgs/msg/PolygonStamped", "nav_msgs/msg/Odometry", "tf2_msgs/msg/TFMessage",
]


def _profile_types() -> list[str]:
    out: set[str] = set()
    for f in sorted(PROFILES.glob("*.yaml")):
        doc = yaml.safe_load(f.read_text())

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                t = node.get("type")
                if isinstance(t, str) and t.count("/") == 2:
                    out.add(t)
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(doc)
    return sorted(out)


TYPES = sorted(set(_profile_types()) | set(COMMON))

_INTS = {"int8": 8, "byte": 8, "int16": 16, "int32": 32, "int64": 64}  # byte: as rosbags
_UINTS = {"uint8": 8, "octet": 8, "char": 8, "uint16": 16, "uint32": 32, "uint64": 64}
_ROSBAGS_DTYPES = {**cdr.DTYPES, "byte": "i1"}
_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=3)
_MAX_SEQ = 3


def _scalar(base: str) -> st.SearchStrategy[Any]:
    if base == "bool":
        return st.booleans()
    if base in _INTS:
        b = _INTS[base]
        return st.integers(-(1 << (b - 1)), (1 << (b - 1)) - 1)
    if base in _UINTS:
        return st.integers(0, (1 << _UINTS[base]) - 1)
    if base == "float32":
        return st.floats(width=32)
    if base == "float64":
        return st.floats()
    if base == "string":
        return _TEXT
    raise AssertionError(f"no strategy for {base}")


def _values(base: str, n: int | None) -> st.SearchStrategy[Any]:
    """``n`` values of a base type (``None``: a sequence of 0..3), as rosbags holds them."""
    size = {"min_size": n, "max_size": n} if n is not None else {"max_size": _MAX_SEQ}
    items = st.lists(_scalar(base), **size)
    if base == "string":
        return items
    dt = np.dtype(_ROSBAGS_DTYPES[base])
    return items.map(lambda v: np.array(v, dtype=dt))


@cache
def _message(typename: str) -> st.SearchStrategy[Any]:
    store = typestore()
    cls = store.types[typename]
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, (kind, detail) in store.fielddefs[typename][1]:
        if kind == cdr.NAME:
            fields[name] = st.deferred(lambda d=detail: _message(d))
        elif kind == cdr.BASE:
            fields[name] = _scalar(detail[0])
        else:
            (sub_kind, sub), length = detail
            n = length if kind == cdr.ARRAY else None
            if sub_kind == cdr.BASE:
                fields[name] = _values(sub[0], n)
            else:
                size = {"min_size": n, "max_size": n} if n is not None else {"max_size": _MAX_SEQ}
                fields[name] = st.lists(st.deferred(lambda s=sub: _message(s)), **size)
    return st.builds(cls, **fields)


def _expected(msg: Any, path: tuple[str, ...]) -> Any:
    """The field at ``path`` of a rosbags message; through sequences of structs, the list of
    the field in each element."""
    if not path:
        return msg
    value = getattr(msg, path[0])
    if isinstance(value, list) and not (value and isinstance(value[0], str)):
        return [_expected(v, path[1:]) for v in value]
    return _expected(value, path[1:])


def _flat_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [s for v in value for s in _flat_strings(v)]


def _check_group(store: Any, typename: str, datas: list[bytes], msgs: list[Any],
                 first: int) -> list[int]:
    """Decode the rows that share row ``first``'s layout; compare with rosbags; return them."""
    lay = cdr.layout(store, typename, datas[first])
    lengths = np.array([len(d) for d in datas])
    cand = np.flatnonzero(lengths >= lay.size if lay.tail is not None else lengths == lay.size)
    mat = np.stack([np.frombuffer(datas[i][:lay.size], np.uint8) for i in cand])
    ok = cdr.matches(lay, mat)
    if lay.tail is not None:  # the blob's length prefix must fit the row, as decode checks
        o = lay.tail[1]
        tl = np.ascontiguousarray(mat[:, o:o + 4]).view("<u4" if lay.little else ">u4")[:, 0]
        ok &= lengths[cand] == lay.size + tl.astype(np.int64)
    rows = [int(i) for i in cand[ok]]
    assert first in rows, "the row that defines the layout matches it"
    mat = mat[ok]
    num, strs = cdr.extract(lay, mat), cdr.strings(lay, mat)
    for path, arr in num.items():
        where = f"{typename}.{'.'.join(path)}"
        base = _base(store, typename, path)
        assert arr.dtype.isnative or arr.dtype.itemsize == 1
        assert arr.dtype.itemsize == np.dtype(_ROSBAGS_DTYPES[base]).itemsize, where
        for r, i in enumerate(rows):
            raw = _expected(msgs[i], path)
            want = np.asarray(raw)
            got = arr[r]
            if isinstance(raw, np.ndarray) and base != "byte":
                assert got.dtype == raw.dtype.newbyteorder("="), where
            if base == "byte":
                want = want.astype(np.int64) % 256
            if want.size == 0:
                assert got.size == 0, where
                continue
            assert got.shape == want.shape, where
            np.testing.assert_array_equal(got, want, err_msg=where)
    for path, per_row in strs.items():
        for r, i in enumerate(rows):
            got = per_row[0] if len(per_row) == 1 else per_row[r]
            want = _expected(msgs[i], path)
            got_l = got if isinstance(got, list) else [got]
            assert got_l == _flat_strings(want), f"{typename}.{'.'.join(path)}"
    if lay.tail is not None:
        tail_path, o = lay.tail
        for i in rows:
            data = datas[i]
            n = int.from_bytes(data[o:o + 4], "little" if lay.little else "big")
            assert data[o + 4:o + 4 + n] == bytes(np.asarray(_expected(msgs[i], tail_path)))
    # every field rosbags knows is decoded: numbers, strings or the blob
    covered = set(num) | set(strs) | ({lay.tail[0]} if lay.tail else set())
    for path in _leaf_paths(store, typename):
        assert any(c[:len(path)] == path for c in covered), f"{typename}: {path} not decoded"
    return rows


def _base(store: Any, typename: str, path: tuple[str, ...]) -> str:
    """The base type of the leaf at ``path`` (through structs and sequences of them)."""
    kind, detail = dict(store.fielddefs[typename][1])[path[0]]
    if kind == cdr.NAME:
        return _base(store, detail, path[1:])
    if kind == cdr.BASE:
        return str(detail[0])
    (sub_kind, sub), _ = detail
    return str(sub[0]) if sub_kind == cdr.BASE else _base(store, sub, path[1:])


def _leaf_paths(store: Any, typename: str, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, (kind, detail) in store.fielddefs[typename][1]:
        p = prefix + (name,)
        if kind == cdr.NAME:
            out.extend(_leaf_paths(store, detail, p))
        elif kind in (cdr.ARRAY, cdr.SEQUENCE) and detail[0][0] == cdr.NAME:
            pass  # an empty sequence of structs may leave only some leaves; checked above
        else:
            out.append(p)
    return out


def test_every_profile_type_is_checked() -> None:
    profile = _profile_types()
    assert "sensor_msgs/msg/JointState" in profile and set(profile) <= set(TYPES)


@pytest.mark.parametrize("little", [True, False], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("typename", TYPES)
def test_columns_equal_what_rosbags_decodes(typename: str, little: bool) -> None:
    store = typestore()

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_message(typename), min_size=1, max_size=4))
    def check(msgs: list[Any]) -> None:
        datas = [bytes(store.serialize_cdr(m, typename, little_endian=little)) for m in msgs]
        assert all(d[1] == int(little) for d in datas)  # the CDR header says the byte order
        decoded = [store.deserialize_cdr(d, typename) for d in datas]
        left = list(range(len(datas)))
        while left:
            done = _check_group(store, typename, datas, decoded, left[0])
            left = [i for i in left if i not in done]

    check()
