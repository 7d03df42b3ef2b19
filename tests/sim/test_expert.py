"""The executor (palm paths through IK into physics, logged step by step) and the simulated
operator (whole attempts, deterministic per seed)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.errors import SimError
from sim.expert import PELVIS_Z, Executor, OperatorStyle, hand_targets, run_expert, yaw_quat
from sim.ik import HandIK
from sim.scenes import Scene
from sim.tasks import Outcome, get_task
from sim.trace import Trace


def _replay(trace: Trace) -> Scene:
    scene = Scene(trace.layout)
    for c in trace.ctrl:
        scene.set_ctrl(c)
        scene.step()
    return scene


def _short_demo(scene: Scene) -> Executor:
    ex = Executor(scene, HandIK(scene))
    target = (np.array([0.28, -0.16, 0.90]), yaw_quat(0.2))
    ex.move({"right": target}, 0.5, hands={"right": 0.5})
    ex.mark("grasp")
    ex.hold(0.1)
    return ex


def test_a_move_brings_the_palm_to_its_target_and_logs_every_physics_step(
        pick_place_scene: Scene) -> None:
    scene = pick_place_scene
    ex = _short_demo(scene)
    assert ex.step_count == 300
    pos, quat = scene.palm_pose("right")
    assert np.linalg.norm(pos - [0.28, -0.16, 0.90]) < 0.01
    assert abs(float(np.dot(quat, yaw_quat(0.2)))) > np.cos(0.1 / 2)
    trace = ex.trace("pick_place", 7, scene.layout, Outcome(False, "place", "stopped early"))
    assert trace.ctrl.shape == (300, 43) and trace.teleop.shape == (300, 2, 7)
    assert [(m.step, m.kind, m.label) for m in trace.marks] == [(250, "subtask", "grasp")]
    assert (trace.success, trace.failed_subtask, trace.reason) == (False, "place", "stopped early")
    # teleop holds the operator's targets in the pelvis frame, left then right
    assert np.allclose(trace.teleop[-1, 1, :3], [0.28, -0.16, 0.90 - PELVIS_Z])
    assert np.allclose(trace.teleop[-1, 1, 3:], yaw_quat(0.2))
    # the hand closed half way, interpolated
    names = scene.joint_names
    for joint, v in hand_targets("right", 0.5).items():
        assert trace.ctrl[-1, names.index(joint)] == pytest.approx(v)
    i = names.index("right_hand_index_0_joint")
    assert 0 < trace.ctrl[100, i] < trace.ctrl[249, i]


def test_re_executing_a_trace_gives_the_same_states_bit_for_bit(pick_place_scene: Scene) -> None:
    ex = _short_demo(pick_place_scene)
    trace = ex.trace("pick_place", 0, pick_place_scene.layout, Outcome(True))
    with _replay(trace) as again:
        assert again.data.qpos.tobytes() == pick_place_scene.data.qpos.tobytes()
    with Scene(trace.layout) as other:
        assert _short_demo(other).trace("pick_place", 0, trace.layout, Outcome(True)) \
            .ctrl.tobytes() == trace.ctrl.tobytes()


def test_moves_name_only_the_two_sides(pick_place_scene: Scene) -> None:
    ex = Executor(pick_place_scene, HandIK(pick_place_scene))
    with pytest.raises(SimError, match="unknown sides \\['tail'\\]"):
        ex.move({}, 0.1, hands={"tail": 1.0})


def test_an_unknown_task_is_refused() -> None:
    with pytest.raises(SimError, match="unknown task 'juggle'"):
        run_expert("juggle", get_task("pick_place").default_layout(), 0)


@pytest.mark.slow
def test_the_operator_is_deterministic_per_seed_and_varies_across_seeds() -> None:
    layout = get_task("pick_place").default_layout()
    style = OperatorStyle(speed=1.6, pause_p=0.0, regrasp_p=0.0)
    a = run_expert("pick_place", layout, 11, style)
    b = run_expert("pick_place", layout, 11, style)
    assert a.ctrl.tobytes() == b.ctrl.tobytes()
    assert a.teleop.tobytes() == b.teleop.tobytes()
    assert (a.marks, a.success, a.reason) == (b.marks, b.success, b.reason)
    with _replay(a) as ra, _replay(b) as rb:
        assert ra.data.qpos.tobytes() == rb.data.qpos.tobytes()
        # the trace's verdict is the state's verdict
        assert get_task("pick_place").check(ra).success == a.success
    c = run_expert("pick_place", layout, 12, style)
    assert c.ctrl.tobytes() != a.ctrl.tobytes()


@pytest.mark.slow
def test_the_operator_marks_the_subtasks_of_an_attempt() -> None:
    trace = run_expert("pick_place", get_task("pick_place").default_layout(), 0)
    labels = [m.label for m in trace.marks if m.kind == "subtask"]
    assert labels[0] == "grasp" and labels[-1] == "place"
    assert "lift" in labels and "release" in labels
    steps = [m.step for m in trace.marks]
    assert steps == sorted(steps) and steps[-1] < trace.steps
    assert trace.provenance["operator"]["speed"] > 0
    assert trace.success or (trace.failed_subtask in ("grasp", "place") and trace.reason)
