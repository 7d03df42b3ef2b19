"""The executor (palm paths through IK into physics, logged step by step) and the simulated
operator (whole attempts, deterministic per seed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.errors import SimError
from sim.expert import (
    PELVIS_Z,
    SUBTASK,
    Executor,
    OperatorStyle,
    hand_targets,
    run_expert,
    yaw_quat,
)
from sim.ik import HandIK, Unreachable
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
    assert [(m.step, m.kind, m.label) for m in trace.marks] == [(250, SUBTASK, "grasp")]
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
    labels = [m.label for m in trace.marks if m.kind == SUBTASK]
    assert labels[0] == "grasp" and labels[-1] == "place"
    assert "lift" in labels and "release" in labels
    steps = [m.step for m in trace.marks]
    assert steps == sorted(steps) and steps[-1] < trace.steps
    assert trace.provenance["operator"]["speed"] > 0
    assert trace.success or (trace.failed_subtask in ("grasp", "place") and trace.reason)


def test_grips_shape_the_hands_and_unknown_grips_are_refused(pick_place_scene: Scene) -> None:
    pinch, flat = hand_targets("left", 0.0), hand_targets("left", 0.0, "flat")
    # open pinch: the thumb pre-shaped back; flat: folded against the palm
    assert pinch["left_hand_thumb_1_joint"] == pytest.approx(-0.724)
    assert flat["left_hand_thumb_1_joint"] == pytest.approx(1.05)
    assert hand_targets("right", 1.0)["right_hand_index_0_joint"] == pytest.approx(1.5708)
    assert hand_targets("left", 1.0)["left_hand_index_0_joint"] == pytest.approx(-1.5708)
    with pytest.raises(SimError, match="unknown grip 'fist'; grips: pinch, flat"):
        hand_targets("left", 1.0, "fist")
    with pytest.raises(SimError, match="unknown grip 'fist'"):
        Executor(pick_place_scene, HandIK(pick_place_scene), grip="fist")


def test_operator_styles_are_drawn_from_the_seed() -> None:
    a = OperatorStyle.draw(np.random.default_rng(5))
    assert a == OperatorStyle.draw(np.random.default_rng(5))
    assert a != OperatorStyle.draw(np.random.default_rng(6))
    assert 0.75 <= a.speed <= 1.35 and 0 < a.noise_m <= 0.02 and 0.4 <= a.lift_at <= 1.0
    novices = sum(OperatorStyle.draw(np.random.default_rng(s)).novice for s in range(200))
    assert 30 < novices < 90  # about 30% of the pool
    d = a.as_dict()
    assert d["speed"] == a.speed and d["pause_s"] == list(a.pause_s)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["handover", "bimanual_lift"])
def test_the_operator_plays_each_task_to_a_verdict_the_state_confirms(task: str) -> None:
    t = get_task(task)
    trace = run_expert(task, t.default_layout(), 3)
    labels = [m.label for m in trace.marks if m.kind == SUBTASK]
    assert labels[0] == "grasp"
    with _replay(trace) as scene:
        final = t.check(scene)
    assert final.success == trace.success
    if not trace.success:
        assert trace.failed_subtask in [s.name for s in t.subtasks] and trace.reason


def test_a_strict_executor_refuses_an_unreachable_move_a_lenient_one_stops_short(
        pick_place_scene: Scene) -> None:
    far = {"right": (np.array([0.9, -0.2, 0.9]), yaw_quat(0.0))}
    ex = Executor(pick_place_scene, HandIK(pick_place_scene))
    with pytest.raises(Unreachable, match="right palm target \\(0.900, -0.200, 0.900\\)"):
        ex.move(far, 0.3)
    pick_place_scene.reset()
    lenient = Executor(pick_place_scene, HandIK(pick_place_scene), strict=False)
    lenient.move(far, 0.3)
    lenient.hold(0.2)
    pos, _ = pick_place_scene.palm_pose("right")
    assert 0.3 < pos[0] < 0.6  # reached out as far as the arm goes


@pytest.mark.slow
def test_an_attempt_in_a_fresh_process_matches_one_after_others(tmp_path: Path) -> None:
    """Caches (the IK's robot-only model) do not leak into the result: a worker that ran
    other attempts first gives the same bytes as a fresh one."""
    layout = get_task("bimanual_lift").default_layout()
    style = OperatorStyle(speed=1.5, pause_p=0.0)
    run_expert("pick_place", get_task("pick_place").default_layout(), 1, style)
    here = run_expert("bimanual_lift", layout, 4, style)
    out = tmp_path / "ctrl.npy"
    code = ("import numpy as np; from sim.expert import run_expert, OperatorStyle; "
            "from sim.tasks import get_task; "
            "t = run_expert('bimanual_lift', get_task('bimanual_lift').default_layout(), 4, "
            "OperatorStyle(speed=1.5, pause_p=0.0)); "
            f"np.save({str(out)!r}, t.ctrl)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert np.load(out).tobytes() == here.ctrl.tobytes()


def test_commands_are_smooth_and_inside_the_joint_ranges(pick_place_scene: Scene) -> None:
    scene = pick_place_scene
    trace = _short_demo(scene).trace("pick_place", 0, scene.layout, Outcome(True))
    lo, hi = scene.ctrl_range[:, 0], scene.ctrl_range[:, 1]
    assert (trace.ctrl >= lo + 0.009).all() and (trace.ctrl <= hi - 0.009).all()
    # the arm moves at every physics step of a motion, not once per IK solve
    i = scene.joint_names.index("right_elbow_joint")
    steps = np.diff(trace.ctrl[30:220, i])
    assert (np.abs(steps) > 0).mean() > 0.95
    assert np.abs(np.diff(steps)).max() < 0.01


def test_action_noise_is_seeded_and_leaves_the_operator_as_it_was() -> None:
    layout = get_task("pick_place").default_layout()
    style = OperatorStyle(speed=1.6, pause_p=0.0, regrasp_p=0.0)
    quiet = run_expert("pick_place", layout, 2, style)
    noisy = run_expert("pick_place", layout, 2, style, action_noise_rad=0.01)
    again = run_expert("pick_place", layout, 2, style, action_noise_rad=0.01)
    assert noisy.ctrl.tobytes() == again.ctrl.tobytes()
    assert noisy.provenance["action_noise_rad"] == 0.01
    n = min(quiet.steps, noisy.steps, 400)
    with Scene(layout) as scene:
        names = scene.joint_names
    legs = [names.index(j) for j in names if "hip" in j or "knee" in j or "ankle" in j]
    elbow = names.index("right_elbow_joint")
    diff = noisy.ctrl[:n] - quiet.ctrl[:n]
    assert np.array_equal(diff[:, legs], np.zeros((n, len(legs))))
    assert 0.003 < float(np.std(diff[:, elbow])) < 0.02
    # the operator's own targets before the hands diverge in physics are the same
    assert np.array_equal(noisy.teleop[:50], quiet.teleop[:50])
