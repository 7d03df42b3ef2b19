"""Simulation: MuJoCo scenes with the Unitree G1 with hands, a simulated teleoperator,
MimicGen-style multiplication of recorded demonstrations, randomization, and generation on
a local process pool or a Ray cluster. Sim episodes are recordings like any other."""

import os

# MuJoCo picks its OpenGL platform when it is imported: offscreen on the CPU unless the
# user chose otherwise (egl and osmesa both work with Mesa; tools/system-deps.sh installs them)
os.environ.setdefault("MUJOCO_GL", "egl")

from .errors import SimError

__all__ = ["SimError"]
