"""Foreign rosbag2 MCAP bags: no events, other robots, unknown types."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from curation import curate
from curation.release import open_release

from .conftest import write_foreign_bag

SET_BOOL_EVENT = """service_msgs/ServiceEventInfo info
std_srvs/SetBool_Request[<=1] request
std_srvs/SetBool_Response[<=1] response
================================================================================
MSG: service_msgs/ServiceEventInfo
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


def test_bag_without_events_is_split_on_idle_periods(tmp_path: Path) -> None:
    bag = write_foreign_bag(tmp_path / "bag", pattern=[(1.0, False), (2.0, True), (2.0, False),
                                                       (1.5, True), (1.0, False)])
    r = curate([bag], tmp_path / "rel", "foreign")
    eps = json.loads((r.release / "episodes.json").read_text())["episodes"]
    assert len(eps) == 2
    assert [round(e["duration_s"]) for e in eps] == [2, 1] or \
        [round(e["duration_s"], 1) for e in eps] == [2.0, 1.5]
    assert all(e["provenance"]["segmentation"] == "idle" for e in eps)
    assert all("auto_segmented" in e["flag_names"] for e in eps)
    g = open_release(r.release)
    names = g["streams/robot.joint_states"].attrs["joint_names"]
    assert names == ["arm_joint_1", "arm_joint_2", "gripper_finger_joint"]
    b = g["streams/robot.joint_states/episode_bounds"][:]
    pos = g["streams/robot.joint_states/position"][:]
    assert (np.diff(pos[b[0, 0]:b[0, 1], 0]) >= 0).all()


def test_unknown_type_is_kept_and_decoded_from_its_embedded_schema(tmp_path: Path) -> None:
    bag = write_foreign_bag(tmp_path / "bag", pattern=[(1.0, True)], extra_unknown=True)
    r = curate([bag], tmp_path / "rel", "foreign")
    g = open_release(r.release)
    assert g["streams/acme.weird"].attrs["type"] == "acme_msgs/msg/Weird"
    assert (g["streams/acme.weird/a"][:] == 1).all() and (g["streams/acme.weird/b"][:] == 2.0).all()


def test_undecodable_channel_keeps_its_payloads_and_flags_the_episode(tmp_path: Path) -> None:
    from mcap.writer import Writer

    path = tmp_path / "odd.mcap"
    with open(path, "wb") as f:
        w = Writer(f)
        w.start("ros2", "test")
        sid = w.register_schema("odd_msgs/msg/Thing", "ros2msg", b"this is not a msg file {{")
        cid = w.register_channel("/odd", "cdr", sid)
        for i in range(5):
            w.add_message(cid, log_time=10**9 + i * 10**7, data=bytes([0, 1, 0, 0, i]),
                          publish_time=10**9 + i * 10**7)
        w.finish()
    r = curate([path], tmp_path / "rel", "odd")
    e = json.loads((r.release / "episodes.json").read_text())["episodes"][0]
    assert "decode_error" in e["flag_names"]
    g = open_release(r.release)
    off = g["streams/odd/raw/offsets"][:]
    assert bytes(g["streams/odd/raw/values"][off[4]:off[5]]) == bytes([0, 1, 0, 0, 4])


def test_service_event_topic_decodes_under_the_name_rosbag2_gives_it(tmp_path: Path) -> None:
    """rosbag2 names service event types ``pkg/srv/T_Event``; rosbags files them under
    ``pkg/srv/msg/...``: the stream still decodes, with its fields as columns."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types = get_types_from_msg(SET_BOOL_EVENT, "std_srvs/srv/SetBool_Event")
    store.register({k.replace("/srv/msg/", "/srv/"): v for k, v in types.items()})
    T = store.types
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection("/arm/enable/_service_event", "std_srvs/srv/SetBool_Event",
                             typestore=store)
        for i in range(5):
            ev = T["std_srvs/srv/SetBool_Event"](
                info=T["service_msgs/msg/ServiceEventInfo"](
                    event_type=0, stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=i),
                    client_gid=np.zeros(16, dtype=np.uint8), sequence_number=i),
                request=[T["std_srvs/msg/SetBool_Request"](data=bool(i % 2))], response=[])
            w.write(c, 10**9 + i * 10**8, store.serialize_cdr(ev, "std_srvs/srv/SetBool_Event"))
    r = curate([tmp_path / "bag"], tmp_path / "rel", "svc")
    (e,) = json.loads((r.release / "episodes.json").read_text())["episodes"]
    assert "decode_error" not in e["flag_names"]
    g = open_release(r.release)
    st = g["streams/arm.enable._service_event"]
    assert st.attrs["type"] == "std_srvs/srv/SetBool_Event"
    assert list(g["streams/arm.enable._service_event/info.sequence_number"][:]) == [0, 1, 2, 3, 4]
