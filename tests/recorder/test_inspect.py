"""``demofab inspect`` on our files, on bags written by other tools, and on damaged files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcap.writer import Writer as McapWriter
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

SET_BOOL_EVENT = """service_msgs/ServiceEventInfo info
std_srvs/SetBool_Request[<=1] request
std_srvs/SetBool_Response[<=1] response
================================================================================
MSG: service_msgs/ServiceEventInfo
uint8 REQUEST_SENT = 0
uint8 REQUEST_RECEIVED = 1
uint8 RESPONSE_SENT = 2
uint8 RESPONSE_RECEIVED = 3
uint8 event_type
builtin_interfaces/Time stamp
char[16] client_gid
int64 sequence_number
================================================================================
MSG: std_srvs/SetBool_Request
bool data
================================================================================
MSG: std_srvs/SetBool_Response
bool success
string message
"""
GRIPPER = "float64 width\nfloat64 force\nstring mode\n"


def run_inspect(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demofab.cli", "inspect", "--json", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_json_report_of_a_session(recorded):
    session, _, _ = recorded
    r = run_inspect(session.dir)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [Path(f["path"]).name for f in report["files"]] == [e.file for e in session.episodes]
    topics = {t["topic"]: t for t in report["topics"]}
    counts = {}
    for e in session.episodes:
        for k, v in e.counts.items():
            counts[k] = counts.get(k, 0) + v
    assert {k: t["count"] for k, t in topics.items()} == counts
    assert topics["/joint_states"]["type"] == "sensor_msgs/msg/JointState"
    assert abs(topics["/joint_states"]["rate_hz"] - 500) < 5
    assert abs(topics["/camera/head/image_raw/compressed"]["rate_hz"] - 30) < 1
    assert all(t["decodable"] for t in report["topics"])
    eps = report["episodes"]
    assert [(e["index"], e["task"], e["outcome"]) for e in eps] == [
        (0, "stack cups", "success"), (1, "stack cups", "success")]
    assert [e["messages"] for e in eps] == [e.messages for e in session.episodes]
    assert all(e["end_ns"] > e["start_ns"] for e in eps)


def _foreign_bag(path: Path) -> None:
    """A bag as ROS 2 tools write it: custom type, a service-event topic, rosbags' writer."""
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg(GRIPPER, "acme_msgs/msg/Gripper"))
    types = get_types_from_msg(SET_BOOL_EVENT, "std_srvs/srv/SetBool_Event")
    # rosbags files service types under .../srv/msg/...; rosbag2 names them .../srv/...
    store.register({k.replace("/srv/msg/", "/srv/"): v for k, v in types.items()})
    Gripper = store.types["acme_msgs/msg/Gripper"]
    Event = store.types["std_srvs/srv/SetBool_Event"]
    Info = store.types["service_msgs/msg/ServiceEventInfo"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Req = store.types["std_srvs/msg/SetBool_Request"]
    import numpy as np

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        g = w.add_connection("/gripper", "acme_msgs/msg/Gripper", typestore=store)
        s = w.add_connection("/arm/enable/_service_event", "std_srvs/srv/SetBool_Event",
                             typestore=store)
        for i in range(50):
            w.write(g, 1_000_000_000 + i * 10_000_000,
                    store.serialize_cdr(Gripper(width=0.01 * i, force=1.0, mode="pinch"),
                                        "acme_msgs/msg/Gripper"))
        ev = Event(info=Info(event_type=0, stamp=Time(sec=1, nanosec=5),
                             client_gid=np.zeros(16, dtype=np.uint8), sequence_number=1),
                   request=[Req(data=True)], response=[])
        w.write(s, 1_200_000_000, store.serialize_cdr(ev, "std_srvs/srv/SetBool_Event"))


def test_bag_written_by_another_tool_with_custom_and_service_types(tmp_path):
    bag = tmp_path / "foreign"
    _foreign_bag(bag)
    r = run_inspect(bag)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    topics = {t["topic"]: t for t in report["topics"]}
    assert topics["/gripper"]["count"] == 50 and topics["/gripper"]["decodable"]
    assert abs(topics["/gripper"]["rate_hz"] - 100) < 1e-6
    svc = topics["/arm/enable/_service_event"]
    assert svc["type"] == "std_srvs/srv/SetBool_Event" and svc["count"] == 1
    assert svc["decodable"], svc["problem"]   # rosbags' .../srv/msg/... renaming handled
    assert report["episodes"] == []


GRIPPER_IDL = """module acme_msgs {
  module msg {
    struct Gripper {
      double width;
      double force;
      string mode;
    };
  };
};
"""


def test_channels_with_an_idl_schema_are_decoded_with_it(tmp_path):
    from rosbags.typesys import get_types_from_idl

    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_idl(GRIPPER_IDL))
    Gripper = store.types["acme_msgs/msg/Gripper"]
    path = tmp_path / "idl.mcap"
    with open(path, "wb") as f:
        w = McapWriter(f)
        w.start(profile="ros2", library="another-tool")
        good = w.register_schema("acme_msgs/msg/Gripper", "ros2idl", GRIPPER_IDL.encode())
        cg = w.register_channel("/gripper", "cdr", good)
        cw = w.register_channel("/wrong", "cdr", good)
        for i in range(5):
            data = store.serialize_cdr(Gripper(width=0.1 * i, force=2.0, mode="pinch"),
                                       "acme_msgs/msg/Gripper")
            w.add_message(cg, i * 1000, bytes(data), i * 1000)
            w.add_message(cw, i * 1000, b"\x00\x01\x00\x00" + bytes(3), i * 1000)
        w.finish()
    r = run_inspect(path)
    assert r.returncode == 0, r.stderr
    topics = {t["topic"]: t for t in json.loads(r.stdout)["topics"]}
    assert topics["/gripper"]["decodable"], topics["/gripper"]["problem"]
    assert not topics["/wrong"]["decodable"]
    assert "cannot decode acme_msgs/msg/Gripper" in topics["/wrong"]["problem"]


