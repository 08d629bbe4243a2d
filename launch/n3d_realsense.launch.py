"""An Intel RealSense camera (realsense2_camera 4.x, depth aligned to colour, 640x480 at 30 Hz) and the n3d node.

  ros2 launch n3d_ros n3d_realsense.launch.py camera_name:=camera backend:=n3d
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from n3d_ros.ros.launch_params import declare_arguments, node_parameters


def generate_launch_description():
    params_file = os.path.join(get_package_share_directory("n3d_ros"), "config", "n3d.yaml")
    camera = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(get_package_share_directory("realsense2_camera"), "launch", "rs_launch.py")),
        launch_arguments={
            "camera_namespace": LaunchConfiguration("camera_namespace"),
            "camera_name": LaunchConfiguration("camera_name"),
            "align_depth.enable": "true",
            "enable_sync": "true",
            "rgb_camera.color_profile": "640x480x30",
            "depth_module.depth_profile": "640x480x30",
            "pointcloud.enable": LaunchConfiguration("pointcloud"),
        }.items(),
    )
    node = LifecycleNode(
        package="n3d_ros",
        executable="n3d_node",
        name="n3d_node",
        namespace="",
        output="screen",
        parameters=node_parameters(params_file),
    )
    return LaunchDescription([
        DeclareLaunchArgument("camera_namespace", default_value="camera"),
        DeclareLaunchArgument("camera_name", default_value="camera"),
        DeclareLaunchArgument("pointcloud", default_value="true", description="also publish the camera's point cloud"),
        # The topic defaults in config/n3d.yaml are /camera/camera/...: change them with the camera names.
        *declare_arguments(params_file),
        camera,
        node,
    ])
