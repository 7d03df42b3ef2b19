"""The three tasks: their default layouts, object-centric subtasks and success predicates.

A task is judged on object state only (positions, contacts), as a motion-capture system or
a person watching would judge it; the hands' commands do not count. Each subtask is a
segment of the demonstration relative to one object (what MimicGen transforms), done by one
or both arms, with a predicate that holds at the segment's end:

- ``pick_place``: the right hand picks a light box (4 x 4 x 6 cm, 50 g) and places it in the bin:
  ``grasp`` (the box is held by the right hand, lifted off the table), ``place`` (the box
  rests inside the bin, the hand has let go).
- ``handover``: the right hand picks a bar (4 x 12 x 6 cm, 40 g) by one end, the left hand takes
  it by the other: ``grasp`` (held by the right hand, lifted), ``handover`` (held by the left
  hand only, in the air).
- ``bimanual_lift``: both hands squeeze a box (13 x 16 x 10 cm, 400 g) from its sides,
  lift it above a height and hold it: ``grasp`` (both palms on it), ``lift`` (both still on
  it, its bottom ``lift_m`` above the table, not tilted); the operator holds it for
  ``hold_s`` before the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import SimError
from .scenes import BinSpec, Layout, ObjectSpec, Scene


@dataclass(frozen=True, slots=True)
class Subtask:
    """An object-centric segment: its name (the operator's mark at its end), the object the
    segment is relative to (``bin`` for placing) and the arms that move in it."""

    name: str
    object: str
    arms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A task's verdict: on failure, the subtask whose predicate failed and why."""

    success: bool
    failed_subtask: str = ""
    reason: str = ""


Predicate = Callable[[Scene], "tuple[bool, str]"]


@dataclass(frozen=True)
class Task:
    """A task: name, default layout, subtasks and, per subtask, a predicate on object
    state that returns (holds, why not)."""

    name: str
    description: str
    layout: Layout
    subtasks: tuple[Subtask, ...]
    predicates: dict[str, Predicate] = field(repr=False)
    #: seconds the operator holds the final state before it is checked
    hold_s: float = 0.5
    #: the hand shape the task is done with (``sim.expert.GRIPS``): ``pinch`` (thumb
    #: against two fingers) or ``flat`` (thumb folded, palms squeezing)
    grip: str = "pinch"

    def default_layout(self) -> Layout:
        """The layout the task is demonstrated in before any randomization."""
        return self.layout

    def subtask(self, name: str) -> Subtask:
        """The subtask called ``name``; SimError listing the task's subtasks otherwise."""
        for s in self.subtasks:
            if s.name == name:
                return s
        raise SimError(f"task {self.name!r} has no subtask {name!r}; subtasks: "
                       f"{', '.join(s.name for s in self.subtasks)}")

    def subtask_outcome(self, scene: Scene, name: str) -> Outcome:
        """Whether the predicate of subtask ``name`` holds now, with the reason if not."""
        self.subtask(name)
        ok, why = self.predicates[name](scene)
        return Outcome(True) if ok else Outcome(False, name, why)

    def check_subtask(self, scene: Scene, name: str) -> bool:
        """Whether the predicate of subtask ``name`` holds in the scene's current state."""
        return self.subtask_outcome(scene, name).success

    def check(self, scene: Scene) -> Outcome:
        """The task's verdict on the current state: the last subtask's predicate (the
        task's goal); on failure ``failed_subtask`` names it. Operators that check each
        subtask at its end report an earlier failure themselves."""
        return self.subtask_outcome(scene, self.subtasks[-1].name)


# -- predicates on object state -------------------------------------------------------------

HANDS = {"left": "left_wrist_yaw_link", "right": "right_wrist_yaw_link"}


def _held(scene: Scene, obj: str, side: str) -> bool:
    return scene.contacts(f"{obj}_geom", HANDS[side])


def _height(scene: Scene, obj: str) -> float:
    """Height of the object's centre above its resting height on the table."""
    spec = scene.layout.object(obj)
    z = float(scene.object_pose(obj)[0][2])
    return z - (scene.layout.table_height + spec.half_size[2])


def _tilt(scene: Scene, obj: str) -> float:
    """Angle (rad) between the object's z axis and the world's."""
    w, x, y, _ = scene.object_pose(obj)[1]
    return float(np.arccos(np.clip(1 - 2 * (x * x + y * y), -1.0, 1.0)))


def _fmt(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(a):.3f}" for a in v) + ")"


def lifted_by(obj: str, side: str, min_height: float) -> Predicate:
    """The object touches the hand of ``side`` and its centre is ``min_height`` above its
    resting height."""
    def check(scene: Scene) -> tuple[bool, str]:
        if not _held(scene, obj, side):
            return False, f"{obj} not in the {side} hand (at {_fmt(scene.object_pose(obj)[0])})"
        h = _height(scene, obj)
        if h < min_height:
            return False, f"{obj} only {h:.3f} m above the table (needs {min_height:.3f} m)"
        return True, ""
    return check


