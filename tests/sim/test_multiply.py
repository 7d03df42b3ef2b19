"""Multiplication (MimicGen-style): the SE(3) carry-over of a source segment onto a new
object pose, source episodes read from MCAP (simulated or real-rig frame names, events or
segmentation, no ground-truth topic), the errors a bad source gets, planning a segment in
a new scene (bridge, blend, noise, handover modes), and multiplied attempts in physics
(a rig-like recording and the simulated operator's, bimanual and handover tasks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from curation.mcapread import read_mcap
from recorder.contract import EventKind
from recorder.profile import Profile, load_profile
from recorder.session import Session
from recorder.types import serialize, typestore
from sim import episode, expert, randomize
from sim.errors import SimError
from sim.multiply import (
    MultiplyOptions,
    SourceDemo,
    blend_weights,
    bridge_steps,
    generate_attempt,
    hand_closure,
    interpolate_poses,
    invert,
    load_source,
    mat_to_quat,
    matrix_pose,
    object_transform,
    plan_segment,
    pose_matrix,
    quat_to_mat,
    rotation_angle,
    slerp,
    symmetric_pose,
    transform_segment,
)
from sim.scenes import Scene
from sim.tasks import get_task
from sim.trace import Trace

T0 = 1_700_000_000_000_000_000
PELVIS_Z = 0.793


# -- test data: poses and source episodes -------------------------------------------------
def yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def random_pose(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return pose_matrix(rng.uniform(-1, 1, 3), q / np.linalg.norm(q))


PICK_PLACE = get_task("pick_place")
#: source scene: cube and bin in the world, right palm path (world) and closure over time
CUBE0 = pose_matrix(np.array([0.42, -0.14, 0.72]), yaw_quat(0.15))
BIN0 = pose_matrix(np.array([0.45, 0.16, 0.70]), yaw_quat(0.0))
#: the grasp: palm relative to the cube (beside it, palm toward the midline)
GRASP = pose_matrix(np.array([0.0, -0.06, 0.02]), np.array([0.7071068, 0.7071068, 0.0, 0.0]))
HOME = pose_matrix(np.array([0.12, -0.24, 0.55]), np.array([1.0, 0.0, 0.0, 0.0]))
RELEASE_DROP = 0.12  # the palm over the bin: the cube 12 cm above the bin's floor


def source_motion(t: np.ndarray) -> dict[str, np.ndarray]:
    """World poses (n, 4, 4) of the right palm and the cube, and the closure, at times
    t (s): reach 0-1.5 s, close 1.5-2.0 s, carry 2.0-3.5 s, open 3.5-3.9 s, rest to 4.2."""
    grasp_world = CUBE0 @ GRASP
    cube_over_bin = pose_matrix(BIN0[:3, 3] + [0, 0, RELEASE_DROP + 0.02], yaw_quat(0.15))
    over_bin = cube_over_bin @ GRASP
    reach = np.concatenate([HOME[None], interpolate_poses(HOME, grasp_world, 150)])
    carry = np.concatenate([grasp_world[None], interpolate_poses(grasp_world, over_bin, 150)])
    palm = np.empty((len(t), 4, 4))
    cube = np.empty((len(t), 4, 4))
    closure = np.zeros(len(t))
    for i, ti in enumerate(t):
        if ti < 1.5:
            palm[i] = reach[int(round(ti / 1.5 * 150))]
        elif ti < 2.0:
            palm[i] = grasp_world
        else:
            palm[i] = carry[int(round(min(1.0, (ti - 2.0) / 1.5) * 150))]
        closure[i] = np.clip((ti - 1.5) / 0.5, 0, 1) if ti < 3.5 else \
            np.clip(1 - (ti - 3.5) / 0.4, 0, 1)
        held = 2.0 <= ti < 3.7
        cube[i] = palm[i] @ invert(GRASP) if held else (CUBE0 if ti < 2.0 else cube[i - 1])
    return {"palm": palm, "cube": cube, "closure": closure}


# the pick_place scene as a real rig would see it: the task's default layout, the palm
# from the robot's rest pose through a side grasp (palm toward the midline, fingers
# forward, 3.5 cm behind and outside the cube's centre, 1.6 cm above it) to a drop over
# the bin
RIG_CUBE = pose_matrix(np.array([0.35, -0.17, 0.83]), yaw_quat(0.0))
RIG_BIN = pose_matrix(np.array([0.36, 0.03, 0.80]), yaw_quat(0.0))
RIG_GRASP = pose_matrix(np.array([-0.035, -0.035, 0.016]), yaw_quat(0.0))
RIG_REST = pose_matrix(np.array([0.22, -0.20, 0.97]), yaw_quat(0.0))


def _at(pose: np.ndarray, d: tuple[float, float, float]) -> np.ndarray:
    out = pose.copy()
    out[:3, 3] += d
    return out


def rig_motion(t: np.ndarray) -> dict[str, np.ndarray]:
    """A teleoperated pick-and-place in the default layout, by keyframes (time s, world
    palm pose, closure): pre-grasp, grasp, close, lift, carry, lower, open, retreat."""
    from sim.multiply import blend_poses

    grasp = RIG_CUBE @ RIG_GRASP
    drop = pose_matrix(RIG_BIN[:3, 3] + [-0.035, -0.035, 0.14], yaw_quat(0.0))
    keys = [(0.0, RIG_REST, 0.0), (1.0, _at(grasp, (-0.05, -0.05, 0.04)), 0.0),
            (1.6, grasp, 0.0), (2.3, grasp, 1.0), (2.4, grasp, 1.0),
            (3.0, _at(grasp, (0, 0, 0.06)), 1.0), (4.3, drop, 1.0),
            (4.7, _at(drop, (0, 0, -0.02)), 1.0), (5.1, _at(drop, (0, 0, -0.02)), 0.0),
            (5.7, _at(drop, (-0.04, -0.03, 0.05)), 0.0), (6.2, _at(drop, (-0.04, -0.03, 0.05)),
                                                          0.0)]
    kt = np.array([k[0] for k in keys])
    j = np.clip(np.searchsorted(kt, t, "right") - 1, 0, len(keys) - 2)
    a = np.clip((t - kt[j]) / (kt[j + 1] - kt[j]), 0, 1)
    a = a * a * (3 - 2 * a)
    palm = blend_poses(np.stack([keys[i][1] for i in j]), np.stack([keys[i + 1][1] for i in j]),
                       a)
    closure = np.array([keys[i][2] + ai * (keys[i + 1][2] - keys[i][2])
                        for i, ai in zip(j, a, strict=True)])
    held = (t >= 2.3) & (t < 5.1)
    cube = np.where(held[:, None, None], palm @ invert(RIG_GRASP), RIG_CUBE)
    after = t >= 5.1
    if after.any():
        cube[after] = cube[np.flatnonzero(after)[0] - 1]
    return {"palm": palm, "cube": cube, "closure": closure, "bin": RIG_BIN}


RIG_MARKS = ((2.4, "grasp"), (3.0, "lift"), (5.1, "release"), (5.7, "place"))

FINGERS = ("index_0", "index_1", "middle_0", "middle_1")


def _tf(parent: str, child: str, pose: np.ndarray, stamp: int) -> object:
    T = typestore().types
    pos, quat = matrix_pose(pose)
    return T["geometry_msgs/msg/TransformStamped"](
        header=T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
            frame_id=parent),
        child_frame_id=child,
        transform=T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=pos[0], y=pos[1], z=pos[2]),
            rotation=T["geometry_msgs/msg/Quaternion"](w=quat[0], x=quat[1], y=quat[2],
                                                       z=quat[3])))


def write_source(directory: Path, *, palm_frame: str = "right_hand_palm_link",
                 palm_parent: str = "pelvis", world_to_pelvis: bool = True,
                 cube_frame: str | None = "cube", bin_frame: str | None = "bin",
                 marks: tuple[tuple[float, str], ...] = ((2.0, "grasp"), (3.9, "release")),
                 hand_joints: bool = True, motion: Callable[[np.ndarray], dict[str, np.ndarray]]
                 = source_motion, duration_s: float = 4.2,
                 teleop_offset: np.ndarray | None = None) -> Path:
    """Record one source episode through the recorder's Session: /tf at 100 Hz (palm under
    ``palm_parent``, objects under world), the hands on /joint_commands at 100 Hz, SUBTASK
    marks; no ground-truth topic. ``teleop_offset``: also the operator's targets on
    /teleop/right_hand/pose (pelvis frame), the palm pose shifted by it. Returns the
    episode file."""
    profile = load_profile("humanoid")
    T = typestore().types
    session = Session(directory, profile)
    session.start_episode("pick_place", "tester", at_ns=T0)
    t = np.arange(0.0, duration_s, 0.01)
    mv = motion(t)
    pelvis = pose_matrix(np.array([0.0, 0.0, PELVIS_Z]), np.array([1.0, 0, 0, 0]))
    names = [j.name for j in profile.robot.joints]
    limits = {j.name: (j.lower, j.upper) for j in profile.robot.joints}
    for i, ti in enumerate(t):
        stamp = T0 + int(round(ti * 1e9))
        palm = mv["palm"][i] if palm_parent == "world" else invert(pelvis) @ mv["palm"][i]
        tfs = [_tf(palm_parent, palm_frame, palm, stamp)]
        if world_to_pelvis:
            tfs.insert(0, _tf("world", "pelvis", pelvis, stamp))
        if cube_frame:
            tfs.append(_tf("world", cube_frame, mv["cube"][i], stamp))
        if bin_frame:
            tfs.append(_tf("world", bin_frame, mv.get("bin", BIN0), stamp))
        session.write("/tf", serialize(T["tf2_msgs/msg/TFMessage"](transforms=tfs),
                                       "tf2_msgs/msg/TFMessage"), stamp + 1_000_000)
        if teleop_offset is not None:
            target = invert(pelvis) @ mv["palm"][i]
            pos, quat = matrix_pose(target)
            pos = pos + teleop_offset
            msg = T["geometry_msgs/msg/PoseStamped"](
                header=T["std_msgs/msg/Header"](
                    stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                           nanosec=stamp % 10**9),
                    frame_id="pelvis"),
                pose=T["geometry_msgs/msg/Pose"](
                    position=T["geometry_msgs/msg/Point"](x=pos[0], y=pos[1], z=pos[2]),
                    orientation=T["geometry_msgs/msg/Quaternion"](w=quat[0], x=quat[1],
                                                                  y=quat[2], z=quat[3])))
            session.write("/teleop/right_hand/pose",
                          serialize(msg, "geometry_msgs/msg/PoseStamped"), stamp + 300_000)
        if hand_joints:
            q = np.zeros(len(names))
            for k, n in enumerate(names):
                if n.startswith("right_hand_") and any(f in n for f in FINGERS):
                    lo, hi = limits[n]
                    q[k] = mv["closure"][i] * (lo if abs(lo) > abs(hi) else hi)
            msg = T["sensor_msgs/msg/JointState"](
                header=T["std_msgs/msg/Header"](
                    stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                           nanosec=stamp % 10**9),
                    frame_id=""),
                name=names, position=q, velocity=np.zeros(0), effort=np.zeros(0))
            session.write("/joint_commands", serialize(msg, "sensor_msgs/msg/JointState"),
                          stamp + 500_000)
    for at_s, label in marks:
        session.mark(EventKind.SUBTASK, label, at_ns=T0 + int(at_s * 1e9))
    info = session.stop_episode("success", at_ns=T0 + int(duration_s * 1e9))
    return directory / info.file


@pytest.fixture(scope="module")
def source_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_source(tmp_path_factory.mktemp("src") / "s")


@pytest.fixture(scope="module")
def source(source_file: Path) -> SourceDemo:
    return load_source(source_file, PICK_PLACE)


# -- SE(3) -------------------------------------------------------------------------------
def test_the_transform_maps_a_source_grasp_onto_the_new_object_pose_exactly() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        obj_src, obj_new = random_pose(rng), random_pose(rng)
        eef_src = np.stack([random_pose(rng) for _ in range(5)])
        eef_new = transform_segment(eef_src, obj_src, obj_new)
        # the grasp relative to the object is unchanged, pose by pose
        np.testing.assert_allclose(invert(obj_new) @ eef_new, invert(obj_src) @ eef_src,
                                   atol=1e-12)
        # and the carry-over is one rigid motion: it takes the source object onto the new one
        np.testing.assert_allclose(object_transform(obj_src, obj_new) @ obj_src, obj_new,
                                   atol=1e-12)


def test_quaternions_round_trip_through_rotation_matrices_in_wxyz_order() -> None:
    rng = np.random.default_rng(1)
    q = rng.normal(size=(200, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    np.testing.assert_allclose(mat_to_quat(quat_to_mat(q)), q, atol=1e-12)
    # a quarter turn about z, w first
    rz = quat_to_mat(yaw_quat(np.pi / 2))
    np.testing.assert_allclose(rz @ [1.0, 0, 0], [0, 1.0, 0], atol=1e-12)
    t = random_pose(rng)
    np.testing.assert_allclose(invert(t) @ t, np.eye(4), atol=1e-12)


def test_interpolation_ends_on_the_target_with_even_steps() -> None:
    a = pose_matrix(np.array([0.0, 0, 0]), yaw_quat(0.0))
    b = pose_matrix(np.array([0.3, 0, 0.1]), yaw_quat(1.2))
    path = interpolate_poses(a, b, 6)
    assert path.shape == (6, 4, 4)
    np.testing.assert_allclose(path[-1], b, atol=1e-12)
    steps = np.linalg.norm(np.diff(np.concatenate([a[None], path])[:, :3, 3], axis=0), axis=1)
    np.testing.assert_allclose(steps, steps[0], atol=1e-12)
    angles = [rotation_angle(a, p) for p in path]
    np.testing.assert_allclose(np.diff([0.0, *angles]), 0.2, atol=1e-9)
    # slerp takes the short way round even across the double cover
    half = slerp(yaw_quat(0.1), -yaw_quat(0.3), 0.5)[0]
    assert rotation_angle(pose_matrix(np.zeros(3), half),
                          pose_matrix(np.zeros(3), yaw_quat(0.2))) < 1e-9


def test_a_square_box_turned_by_a_quarter_turn_is_the_same_box() -> None:
    src = pose_matrix(np.array([0.4, 0, 0.72]), yaw_quat(0.1))
    new = pose_matrix(np.array([0.5, 0.1, 0.72]), yaw_quat(0.1 + np.pi / 2 + 0.05))
    pose, turn = symmetric_pose(new, src, (0.02, 0.02, 0.02))
    assert turn == pytest.approx(3 * np.pi / 2)
    assert rotation_angle(pose, src) == pytest.approx(0.05, abs=1e-9)
    np.testing.assert_allclose(pose[:3, 3], new[:3, 3])
    # an oblong box only looks the same after half turns
    _, turn = symmetric_pose(new, src, (0.04, 0.02, 0.02))
    assert turn == pytest.approx(np.pi)
    slight = pose_matrix(np.array([0.5, 0.1, 0.72]), yaw_quat(0.1 + 0.6))
    assert symmetric_pose(slight, src, (0.04, 0.02, 0.02))[1] == 0.0


def test_hand_closure_is_zero_open_and_one_at_the_closing_limits() -> None:
    profile = load_profile("humanoid")
    names = [j.name for j in profile.robot.joints]
    limits = {j.name: (j.lower, j.upper) for j in profile.robot.joints}
    q = np.zeros((3, len(names)))
    for k, n in enumerate(names):
        if "_hand_" in n and any(f in n for f in FINGERS):
            lo, hi = limits[n]
            far = lo if abs(lo) > abs(hi) else hi
            q[1, k], q[2, k] = far / 2, far
    for side in ("left", "right"):
        np.testing.assert_allclose(hand_closure(names, q, side), [0.0, 0.5, 1.0])
    assert hand_closure(["waist_yaw_joint"], np.zeros((1, 1)), "left") is None


def test_a_hand_closed_in_the_tasks_grip_reads_as_closed() -> None:
    """The closure is measured against the grip the executor will close the hand in: a
    hand fully closed in the flat grip (fingers only half bent) reads 1, not 0.3."""
    from sim.expert import hand_targets
    from sim.multiply import grip_limits

    names = [j.name for j in load_profile("humanoid").robot.joints]
    for grip in ("pinch", "flat"):
        for side in ("left", "right"):
            q = np.zeros((3, len(names)))
            for row, c in enumerate((0.0, 0.4, 1.0)):
                for joint, v in hand_targets(side, c, grip).items():
                    q[row, names.index(joint)] = v
            np.testing.assert_allclose(hand_closure(names, q, side, grip_limits(grip)),
                                       [0.0, 0.4, 1.0], atol=1e-9)
    with pytest.raises(SimError, match="unknown grip 'fist'"):
        grip_limits("fist")


# -- reading sources -----------------------------------------------------------------------
def test_a_source_gives_palm_and_object_poses_relative_to_the_pelvis(source: SourceDemo,
                                                                     source_file: Path) -> None:
    assert source.frame == "pelvis"
    assert source.frames == {"right": "right_hand_palm_link", "cube": "cube", "bin": "bin"}
    t = np.arange(0.0, 4.2, 0.01)
    mv = source_motion(t)
    pelvis = pose_matrix(np.array([0, 0, PELVIS_Z]), np.array([1.0, 0, 0, 0]))
    times = T0 + np.round(t * 1e9).astype(np.int64)
    np.testing.assert_allclose(source.palms["right"].at(times), invert(pelvis) @ mv["palm"],
                               atol=1e-9)
    np.testing.assert_allclose(source.objects["cube"].at(times), invert(pelvis) @ mv["cube"],
                               atol=1e-9)
    assert source.closure_at("right", times[[0, 200, 340]]) == pytest.approx([0, 1, 1])
    import hashlib
    assert source.sha256 == hashlib.sha256(source_file.read_bytes()).hexdigest()


def test_subtask_marks_end_the_subtasks_and_the_last_runs_to_the_stop(
        source: SourceDemo) -> None:
    grasp, place = source.segments
    assert (grasp.subtask, grasp.object, grasp.arms) == ("grasp", "cube", ("right",))
    assert (grasp.start_ns, grasp.end_ns, grasp.boundary) == (T0, T0 + 2 * 10**9, "event")
    assert (place.subtask, place.object) == ("place", "bin")
    assert place.start_ns == grasp.end_ns
    assert place.boundary == "episode_end"
    assert place.end_ns == T0 + 4_190_000_000  # the last /tf pose before the stop


def test_without_marks_the_hands_closing_ends_the_grasp(tmp_path: Path) -> None:
    path = write_source(tmp_path / "s", marks=())
    grasp, place = load_source(path, PICK_PLACE).segments
    assert grasp.boundary == "segmentation"
    # the fingers pass curation's grasp threshold (0.6 closed) 0.3 s into the closing
    assert (grasp.end_ns - T0) / 1e9 == pytest.approx(1.8, abs=0.011)
    assert place.boundary == "episode_end"


def test_a_real_rig_recording_with_palms_under_a_pelvis_root_works(tmp_path: Path) -> None:
    """A real G1: palm frames under the pelvis, objects from a mocap world that the pelvis
    is tracked in; here the palm's parent is the pelvis and the tree's root is world."""
    path = write_source(tmp_path / "real", palm_frame="right_hand_palm_link")
    demo = load_source(path, PICK_PLACE)
    assert demo.frame == "pelvis"
    # the sim's naming: palm site frames published under world
    sim = load_source(write_source(tmp_path / "sim", palm_frame="right_palm",
                                   palm_parent="world"), PICK_PLACE)
    t = demo.segments[0].end_ns
    np.testing.assert_allclose(sim.palms["right"].at(t), demo.palms["right"].at(t), atol=1e-9)
    # a wrist link instead of a palm frame: the palm is the site 8 cm along the wrist's x
    wrist = load_source(write_source(tmp_path / "wrist", palm_frame="right_wrist_yaw_link"),
                        PICK_PLACE)
    recorded = demo.palms["right"].at(t)[0]
    got = wrist.palms["right"].at(t)[0]
    np.testing.assert_allclose(got[:3, 3], recorded[:3, 3] + recorded[:3, 0] * 0.08, atol=1e-9)


def test_without_a_pelvis_frame_poses_are_relative_to_the_tree_root(tmp_path: Path) -> None:
    demo = load_source(write_source(tmp_path / "s", palm_parent="world", palm_frame="right_palm",
                                    world_to_pelvis=False), PICK_PLACE)
    assert demo.frame == "world"
    np.testing.assert_allclose(demo.objects["bin"].at(T0)[0], BIN0, atol=1e-12)


def test_a_regrasp_marked_twice_ends_the_grasp_at_the_second_mark(tmp_path: Path) -> None:
    path = write_source(tmp_path / "s", marks=((1.0, "grasp"), (2.0, "grasp"), (3.9, "place")))
    grasp, place = load_source(path, PICK_PLACE).segments
    assert grasp.end_ns == T0 + 2 * 10**9 == place.start_ns


def test_the_operators_targets_are_read_beside_the_measured_palm(tmp_path: Path) -> None:
    shift = np.array([0.01, -0.02, 0.005])
    demo = load_source(write_source(tmp_path / "s", teleop_offset=shift), PICK_PLACE)
    t = np.array([T0, T0 + 2 * 10**9])
    np.testing.assert_allclose(demo.eef("right", "targets").at(t)[:, :3, 3],
                               demo.palms["right"].at(t)[:, :3, 3] + shift, atol=1e-9)
    assert demo.eef("right", "auto") is demo.targets["right"]
    assert demo.eef("right", "palms") is demo.palms["right"]
    plain = load_source(write_source(tmp_path / "p"), PICK_PLACE)
    assert plain.eef("right", "auto") is plain.palms["right"]
    with pytest.raises(SimError, match="no /teleop/right_hand/pose targets"):
        plain.eef("right", "targets")


# -- bad sources ---------------------------------------------------------------------------
def test_a_source_without_the_objects_pose_names_file_and_object(tmp_path: Path) -> None:
    path = write_source(tmp_path / "s", cube_frame=None)
    with pytest.raises(SimError) as err:
        load_source(path, PICK_PLACE)
    msg = str(err.value)
    assert str(path) in msg and "no object poses for object 'cube' on /tf" in msg
    assert "\n" not in msg


def test_a_source_without_marks_or_hand_joints_says_so(tmp_path: Path) -> None:
    path = write_source(tmp_path / "s", marks=(), hand_joints=False)
    with pytest.raises(SimError, match="no subtask marks for task pick_place") as err:
        load_source(path, PICK_PLACE)
    assert str(path) in str(err.value)


def test_a_source_without_the_palm_names_the_arm(tmp_path: Path) -> None:
    path = write_source(tmp_path / "s", palm_frame="right_tool0")
    with pytest.raises(SimError, match="no pose of the right palm on /tf") as err:
        load_source(path, PICK_PLACE)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_a_corrupt_or_missing_file_is_refused_with_its_name(source_file: Path, tmp_path: Path,
                                                            damage: str) -> None:
    bad = tmp_path / "bad.mcap"
    data = source_file.read_bytes()
    if damage == "garbage":
        bad.write_bytes(b"not an mcap file at all" * 10)
    elif damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(SimError) as err:
        load_source(bad, PICK_PLACE)
    msg = str(err.value)
    assert msg.startswith(str(bad)) and "\n" not in msg
    assert ("corrupt MCAP" in msg) if damage != "missing" else ("cannot read" in msg)


# -- planning a segment --------------------------------------------------------------------
def test_a_planned_segment_bridges_then_follows_the_source_relative_to_the_new_object(
        source: SourceDemo) -> None:
    pelvis = pose_matrix(np.array([0, 0, PELVIS_Z]), np.array([1.0, 0, 0, 0]))
    cube_new = pose_matrix(np.array([0.48, -0.05, 0.72]), yaw_quat(0.5))
    opts = MultiplyOptions(symmetric_objects=False)
    seg = source.segments[0]
    plan = plan_segment(source, seg, pelvis, cube_new, {"right": HOME}, {"right": 0.0}, opts,
                        np.random.default_rng(0))
    wp, cl = plan.waypoints["right"], plan.closure["right"]
    n_src = int(round(seg.duration_s * opts.rate_hz)) + 1
    assert len(wp) == plan.bridge + n_src - 1 == len(cl)
    # the segment's end: the grasp pose relative to the new cube, exactly
    np.testing.assert_allclose(invert(cube_new) @ wp[-1], GRASP, atol=1e-9)
    np.testing.assert_allclose(plan.obj_src, CUBE0, atol=1e-9)
    # the bridge starts next to the current pose and keeps to the speed limit
    step = np.linalg.norm(np.diff(np.concatenate([HOME[None], wp[:plan.bridge + 1]])[:, :3, 3],
                                  axis=0), axis=1)
    assert step.max() <= opts.max_speed / opts.rate_hz + 1e-9
    assert cl[-1] == pytest.approx(1.0) and cl[0] == pytest.approx(0.0)


def test_bridge_steps_follow_mimicgens_minimum_and_the_speed_limit() -> None:
    opts = MultiplyOptions(interpolation_steps=5, rate_hz=50, max_speed=0.5)
    a = pose_matrix(np.zeros(3), yaw_quat(0))
    assert bridge_steps(a, a, opts) == 5
    far = pose_matrix(np.array([0.3, 0, 0]), yaw_quat(0))
    assert bridge_steps(a, far, opts) == 30  # 0.3 m at 0.5 m/s = 0.6 s = 30 waypoints
    assert bridge_steps(a, far, MultiplyOptions(interpolation_steps=40, rate_hz=50,
                                                max_speed=0.5)) == 40
    # a turn in place is paced by max_turn: 1.2 rad at 1.5 rad/s = 0.8 s
    turned = pose_matrix(np.zeros(3), yaw_quat(1.2))
    assert bridge_steps(a, turned, opts) == 40


def test_action_noise_is_seeded_and_zero_noise_is_exact(source: SourceDemo) -> None:
    pelvis = pose_matrix(np.array([0, 0, PELVIS_Z]), np.array([1.0, 0, 0, 0]))
    seg = source.segments[0]
    args = (source, seg, pelvis, CUBE0, {"right": HOME}, {"right": 0.0})
    noisy = MultiplyOptions(action_noise=0.005)
    a = plan_segment(*args, noisy, np.random.default_rng(3)).waypoints["right"]
    b = plan_segment(*args, noisy, np.random.default_rng(3)).waypoints["right"]
    exact = plan_segment(*args, MultiplyOptions(), np.random.default_rng(3)).waypoints["right"]
    np.testing.assert_array_equal(a, b)
    err = np.linalg.norm(a[:, :3, 3] - exact[:, :3, 3], axis=1)
    assert 0.002 < np.median(err) < 0.02
    # with the source cube where it was, the carried-over poses are the source's own
    np.testing.assert_allclose(exact[-1], pelvis @ source.palms["right"].at(seg.end_ns)[0],
                               atol=1e-9)


def test_the_blend_finishes_where_the_hand_starts_to_close() -> None:
    closure = np.concatenate([np.zeros(60), np.linspace(0, 1, 40)])
    w = blend_weights(np.linspace(0.3, 0.05, 100), closure)
    onset = int(np.flatnonzero(closure > 0.05)[0])
    assert w[0] == 0.0 and w[onset] == 1.0 and (w[onset:] == 1.0).all()
    assert (np.diff(w) >= 0).all()
    # a hand that keeps its closure: the blend ends where the palm is nearest the object
    dist = np.abs(np.linspace(-1, 1, 101)) + 0.1
    w = blend_weights(dist, np.ones(101))
    assert w[49] < 1.0 and w[50] == 1.0


def test_a_blended_segment_leaves_from_the_previous_carry_over_and_arrives_exactly(
        source: SourceDemo) -> None:
    pelvis = pose_matrix(np.array([0, 0, PELVIS_Z]), np.array([1.0, 0, 0, 0]))
    cube_new = pose_matrix(np.array([0.48, -0.05, 0.72]), yaw_quat(0.5))
    seg = source.segments[0]
    opts = MultiplyOptions(symmetric_objects=False)
    plan = plan_segment(source, seg, pelvis, cube_new, {"right": HOME}, {"right": 0.0}, opts,
                        np.random.default_rng(0), None, {"right": np.eye(4)})
    wp = plan.waypoints["right"]
    # the arm starts on the source's own path (no jump from where it is)...
    np.testing.assert_allclose(wp[plan.bridge - 1], HOME, atol=1e-9)
    # ... and is on the transformed path from the moment the hand starts to close on
    blend_end = plan.blend_end["right"]
    t_close = T0 + int(1.5e9)
    assert abs(seg.start_ns + blend_end * 10**7 - t_close) <= 4 * 10**7  # closure 0.05 past 0
    src = pelvis @ source.palms["right"].at(np.linspace(seg.start_ns, seg.end_ns,
                                                        len(wp) - plan.bridge + 1)
                                            .astype(np.int64))
    np.testing.assert_allclose(wp[plan.bridge - 1 + blend_end:],
                               transform_segment(src[blend_end:], CUBE0, cube_new), atol=1e-9)
    np.testing.assert_allclose(invert(cube_new) @ wp[-1], GRASP, atol=1e-9)


def _shifted(demo: SourceDemo, dx: float) -> SourceDemo:
    """``demo`` with its cube (and everything) moved ``dx`` along x."""
    from sim.multiply import PoseTrack

    def moved(tr: PoseTrack) -> PoseTrack:
        return PoseTrack(tr.times_ns, tr.pos + [dx, 0.0, 0.0], tr.quat)

    return replace(demo, path=f"{demo.path}+{dx}",
                   objects={k: moved(v) for k, v in demo.objects.items()},
                   palms={k: moved(v) for k, v in demo.palms.items()})


def test_sources_are_picked_at_random_or_nearest_the_new_object(source: SourceDemo) -> None:
    from sim.multiply import select_source

    sources = [_shifted(source, dx) for dx in (-0.1, 0.0, 0.1)]
    pelvis = pose_matrix(np.array([0, 0, PELVIS_Z]), np.array([1.0, 0, 0, 0]))
    new_cube = pose_matrix(np.array([0.5, -0.14, 0.72]), yaw_quat(0.0))  # world
    near = MultiplyOptions(selection="nearest", nn_k=1)
    assert {select_source(sources, new_cube, np.random.default_rng(i), near, pelvis)
            for i in range(10)} == {2}
    two = MultiplyOptions(selection="nearest", nn_k=2)
    assert {select_source(sources, new_cube, np.random.default_rng(i), two, pelvis)
            for i in range(30)} == {1, 2}
    picks = [select_source(sources, new_cube, np.random.default_rng(i), MultiplyOptions())
             for i in range(30)]
    assert set(picks) == {0, 1, 2}
    assert picks == [select_source(sources, new_cube, np.random.default_rng(i),
                                   MultiplyOptions()) for i in range(30)]


def test_in_a_handover_the_holder_keeps_its_path_and_the_taker_tracks_the_object() -> None:
    from sim.multiply import PoseTrack, SourceSegment

    t = np.arange(0.0, 2.0, 0.01)
    times = T0 + np.round(t * 1e9).astype(np.int64)
    a = t[:, None] / 2.0
    bar_pos = np.array([0.35, -0.10, 0.90]) + a * [0.0, 0.10, 0.05]   # carried to the midline
    bar = pose_matrix(bar_pos, np.tile(yaw_quat(0.0), (len(t), 1)))
    right = bar @ pose_matrix(np.array([-0.045, -0.09, 0.0]), yaw_quat(0.0))
    left_start = pose_matrix(np.array([0.22, 0.20, 0.97]), yaw_quat(0.0))
    left_end = bar[-1] @ pose_matrix(np.array([-0.045, 0.09, 0.0]), yaw_quat(0.0))
    left = interpolate_poses(left_start, left_end, len(t) - 1)
    left = np.concatenate([left_start[None], left])

    def track(m: np.ndarray) -> PoseTrack:
        pos, quat = matrix_pose(m)
        return PoseTrack(times, pos, quat)

    seg = SourceSegment("handover", "bar", ("left", "right"), int(times[0]), int(times[-1]),
                        "episode_end")
    demo = SourceDemo("memory", "", "handover", "world", seg.start_ns, seg.end_ns,
                      {"left": track(left), "right": track(right)}, {"bar": track(bar)},
                      {"left": (times, np.clip(a[:, 0] * 2 - 1.6, 0, 1)),
                       "right": (times, np.ones(len(t)))}, (seg,))
    moved = pose_matrix(np.array([0.02, 0.01, -0.03]), yaw_quat(0.1))
    opts = MultiplyOptions(rate_hz=100.0, symmetric_objects=False)
    plan = plan_segment(demo, seg, np.eye(4), moved @ bar[0], {"left": left_start,
                        "right": right[0]}, {}, opts, np.random.default_rng(0),
                        holding=["right"])
    assert plan.modes == {"left": "track", "right": "robot"}
    # the holder presents the object where the source did, relative to the robot
    np.testing.assert_allclose(plan.waypoints["right"][plan.bridge:], right[1:], atol=1e-9)
    # the taker goes to the object where it is now, as it went to the source object then
    tracked = plan.track["left"]
    for j in (40, 120, 199):
        obj_now = moved @ bar[j]
        pose, transform = tracked.waypoint(tracked.first + j, obj_now)
        np.testing.assert_allclose(invert(obj_now) @ pose, invert(bar[j]) @ left[j], atol=1e-9)
        np.testing.assert_allclose(transform, moved, atol=1e-9)


def test_options_are_checked() -> None:
    with pytest.raises(SimError, match="selection 'best' is not random or nearest"):
        MultiplyOptions(selection="best")
    with pytest.raises(SimError, match="rate_hz must be > 0"):
        MultiplyOptions(rate_hz=0)


# -- end to end: multiplied in physics ------------------------------------------------------
@pytest.fixture(scope="module")
def rig_source(tmp_path_factory: pytest.TempPathFactory) -> SourceDemo:
    """A teleoperated pick-and-place as a real rig records it: palms under the pelvis,
    cube and bin from motion capture, hand joints, the operator's marks; no ground truth."""
    path = write_source(tmp_path_factory.mktemp("rig") / "s", motion=rig_motion,
                        marks=RIG_MARKS, duration_s=6.2)
    return load_source(path, PICK_PLACE)


