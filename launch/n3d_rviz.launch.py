"""RViz with rviz/n3d.rviz (debug image, boxes and labels, query results, camera point cloud, TF).
Start it next to n3d.launch.py or n3d_realsense.launch.py.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    rviz_file = os.path.join(get_package_share_directory("n3d_ros"), "rviz", "n3d.rviz")
    return LaunchDescription([
        DeclareLaunchArgument("rviz_config", default_value=rviz_file),
        Node(package="rviz2", executable="rviz2", name="n3d_rviz", output="screen",
             arguments=["-d", LaunchConfiguration("rviz_config")]),
    ])
