"""The simulated operator: palm targets through IK into physics, logged as a :class:`Trace`.

:class:`Executor` is the rig: it moves the palms along interpolated paths (minimum-jerk
in position, slerp in orientation), solves IK at the control rate (every 10 ms), writes
the joint targets at every 2 ms physics step, closes the hands by interpolation, and logs
``ctrl`` and the operator's palm targets step by step with the operator's marks.
Multiplication executes transformed source segments through it.

:func:`run_expert` is the operator: per task a script of approach, pre-grasp, grasp,
lift, transport and release, played the way a person plays it (noise on every target,
pauses, a speed of their own, the odd regrasp), so that some attempts fail in physics
(a slip, a drop, a miss) and the rest succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recorder.contract import EventKind

from .errors import SimError
from .ik import HandIK, Unreachable, arm_joint_names
from .scenes import SIDES, Layout, Scene
from .tasks import Outcome, Task, get_task, lifted_by
from .trace import Mark, Trace

#: pelvis height in the world: teleop poses are logged in the pelvis frame
PELVIS_Z = 0.793
#: per grip, per hand joint (profile suffix): (open, closed) targets of the right hand;
#: the left hand mirrors them (its finger ranges are the right's, negated). ``pinch``:
#: thumb pre-shaped back, closing against index and middle (a small object between them);
#: ``flat``: thumb folded flush with the palm, fingers pressing (squeezing a big box
#: between two palms)
GRIPS: dict[str, dict[str, tuple[float, float]]] = {
    "pinch": {"thumb_0": (0.0, 0.0), "thumb_1": (0.724, -1.05), "thumb_2": (0.0, -0.6),
              "middle_0": (0.0, 1.5708), "middle_1": (0.0, 1.745),
              "index_0": (0.0, 1.5708), "index_1": (0.0, 1.745)},
    "flat": {"thumb_0": (0.0, 0.0), "thumb_1": (-1.05, -1.05), "thumb_2": (-1.3, -1.3),
             "middle_0": (0.0, 0.5), "middle_1": (0.0, 0.3),
             "index_0": (0.0, 0.5), "index_1": (0.0, 0.3)},
}
RIGHT_HAND_SHAPE = GRIPS["pinch"]

Pose = tuple[np.ndarray, np.ndarray]
#: joint targets stay this far inside each joint's range (a target on the limit pushes the
#: joint into its soft limit, past the range a curation check allows)
LIMIT_MARGIN_RAD = 0.01
#: mark kinds (``Mark.kind``): the recorder's event kinds, in lower case
SUBTASK = EventKind.SUBTASK.name.lower()
INTERVENTION = EventKind.INTERVENTION.name.lower()


def hand_targets(side: str, closure: float, grip: str = "pinch") -> dict[str, float]:
    """Finger joint targets (MuJoCo joint name -> rad) of one hand at a closure from 0
    (open) to 1 (closed) in one of :data:`GRIPS`."""
    try:
        shape = GRIPS[grip]
    except KeyError:
        raise SimError(f"unknown grip {grip!r}; grips: {', '.join(GRIPS)}") from None
    c = float(np.clip(closure, 0.0, 1.0))
    sign = 1.0 if side == "right" else -1.0
    return {f"{side}_hand_{j}_joint": sign * (o + c * (cl - o)) for j, (o, cl) in shape.items()}


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation of unit quaternions (w, x, y, z), shortest arc."""
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    if d > 0.9995:
        out = q0 + t * (q1 - q0)
    else:
        th = np.arccos(d)
        out = (np.sin((1 - t) * th) * q0 + np.sin(t * th) * q1) / np.sin(th)
    r: np.ndarray = out / np.linalg.norm(out)
    return r


def min_jerk(t: float) -> float:
    """The minimum-jerk profile 10t³ − 15t⁴ + 6t⁵ on [0, 1]."""
    t = min(max(t, 0.0), 1.0)
    return t * t * t * (10 - 15 * t + 6 * t * t)