def _replay(trace: Trace) -> bool:
    """Re-execute a trace's commands from the scene's reset; the task's verdict."""
    with Scene(trace.layout) as scene:
        for row in trace.ctrl:
            scene.set_ctrl(row)
            scene.step()
        return get_task(trace.task).check(scene).success


@pytest.mark.slow
def test_a_rig_recording_without_ground_truth_multiplies_into_new_layouts(
        rig_source: SourceDemo) -> None:
    traces = [generate_attempt([rig_source], "pick_place",
                               randomize.draw("pick_place", seed).layout, seed)
              for seed in (3000, 3001, 3003)]
    assert sum(t.success for t in traces) >= 2, [(t.failed_subtask, t.reason) for t in traces]
    for t in traces:
        prov = t.provenance
        assert (prov["task"], prov["seed"], prov["method"]) == ("pick_place", t.seed, "mimicgen")
        assert prov["source"] == {"path": rig_source.path, "sha256": rig_source.sha256,
                                  "frame": "pelvis", "index": 0,
                                  "frames": {"right": "right_hand_palm_link", "cube": "cube",
                                             "bin": "bin"}}
        for rec, seg in zip(prov["segments"], rig_source.segments, strict=True):
            assert (rec["subtask"], rec["source_start_ns"], rec["source_end_ns"]) == \
                (seg.subtask, seg.start_ns, seg.end_ns)
            # the recorded transform takes the source object onto the new one
            np.testing.assert_allclose(np.array(rec["transform"]) @ rec["object_source"],
                                       rec["object_new"], atol=1e-9)
        cube = t.layout.object("cube")  # where the new scene put it, at the grasp's start
        np.testing.assert_allclose(np.array(prov["segments"][0]["object_new"])[:3, 3],
                                   [*cube.xy, t.layout.table_height + cube.half_size[2]],
                                   atol=3e-3)
        if t.success:
            assert [m.label for m in t.marks] == ["grasp", "place"]
            # a kept demo is what it says: its commands, replayed, do the task
            assert _replay(t)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_attempt(rig_source: SourceDemo) -> None:
    layout = randomize.draw("pick_place", 3004).layout
    opts = MultiplyOptions(action_noise=0.002)
    a = generate_attempt([rig_source], "pick_place", layout, 7, opts)
    b = generate_attempt([rig_source], "pick_place", layout, 7, opts)
    np.testing.assert_array_equal(a.ctrl, b.ctrl)
    c = generate_attempt([rig_source], "pick_place", layout, 8, opts)
    assert c.ctrl.shape != a.ctrl.shape or not np.array_equal(c.ctrl, a.ctrl)


