"""Simulation: MuJoCo scenes with the Unitree G1 with hands, a simulated teleoperator,
MimicGen-style multiplication of recorded demonstrations, randomization, and generation on
a local process pool or a Ray cluster. Sim episodes are recordings like any other."""

from .errors import SimError

__all__ = ["SimError"]