class Executor:
    """Drives the arms and hands of a scene through IK and physics and logs the trace.

    ``control_dt`` is the IK period (a multiple of the physics step); ``grip`` the hand
    shape (one of :data:`GRIPS`, the task's ``grip``). ``strict``: a target the arm cannot
    reach raises :class:`sim.ik.Unreachable` at the end of its move; otherwise the arm
    gets as close as it can, as a teleoperation rig's IK does, and physics decides. Palm
    targets start at the scene's current palm poses, the hands open. Every physics step
    appends one row to ``ctrl`` and ``teleop``: the IK solution of each control period is
    approached linearly over its physics steps, every target stays ``LIMIT_MARGIN_RAD``
    inside its joint's range, and ``action_noise_rad`` (drawn from ``noise_seed``, one
    draw per control period, interpolated like the targets) is added to the arm and hand
    joints' commands.
    """

    def __init__(self, scene: Scene, ik: HandIK, *, control_dt: float = 0.01,
                 grip: str = "pinch", strict: bool = True, action_noise_rad: float = 0.0,
                 noise_seed: int | Sequence[int] | None = None) -> None:
        if grip not in GRIPS:
            raise SimError(f"unknown grip {grip!r}; grips: {', '.join(GRIPS)}")
        self.scene = scene
        self.ik = ik
        self.grip = grip
        self.strict = strict
        self.substeps = max(1, round(control_dt / scene.dt))
        names = scene.joint_names
        self._hand_idx = {s: [names.index(n) for n in hand_targets(s, 0.0)] for s in SIDES}
        #: the joints the operator drives (arms and hands): action noise goes there
        self._operated = np.array(sorted(
            {names.index(n) for s in SIDES for n in arm_joint_names(s)}
            | {i for idx in self._hand_idx.values() for i in idx}))
        lo, hi = scene.ctrl_range[:, 0], scene.ctrl_range[:, 1]
        margin = np.minimum(LIMIT_MARGIN_RAD, (hi - lo) / 4)
        self._lo, self._hi = lo + margin, hi - margin
        self.action_noise_rad = float(action_noise_rad)
        self._rng = np.random.default_rng(noise_seed)
        self._noise = np.zeros(len(names))
        self._q = scene.ctrl()
        self._cmd = self._q.copy()
        self.targets: dict[str, Pose] = {s: scene.palm_pose(s) for s in SIDES}
        self.hands: dict[str, float] = {s: 0.0 for s in SIDES}
        self._ctrl: list[np.ndarray] = []
        self._teleop: list[np.ndarray] = []
        self.marks: list[Mark] = []

    @property
    def step_count(self) -> int:
        """Physics steps executed (and logged) so far."""
        return len(self._ctrl)

    def _hand(self, side: str, closure: float) -> list[float]:
        return list(hand_targets(side, closure, self.grip).values())

    def _teleop_row(self, targets: Mapping[str, Pose]) -> np.ndarray:
        row = np.empty((2, 7))
        for i, s in enumerate(SIDES):
            pos, quat = targets[s]
            row[i, :3] = pos - (0.0, 0.0, PELVIS_Z)
            row[i, 3:] = quat
        return row

    def move(self, targets: Mapping[str, Pose], duration_s: float, *,
             hands: Mapping[str, float] | None = None) -> None:
        """Move the palms of ``targets`` (side -> world position, quaternion w x y z) from
        the current targets to these along a minimum-jerk path in ``duration_s``, and the
        hands of ``hands`` (side -> closure 0..1) linearly to their closure. Raises
        :class:`sim.ik.Unreachable` when IK cannot follow (if ``strict``)."""
        bad = (set(targets) | set(hands or {})) - set(SIDES)
        if bad:
            raise SimError(f"move: unknown sides {sorted(bad)}; sides: {', '.join(SIDES)}")
        start = dict(self.targets)
        goal = {s: (np.asarray(p, dtype=float), np.asarray(q, dtype=float) /
                    np.linalg.norm(q)) for s, (p, q) in targets.items()}
        h0 = dict(self.hands)
        h1 = {s: float(np.clip(c, 0.0, 1.0)) for s, c in (hands or {}).items()}
        ticks = max(1, round(duration_s / (self.scene.dt * self.substeps)))
        for k in range(1, ticks + 1):
            a = min_jerk(k / ticks)
            cur = dict(start)
            for s, (p1, q1) in goal.items():
                p0, q0 = start[s]
                cur[s] = (p0 + a * (p1 - p0), slerp(q0, q1, a))
            if goal:
                self._q = self.ik.solve({s: cur[s] for s in goal}, self._q, max_iters=8,
                                        check=self.strict and k == ticks)
            self.targets = cur
            row = self._teleop_row(cur)
            # the arm targets of one IK solve are reached over the control period, step
            # by step (no steps in the commands), and so is the action noise
            q0, q1 = self._cmd, self._q.copy()
            n0 = self._noise
            n1 = np.zeros_like(n0)
            if self.action_noise_rad > 0.0:
                n1[self._operated] = self._rng.normal(0.0, self.action_noise_rad,
                                                      len(self._operated))
            for i in range(self.substeps):
                f_tick = (i + 1) / self.substeps
                cmd = q0 + f_tick * (q1 - q0)
                f = (k - 1 + f_tick) / ticks
                for s in SIDES:
                    if s in h1:
                        self.hands[s] = h0[s] + f * (h1[s] - h0[s])
                    cmd[self._hand_idx[s]] = self._hand(s, self.hands[s])
                self._cmd = cmd
                self.scene.set_ctrl(np.clip(cmd + n0 + f_tick * (n1 - n0), self._lo, self._hi))
                self._ctrl.append(self.scene.ctrl())
                self._teleop.append(row)
                self.scene.step()
            self._noise = n1
        for s, c1 in h1.items():
            self.hands[s] = c1

    def hold(self, duration_s: float) -> None:
        """Keep the current targets for ``duration_s`` (physics keeps running)."""
        self.move({}, duration_s)

    def mark(self, label: str, kind: str = SUBTASK) -> None:
        """An operator's mark at the current step (a subtask boundary by default)."""
        self.marks.append(Mark(self.step_count, kind, label))

    def trace(self, task: str, seed: int, layout: Layout, outcome: Outcome,
              provenance: dict[str, Any] | None = None) -> Trace:
        """The trace of everything executed so far, with the task's verdict (``success``,
        ``failed_subtask``, ``reason``) and the provenance to record."""
        n = len(self._ctrl)
        ctrl = np.array(self._ctrl) if n else np.empty((0, len(self.scene.joint_names)))
        teleop = np.array(self._teleop) if n else np.empty((0, 2, 7))
        return Trace(task=task, seed=seed, layout=layout, ctrl=ctrl, teleop=teleop,
                     marks=list(self.marks), success=outcome.success,
                     failed_subtask=outcome.failed_subtask, reason=outcome.reason,
                     provenance=dict(provenance or {}))