@pytest.mark.slow
def test_a_failed_attempt_names_the_subtask_and_its_predicate(tmp_path: Path) -> None:
    # the operator's hand never closes: the grasp never holds
    path = write_source(tmp_path / "s", motion=rig_motion, marks=RIG_MARKS, duration_s=6.2,
                        hand_joints=False)
    trace = generate_attempt([load_source(path, PICK_PLACE)], "pick_place",
                             PICK_PLACE.default_layout(), 0)
    assert not trace.success
    assert trace.failed_subtask == "grasp"
    assert "cube not in the right hand" in trace.reason and "grasp predicate" in trace.reason
    assert trace.provenance["segments"][-1]["subtask"] == "place"


def test_sources_of_another_task_are_refused(source: SourceDemo) -> None:
    with pytest.raises(SimError, match="loaded for task pick_place, not handover"):
        generate_attempt([source], "handover", get_task("handover").default_layout(), 0)
    with pytest.raises(SimError, match="no source demonstrations"):
        generate_attempt([], "pick_place", PICK_PLACE.default_layout(), 0)
    with pytest.raises(SimError, match="unknown task 'stack'"):
        load_source(source.path, "stack")


# -- end to end: the simulated operator's episodes, recorded without ground truth -------
def _rig_profile() -> Profile:
    """The humanoid profile as a rig without cameras records it (no ground truth)."""
    profile = load_profile("humanoid")
    return replace(profile, topics=tuple(t for t in profile.topics if t.role != "camera"))


