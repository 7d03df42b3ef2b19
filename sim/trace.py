"""What one attempt did, physics only: enough to re-execute it exactly and to record it.

An attempt (the simulated operator doing a task, or one multiplied demonstration) runs
physics without cameras and returns a :class:`Trace`. Only a trace that succeeded is
re-executed with rendering and written as an episode; re-execution replays ``ctrl`` step
by step from the scene's reset, which gives the same states to the last bit on the same
machine and build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .scenes import Layout

#: the physics step of every scene, s (the rate of /joint_states in the humanoid profile)
PHYSICS_DT = 0.002


@dataclass(frozen=True, slots=True)
class Mark:
    """An operator's mark at a physics step: ``kind`` is an ``EventKind`` name in lower case
    (``subtask``, ``intervention``, ``note``), ``label`` the subtask boundary it marks
    (``grasp``, ``lift``, ``handover``, ``release`` ...)."""

    step: int
    kind: str
    label: str


@dataclass(slots=True)
class Trace:
    """One attempt: its inputs (task, seed, layout, draw) and what it commanded, step by step.

    ``ctrl`` holds the 43 joint position targets (profile order) applied before each physics
    step; ``teleop`` the operator's two hand targets (x, y, z, qw, qx, qy, qz in the pelvis
    frame, left then right) at the same steps, which the recorder writes as the VR hand
    poses. ``success`` is the task's predicate at the end; when it fails, ``failed_subtask``
    and ``reason`` say which subtask and which predicate.
    """

    task: str
    seed: int
    layout: Layout
    ctrl: np.ndarray                 # (steps, 43) float64
    teleop: np.ndarray               # (steps, 2, 7) float64
    marks: list[Mark] = field(default_factory=list)
    success: bool = False
    failed_subtask: str = ""
    reason: str = ""
    #: the randomization draw and, for multiplied demos, the source segments and
    #: transforms: JSON-able, written into the episode's provenance record
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(self.ctrl.shape[0])

    @property
    def duration_s(self) -> float:
        return self.steps * PHYSICS_DT


__all__ = ["PHYSICS_DT", "Mark", "Trace"]
