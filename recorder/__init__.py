"""DemoFab recorder: ROS 2 recordings to crash-safe, per-episode MCAP files."""

__version__ = "0.1.0"
