"""Record the humanoid profile: recorder_node with launch/config/record_humanoid.yaml.

    ros2 launch launch/record_humanoid.launch.py out:=sessions/cell3 task:="stack cups" operator:=ana

Arguments override the parameter file; everything else (episode timing, compression,
health rate) is in the YAML.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config", "record_humanoid.yaml")


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=CONFIG,
                              description="recorder_node parameter file"),
        DeclareLaunchArgument("out", default_value="sessions/humanoid",
                              description="session directory (created or reopened)"),
        DeclareLaunchArgument("task", default_value="", description="task of the episodes"),
        DeclareLaunchArgument("operator", default_value="", description="teleoperator"),
        DeclareLaunchArgument("profile", default_value="humanoid",
                              description="built-in profile name or profile YAML path"),
        Node(
            package="demofab_ros",
            executable="recorder_node",
            name="demofab_recorder",
            output="screen",
            emulate_tty=True,
            parameters=[
                LaunchConfiguration("params_file"),
                {
                    "out": LaunchConfiguration("out"),
                    "task": LaunchConfiguration("task"),
                    "operator": LaunchConfiguration("operator"),
                    "profile": LaunchConfiguration("profile"),
                },
            ],
        ),
    ])
