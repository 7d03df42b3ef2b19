"""Replay in the simulator: recorded commands re-executed, drift and success reported."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recorder.contract import SIM_METADATA
from recorder.profile import load_profile
from recorder.session import Session
from sim.episode import (
    SIM_EPOCH_NS,
    provenance_record,
    render_episode,
    sim_profile,
    write_episode,
)
from sim.errors import SimError
from sim.randomize import draw, no_randomization
from sim.replay import replay
from tests.sim.test_episode import LAYOUT, scripted_trace

STEPS = 300


def record(directory: Path, seed: int = 3, *, exact: bool = False) -> Path:
    d = draw("pick_place", seed, no_randomization() if exact else None, layout=LAYOUT)
    session = Session(directory, sim_profile(cameras=False))
    info = write_episode(session, scripted_trace(d.layout, STEPS), d, cameras=False)
    return directory / info.file


def test_a_sim_episode_without_noise_replays_with_zero_error(tmp_path: Path) -> None:
    report = replay(record(tmp_path / "s", exact=True))
    assert report.sim_episode
    assert report.task == "pick_place"
    # the attempt and the 0.1 s the robot holds its pose before the stop
    assert STEPS + 48 <= report.compared <= report.commands <= report.steps <= STEPS + 50
    assert report.joints == 43
    assert report.max_joint_error_rad == 0.0
    assert report.rms_joint_error_rad == 0.0
    assert report.recorded_outcome == "success"


def test_a_sim_episode_replays_within_its_sensor_noise(tmp_path: Path) -> None:
    report = replay(record(tmp_path / "s"))
    std = report.sensor_noise_std_rad
    assert std > 0
    assert report.rms_joint_error_rad == pytest.approx(std, rel=0.1)
    assert report.max_joint_error_rad < 6 * std
    assert report.as_dict()["max_joint_error_rad"] == report.max_joint_error_rad


def test_changed_commands_show_as_drift(tmp_path: Path) -> None:
    """An episode whose commands differ from what produced its states (here: the right
    elbow commanded 0.1 rad further) replays with the drift on that joint."""
    d = draw("pick_place", 3, no_randomization(), layout=LAYOUT)
    trace = scripted_trace(d.layout, STEPS)
    session = Session(tmp_path / "s", sim_profile(cameras=False))
    info = write_episode(session, trace, d, cameras=False)
    moved = trace.ctrl.copy()
    moved[:, session.profile.robot.joint_names.index("right_elbow_joint")] += 0.1
    other = Session(tmp_path / "o", sim_profile(cameras=False))
    states = [m for m in render_episode(trace, d, cameras=False,
                                        profile=other.profile, t0_ns=SIM_EPOCH_NS)
              if m.topic == "/joint_states"]
    commands = [m for m in render_episode(replace(trace, ctrl=moved), d, cameras=False,
                                          profile=other.profile, t0_ns=SIM_EPOCH_NS)
                if m.topic == "/joint_commands"]
    other.start_episode("pick_place", "x", at_ns=SIM_EPOCH_NS)
    for m in sorted(states + commands, key=lambda m: m.log_time):
        other.write(m.topic, m.data, m.log_time, m.publish_time)
    bad = other.stop_episode(at_ns=SIM_EPOCH_NS + STEPS * 2_000_000,
                             metadata={SIM_METADATA: provenance_record(trace, d)})
    assert replay(tmp_path / "s" / info.file).max_joint_error_rad == 0.0
    report = replay(tmp_path / "o" / bad.file)
    errors = report.joint_max_error_rad
    assert 0.05 < errors["right_elbow_joint"] < 0.15
    assert report.worst_joint.startswith("right_")  # the right arm drifts, the left does not
    assert report.max_joint_error_rad == max(errors.values())
    assert max(v for k, v in errors.items() if k.startswith("left_")) < 0.01


def test_a_file_that_is_not_an_mcap_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.mcap"
    path.write_text("hello")
    with pytest.raises(SimError, match=f"{path}: not an MCAP file"):
        replay(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SimError, match="nope.mcap: cannot read"):
        replay(tmp_path / "nope.mcap")


def test_an_episode_without_joint_commands_is_named(tmp_path: Path) -> None:
    base = sim_profile(cameras=False)
    profile = replace(base, topics=tuple(t for t in base.topics
                                         if t.topic != "/joint_commands"))
    d = draw("pick_place", 3, layout=LAYOUT)
    session = Session(tmp_path / "s", profile)
    info = write_episode(session, scripted_trace(d.layout, 50), d, cameras=False)
    with pytest.raises(SimError, match=f"{info.file}: no /joint_commands messages"):
        replay(tmp_path / "s" / info.file)


def test_a_cut_mcap_is_named(tmp_path: Path) -> None:
    path = record(tmp_path / "s")
    cut = tmp_path / "cut.mcap"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SimError, match=f"{cut}: damaged or unreadable MCAP"):
        replay(cut)


def test_a_real_recording_starts_from_its_recorded_state_and_tf_objects(
        tmp_path: Path) -> None:
    tasks = pytest.importorskip("sim.tasks")
    d = draw("pick_place", 3, layout=tasks.get_task("pick_place").default_layout())
    trace = scripted_trace(d.layout, STEPS)
    session = Session(tmp_path / "r", load_profile("humanoid"))
    session.start_episode("pick_place", "op", at_ns=SIM_EPOCH_NS)
    for m in render_episode(trace, d, cameras=False, profile=session.profile,
                            t0_ns=SIM_EPOCH_NS):
        session.write(m.topic, m.data, m.log_time, m.publish_time)
    info = session.stop_episode(at_ns=SIM_EPOCH_NS + STEPS * 2_000_000)
    report = replay(tmp_path / "r" / info.file)
    assert not report.sim_episode and report.task == "pick_place"
    assert report.max_joint_error_rad < 0.1  # fingers on an object placed from noisy mocap
    assert report.success is not None
    assert not any("not on /tf" in n for n in report.notes)
    assert np.isfinite(report.rms_joint_error_rad)


def test_a_damaged_chunk_is_named(tmp_path: Path) -> None:
    path = record(tmp_path / "s")
    data = bytearray(path.read_bytes())
    at = len(data) // 3
    data[at:at + 64] = bytes(64)
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(data))
    with pytest.raises(SimError, match=f"{bad}: damaged or unreadable MCAP"):
        replay(bad)


def test_an_unknown_task_is_named_with_the_file(tmp_path: Path) -> None:
    d = draw("pick_place", 3, layout=LAYOUT)
    session = Session(tmp_path / "r", load_profile("humanoid"))
    session.start_episode("juggle", "op", at_ns=SIM_EPOCH_NS)
    for m in render_episode(scripted_trace(d.layout, 30), d, cameras=False,
                            profile=session.profile, t0_ns=SIM_EPOCH_NS):
        session.write(m.topic, m.data, m.log_time, m.publish_time)
    info = session.stop_episode(at_ns=SIM_EPOCH_NS + 30 * 2_000_000)
    path = tmp_path / "r" / info.file
    with pytest.raises(SimError, match=f"{path}: .*'juggle'.*pick_place"):
        replay(path)


def test_object_poses_relative_to_the_pelvis_are_placed_in_the_world(tmp_path: Path) -> None:
    from recorder.types import deserialize, serialize
    from sim.episode import relative_pose

    tasks = pytest.importorskip("sim.tasks")
    d = draw("pick_place", 3, no_randomization(),
             layout=tasks.get_task("pick_place").default_layout())
    session = Session(tmp_path / "r", load_profile("humanoid"))
    session.start_episode("pick_place", "op", at_ns=SIM_EPOCH_NS)
    pelvis = None
    for m in render_episode(scripted_trace(d.layout, 40), d, cameras=False,
                            profile=session.profile, t0_ns=SIM_EPOCH_NS):
        data = m.data
        if m.topic == "/tf":  # a rig whose perception gives object poses in the robot frame
            msg = deserialize(m.data, "tf2_msgs/msg/TFMessage")
            for t in msg.transforms:
                tr, r = t.transform.translation, t.transform.rotation
                pose = (np.array([tr.x, tr.y, tr.z]), np.array([r.w, r.x, r.y, r.z]))
                if t.child_frame_id == "pelvis":
                    pelvis = pose
                elif t.header.frame_id == "world" and pelvis is not None:
                    pos, _ = relative_pose(pelvis, pose)
                    t.header.frame_id = "pelvis"
                    tr.x, tr.y, tr.z = (float(v) for v in pos)
            data = serialize(msg, "tf2_msgs/msg/TFMessage")
        session.write(m.topic, data, m.log_time, m.publish_time)
    info = session.stop_episode(at_ns=SIM_EPOCH_NS + 40 * 2_000_000)
    report = replay(tmp_path / "r" / info.file)
    cube = d.layout.object("cube").xy
    assert report.object_xy["cube"] == pytest.approx(cube, abs=1e-6)
    assert report.as_dict()["object_xy"]["cube"] == pytest.approx(list(cube), abs=1e-6)