def test_a_bag_listing_a_missing_file_names_it(tmp_path):
    bag = tmp_path / "foreign"
    _foreign_bag(bag)
    from recorder.contract import read_bag_listing

    (listed,) = read_bag_listing(bag).files
    (bag / listed).rename(bag / "elsewhere.mcap")
    r = run_inspect(bag)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert str(bag / "metadata.yaml") in line and str(bag / listed) in line


def test_undecodable_channels_are_reported_not_fatal(tmp_path):
    path = tmp_path / "mixed.mcap"
    with open(path, "wb") as f:
        w = McapWriter(f)
        w.start(profile="", library="another-tool")
        js = w.register_schema("Pose", "jsonschema", b'{"type": "object"}')
        pb = w.register_schema("acme.Pose", "protobuf", b"\x00not a descriptor")
        bad = w.register_schema("acme_msgs/msg/Broken", "ros2msg", b"floatx64 oops\n")
        cj = w.register_channel("/pose_json", "json", js)
        cp = w.register_channel("/pose_pb", "protobuf", pb)
        cb = w.register_channel("/broken", "cdr", bad)
        for i in range(10):
            w.add_message(cj, i * 1000, b'{"x": 1}', i * 1000)
            w.add_message(cp, i * 1000, b"\x08\x01", i * 1000)
            w.add_message(cb, i * 1000, b"\x00\x01\x00\x00" + bytes(8), i * 1000)
        w.finish()
    r = run_inspect(path)
    assert r.returncode == 0, r.stderr
    topics = {t["topic"]: t for t in json.loads(r.stdout)["topics"]}
    assert topics["/pose_json"]["decodable"] and topics["/pose_json"]["count"] == 10
    assert not topics["/pose_pb"]["decodable"]
    assert "not CDR" in topics["/pose_pb"]["problem"]
    assert not topics["/broken"]["decodable"]
    assert "acme_msgs/msg/Broken" in topics["/broken"]["problem"]


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_file_gets_one_line_with_file_and_offset(recorded, tmp_path, cut):
    session, _, _ = recorded
    src = session.dir / session.episodes[0].file
    data = src.read_bytes()
    bad = tmp_path / "cut.mcap"
    bad.write_bytes(data[: int(len(data) * cut)])
    r = run_inspect(bad)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert str(bad) in line and "byte offset" in line and "truncated" in line
    offset = int(line.split("byte offset ")[1].split()[0])
    assert 0 < offset <= len(data) * cut


def test_corrupt_chunk_is_reported_at_its_offset(recorded, tmp_path):
    session, _, _ = recorded
    src = session.dir / session.episodes[0].file
    data = bytearray(src.read_bytes())
    from mcap.reader import make_reader

    with open(src, "rb") as f:
        chunk = make_reader(f).get_summary().chunk_indexes[3]
    mid = chunk.chunk_start_offset + chunk.chunk_length // 2
    data[mid:mid + 64] = bytes(64)
    bad = tmp_path / "corrupt.mcap"
    bad.write_bytes(bytes(data))
    r = run_inspect(bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert str(bad) in line and f"byte offset {chunk.chunk_start_offset}" in line


def test_not_an_mcap_file(tmp_path):
    bad = tmp_path / "notes.mcap"
    bad.write_text("hello")
    r = run_inspect(bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(bad) in r.stderr and "byte offset 0" in r.stderr


def test_session_with_an_unfinished_episode_says_so(recorded, tmp_path):
    session, _, _ = recorded
    copy = tmp_path / "s"
    shutil.copytree(session.dir, copy)
    (copy / "episode_0009.mcap.part").write_bytes(b"\x89MCAP0\r\n")
    r = run_inspect(copy)
    assert r.returncode == 0
    assert json.loads(r.stdout)["unfinished"] == [str(copy / "episode_0009.mcap.part")]
