"""DemoFab: the robot data factory. One CLI, ``demofab <stage> ...``."""

__version__ = "0.1.0"

__all__ = ["__version__"]
