"""A profile's ROS 2 QoS as a cyclonedds ``Qos``, with the type hash the way rmw sends it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..profile import Qos
from .errors import require_cyclonedds

if TYPE_CHECKING:
    from cyclonedds.core import Qos as CycloneQos
    from cyclonedds.qos import BasePolicy

#: reliable readers and writers keep at least this many samples (bursts are not lost)
DEFAULT_MIN_RELIABLE_DEPTH = 1000


def dds_qos(qos: Qos, *, type_hash: str | None = None,
            min_reliable_depth: int = DEFAULT_MIN_RELIABLE_DEPTH,
            min_depth: int = 1) -> CycloneQos:
    """A cyclonedds ``Qos`` for a ROS 2 QoS profile (reader or writer side).

    Reliable volatile keep-last endpoints keep at least ``min_reliable_depth`` samples: a
    reliable keep-last writer overwrites unacknowledged samples and a reader's history
    overflows in bursts (a third of a 30k msg/s stream was lost with the ROS default of 10).
    ``min_depth`` raises every keep-last depth (the DDS source's readers use 1000, so a
    best-effort stream survives a stalled recorder for a while: depth is local, not matched).
    The type hash (``RIHS01_<hex>``) goes into USER_DATA as ``typehash=<hash>;``, as rmw
    does, so ``ros2 topic info -v`` shows it.
    """
    require_cyclonedds()
    from cyclonedds.core import Policy
    from cyclonedds.core import Qos as CQos
    from cyclonedds.util import duration

    policies: list[BasePolicy] = []
    if qos.reliability == "reliable":
        policies.append(Policy.Reliability.Reliable(duration(seconds=1)))
    else:
        policies.append(Policy.Reliability.BestEffort)
    policies.append(Policy.Durability.TransientLocal if qos.durability == "transient_local"
                    else Policy.Durability.Volatile)
    if qos.history == "keep_all":
        policies.append(Policy.History.KeepAll)
    else:
        depth = max(1, qos.depth, min_depth)
        if qos.reliability == "reliable" and qos.durability == "volatile":
            depth = max(depth, min_reliable_depth)
        policies.append(Policy.History.KeepLast(depth))
    if type_hash:
        policies.append(Policy.Userdata(f"typehash={type_hash};".encode()))
    return CQos(*policies)


__all__ = ["DEFAULT_MIN_RELIABLE_DEPTH", "dds_qos"]
