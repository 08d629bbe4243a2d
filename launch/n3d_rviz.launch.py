"""RViz with rviz/n3d.rviz (debug image, boxes and labels, query results, camera point cloud, TF), renamed for
the node and camera names given. Start it next to n3d.launch.py or n3d_realsense.launch.py (or pass rviz:=true
to either of them).

  ros2 launch n3d_ros n3d_rviz.launch.py camera_name:=d435
"""

from n3d_ros.ros.launch_actions import describe, rviz_actions
from n3d_ros.ros.launch_setup import rviz_arguments


def generate_launch_description():
    return describe(rviz_arguments(), rviz_actions)