def in_bin(obj: str, side: str) -> Predicate:
    """The object's centre is inside the bin's walls, below their top, and the hand of
    ``side`` no longer touches it."""
    def check(scene: Scene) -> tuple[bool, str]:
        b = scene.layout.bin
        if b is None:
            raise SimError(f"scene layout has no bin for {obj!r} to be placed in")
        p = scene.object_pose(obj)[0]
        dx, dy = abs(p[0] - b.xy[0]), abs(p[1] - b.xy[1])
        top = scene.layout.table_height + b.wall_height
        if dx > b.half_size[0] or dy > b.half_size[1] or p[2] > top:
            return False, (f"{obj} at {_fmt(p)} is not in the bin (centre "
                           f"({b.xy[0]:.3f}, {b.xy[1]:.3f}), inner half size "
                           f"({b.half_size[0]:.3f}, {b.half_size[1]:.3f}), top {top:.3f})")
        if _held(scene, obj, side):
            return False, f"{obj} is in the bin but the {side} hand still holds it"
        return True, ""
    return check


def passed(obj: str, giver: str, taker: str, min_height: float) -> Predicate:
    """The object is held by ``taker`` alone, ``min_height`` above its resting height."""
    def check(scene: Scene) -> tuple[bool, str]:
        if not _held(scene, obj, taker):
            return False, (f"{obj} not in the {taker} hand (at "
                           f"{_fmt(scene.object_pose(obj)[0])})")
        if _held(scene, obj, giver):
            return False, f"{obj} still touches the {giver} hand"
        h = _height(scene, obj)
        if h < min_height:
            return False, f"{obj} only {h:.3f} m above the table (needs {min_height:.3f} m)"
        return True, ""
    return check


def squeezed(obj: str, min_height: float, max_tilt: float = 0.35) -> Predicate:
    """Both hands touch the object, which is ``min_height`` above its resting height and
    tilted less than ``max_tilt`` rad."""
    def check(scene: Scene) -> tuple[bool, str]:
        loose = [s for s in ("left", "right") if not _held(scene, obj, s)]
        if loose:
            return False, f"{obj} not touched by the {' and '.join(loose)} hand"
        h = _height(scene, obj)
        if h < min_height:
            return False, f"{obj} only {h:.3f} m above the table (needs {min_height:.3f} m)"
        tilt = _tilt(scene, obj)
        if tilt > max_tilt:
            return False, f"{obj} tilted {np.degrees(tilt):.0f} deg (at most " \
                          f"{np.degrees(max_tilt):.0f})"
        return True, ""
    return check


# -- the tasks --------------------------------------------------------------------------

TABLE_HEIGHT = 0.80


def _pick_place() -> Task:
    layout = Layout(
        objects=(ObjectSpec("cube", (0.35, -0.17), (0.02, 0.02, 0.03), mass=0.05),),
        bin=BinSpec((0.36, 0.03), (0.045, 0.045), wall_height=0.04),
        table_height=TABLE_HEIGHT)
    return Task(
        "pick_place", "the right hand picks the cube and places it in the bin", layout,
        (Subtask("grasp", "cube", ("right",)), Subtask("place", "bin", ("right",))),
        {"grasp": lifted_by("cube", "right", 0.02), "place": in_bin("cube", "right")})


def _handover() -> Task:
    layout = Layout(
        objects=(ObjectSpec("bar", (0.35, -0.12), (0.02, 0.06, 0.03), mass=0.04,
                            rgba=(0.2, 0.6, 0.25, 1.0)),),
        table_height=TABLE_HEIGHT)
    return Task(
        "handover", "the right hand picks the bar and hands it to the left hand", layout,
        (Subtask("grasp", "bar", ("right",)), Subtask("handover", "bar", ("left", "right"))),
        {"grasp": lifted_by("bar", "right", 0.02),
         "handover": passed("bar", "right", "left", 0.04)})


def _bimanual_lift() -> Task:
    layout = Layout(
        objects=(ObjectSpec("box", (0.33, 0.0), (0.065, 0.08, 0.05), mass=0.4, friction=0.7,
                            rgba=(0.85, 0.65, 0.2, 1.0)),),
        table_height=TABLE_HEIGHT)
    return Task(
        "bimanual_lift", "both hands squeeze the box from its sides, lift it and hold it",
        layout,
        (Subtask("grasp", "box", ("left", "right")), Subtask("lift", "box", ("left", "right"))),
        {"grasp": squeezed("box", -0.01), "lift": squeezed("box", 0.06)}, hold_s=1.0,
        grip="flat")


TASKS: dict[str, Task] = {t.name: t for t in (_pick_place(), _handover(), _bimanual_lift())}


def get_task(name: str) -> Task:
    """The task called ``name``; SimError listing the tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise SimError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}") from None


__all__ = ["Subtask", "Outcome", "Predicate", "Task", "HANDS", "TABLE_HEIGHT", "TASKS",
           "get_task", "lifted_by", "in_bin", "passed", "squeezed"]
