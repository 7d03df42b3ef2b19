"""Message sources for the recorder: where CDR messages come from.

A source yields :class:`RawMessage` in receive-time order. Sources are registered by
name; ``demofab record --source NAME`` picks one. The rclpy node and the DDS source of
the ROS 2 integration plug in here as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ..errors import SourceError
from ..profile import Profile


class RawMessage(NamedTuple):
    """One received message: topic, CDR bytes, receive time and, when known, stamp and sequence."""
    topic: str
    data: bytes               # CDR bytes, 4-byte encapsulation header included
    log_time: int             # receive time, ns
    publish_time: int | None = None  # None: read the header stamp from the bytes
    sequence: int | None = None      # publisher sequence number, when the source knows it


@runtime_checkable
class Source(Protocol):
    """A stream of ROS 2 messages for one profile."""

    #: "sim" when log times are generated (run as fast as the writer goes),
    #: "wall" when they are real receive times.
    clock: str

    def messages(self) -> Iterator[RawMessage | None]:
        """Messages in receive-time order; ends when the source is exhausted or closed.
        A wall-clock source may yield None when nothing arrived for a while, so that
        the recorder still applies commands and the plan on time."""
        ...

    def close(self) -> None: ...


SourceFactory = Callable[..., Source]
SOURCES: dict[str, SourceFactory] = {}


def register_source(name: str, factory: SourceFactory) -> None:
    """Make ``factory`` the source `demofab record --source NAME` builds."""
    SOURCES[name] = factory


def make_source(name: str, profile: Profile, **options: Any) -> Source:
    """The source registered as ``name`` for ``profile``; raises SourceError for an unknown name."""
    if name not in SOURCES:
        _load_builtin()
    try:
        factory = SOURCES[name]
    except KeyError:
        raise SourceError(
            f"unknown source {name!r}; available: {', '.join(sorted(SOURCES))}"
        ) from None
    return factory(profile, **options)


#: entry-point group of sources that other stages provide (the simulator's ``sim``)
ENTRY_POINT_GROUP = "demofab.sources"


def _load_builtin() -> None:
    from importlib.metadata import entry_points

    from . import bag, synthetic  # noqa: F401  (they register themselves)
    try:
        from . import dds  # noqa: F401
    except ImportError:
        pass
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in SOURCES:
            continue
        try:
            register = ep.load()
        except ModuleNotFoundError as exc:
            # the stage's extra (e.g. mujoco) is not installed: its source is not offered;
            # a module missing from the stage itself is a bug and is raised
            if exc.name and exc.name.split(".")[0] == ep.value.split(".")[0] \
                    and exc.name != ep.value.split(":")[0]:
                raise
            continue
        register()


__all__ = ["RawMessage", "Source", "SOURCES", "ENTRY_POINT_GROUP", "register_source",
           "make_source"]
