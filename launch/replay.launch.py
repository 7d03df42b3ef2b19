"""Replay an episode or a session: player_node with launch/config/replay.yaml.

    ros2 launch launch/replay.launch.py path:=sessions/cell3 rate:=0.5 clock:=true
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config", "replay.yaml")


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=CONFIG,
                              description="player_node parameter file"),
        DeclareLaunchArgument("path", description="episode .mcap file or session directory"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed"),
        DeclareLaunchArgument("loop", default_value="false", description="loop until stopped"),
        DeclareLaunchArgument("start_offset", default_value="0.0",
                              description="seconds into the selection to start at"),
        DeclareLaunchArgument("clock", default_value="false",
                              description="publish /clock with the recorded time"),
        Node(
            package="demofab_ros",
            executable="player_node",
            name="demofab_player",
            output="screen",
            emulate_tty=True,
            parameters=[
                LaunchConfiguration("params_file"),
                {
                    "path": LaunchConfiguration("path"),
                    "rate": ParameterValue(LaunchConfiguration("rate"), value_type=float),
                    "loop": ParameterValue(LaunchConfiguration("loop"), value_type=bool),
                    "start_offset": ParameterValue(LaunchConfiguration("start_offset"),
                                                   value_type=float),
                    "clock": ParameterValue(LaunchConfiguration("clock"), value_type=bool),
                },
            ],
        ),
    ])
