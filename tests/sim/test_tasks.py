"""Tasks: names, default layouts, and each success predicate on states that pass and fail
(objects placed through their free joints)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from sim.errors import SimError
from sim.scenes import ObjectSpec, Scene
from sim.tasks import TASKS, get_task

Place = Callable[..., None]


def _beside_palm(scene: Scene, side: str, half_y: float, dz: float = 0.0) -> np.ndarray:
    """An object centre that presses the object's face into the palm of ``side`` (the
    palms face the midline)."""
    pos, _ = scene.palm_pose(side)
    inward = 1.0 if side == "right" else -1.0
    return pos + np.array([0.03, inward * (half_y + 0.01), dz])


def test_the_three_tasks_are_registered_with_object_centric_subtasks() -> None:
    assert set(TASKS) == {"pick_place", "handover", "bimanual_lift"}
    pp = get_task("pick_place")
    assert [(s.name, s.object, s.arms) for s in pp.subtasks] == [
        ("grasp", "cube", ("right",)), ("place", "bin", ("right",))]
    assert [s.name for s in get_task("handover").subtasks] == ["grasp", "handover"]
    assert get_task("bimanual_lift").subtask("lift").arms == ("left", "right")
    assert (pp.grip, get_task("bimanual_lift").grip) == ("pinch", "flat")
    assert get_task("bimanual_lift").hold_s >= 1.0


def test_an_unknown_task_is_refused_with_the_list_of_tasks() -> None:
    with pytest.raises(SimError, match="unknown task 'stack'.*pick_place, handover, "
                                       "bimanual_lift"):
        get_task("stack")
    with pytest.raises(SimError, match="no subtask 'lift'.*grasp, place"):
        get_task("pick_place").subtask("lift")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_at_reset_no_task_is_done(name: str) -> None:
    task = get_task(name)
    with Scene(task.default_layout()) as scene:
        scene.step(100)
        out = task.check(scene)
    assert not out.success
    assert out.failed_subtask == task.subtasks[-1].name
    assert out.reason


def test_pick_place_succeeds_with_the_cube_resting_in_the_bin(
        pick_place_scene: Scene, place: Place) -> None:
    scene, task = pick_place_scene, get_task("pick_place")
    b = scene.layout.bin
    assert b is not None
    place(scene, "cube", (b.xy[0] + 0.01, b.xy[1] - 0.01, scene.layout.table_height + 0.04))
    scene.step(250)
    assert task.check(scene).success
    assert task.check_subtask(scene, "place")
    assert not task.check_subtask(scene, "grasp")  # no hand holds it


def test_pick_place_fails_with_the_cube_beside_the_bin(
        pick_place_scene: Scene, place: Place) -> None:
    scene, task = pick_place_scene, get_task("pick_place")
    b = scene.layout.bin
    assert b is not None
    place(scene, "cube", (b.xy[0], b.xy[1] - b.half_size[1] - 0.05,
                          scene.layout.table_height + 0.03))
    out = task.check(scene)
    assert (out.success, out.failed_subtask) == (False, "place")
    assert "not in the bin" in out.reason


def test_pick_place_is_not_done_while_the_hand_still_holds_the_cube_in_the_bin(
        place: Place) -> None:
    task = get_task("pick_place")
    with Scene(task.default_layout()) as scene:
        b = scene.layout.bin
        assert b is not None
        # move the bin under the right palm: the cube touches the palm and lies in the bin
        palm, _ = scene.palm_pose("right")
        layout = replace(scene.layout, bin=replace(
            b, xy=(float(palm[0]) + 0.03, float(palm[1]) + 0.03), wall_height=0.3))
    with Scene(layout) as scene:
        place(scene, "cube", _beside_palm(scene, "right", 0.02))
        assert scene.contacts("cube_geom", "right_wrist_yaw_link")
        out = task.check(scene)
    assert not out.success
    assert "still holds" in out.reason


def test_the_grasp_predicate_wants_the_object_in_the_hand_and_off_the_table(
        pick_place_scene: Scene, place: Place) -> None:
    scene, task = pick_place_scene, get_task("pick_place")
    assert not task.check_subtask(scene, "grasp")
    out = task.subtask_outcome(scene, "grasp")
    assert out.failed_subtask == "grasp" and "not in the right hand" in out.reason
    place(scene, "cube", _beside_palm(scene, "right", 0.02))
    assert task.check_subtask(scene, "grasp")


def test_handover_succeeds_only_when_the_left_hand_alone_holds_the_bar_in_the_air(
        place: Place) -> None:
    task = get_task("handover")
    with Scene(task.default_layout()) as scene:
        hy = scene.layout.object("bar").half_size[1]
        place(scene, "bar", _beside_palm(scene, "left", hy))
        assert task.check(scene).success
        place(scene, "bar", _beside_palm(scene, "right", hy))
        out = task.check(scene)
        assert (out.success, out.failed_subtask) == (False, "handover")
        assert "not in the left hand" in out.reason
        assert task.check_subtask(scene, "grasp")
    # a bar long enough to touch both palms at once: not handed over yet
    layout = task.default_layout()
    with Scene(layout) as scene:
        gap = float(scene.palm_pose("left")[0][1] - scene.palm_pose("right")[0][1])
    bar = replace(layout.object("bar"), half_size=(0.02, gap / 2 - 0.005, 0.03))
    with Scene(layout.with_objects(bar)) as scene:
        mid = (scene.palm_pose("left")[0] + scene.palm_pose("right")[0]) / 2
        place(scene, "bar", mid + (0.03, 0.0, 0.0))
        out = task.check(scene)
    assert not out.success and "still touches the right hand" in out.reason


def _squeeze_layout(clearance: float) -> tuple[Scene, float]:
    """A bimanual box as wide as the gap between the palms at rest (minus ``clearance``
    each side), so that both palms touch it there."""
    layout = get_task("bimanual_lift").default_layout()
    with Scene(layout) as scene:
        gap = float(scene.palm_pose("left")[0][1] - scene.palm_pose("right")[0][1])
    half_y = gap / 2 - 0.015 + 0.004 - clearance
    box = ObjectSpec("box", (0.34, 0.0), (0.04, half_y, 0.04), mass=0.2)
    return Scene(layout.with_objects(box)), half_y


def test_bimanual_lift_succeeds_with_the_box_squeezed_high_and_level(place: Place) -> None:
    task = get_task("bimanual_lift")
    scene, _ = _squeeze_layout(0.0)
    with scene:
        mid = (scene.palm_pose("left")[0] + scene.palm_pose("right")[0]) / 2
        place(scene, "box", mid + (0.03, 0.0, 0.0))
        assert task.check(scene).success
        assert task.check_subtask(scene, "grasp")
        tilt = 0.6  # rad about y
        place(scene, "box", mid + (0.03, 0.0, 0.0), (np.cos(tilt / 2), 0, np.sin(tilt / 2), 0))
        out = task.check(scene)
        assert not out.success
        assert "tilted 34 deg" in out.reason or "not touched" in out.reason


def test_bimanual_lift_fails_when_one_hand_is_off_or_the_box_is_low(place: Place) -> None:
    task = get_task("bimanual_lift")
    scene, _ = _squeeze_layout(0.0)
    with scene:
        mid = (scene.palm_pose("left")[0] + scene.palm_pose("right")[0]) / 2
        place(scene, "box", mid + (0.03, 0.10, 0.0))  # clear of the right thumb too
        out = task.check(scene)
        assert (out.success, out.failed_subtask) == (False, "lift")
        assert "not touched by the right hand" in out.reason
    with Scene(task.default_layout()) as scene:
        out = task.check(scene)
    assert "not touched by the left and right hand" in out.reason
