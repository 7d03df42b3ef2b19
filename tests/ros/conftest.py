"""ROS 2 tests: run with the ROS venv inside a loopback-only network namespace.

    PY="$(tools/ros-venv.sh)/bin/python"; tools/netns-run.sh "$PY" -m pytest tests/ros

Without rclpy (the main venv) or outside tools/netns-run.sh they are skipped, never run
on a real network interface. Every rclpy process logs to a temporary ROS_LOG_DIR.
"""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="demofab-ros-log-"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import rclpy  # noqa: F401
        why = None
    except ImportError:
        why = "needs rclpy: run with the ROS venv (tools/ros-venv.sh)"
    if why is None and os.environ.get("DEMOFAB_NETNS") != "1":
        why = "ROS 2 traffic stays on loopback: run inside tools/netns-run.sh"
    for item in items:
        if "tests/ros/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.ros)
            if why:
                item.add_marker(pytest.mark.skip(reason=why))
