"""Recording profiles: the built-in humanoid, and clear errors for bad ones."""

from __future__ import annotations

import pytest

from recorder.errors import ProfileError
from recorder.profile import EVENTS_TOPIC, load_profile, parse_profile

BASE = {"name": "p", "topics": [{"topic": "/js", "type": "sensor_msgs/msg/JointState",
                                 "rate_hz": 100}]}


def test_humanoid_profile_has_hands_cameras_and_standard_types(humanoid):
    joints = humanoid.robot.joint_names
    assert len(joints) >= 40
    assert sum(j.startswith("left_hand_") for j in joints) >= 6
    assert sum(j.startswith("right_hand_") for j in joints) >= 6
    rates = {t.topic: (t.type, t.rate_hz, t.role) for t in humanoid.topics}
    assert rates["/joint_states"] == ("sensor_msgs/msg/JointState", 500, "observation")
    assert rates["/joint_commands"] == ("sensor_msgs/msg/JointState", 500, "action")
    assert rates["/imu"][:2] == ("sensor_msgs/msg/Imu", 500)
    assert rates["/tf"][:2] == ("tf2_msgs/msg/TFMessage", 100)
    poses = [t for t in humanoid.topics if t.type == "geometry_msgs/msg/PoseStamped"]
    assert len(poses) == 2 and all(t.rate_hz == 90 for t in poses)
    cams = humanoid.by_role("camera")
    assert len(cams) == 3 and all(t.type == "sensor_msgs/msg/CompressedImage" and
                                  t.rate_hz == 30 for t in cams)
    assert humanoid.events_topic.type == "demofab_msgs/msg/EpisodeEvent"


def test_events_topic_is_added_when_a_profile_omits_it():
    p = parse_profile(BASE)
    assert [t.topic for t in p.topics] == ["/js", EVENTS_TOPIC]


@pytest.mark.parametrize(("change", "message"), [
    ({"type": "sensor_msgs/msg/JointStat"}, r"unknown ROS 2 message type 'sensor_msgs/msg/JointStat'"),
    ({"role": "camra"}, r"topics\[0\]: role is 'camra', expected one of observation, action"),
    ({"topic": "js"}, r"topic 'js' must be absolute"),
    ({"rate_hz": -5}, r"rate_hz must be positive, got -5"),
    ({"qos": {"reliability": "sometimes"}}, r"reliability is 'sometimes'"),
])
def test_bad_topic_entries_are_named(change, message):
    raw = {"name": "p", "topics": [{**BASE["topics"][0], **change}]}
    with pytest.raises(ProfileError, match=message):
        parse_profile(raw, "my.yaml")


def test_unknown_format_version_is_refused():
    with pytest.raises(ProfileError, match="format_version 7 is not supported"):
        parse_profile({**BASE, "format_version": 7})


def test_unknown_builtin_lists_the_known_ones(tmp_path):
    with pytest.raises(ProfileError, match="built-in profiles are humanoid"):
        load_profile("quadruped")
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ProfileError, match="bad.yaml: not valid YAML"):
        load_profile(bad)
