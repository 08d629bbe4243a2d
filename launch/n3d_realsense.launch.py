"""An Intel RealSense (realsense2_camera 4.x, depth aligned to colour, 640x480 at 30 Hz) and the n3d node,
brought to `active` by launch; the node listens to the camera it starts.

  ros2 launch n3d_ros n3d_realsense.launch.py backend:=n3d model:=$HOME/models/N3D-VLM rviz:=true
  ros2 launch n3d_ros n3d_realsense.launch.py camera_name:=d405 transport:=large_data
  ros2 launch n3d_ros n3d_realsense.launch.py --show-args                       # every argument
What the arguments do is n3d_ros/ros/launch_setup.py (plain Python, tested); this file only wires it up.
"""

from n3d_ros.ros.launch_actions import describe, node_actions
from n3d_ros.ros.launch_setup import realsense_arguments


def generate_launch_description():
    return describe(realsense_arguments(), lambda values: node_actions(values, with_camera=True))