@dataclass(frozen=True, slots=True)
class OperatorStyle:
    """How an operator plays: speed (1 = nominal), noise on every target (m), a depth
    misjudgement of objects along the line of sight (x, m, the same for the whole
    attempt), chance of a pause at each phase and its length, chance of tidying a grasp
    (open, back off, retry), how firmly the palms squeeze a box (m past its faces), and at
    what closure of the hand the lift starts."""

    speed: float = 1.0
    noise_m: float = 0.006
    depth_bias_m: float = 0.0
    pause_p: float = 0.25
    pause_s: tuple[float, float] = (0.2, 0.8)
    regrasp_p: float = 0.1
    squeeze_m: float = 0.012
    #: hand closure (0..1) at which the lift starts; the hand closes the rest on the way up
    lift_at: float = 1.0
    #: chance of squeezing again when a palm visibly missed the box
    resqueeze_p: float = 0.6
    #: drawn from the novices of the pool (for the record; the numbers above say how)
    novice: bool = False

    @classmethod
    def draw(cls, rng: np.random.Generator, novice_p: float = 0.3) -> OperatorStyle:
        """An operator drawn at random from a pool of teleoperators: trained ones, and with
        probability ``novice_p`` a novice (shakier, misjudges depth more, squeezes less
        evenly)."""
        novice = bool(rng.random() < novice_p)
        k = 2.5 if novice else 1.0
        return cls(speed=float(rng.uniform(0.75, 1.35)),
                   noise_m=float(rng.uniform(0.003, 0.010) * k),
                   depth_bias_m=float(rng.normal(0.0, 0.008 * k)),
                   pause_p=float(rng.uniform(0.1, 0.4)),
                   regrasp_p=0.1,
                   squeeze_m=float(rng.uniform(-0.012 * k, 0.015)),
                   lift_at=float(min(1.0, rng.uniform(0.4, 1.3))),
                   resqueeze_p=0.3 if novice else 0.7,
                   novice=novice)

    def as_dict(self) -> dict[str, float | bool | list[float]]:
        """JSON-able, for the trace's provenance."""
        return {"speed": self.speed, "noise_m": self.noise_m,
                "depth_bias_m": self.depth_bias_m, "pause_p": self.pause_p,
                "pause_s": list(self.pause_s), "regrasp_p": self.regrasp_p,
                "squeeze_m": self.squeeze_m, "lift_at": self.lift_at,
                "resqueeze_p": self.resqueeze_p, "novice": self.novice}


