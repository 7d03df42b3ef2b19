"""ROS 2 over DDS without ROS 2: join the ROS 2 graph with the ``cyclonedds`` package.

ROS 2 topic ``/x`` of type ``pkg/msg/T`` is the DDS topic ``rt/x`` of type
``pkg::msg::dds_::T_``, encoded XCDR1 (the CDR bytes rosbag2 stores, with their 4-byte
header). The modules, one concern each:

- :mod:`.idltypes`: DDS types built from rosbags' typestore (:class:`DdsTypes`), so
  DemoFab's own ``demofab_msgs`` work too;
- :mod:`.qos`: a profile's :class:`recorder.profile.Qos` as DDS QoS, with the RIHS01 type
  hash in USER_DATA (``typehash=RIHS01_<hex>;``) the way rmw sends it, so
  ``ros2 topic info -v`` shows the right hash;
- :mod:`.endpoints`: raw readers and writers, taking and writing serialized bytes
  (nothing is deserialised on the hot path), waiting for matches;
- :mod:`.publisher`: :class:`DdsPublisher`, the replay backend.

Samples that cross processes arrive padded to a multiple of 4 bytes;
:class:`recorder.cdrwalk.CdrEnd` (re-exported here) finds the true end of a message.

Needs the optional extra ``dds`` (``pip install demofab[dds]``); importing this package
does not, only making entities does. Keep test traffic off real networks: run inside
``tools/netns-run.sh``.
"""

from __future__ import annotations

from ..cdrwalk import CdrEnd, CdrError
from .endpoints import (
    any_state,
    domain_id_from_env,
    raw_reader,
    raw_writer,
    take_raw,
    wait_matched,
    wire_topic,
    write_raw,
)
from .errors import DdsError, require_cyclonedds
from .idltypes import DdsTypes, dds_type_name
from .publisher import DdsPublisher
from .qos import DEFAULT_MIN_RELIABLE_DEPTH, dds_qos

__all__ = [
    "DEFAULT_MIN_RELIABLE_DEPTH", "CdrEnd", "CdrError", "DdsError", "DdsPublisher",
    "DdsTypes", "any_state", "dds_qos", "dds_type_name", "domain_id_from_env", "raw_reader",
    "raw_writer", "require_cyclonedds", "take_raw", "wait_matched", "wire_topic",
    "write_raw",
]
