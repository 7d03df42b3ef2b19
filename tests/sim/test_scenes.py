"""Scenes: the G1 at the table with the profile's joints, a rest pose clear of the table,
objects at rest, cameras, contacts, and bit-exact re-execution."""

from __future__ import annotations

import numpy as np
import pytest

from sim.errors import SimError
from sim.scenes import CAMERAS, Scene, profile_joint_names
from sim.tasks import TASKS, get_task


def test_the_scene_drives_the_43_joints_of_the_humanoid_profile(pick_place_scene: Scene) -> None:
    scene = pick_place_scene
    assert scene.joint_names == profile_joint_names()
    assert len(scene.joint_names) == 43
    assert np.allclose(scene.qpos(), scene.home_ctrl())
    assert scene.dt == 0.002


@pytest.mark.parametrize("name", sorted(TASKS))
def test_objects_rest_on_the_table_and_the_arms_hold_their_rest_pose(name: str) -> None:
    with Scene(get_task(name).default_layout()) as scene:
        palms0 = {s: scene.palm_pose(s)[0] for s in ("left", "right")}
        scene.step(250)
        th = scene.layout.table_height
        for o in scene.layout.objects:
            pos, _ = scene.object_pose(o.name)
            assert abs(pos[2] - (th + o.half_size[2])) < 0.003, o.name
            assert np.allclose(pos[:2], o.xy, atol=0.002), o.name
            assert scene.contacts(f"{o.name}_geom", "table")
            for side in ("left", "right"):
                assert not scene.contacts(f"{o.name}_geom", f"{side}_wrist_yaw_link")
        for side, p0 in palms0.items():
            p, _ = scene.palm_pose(side)
            assert np.linalg.norm(p - p0) < 0.01
            assert p[2] > th + 0.1


def test_replaying_the_same_ctrl_gives_the_same_states_bit_for_bit() -> None:
    layout = get_task("pick_place").default_layout()
    rng = np.random.default_rng(3)
    with Scene(layout) as a, Scene(layout) as b:
        ctrls = a.home_ctrl() + rng.normal(0, 0.05, (200, 43))
        for scene in (a, b):
            for c in ctrls:
                scene.set_ctrl(c)
                scene.step()
        assert a.qpos().tobytes() == b.qpos().tobytes()
        assert a.data.qpos.tobytes() == b.data.qpos.tobytes()
        a.reset()
        for c in ctrls:
            a.set_ctrl(c)
            a.step()
        assert a.data.qpos.tobytes() == b.data.qpos.tobytes()


def test_each_camera_renders_a_frame(pick_place_scene: Scene) -> None:
    for cam in CAMERAS:
        img = pick_place_scene.render(cam, 64, 48)
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8
        assert img.std() > 1.0, cam  # not a blank frame


def test_unknown_names_are_refused_with_what_exists(pick_place_scene: Scene) -> None:
    with pytest.raises(SimError, match="unknown camera 'chest'; cameras: head"):
        pick_place_scene.render("chest")
    with pytest.raises(SimError, match="no object 'ball'; it has cube"):
        pick_place_scene.object_pose("ball")
    with pytest.raises(SimError, match="no body 'tail'"):
        pick_place_scene.body_pose("tail")
