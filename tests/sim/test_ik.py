"""IK: reachable palm targets are reached, unreachable ones are reported with side and
error, only the arms move, and the hands stay out of the table."""

from __future__ import annotations

import numpy as np
import pytest

from sim.errors import SimError
from sim.ik import HandIK, Unreachable, arm_joint_names
from sim.scenes import Scene

FORWARD = np.array([1.0, 0.0, 0.0, 0.0])


def _yaw(a: float) -> np.ndarray:
    return np.array([np.cos(a / 2), 0.0, 0.0, np.sin(a / 2)])


@pytest.mark.parametrize("targets", [
    {"right": ((0.30, -0.18, 0.86), FORWARD)},
    {"left": ((0.28, 0.12, 0.95), _yaw(-0.3))},
    {"left": ((0.30, 0.09, 0.88), FORWARD), "right": ((0.30, -0.09, 0.88), FORWARD)},
    {"left": ((0.25, 0.20, 1.00), FORWARD), "right": ((0.33, -0.02, 0.92), _yaw(0.3))},
])
def test_reachable_palm_targets_are_reached_within_a_centimetre(
        pick_place_scene: Scene, targets: dict[str, tuple[tuple[float, ...], np.ndarray]]
) -> None:
    scene = pick_place_scene
    ik = HandIK(scene)
    goals = {s: (np.array(p), q) for s, (p, q) in targets.items()}
    q = ik.solve(goals)
    # apply the joint targets to the full scene: the palms are where they were asked to be
    scene.set_joint_positions(q)
    for side, (pos, quat) in goals.items():
        got, got_q = scene.palm_pose(side)
        assert np.linalg.norm(got - pos) < 0.01, side
        assert abs(float(np.dot(got_q, quat))) > np.cos(0.15 / 2), side


def test_only_the_arm_joints_move(pick_place_scene: Scene) -> None:
    scene = pick_place_scene
    ik = HandIK(scene)
    start = scene.ctrl()
    q = ik.solve({"right": (np.array([0.30, -0.15, 0.88]), FORWARD)}, start)
    arms = {scene.joint_names.index(n) for s in ("left", "right") for n in arm_joint_names(s)}
    others = [i for i in range(len(q)) if i not in arms]
    assert np.array_equal(q[others], start[others])
    assert not np.allclose(q[sorted(arms)], start[sorted(arms)])


def test_a_target_out_of_reach_is_reported_with_side_and_error(pick_place_scene: Scene) -> None:
    ik = HandIK(pick_place_scene)
    with pytest.raises(Unreachable) as info:
        ik.solve({"left": (np.array([1.5, 0.4, 1.0]), FORWARD)})
    err = info.value
    assert isinstance(err, SimError)
    assert err.side == "left" and err.error_m > 0.9
    assert "left palm target (1.500, 0.400, 1.000)" in str(err)
    assert "unreachable" in str(err) and " m away" in str(err)


def test_the_hands_stay_out_of_the_table(pick_place_scene: Scene) -> None:
    scene = pick_place_scene
    ik = HandIK(scene)
    below = np.array([0.30, -0.15, scene.layout.table_height - 0.03])
    with pytest.raises(Unreachable, match="right palm"):
        ik.solve({"right": (below, FORWARD)})
    q = ik.solve({"right": (below, FORWARD)}, check=False)
    scene.set_joint_positions(q)
    assert not scene.contacts("table_top", "right_wrist_roll_link")
    assert scene.palm_pose("right")[0][2] > scene.layout.table_height + 0.02


def test_bad_targets_are_refused(pick_place_scene: Scene) -> None:
    ik = HandIK(pick_place_scene)
    with pytest.raises(SimError, match="unknown sides \\['middle'\\]"):
        ik.solve({"middle": (np.zeros(3), FORWARD)})
    with pytest.raises(SimError, match="shape \\(3,\\); expected \\(43,\\)"):
        ik.solve({"left": (np.array([0.3, 0.1, 0.9]), FORWARD)}, np.zeros(3))


def test_the_palms_keep_apart(pick_place_scene: Scene) -> None:
    """Both palms sent to one point: IK reports it, and its best effort keeps the palms
    (wrist and palm, not the fingers: those stay as the grip has them) from touching."""
    scene = pick_place_scene
    ik = HandIK(scene)
    same = np.array([0.30, 0.0, 0.92])
    with pytest.raises(Unreachable):
        ik.solve({"left": (same, FORWARD), "right": (same, FORWARD)})
    q = ik.solve({"left": (same, FORWARD), "right": (same, FORWARD)}, check=False)
    scene.set_joint_positions(q)
    gap = np.linalg.norm(scene.palm_pose("left")[0] - scene.palm_pose("right")[0])
    assert gap > 0.03
    assert not _bodies_touch(scene, "left_wrist_yaw_link", "right_wrist_yaw_link")


def _bodies_touch(scene: Scene, a: str, b: str) -> bool:
    m, d = scene.model, scene.data
    ids = {m.body(a).id, m.body(b).id}
    return any({int(m.geom_bodyid[c.geom1]), int(m.geom_bodyid[c.geom2])} == ids
               for c in d.contact[:d.ncon])
