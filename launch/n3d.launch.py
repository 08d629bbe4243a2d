"""The n3d node alone, brought to `active` by launch (lifecycle:=inactive|unconfigured to stop earlier).

  ros2 launch n3d_ros n3d.launch.py backend:=n3d camera_name:=d435     # topics /camera/d435/... if you name it
  ros2 launch n3d_ros n3d.launch.py color_topic:=/cam/color/image_raw depth_topic:=... camera_info_topic:=...
  ros2 launch n3d_ros n3d.launch.py --show-args                       # every argument
What the arguments do is n3d_ros/ros/launch_setup.py (plain Python, tested); this file only wires it up.
"""

from n3d_ros.ros.launch_actions import describe, node_actions
from n3d_ros.ros.launch_setup import node_arguments


def generate_launch_description():
    return describe(node_arguments(), lambda values: node_actions(values, with_camera=False))
