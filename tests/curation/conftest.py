"""Fixtures for the curation tests: real sessions from the synthetic rig, foreign bags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recorder.control import Plan, Recorder
from recorder.profile import load_profile
from recorder.session import Session
from recorder.sources.synthetic import RigOptions, SyntheticRig
from recorder.urdf import urdf_from_profile

T0 = 1_750_000_000_000_000_000


def record_session(out: Path, *, episodes: int = 2, seconds: float = 1.5, operator: str = "op1",
                   task: str = "stack cups", **rig: object) -> Path:
    profile = load_profile("humanoid")
    session = Session(out, profile, robot_description=(
        "robot_description.urdf", "application/xml", urdf_from_profile(profile)))
    source = SyntheticRig(profile, RigOptions(**({"seed": 3, "start_ns": T0} | rig)))  # type: ignore[arg-type]
    Recorder(session, source, Plan(episodes=episodes, episode_seconds=seconds, task=task,
                                   operator=operator)).run(handle_signals=False)
    return out


@pytest.fixture(scope="session")
def clean_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_session(tmp_path_factory.mktemp("clean") / "s_alice", operator="alice")


@pytest.fixture(scope="session")
def second_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_session(tmp_path_factory.mktemp("second") / "s_bob", operator="bob",
                          seed=5, start_ns=T0 + 100 * 10**9)


@pytest.fixture(scope="session")
def lossy_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Messages lost at random, and the head camera unplugged for 0.5 s."""
    return record_session(tmp_path_factory.mktemp("lossy") / "s_lossy", episodes=1, seconds=2.0,
                          operator="carol", drop_rate=0.2,
                          stalls={"/camera/head/image_raw/compressed": (0.5, 0.5)})


def write_foreign_bag(path: Path, *, rate: float = 100.0, pattern: list[tuple[float, bool]],
                      extra_unknown: bool = False) -> Path:
    """A rosbag2 MCAP bag written by rosbags: joint states only, no DemoFab events.
    ``pattern``: (seconds, moving) phases."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    JS = store.types["sensor_msgs/msg/JointState"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    names = ["arm_joint_1", "arm_joint_2", "gripper_finger_joint"]
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/robot/joint_states", JS.__msgtype__, typestore=store)
        if extra_unknown:
            from rosbags.typesys import get_types_from_msg

            store.register(get_types_from_msg("int32 a\nfloat64 b\n", "acme_msgs/msg/Weird"))
            weird = w.add_connection("/acme/weird", "acme_msgs/msg/Weird", typestore=store)
        t = T0
        q = np.zeros(3)
        for seconds, moving in pattern:
            for _ in range(int(seconds * rate)):
                if moving:
                    q = q + 0.01
                stamp = Time(sec=t // 10**9, nanosec=t % 10**9)
                msg = JS(header=Header(stamp=stamp, frame_id=""), name=names, position=q.copy(),
                         velocity=np.full(3, 1.0 if moving else 0.0), effort=np.zeros(0))
                w.write(conn, t, store.serialize_cdr(msg, JS.__msgtype__))
                if extra_unknown:
                    W = store.types["acme_msgs/msg/Weird"]
                    w.write(weird, t, store.serialize_cdr(W(a=1, b=2.0), "acme_msgs/msg/Weird"))
                t += int(1e9 / rate)
    return path