def yaw_quat(yaw: float) -> np.ndarray:
    """The palm orientation of a side grasp (fingers forward, palm to the midline) turned
    by ``yaw`` about the world z axis."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def _yaw_of(quat: np.ndarray) -> float:
    w, x, y, z = quat
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def _grasp_yaw(quat: np.ndarray, half: tuple[float, float, float]) -> float:
    """The object's yaw folded to the symmetry of a box: within ±45° for a square
    footprint, ±90° otherwise (a hand grasps either face)."""
    period = np.pi / 2 if abs(half[0] - half[1]) < 1e-6 else np.pi
    yaw = _yaw_of(quat)
    return float((yaw + period / 2) % period - period / 2)


#: palm in front of the box's near face: the box sits between thumb (behind) and fingers
GRASP_BACK_M = 0.035
#: palm face to palm site along the palm normal
PALM_FACE_M = 0.015
#: in the flat grip the folded thumb's base stands out of the palm: it meets the box here
FLAT_FACE_M = 0.04
#: palm site above the table when the fingers grasp near the table (middle finger clear)
GRASP_Z_M = 0.046


def side_grasp(scene: Scene, obj: str, side: str) -> Pose:
    """The palm pose of a side grasp of ``obj`` by ``side``: palm to the midline against
    the object's outer face, fingers forward around its front, low on the object (as low
    as the fingers clear the table when it rests there)."""
    spec = scene.layout.object(obj)
    pos, quat = scene.object_pose(obj)
    hx, hy, hz = spec.half_size
    yaw = _grasp_yaw(quat, spec.half_size)
    sign = -1.0 if side == "right" else 1.0   # the right hand grasps the -y face
    local = np.array([-GRASP_BACK_M, sign * (hy + PALM_FACE_M), 0.0])
    c, sn = np.cos(yaw), np.sin(yaw)
    world = pos + np.array([c * local[0] - sn * local[1], sn * local[0] + c * local[1], 0.0])
    world[2] = max(pos[2] - hz + GRASP_Z_M, pos[2] - hz + 0.02)
    return world, yaw_quat(yaw)


def offset(pose: Pose, d: tuple[float, float, float], *, side: str = "right") -> Pose:
    """``pose`` moved by ``d`` (m) in the palm's yaw frame: x forward, y away from the
    midline (outwards for ``side``), z up."""
    pos, quat = pose
    yaw = _yaw_of(quat)
    out = -1.0 if side == "right" else 1.0
    c, s = np.cos(yaw), np.sin(yaw)
    dx, dy = d[0], out * d[1]
    return pos + np.array([c * dx - s * dy, s * dx + c * dy, d[2]]), quat


class _Operator:
    """One attempt of the simulated operator at a task: the script and its human touch."""

    def __init__(self, task: Task, layout: Layout, seed: int,
                 style: OperatorStyle | None, action_noise_rad: float = 0.0) -> None:
        self.task = task
        self.layout = layout
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.style = OperatorStyle.draw(self.rng) if style is None else style
        self.scene = Scene(layout)
        self.ik = HandIK(self.scene)
        # the operator's rig never refuses a pose: out of reach, the arm stops short
        self.ex = Executor(self.scene, self.ik, grip=task.grip, strict=False,
                           action_noise_rad=action_noise_rad, noise_seed=[seed, 1])
        self.failure: Outcome | None = None
        self.regrasps = 0

    # -- the human touch ------------------------------------------------------------------
    def noisy(self, pose: Pose, scale: float = 1.0) -> Pose:
        """A target as this operator hits it: jitter, and the depth misjudgement."""
        n = self.rng.normal(0.0, self.style.noise_m * scale, 3)
        n[0] += self.style.depth_bias_m
        return pose[0] + n, pose[1]

    def dur(self, nominal_s: float) -> float:
        """How long this operator takes for a motion of nominal length."""
        return float(nominal_s / self.style.speed * self.rng.uniform(0.85, 1.15))

    def maybe_pause(self) -> None:
        """Now and then the operator hesitates."""
        if self.rng.random() < self.style.pause_p:
            self.ex.hold(float(self.rng.uniform(*self.style.pause_s)))

    def above_table(self, pose: Pose) -> Pose:
        """The operator feels the table: a palm target no lower than a grasp next to it."""
        pos = pose[0].copy()
        pos[2] = max(pos[2], self.layout.table_height + GRASP_Z_M)
        return pos, pose[1]

    def move(self, targets: Mapping[str, Pose], nominal_s: float,
             hands: Mapping[str, float] | None = None) -> None:
        self.ex.move(targets, self.dur(nominal_s), hands=hands)

    def fail(self, outcome: Outcome) -> None:
        if self.failure is None and not outcome.success:
            self.failure = outcome

    # -- shared phases ----------------------------------------------------------------------
    def grasp(self, side: str, obj: str, *, tries: int = 2) -> bool:
        """Approach, pre-grasp, close, lift a little and check that the object came along;
        on a miss (or, now and then, an untidy grasp) open, back off and try again."""
        for attempt in range(tries):
            target = self.above_table(self.noisy(side_grasp(self.scene, obj, side)))
            pre = offset(target, (-0.05, 0.05, 0.04), side=side)
            self.move({side: pre}, 1.0)
            self.maybe_pause()
            self.move({side: target}, 0.6)
            # an impatient operator starts lifting before the hand has closed
            early = self.style.lift_at
            self.move({}, 0.7 * early, hands={side: early})
            if early >= 1.0:
                self.ex.hold(0.1)
            untidy = attempt + 1 < tries and self.rng.random() < self.style.regrasp_p
            if not untidy:
                self.ex.mark("grasp")
                lift = offset(self.ex.targets[side], (0.0, 0.0, 0.06), side=side)
                self.move({side: lift}, 0.6, hands={side: 1.0})
                held = lifted_by(obj, side, 0.03)(self.scene)
                if held[0]:
                    return True
                if attempt + 1 == tries:
                    self.fail(Outcome(False, "grasp", f"{held[1]} after the lift"))
                    return False
            # regrasp: open, back off, look again
            self.regrasps += 1
            self.ex.mark("regrasp", kind=INTERVENTION)
            self.move({}, 0.4, hands={side: 0.0})
            back = offset(self.ex.targets[side], (-0.05, 0.04, 0.05), side=side)
            self.move({side: back}, 0.6)
            self.maybe_pause()
        return False

    def finish(self) -> Outcome:
        """Hold the end state, then judge it; an earlier subtask's failure takes
        precedence when the end state fails too."""
        self.ex.hold(self.task.hold_s)
        final = self.task.check(self.scene)
        if self.failure is not None and not final.success:
            return self.failure
        return final

    # -- the tasks --------------------------------------------------------------------------
    def pick_place(self) -> Outcome:
        if not self.grasp("right", "cube"):
            return self.finish()
        b = self.layout.bin
        if b is None:
            raise SimError(f"task {self.task.name!r}: the layout has no bin to place in")
        above = self.scene.layout.table_height + b.wall_height + 0.12
        drop = offset((np.array([b.xy[0], b.xy[1], above]), self.ex.targets["right"][1]),
                      (-GRASP_BACK_M, PALM_FACE_M + 0.015, 0.0), side="right")
        self.ex.mark("lift")
        self.move({"right": self.noisy(drop, 1.5)}, 1.3)
        self.maybe_pause()
        self.move({"right": offset(self.ex.targets["right"], (0, 0, -0.02))}, 0.4)
        self.move({}, 0.4, hands={"right": 0.0})
        self.ex.mark("release")
        self.move({"right": offset(self.ex.targets["right"], (-0.04, 0.03, 0.05))}, 0.6)
        self.ex.mark("place")
        return self.finish()

    def handover(self) -> Outcome:
        if not self.grasp("right", "bar"):
            return self.finish()
        self.ex.mark("lift")
        pos, quat = self.ex.targets["right"]
        spec = self.layout.object("bar")
        # bring the bar to the midline, a hand's height above the table
        mid_y = -(spec.half_size[1] + PALM_FACE_M)
        present = (np.array([pos[0], mid_y, self.layout.table_height + 0.16]), yaw_quat(0.0))
        self.move({"right": self.noisy(present)}, 1.2)
        self.maybe_pause()
        self.ex.hold(0.2)
        if not self.grasp_in_air("left", "bar"):
            return self.finish()
        self.move({}, 0.4, hands={"right": 0.0})
        self.ex.mark("release")
        self.move({"right": offset(self.ex.targets["right"], (-0.03, 0.06, -0.03),
                                   side="right")}, 0.7)
        self.ex.mark("handover")
        # the left hand takes the bar away to its side
        self.move({"left": offset(self.ex.targets["left"], (-0.02, 0.05, 0.03),
                                  side="left")}, 0.7)
        return self.finish()

    def grasp_in_air(self, side: str, obj: str) -> bool:
        """Take an object another hand holds: pre-grasp beside it, look again (it may have
        moved in the other hand), close on it."""
        target = self.noisy(side_grasp(self.scene, obj, side))
        self.move({side: offset(target, (-0.04, 0.06, 0.03), side=side)}, 1.2)
        self.maybe_pause()
        # a trained operator looks again on the way in; a novice often goes by the first look
        relook = not self.style.novice or self.rng.random() < 0.5
        if relook:
            target = self.noisy(side_grasp(self.scene, obj, side), 0.5)
        self.move({side: offset(target, (0.0, 0.03, 0.0), side=side)}, 0.4)
        if relook:
            target = self.noisy(side_grasp(self.scene, obj, side), 0.3)
        self.move({side: target}, 0.3)
        self.move({}, 0.6, hands={side: 1.0})
        self.ex.hold(0.15)
        return True

    def bimanual_lift(self) -> Outcome:
        spec = self.layout.object("box")
        hx, hy, hz = spec.half_size
        pos, quat = self.scene.object_pose("box")
        yaw = _grasp_yaw(quat, spec.half_size)
        targets: dict[str, Pose] = {}
        for side, sign in (("left", 1.0), ("right", -1.0)):
            local = (-hx + 0.01, sign * (hy + FLAT_FACE_M - self.style.squeeze_m), 0.0)
            c, s = np.cos(yaw), np.sin(yaw)
            p = pos + np.array([c * local[0] - s * local[1], s * local[0] + c * local[1], 0.0])
            targets[side] = self.above_table(self.noisy((p, yaw_quat(yaw))))
        pre = {side: offset(t, (-0.02, 0.06, 0.03), side=side) for side, t in targets.items()}
        self.move(pre, 1.2)
        self.maybe_pause()
        self.move({side: offset(t, (0, 0.03, 0), side=side) for side, t in targets.items()},
                  0.6)
        self.move(targets, 0.5, hands={"left": 1.0, "right": 1.0})
        self.ex.hold(0.2)
        grasped = self.task.subtask_outcome(self.scene, "grasp")
        # a hand that visibly missed the box: most operators squeeze again, harder
        if not grasped.success and self.rng.random() < self.style.resqueeze_p:
            self.regrasps += 1
            self.ex.mark("regrasp", kind=INTERVENTION)
            self.maybe_pause()
            tighter = {side: offset(self.ex.targets[side], (0.0, -0.015, 0.0), side=side)
                       for side in SIDES}
            self.move(tighter, 0.5)
            self.ex.hold(0.2)
            grasped = self.task.subtask_outcome(self.scene, "grasp")
        self.ex.mark("grasp")
        self.fail(grasped)
        # the two hands do not rise as one: each drifts on its own (apart, out of level)
        up = {side: self.noisy(offset(self.ex.targets[side], (0, 0, 0.10), side=side), 1.5)
              for side in SIDES}
        self.move(up, 1.0)
        self.ex.mark("lift")
        return self.finish()


_SCRIPTS: dict[str, Callable[[_Operator], Outcome]] = {
    "pick_place": _Operator.pick_place, "handover": _Operator.handover,
    "bimanual_lift": _Operator.bimanual_lift}


def run_expert(task: str, layout: Layout, seed: int, style: OperatorStyle | None = None,
               *, action_noise_rad: float = 0.0) -> Trace:
    """One attempt of the simulated operator at ``task`` in ``layout``: physics only, no
    rendering; the same (task, layout, seed, style, noise) gives the same trace bit for
    bit. ``style`` None draws the operator's speed, noise and habits from the seed;
    ``action_noise_rad`` is the randomization draw's action noise (on the arm and hand
    commands, drawn from the seed on a stream of its own: the operator plays the same)."""
    t = get_task(task)
    op = _Operator(t, layout, seed, style, action_noise_rad)
    script = _SCRIPTS.get(t.name)
    if script is None:
        raise SimError(f"the simulated operator has no script for task {t.name!r}; "
                       f"scripts: {', '.join(_SCRIPTS)}")
    try:
        outcome = script(op)
    except Unreachable as exc:
        outcome = Outcome(False, _current_subtask(t, op.ex.marks), f"IK: {exc}")
    provenance = {"operator": {**op.style.as_dict(), "regrasps": op.regrasps},
                  "action_noise_rad": action_noise_rad}
    op.scene.close()
    return op.ex.trace(task, seed, layout, outcome, provenance)


def _current_subtask(task: Task, marks: list[Mark]) -> str:
    done = {m.label for m in marks if m.kind == SUBTASK}
    for s in task.subtasks:
        if s.name not in done:
            return s.name
    return task.subtasks[-1].name


def success_rates(tasks: list[str], seeds: range) -> dict[str, dict[str, Any]]:
    """Run the operator on each task's default layout for each seed: success rate, CPU
    seconds and simulated seconds per attempt, attempts with a regrasp, failures by
    subtask and predicate."""
    out: dict[str, dict[str, Any]] = {}
    for name in tasks:
        layout = get_task(name).default_layout()
        ok = regrasped = 0
        cpu = sim_s = 0.0
        failures: dict[str, int] = {}
        for seed in seeds:
            t0 = time.process_time()
            tr = run_expert(name, layout, seed)
            cpu += time.process_time() - t0
            sim_s += tr.duration_s
            ok += tr.success
            regrasped += tr.provenance["operator"]["regrasps"] > 0
            if not tr.success:
                key = f"{tr.failed_subtask}: {tr.reason.split(' (')[0][:70]}"
                failures[key] = failures.get(key, 0) + 1
        n = max(1, len(seeds))
        out[name] = {"attempts": len(seeds), "success_rate": ok / n,
                     "cpu_s_per_attempt": round(cpu / n, 3),
                     "sim_s_per_attempt": round(sim_s / n, 2),
                     "with_regrasp": regrasped, "failures": failures}
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m sim.expert [--task T ...] [--seeds N] [--first S]``: the operator's
    success rates on the default layouts, one JSON object."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m sim.expert", description=main.__doc__)
    ap.add_argument("--task", action="append", help="task (repeatable; default: all)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first", type=int, default=0, help="first seed")
    args = ap.parse_args(argv)
    from .tasks import TASKS

    tasks = args.task or list(TASKS)
    print(json.dumps(success_rates(tasks, range(args.first, args.first + args.seeds))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["PELVIS_Z", "SUBTASK", "INTERVENTION", "GRIPS", "RIGHT_HAND_SHAPE", "Pose",
           "hand_targets", "slerp", "min_jerk", "Executor", "OperatorStyle", "Unreachable",
           "yaw_quat", "side_grasp", "offset", "GRASP_BACK_M", "PALM_FACE_M", "FLAT_FACE_M",
           "GRASP_Z_M", "run_expert", "success_rates", "main"]