def record_expert_sources(directory: Path, task: str, count: int, *, first_seed: int = 0,
                          max_tries: int = 12) -> list[Path]:
    """``count`` successful episodes of the simulated operator at ``task`` in randomized
    layouts, written by ``sim.episode.write_episode`` with the rig's profile."""
    session = Session(directory, _rig_profile())
    out: list[Path] = []
    for seed in range(first_seed, first_seed + max_tries):
        draw = randomize.draw(task, seed)
        trace = expert.run_expert(task, draw.layout, seed)
        if trace.success:
            out.append(directory / episode.write_episode(session, trace, draw,
                                                         cameras=False).file)
            if len(out) == count:
                return out
    raise AssertionError(f"the operator succeeded {len(out)} times in {max_tries} tries "
                         f"at {task}")


@pytest.mark.slow
def test_the_simulated_operators_recordings_multiply(tmp_path: Path) -> None:
    (path,) = record_expert_sources(tmp_path / "s", "pick_place", 1, first_seed=1)
    topics = {c.topic for c in read_mcap(path.read_bytes()).channels.values()}
    assert "/tf" in topics and not any("ground_truth" in t for t in topics)
    demo = load_source(path, "pick_place")
    assert [(s.subtask, s.boundary) for s in demo.segments] == [("grasp", "event"),
                                                                ("place", "episode_end")]
    traces = [generate_attempt([demo], "pick_place", randomize.draw("pick_place", s).layout, s)
              for s in (2003, 2004, 2005)]
    assert sum(t.success for t in traces) >= 2, [(t.failed_subtask, t.reason) for t in traces]
    assert all(t.reason for t in traces if not t.success)


