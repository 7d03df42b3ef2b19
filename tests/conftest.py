import importlib.util
import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# tests/ros runs in the ROS 2 venv (tools/run-ros-tests.sh); the main venv has no rclpy.
collect_ignore = [] if importlib.util.find_spec("rclpy") else ["ros"]
