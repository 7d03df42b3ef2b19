"""Inverse kinematics of the two palms with mink, as a teleoperation rig solves it.

The solver works on a robot-only copy of the scene: the same ``MjSpec`` (table and bin
included, as obstacles) without the free objects, and with every joint but the 14 arm
joints (7 per side) removed, so legs, waist and fingers stay where they are and the QP has
exactly the arm dofs (a ``DofFreezingTask`` in a model that still holds an object's free
joint made daqp fail). The tasks and limits follow mink's ``humanoid_g1_teleop`` example:
a ``FrameTask`` on each palm site, a ``PostureTask`` that keeps the elbows in a natural
pose, a ``ConfigurationLimit`` and a ``CollisionAvoidanceLimit`` that keeps the hands off
the table, the bin, the torso and each other.

Targets are world-frame palm poses (position, quaternion w x y z); the answer is the 43
joint position targets of the scene (profile order), the non-arm entries copied from the
starting configuration.
"""

from __future__ import annotations

from dataclasses import replace

import mink
import mujoco
import numpy as np

from .errors import SimError
from .scenes import SIDES, Scene, build_spec

#: the 7 arm joints of one side, shoulder to wrist
ARM_JOINTS = ("shoulder_pitch", "shoulder_roll", "shoulder_yaw", "elbow", "wrist_roll",
              "wrist_pitch", "wrist_yaw")
#: a natural arm posture (elbows bent, forearms forward) the posture task pulls towards
NOMINAL_ARM = {"left": (0.2, 0.2, 0.0, 0.3, 0.0, 0.0, 0.0),
               "right": (0.2, -0.2, 0.0, 0.3, 0.0, 0.0, 0.0)}
#: bodies whose subtree makes up a hand for collision avoidance (wrist and fingers)
_HAND_ROOT = "{side}_wrist_roll_link"
_ARM_LINKS = ("{side}_elbow_link", "{side}_shoulder_yaw_link")


class Unreachable(SimError):
    """A palm target the arm cannot reach (out of the workspace, or blocked by the table,
    the torso or the other hand): names the side and the residual error in metres."""

    def __init__(self, side: str, error_m: float, target: np.ndarray) -> None:
        self.side = side
        self.error_m = float(error_m)
        self.target = np.asarray(target, dtype=float).copy()
        x, y, z = (float(v) for v in self.target)
        super().__init__(f"{side} palm target ({x:.3f}, {y:.3f}, {z:.3f}) m (world) is "
                         f"unreachable: {self.error_m:.3f} m away after IK")


def arm_joint_names(side: str) -> list[str]:
    """The MuJoCo joint names of one arm, shoulder to wrist."""
    return [f"{side}_{j}_joint" for j in ARM_JOINTS]