@pytest.mark.slow
def test_bimanual_segments_take_both_arms_from_one_source(tmp_path: Path) -> None:
    paths = record_expert_sources(tmp_path / "s", "bimanual_lift", 2, first_seed=2)
    sources = [load_source(p, "bimanual_lift") for p in paths]
    traces = [generate_attempt(sources, "bimanual_lift",
                               randomize.draw("bimanual_lift", s).layout, s)
              for s in (1002, 1003, 1004)]
    for trace in traces:
        segs = trace.provenance["segments"]
        assert [g["arms"] for g in segs] == [["left", "right"], ["left", "right"]]
        src = sources[trace.provenance["source"]["index"]]
        assert [(g["source_start_ns"], g["source_end_ns"]) for g in segs] == \
            [(g.start_ns, g.end_ns) for g in src.segments]
    assert any(t.success for t in traces), [(t.failed_subtask, t.reason) for t in traces]


@pytest.mark.slow
def test_a_handover_is_multiplied_with_the_taker_tracking_the_object(tmp_path: Path) -> None:
    (path,) = record_expert_sources(tmp_path / "s", "handover", 1)
    demo = load_source(path, "handover")
    traces = [generate_attempt([demo], "handover", randomize.draw("handover", s).layout, s)
              for s in (6000, 6002)]
    for trace in traces:
        grasp, handover = trace.provenance["segments"]
        assert grasp["modes"] == {"right": "object"}
        # the right hand holds the bar: it presents it where the operator did; the left
        # hand goes for the bar where it is, and closes with the transform it tracked
        assert handover["modes"] == {"left": "track", "right": "robot"}
        if trace.success:
            assert np.asarray(handover["tracked_transforms"]["left"]).shape == (4, 4)
    assert any(t.success for t in traces), [(t.failed_subtask, t.reason) for t in traces]
