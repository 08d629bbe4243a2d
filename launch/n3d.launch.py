"""The n3d node alone, configured and activated on start-up.

  ros2 launch n3d_ros n3d.launch.py color_topic:=/my_cam/color/image_raw backend:=n3d
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from n3d_ros.ros.launch_params import declare_arguments, node_parameters


def generate_launch_description():
    params_file = os.path.join(get_package_share_directory("n3d_ros"), "config", "n3d.yaml")
    node = LifecycleNode(
        package="n3d_ros",
        executable="n3d_node",
        name=LaunchConfiguration("node_name"),
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=node_parameters(params_file),
    )
    return LaunchDescription([
        DeclareLaunchArgument("node_name", default_value="n3d_node"),
        DeclareLaunchArgument("namespace", default_value=""),
        *declare_arguments(params_file),
        node,
    ])
