"""Sources: the synthetic rig and recordings replayed into a new session."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
from mcap.reader import make_reader

from recorder.profile import EVENTS_TOPIC
from recorder.sources.synthetic import RigOptions, SyntheticRig
from recorder.types import deserialize

from .conftest import T0


def test_rig_sends_real_jpegs_and_joints_inside_their_limits(humanoid):
    rig = SyntheticRig(humanoid, RigOptions(seed=5, start_ns=T0))
    lows = np.array([j.lower for j in humanoid.robot.joints])
    highs = np.array([j.upper for j in humanoid.robot.joints])
    seen = set()
    for m in rig.messages():
        if m.log_time > T0 + 0.5e9:
            break
        if m.topic == "/joint_states":
            js = deserialize(m.data, "sensor_msgs/msg/JointState")
            assert list(js.name) == humanoid.robot.joint_names
            assert np.all(js.position >= lows) and np.all(js.position <= highs)
        elif m.topic == "/camera/head/image_raw/compressed":
            img = deserialize(m.data, "sensor_msgs/msg/CompressedImage")
            assert img.format == "jpeg"
            frame = cv2.imdecode(img.data, cv2.IMREAD_COLOR)
            assert frame.shape == (480, 640, 3)
        seen.add(m.topic)
    assert seen == {t.topic for t in humanoid.topics if t.topic != EVENTS_TOPIC}


def test_same_seed_gives_the_same_stream(humanoid):
    def first(n):
        rig = SyntheticRig(humanoid, RigOptions(seed=9, start_ns=T0))
        out = []
        for m in rig.messages():
            out.append(m)
            if len(out) == n:
                return out

    assert first(300) == first(300)


def test_a_session_recorded_again_from_an_episode_file_keeps_the_bytes(recorded, tmp_path):
    session, _, _ = recorded
    src = session.dir / session.episodes[0].file
    out = tmp_path / "copy"
    r = subprocess.run([sys.executable, "-m", "demofab.cli", "record", "--source", "bag",
                        "--input", str(src), "--out", str(out), "--episodes", "1", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (ep,) = json.loads(r.stdout)
    assert ep["ended_by"] == "close"  # the source ran out before any stop
    with open(src, "rb") as a, open(out / ep["file"], "rb") as b:
        orig = [(c.topic, m.log_time, m.data) for _, c, m in make_reader(a).iter_messages()
                if c.topic != EVENTS_TOPIC]
        copy = [(c.topic, m.log_time, m.data) for _, c, m in make_reader(b).iter_messages()
                if c.topic != EVENTS_TOPIC]
    assert copy == orig