class HandIK:
    """Palm-pose IK for a scene's G1 (arm joints only; legs, waist and fingers held).

    ``tolerance_m`` is the position error above which :meth:`solve` raises
    :class:`Unreachable`; ``max_iters`` bounds the QP iterations of one call and
    ``max_step_rad`` each joint's move per iteration (small steps keep the collision
    constraints valid; a far target takes more iterations). Successive calls start from
    the previous solution, as a teleoperation loop does.
    """

    def __init__(self, scene: Scene, *, tolerance_m: float = 0.01, max_iters: int = 200,
                 position_cost: float = 1.0, orientation_cost: float = 0.2,
                 posture_cost: float = 5e-3, collision_margin_m: float = 0.01,
                 table_margin_m: float = 0.005,
                 max_step_rad: float = 0.03, solver: str = "daqp") -> None:
        self.scene = scene
        self.tolerance_m = tolerance_m
        self.max_iters = max_iters
        self.solver = solver
        self.dt = 0.01
        self.model = _robot_only_model(scene)
        self.configuration = mink.Configuration(self.model)
        m = self.model
        names = scene.joint_names
        #: for each IK qpos entry, its index in the scene's 43-joint profile order
        self._profile_idx = np.array(
            [names.index(m.joint(j).name) for j in range(m.njnt)])
        self.frame_tasks = {
            side: mink.FrameTask(frame_name=f"{side}_palm", frame_type="site",
                                 position_cost=position_cost,
                                 orientation_cost=orientation_cost, lm_damping=1.0)
            for side in SIDES}
        self.posture_task = mink.PostureTask(m, cost=posture_cost)
        nominal = np.zeros(m.nq)
        for side in SIDES:
            for jn, v in zip(arm_joint_names(side), NOMINAL_ARM[side], strict=True):
                lo, hi = m.joint(jn).range
                nominal[m.joint(jn).qposadr[0]] = np.clip(v, lo, hi)
        self.posture_task.set_target(nominal)
        # a bound on each iteration's step keeps the linearized collision constraints
        # valid (one long step could pass a hand through the table or the other hand)
        self.limits: list[mink.Limit] = [
            mink.ConfigurationLimit(m),
            mink.VelocityLimit(m, {m.joint(j).name: max_step_rad / self.dt
                                   for j in range(m.njnt)}),
        ]
        world_pairs, body_pairs = _collision_pairs(m)
        # the fingers pass close to the table and the bin when they grasp: a small margin
        # there, a wider one from the torso and the other hand
        for pairs, margin in ((world_pairs, table_margin_m), (body_pairs, collision_margin_m)):
            self.limits.append(mink.CollisionAvoidanceLimit(
                m, pairs, minimum_distance_from_collisions=margin,
                collision_detection_distance=margin + 0.03))
        self._q: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the previous solution: the next call starts from the scene's ctrl."""
        self._q = None

    def forward(self, q: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Palm poses (world position, quaternion w x y z) of a 43-joint configuration."""
        self.configuration.update(q[self._profile_idx])
        return {side: self._palm(side) for side in SIDES}

    def _palm(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        t = self.configuration.get_transform_frame_to_world(f"{side}_palm", "site")
        return t.translation().copy(), t.rotation().wxyz.copy()

    def solve(self, targets: dict[str, tuple[np.ndarray, np.ndarray]],
              q: np.ndarray | None = None, *, max_iters: int | None = None,
              check: bool = True) -> np.ndarray:
        """Joint targets (43, profile order) that put each palm of ``targets`` (side ->
        (world position, quaternion w x y z)) at its pose; a side without a target keeps
        its palm where it is. ``q`` is the starting configuration (default: the previous
        solution, else the scene's ctrl). Raises :class:`Unreachable` when a palm ends
        farther than ``tolerance_m`` from its target (unless ``check`` is false)."""
        unknown = set(targets) - set(SIDES)
        if unknown:
            raise SimError(f"IK targets for unknown sides {sorted(unknown)}; sides: "
                           f"{', '.join(SIDES)}")
        start = (self._q if self._q is not None else self.scene.ctrl()) if q is None else q
        start = np.asarray(start, dtype=float)
        if start.shape != (len(self.scene.joint_names),):
            raise SimError(f"IK start configuration has shape {start.shape}; expected "
                           f"({len(self.scene.joint_names)},) in profile order")
        cfg = self.configuration
        cfg.update(start[self._profile_idx])
        tasks: list[mink.Task] = [self.posture_task]
        goals: dict[str, np.ndarray] = {}
        for side in SIDES:
            if side in targets:
                pos, quat = targets[side]
                pos = np.asarray(pos, dtype=float)
                quat = np.asarray(quat, dtype=float)
                quat = quat / np.linalg.norm(quat)
            else:
                pos, quat = self._palm(side)
            goals[side] = pos
            self.frame_tasks[side].set_target(
                mink.SE3.from_rotation_and_translation(mink.SO3(quat), pos))
            tasks.append(self.frame_tasks[side])
        # at least one step: a target that moved a little still moves the arm (a control
        # loop that skips small changes commands in steps)
        for it in range(max_iters or self.max_iters):
            if it and all(np.linalg.norm(self._palm(s)[0] - goals[s]) < 5e-4 for s in goals) and \
                    all(np.linalg.norm(self.frame_tasks[s].compute_error(cfg)[3:]) < 5e-3
                        for s in goals):
                break
            try:
                vel = mink.solve_ik(cfg, tasks, self.dt, self.solver, damping=1e-3,
                                    limits=self.limits)
            except mink.NoSolutionFound as exc:
                raise SimError(f"IK: the QP has no solution ({exc}) for targets "
                               f"{ {s: goals[s].round(3).tolist() for s in goals} }") from exc
            cfg.integrate_inplace(vel, self.dt)
        out = start.copy()
        out[self._profile_idx] = cfg.q
        self._q = out
        if check:
            for side in targets:
                err = float(np.linalg.norm(self._palm(side)[0] - goals[side]))
                if err > self.tolerance_m:
                    raise Unreachable(side, err, goals[side])
        return out

    def error(self, side: str, target: np.ndarray, q: np.ndarray | None = None) -> float:
        """Distance (m) of one palm from a target position at ``q`` (default: the last
        solution)."""
        if q is not None:
            self.configuration.update(np.asarray(q)[self._profile_idx])
        elif self._q is not None:
            self.configuration.update(self._q[self._profile_idx])
        return float(np.linalg.norm(self._palm(side)[0] - np.asarray(target)))


_MODELS: dict[tuple[object, ...], mujoco.MjModel] = {}


def _robot_only_model(scene: Scene) -> mujoco.MjModel:
    """The scene's spec without objects and with only the 14 arm joints left; compiled
    once per obstacle layout (table and bin) in a process (the model is only read)."""
    lay = scene.layout
    key = (lay.table_height, lay.table_xy, lay.table_half, lay.bin)
    model = _MODELS.get(key)
    if model is None:
        if len(_MODELS) >= 64:
            _MODELS.clear()
        model = _MODELS[key] = _compile_robot_only(scene)
    return model


def _compile_robot_only(scene: Scene) -> mujoco.MjModel:
    spec = build_spec(replace(scene.layout, objects=(), camera_offsets={}), light_visuals=False)
    keep = {n for side in SIDES for n in arm_joint_names(side)}
    for element in [*spec.actuators, *spec.sensors, *spec.excludes, *spec.equalities]:
        spec.delete(element)
    for joint in list(spec.joints):
        if joint.name not in keep:
            spec.delete(joint)
    try:
        return spec.compile()
    except ValueError as exc:
        raise SimError(f"IK model does not compile: {exc}") from exc


def _subtree_geoms(m: mujoco.MjModel, root: str) -> list[int]:
    """Colliding geoms of a body and everything below it."""
    rid = m.body(root).id
    out = []
    for g in range(m.ngeom):
        b = int(m.geom_bodyid[g])
        while b not in (0, rid):
            b = int(m.body_parentid[b])
        if b == rid and (m.geom_contype[g] or m.geom_conaffinity[g]):
            out.append(g)
    return out


def _body_geoms(m: mujoco.MjModel, names: tuple[str, ...]) -> list[int]:
    ids = {m.body(n).id for n in names if _has_body(m, n)}
    return [g for g in range(m.ngeom) if int(m.geom_bodyid[g]) in ids
            and (m.geom_contype[g] or m.geom_conaffinity[g])]


def _has_body(m: mujoco.MjModel, name: str) -> bool:
    return bool(mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, name) >= 0)


def _collision_pairs(m: mujoco.MjModel) -> tuple[list[tuple[list[int], list[int]]],
                                                  list[tuple[list[int], list[int]]]]:
    """Hands (wrist and fingers), forearms and upper arms vs table and bin; the same vs
    torso and pelvis, and the two wrists and palms vs each other."""
    hands = {s: _subtree_geoms(m, _HAND_ROOT.format(side=s)) for s in SIDES}
    arms = {s: hands[s] + _body_geoms(m, tuple(b.format(side=s) for b in _ARM_LINKS))
            for s in SIDES}
    world = [m.geom("table_top").id] + [g for g in range(m.ngeom)
                                        if m.geom(g).name.startswith("bin_")]
    body = _body_geoms(m, ("torso_link", "pelvis"))
    world_pairs = [(arms[s], world) for s in SIDES]
    # the fingers of the IK model stay at zero (the thumb straight out to the midline),
    # not in the grip they have: the hands keep apart palm to palm only
    palms = {s: _body_geoms(m, tuple(f"{s}_wrist_{j}_link" for j in ("roll", "pitch", "yaw")))
             for s in SIDES}
    body_pairs = [(arms[s], body) for s in SIDES] + [(palms["left"], palms["right"])]
    return world_pairs, body_pairs


__all__ = ["ARM_JOINTS", "NOMINAL_ARM", "Unreachable", "arm_joint_names", "HandIK"]
