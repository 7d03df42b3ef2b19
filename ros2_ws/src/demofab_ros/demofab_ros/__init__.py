"""DemoFab ROS 2 nodes: thin adapters over the ``recorder`` package of the demofab distribution."""

__version__ = "0.1.0"
