"""Sim episodes: a trace re-executed and recorded with the humanoid profile's topics."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported

import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from curation.mcapread import read_mcap
from recorder.contract import EVENTS_TOPIC, SIM_METADATA, EventKind
from recorder.session import Session
from recorder.sources import RawMessage
from recorder.types import deserialize
from sim.episode import (
    GROUND_TRUTH_TOPIC,
    PALM_FRAMES,
    STEP_NS,
    camera_topic,
    episode_end_ns,
    episode_messages,
    provenance_record,
    relative_pose,
    render_episode,
    sim_profile,
    write_episode,
)
from sim.errors import SimError
from sim.randomize import Draw, draw, no_randomization
from sim.scenes import CAMERAS, BinSpec, Layout, ObjectSpec, Scene
from sim.trace import Mark, Trace

T0 = 1_800_000_000 * 1_000_000_000
LAYOUT = Layout(objects=(ObjectSpec("cube", (0.40, -0.15)),), bin=BinSpec((0.45, 0.15)))
SMALL = (64, 48)
STEPS = 100  # 0.2 s


def scripted_trace(layout: Layout = LAYOUT, steps: int = 500, *, seed: int = 0,
                   success: bool = True) -> Trace:
    """The right arm reaching forward and back (shoulder and elbow), hands open, with the
    palm targets as teleop poses in the pelvis frame and two subtask marks."""
    with Scene(layout) as scene:
        home = scene.home_ctrl()
        names = scene.joint_names
        t = np.arange(steps) * 0.002
        ctrl = np.tile(home, (steps, 1))
        phase = np.sin(np.pi * t / (steps * 0.002))
        ctrl[:, names.index("right_shoulder_pitch_joint")] = -0.6 * phase
        ctrl[:, names.index("right_elbow_joint")] = 0.8 * phase - 0.2
        teleop = np.zeros((steps, 2, 7))
        pelvis = scene.body_pose("pelvis")
        for i in range(steps):
            for k, side in enumerate(("left", "right")):
                pos, quat = relative_pose(pelvis, scene.palm_pose(side))
                teleop[i, k] = [*pos, *quat]
            scene.set_ctrl(ctrl[i])
            scene.step()
    marks = [Mark(steps // 4, "subtask", "grasp"), Mark(steps // 2, "subtask", "lift")]
    return Trace("pick_place", seed, layout, ctrl, teleop, marks, success=success,
                 failed_subtask="" if success else "lift",
                 reason="" if success else "cube below 0.75 m",
                 provenance={"origin": "scripted"})


@pytest.fixture(scope="module")
def noisy() -> Draw:
    return draw("pick_place", 4, layout=LAYOUT)


@pytest.fixture(scope="module")
def trace(noisy: Draw) -> Trace:
    return scripted_trace(noisy.layout, STEPS)


def with_layout(trace: Trace, d: Draw) -> Trace:
    """The same commands in the layout of another draw."""
    return Trace(**{**_fields(trace), "layout": d.layout})


def by_topic(msgs: list[RawMessage]) -> dict[str, list[RawMessage]]:
    out: dict[str, list[RawMessage]] = defaultdict(list)
    for m in msgs:
        out[m.topic].append(m)
    return out


@pytest.fixture(scope="module")
def with_cameras(trace: Trace, noisy: Draw) -> list[RawMessage]:
    return list(render_episode(trace, noisy, t0_ns=T0, image_size=SMALL))


def test_every_topic_comes_at_its_profile_rate(with_cameras: list[RawMessage]) -> None:
    counts = Counter(m.topic for m in with_cameras)  # 100 steps = 0.2 s
    want = {"/joint_states": 100, "/joint_commands": 100, "/imu": 100, "/tf": 20,
            "/teleop/left_hand/pose": 18, "/teleop/right_hand/pose": 18,
            GROUND_TRUTH_TOPIC: 20, **{camera_topic(c): 6 for c in CAMERAS}}
    assert dict(counts) == want
    assert EVENTS_TOPIC not in counts  # events are the session's


def test_messages_come_in_log_time_order_with_increasing_stamps(
        with_cameras: list[RawMessage]) -> None:
    logs = [m.log_time for m in with_cameras]
    assert logs == sorted(logs)
    for topic, msgs in by_topic(with_cameras).items():
        stamps = [m.publish_time or 0 for m in msgs]
        assert stamps == sorted(set(stamps)), topic
        assert stamps[0] == T0
        assert all(m.log_time >= (m.publish_time or 0) for m in msgs)


def test_receive_latency_is_the_draws(with_cameras: list[RawMessage], noisy: Draw) -> None:
    topics = by_topic(with_cameras)
    for topic, key in (("/joint_states", "joint_states"), ("/tf", "tf"),
                       (camera_topic("head"), "camera")):
        lat = [(m.log_time - (m.publish_time or 0)) / 1e6 for m in topics[topic]]
        assert np.mean(lat) == pytest.approx(noisy.latency_ms[key], abs=0.3), topic
    gt = topics[GROUND_TRUTH_TOPIC]
    assert all(m.log_time == m.publish_time for m in gt)


def test_cameras_are_jpeg_frames_of_the_asked_size(with_cameras: list[RawMessage]) -> None:
    msgs = by_topic(with_cameras)[camera_topic("head")]
    img = deserialize(msgs[0].data, "sensor_msgs/msg/CompressedImage")
    assert img.format == "jpeg"
    assert img.header.frame_id == "head_optical_frame"
    frame = cv2.imdecode(np.asarray(img.data), cv2.IMREAD_COLOR)
    assert frame.shape == (SMALL[1], SMALL[0], 3)
    assert frame.std() > 5  # a rendered scene, not a blank frame


def test_the_same_trace_gives_byte_identical_joint_states_with_or_without_cameras(
        trace: Trace, noisy: Draw, with_cameras: list[RawMessage]) -> None:
    again = list(render_episode(trace, noisy, cameras=False, t0_ns=T0))
    for topic in ("/joint_states", "/joint_commands", "/tf", "/imu", GROUND_TRUTH_TOPIC):
        a = [(m.data, m.log_time) for m in by_topic(with_cameras)[topic]]
        b = [(m.data, m.log_time) for m in by_topic(again)[topic]]
        assert a == b, topic
    assert not any(m.topic.startswith("/camera/") for m in again)


def test_cameras_off_renders_nothing(trace: Trace, noisy: Draw,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kw: object) -> np.ndarray:
        raise AssertionError("rendered with cameras=False")

    monkeypatch.setattr(Scene, "render", refuse)
    msgs = list(render_episode(scripted_trace(noisy.layout, 60), noisy, cameras=False,
                               t0_ns=T0))
    assert Counter(m.topic for m in msgs)["/joint_states"] == 60


def test_sensor_noise_and_latency_come_from_the_draw(trace: Trace) -> None:
    a = draw("pick_place", 4, layout=LAYOUT)
    b = draw("pick_place", 5, layout=LAYOUT)
    silent = replace(a, sensor_noise=no_randomization().sensor_noise,
                     latency_ms=dict.fromkeys(a.latency_ms, 0.0))  # a's scene, exact streams
    exact = list(render_episode(with_layout(trace, a), silent, cameras=False, t0_ns=T0))
    noisy_a = list(render_episode(with_layout(trace, a), a, cameras=False, t0_ns=T0))
    noisy_b = list(render_episode(with_layout(trace, b), b, cameras=False, t0_ns=T0))

    def positions(msgs: list[RawMessage]) -> np.ndarray:
        return np.array([deserialize(m.data, "sensor_msgs/msg/JointState").position
                         for m in by_topic(msgs)["/joint_states"]])

    q_exact, q_a, q_b = positions(exact), positions(noisy_a), positions(noisy_b)
    assert not np.array_equal(q_a, q_b)
    # the noise's spread is the configured one (a little less: none past a joint limit)
    assert (q_a - q_exact).std() == pytest.approx(a.sensor_noise.joint_position_std_rad,
                                                  rel=0.15)
    cmds = [m.data for m in by_topic(noisy_a)["/joint_commands"]]
    assert cmds == [m.data for m in by_topic(noisy_b)["/joint_commands"]]
    assert all(m.log_time == m.publish_time for m in exact)


def _fields(trace: Trace) -> dict[str, object]:
    return {k: getattr(trace, k) for k in Trace.__dataclass_fields__}


def test_joint_commands_carry_the_trace_ctrl_in_profile_order(trace: Trace) -> None:
    none = draw("pick_place", 0, no_randomization(), layout=LAYOUT)
    msgs = list(render_episode(with_layout(trace, none), none, cameras=False, t0_ns=T0))
    cmds = [deserialize(m.data, "sensor_msgs/msg/JointState")
            for m in by_topic(msgs)["/joint_commands"]]
    assert list(cmds[0].name) == sim_profile().robot.joint_names
    assert np.array_equal(np.array([c.position for c in cmds]), trace.ctrl)
    assert [c.header.stamp.nanosec for c in cmds[:2]] == [0, STEP_NS]


def test_tf_holds_robot_links_and_mocap_objects_ground_truth_is_exact(
        with_cameras: list[RawMessage], noisy: Draw) -> None:
    topics = by_topic(with_cameras)
    tf = deserialize(topics["/tf"][15].data, "tf2_msgs/msg/TFMessage")
    children = {t.child_frame_id: t for t in tf.transforms}
    assert {"pelvis", "torso_link", *PALM_FRAMES.values(), "cube", "bin"} <= set(children)
    stamp = tf.transforms[0].header.stamp
    cube = children["cube"]
    assert cube.header.frame_id == "world"
    age_ms = ((stamp.sec - cube.header.stamp.sec) * 1e9
              + stamp.nanosec - cube.header.stamp.nanosec) / 1e6
    assert age_ms == pytest.approx(noisy.latency_ms["mocap"], abs=2.0)
    gt = deserialize(topics[GROUND_TRUTH_TOPIC][0].data, "tf2_msgs/msg/TFMessage")
    gt_cube = {t.child_frame_id: t for t in gt.transforms}["cube"].transform.translation
    obj = noisy.layout.objects[0]
    assert (gt_cube.x, gt_cube.y) == pytest.approx(obj.xy, abs=1e-3)
    assert gt_cube.z == pytest.approx(noisy.layout.table_height + obj.half_size[2], abs=2e-3)


def test_a_profile_without_ground_truth_gets_none(trace: Trace, noisy: Draw) -> None:
    from recorder.profile import load_profile

    msgs = render_episode(scripted_trace(noisy.layout, 20), noisy, cameras=False, t0_ns=T0,
                          profile=load_profile("humanoid"))
    assert GROUND_TRUTH_TOPIC not in {m.topic for m in msgs}


def test_the_sim_profile_is_the_humanoid_profile_with_ground_truth() -> None:
    p = sim_profile()
    assert p.name == "humanoid"
    assert p.topic(GROUND_TRUTH_TOPIC).role == "ground_truth"
    assert p.topics[-1].topic == EVENTS_TOPIC
    assert not sim_profile(cameras=False).by_role("camera")


def test_a_malformed_trace_is_refused(trace: Trace, noisy: Draw) -> None:
    bad = Trace(**{**_fields(trace), "ctrl": trace.ctrl[:, :40]})
    with pytest.raises(SimError, match=r"seed 0: ctrl has shape \(100, 40\)"):
        next(render_episode(bad, noisy, t0_ns=T0))
    elsewhere = draw("pick_place", 9, layout=LAYOUT)
    with pytest.raises(SimError, match="executed in another layout than the draw of seed 9"):
        next(render_episode(trace, elsewhere, t0_ns=T0))


def read_episode(path: Path) -> tuple[dict[str, dict[str, str]], list[object],
                                      dict[str, int]]:
    content = read_mcap(path.read_bytes())
    events = []
    counts = {}
    for ch in content.channels.values():
        counts[ch.topic] = len(ch.data)
        if ch.topic == EVENTS_TOPIC:
            events = [deserialize(bytes(d), ch.type) for d in ch.data]
    return content.metadata, events, counts


def test_write_episode_records_events_marks_outcome_and_provenance(
        tmp_path: Path, trace: Trace) -> None:
    d = draw("pick_place", 4, layout=LAYOUT)
    session = Session(tmp_path / "s", sim_profile(cameras=False))
    info = write_episode(session, trace, d, cameras=False, t0_ns=T0)  # 100 steps
    assert info.outcome == "success" and info.task == "pick_place"
    assert not info.flagged, info.flags
    metadata, events, counts = read_episode(tmp_path / "s" / info.file)
    kinds = [(EventKind(e.kind).name, e.label) for e in events]  # type: ignore[attr-defined]
    assert kinds == [("START", ""), ("SUBTASK", "grasp"), ("SUBTASK", "lift"), ("STOP", "")]
    stamps = [e.header.stamp for e in events]  # type: ignore[attr-defined]
    assert (stamps[1].nanosec, stamps[2].nanosec) == (25 * STEP_NS, 50 * STEP_NS)
    assert events[-1].outcome == "success"  # type: ignore[attr-defined]
    # the attempt, then the robot holding its pose until the stop, 0.1 s later
    assert STEPS + 48 <= counts["/joint_states"] <= STEPS + 50
    assert 29 <= counts[GROUND_TRUTH_TOPIC] <= 30
    sim = metadata[SIM_METADATA]
    assert (sim["task"], sim["seed"], sim["success"]) == ("pick_place", "0", "true")
    assert Draw.from_dict(json.loads(sim["draw"])) == d
    assert json.loads(sim["provenance"]) == {"origin": "scripted"}  # the trace's own
    assert json.loads(sim["sources"]) == []
    assert sim["mujoco"] and sim["demofab"]


def test_a_failed_trace_is_a_failure_with_its_reason(tmp_path: Path) -> None:
    d = draw("pick_place", 1, layout=LAYOUT)
    failed = scripted_trace(d.layout, 100, success=False)
    session = Session(tmp_path / "s", sim_profile(cameras=False))
    info = write_episode(session, failed, d, cameras=False, t0_ns=T0)
    assert info.outcome == "failure"
    _, events, _ = read_episode(tmp_path / "s" / info.file)
    notes = [e.label for e in events if e.kind == EventKind.NOTE]  # type: ignore[attr-defined]
    assert notes == ["failed lift: cube below 0.75 m"]


def test_a_trace_that_cannot_be_rendered_leaves_no_open_episode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kw: object) -> np.ndarray:
        raise SimError("offscreen rendering failed (no GL)")

    d = draw("pick_place", 1, layout=LAYOUT)
    trace = scripted_trace(d.layout, 40)
    session = Session(tmp_path / "s", sim_profile())
    monkeypatch.setattr(Scene, "render", broken)
    with pytest.raises(SimError, match="no GL"):
        write_episode(session, trace, d, t0_ns=T0, image_size=SMALL)
    assert session.current is None and len(session.discarded) == 1
    monkeypatch.undo()
    info = write_episode(session, trace, d, cameras=False, t0_ns=T0)
    assert info.index == 1 and [e.index for e in session.episodes] == [1]


def test_messages_rendered_elsewhere_are_written_as_they_are(tmp_path: Path) -> None:
    d = draw("pick_place", 2, layout=LAYOUT)
    trace = scripted_trace(d.layout, 60)
    msgs = list(episode_messages(trace, d, cameras=False, t0_ns=T0,
                                 profile=sim_profile(cameras=False)))
    assert max(m.log_time for m in msgs) < episode_end_ns(trace, T0)
    session = Session(tmp_path / "s", sim_profile(cameras=False))
    info = write_episode(session, trace, d, cameras=False, t0_ns=T0, messages=msgs)
    assert not info.flagged, info.flags
    assert info.end_ns == episode_end_ns(trace, T0)
    content = read_mcap((tmp_path / "s" / info.file).read_bytes())
    ch = next(c for c in content.channels.values() if c.topic == "/joint_states")
    assert [bytes(x) for x in ch.data] == [m.data for m in msgs if m.topic == "/joint_states"]


def test_a_multiplied_demo_names_its_source_episodes(tmp_path: Path) -> None:
    from curation.cli import provenance_line

    d = draw("pick_place", 2, layout=LAYOUT)
    trace = scripted_trace(d.layout, 30)
    source = {"path": "/data/real/episode_0002.mcap", "sha256": "ab" * 32}
    trace.provenance = {"method": "mimicgen", "source": source,
                        "segments": [{"subtask": "grasp", "transform": np.eye(4)}]}
    record = provenance_record(trace, d)
    assert json.loads(record["sources"]) == [source]
    prov = json.loads(record["provenance"])
    assert prov["method"] == "mimicgen"
    assert prov["segments"][0]["transform"][0] == [1.0, 0.0, 0.0, 0.0]
    row = {"kind": "sim", "sim": {k: json.loads(v) if v.startswith(("[", "{")) else v
                                  for k, v in record.items()}}
    assert provenance_line(row) == "sim seed 0 from episode_0002.mcap"


@pytest.mark.parametrize(("velocities", "efforts"), [(True, True), (False, False)])
def test_the_joint_state_template_writes_what_rosbags_writes(velocities: bool,
                                                             efforts: bool) -> None:
    from recorder.types import serialize, typestore

    names = sim_profile().robot.joint_names
    T = typestore().types
    rng = np.random.default_rng(0)
    from sim.episode import _Msgs

    template = _Msgs().joint_state_template(names, velocities, efforts)
    for stamp in (T0, T0 + 123_456_789, T0 + 2_000_000_001):
        q, dq, tau = (rng.normal(size=43) for _ in range(3))
        msg = T["sensor_msgs/msg/JointState"](
            header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
                sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=""),
            name=names, position=q, velocity=dq if velocities else np.zeros(0),
            effort=tau if efforts else np.zeros(0))
        want = serialize(msg, "sensor_msgs/msg/JointState")
        got = template.build(stamp, q, dq if velocities else None, tau if efforts else None)
        assert got == want


def joint_state_digest(seed: int) -> str:
    """sha256 of an episode's /joint_states bytes and log times (run in a child process)."""
    import hashlib

    d = draw("pick_place", seed, layout=LAYOUT)
    h = hashlib.sha256()
    for m in render_episode(scripted_trace(d.layout, 80), d, cameras=False, t0_ns=T0):
        if m.topic == "/joint_states":
            h.update(m.data)
            h.update(m.log_time.to_bytes(8, "little"))
    return h.hexdigest()


@pytest.mark.slow
def test_another_process_records_the_same_joint_state_bytes() -> None:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        theirs = pool.apply(joint_state_digest, (6,))
    assert theirs == joint_state_digest(6)
    assert joint_state_digest(7) != theirs
