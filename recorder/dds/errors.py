"""The DDS layer's error, and the import of the optional ``cyclonedds`` package."""

from __future__ import annotations

from ..errors import RecorderError


class DdsError(RecorderError):
    """The DDS layer failed: cyclonedds missing, an entity not created, a write refused."""


def require_cyclonedds() -> None:
    """Import ``cyclonedds`` (the optional extra ``dds``) or say how to install it."""
    try:
        import cyclonedds.core  # noqa: F401 - imported for its availability
    except ImportError as exc:
        raise DdsError("the DDS path needs the 'cyclonedds' package: "
                       "pip install 'demofab[dds]' (cyclonedds==11.0.1)") from exc
