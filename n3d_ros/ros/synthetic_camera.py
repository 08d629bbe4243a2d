"""A camera node that publishes a seeded synthetic tabletop RGB-D scene, like a RealSense with aligned depth.

Topics (relative, so a namespace or remapping moves them): color/image_raw (rgb8),
aligned_depth_to_color/image_raw (16UC1 millimetres), color/camera_info; all with the same stamp, the
current time, published reliable like realsense2_camera (best effort, rclpy's sensor-data QoS, with
`reliable=False` / --best-effort, as simulators publish).

With a trajectory (core.trajectory.MovingCamera: orbit, pan or approach, seeded, with scene changes) the camera
moves one trajectory frame per published set, holds the last view at the end, and publishes its optical frame's
pose in the table frame (world_frame) on ~/pose (geometry_msgs/PoseStamped, same stamp): the n3d node's object
memory reads it with memory_pose_source topic, memory_frame = world_frame.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from . import conversions as conv

DEFAULT_WORLD_FRAME = "table"


def pose_message(pose, world_frame: str) -> PoseStamped:
    """4x4 pose (p_world = pose @ [p_optical, 1]) -> PoseStamped in world_frame (stamp set by the caller)."""
    msg = PoseStamped()
    msg.header.frame_id = world_frame
    p, q = pose[:3, 3], conv.matrix_to_quat(pose[:3, :3])
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in p)
    (msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z,
     msg.pose.orientation.w) = (float(v) for v in q)
    return msg


class SyntheticCamera(Node):
    def __init__(self, seed: int = 0, rate_hz: float = 30.0, node_name: str = "synthetic_camera",
                 reliable: bool = True, trajectory=None, world_frame: str = DEFAULT_WORLD_FRAME, **kwargs):
        super().__init__(node_name, **kwargs)
        from ..core.scene import make_scene

        self.trajectory, self.world_frame = trajectory, world_frame
        self.rate_hz = rate_hz
        qos = (QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE) if reliable
               else qos_profile_sensor_data)
        self.color_pub = self.create_publisher(Image, "~/color/image_raw", qos)
        self.depth_pub = self.create_publisher(Image, "~/aligned_depth_to_color/image_raw", qos)
        self.info_pub = self.create_publisher(CameraInfo, "~/color/camera_info", qos)
        self.pose_pub = None
        self._views = {}  # trajectory frame index -> (colour, depth, camera_info, pose) messages, rendered once
        if trajectory is None:
            self.scene = make_scene(seed)
            self._messages = conv.frame_to_msgs(self.scene.frame, depth_mm=self.scene.depth_mm)
        else:
            # reliable: a pose lost would lose its frame for the memory
            self.pose_pub = self.create_publisher(PoseStamped, "~/pose", 10)
            self.scene = trajectory.base
        self.published = 0
        self.timer = self.create_timer(1.0 / rate_hz, self.publish_once) if rate_hz > 0 else None

    @property
    def trajectory_index(self) -> int:
        """The trajectory frame the next publish_once sends (the last one once the trajectory has ended)."""
        return min(self.published, self.trajectory.n_frames - 1)

    def _view(self, index: int):
        if index not in self._views:
            view = self.trajectory.frame(index)
            self.scene = view.scene
            self._views[index] = (*conv.frame_to_msgs(view.scene.frame, depth_mm=view.scene.depth_mm),
                                  pose_message(view.pose, self.world_frame))
        return self._views[index]

    def publish_once(self) -> None:
        if self.trajectory is None:
            color, depth, info = self._messages
            pose = None
        else:
            color, depth, info, pose = self._view(self.trajectory_index)
        stamp = self.get_clock().now().to_msg()
        for msg in (color, depth, info) + ((pose,) if pose is not None else ()):
            msg.header.stamp = stamp
        if pose is not None:  # first: the node then has the pose when the frame arrives
            self.pose_pub.publish(pose)
        self.color_pub.publish(color)
        self.depth_pub.publish(depth)
        self.info_pub.publish(info)
        self.published += 1


def _scene_change(text: str):
    """FRAME:COLOR:remove or FRAME:COLOR:move:DX:DY (metres, table frame)."""
    from ..core.trajectory import SceneChange

    parts = text.split(":")
    try:
        if len(parts) == 3 and parts[2] == "remove":
            return SceneChange(int(parts[0]), parts[1], "remove")
        if len(parts) == 5 and parts[2] == "move":
            return SceneChange(int(parts[0]), parts[1], "move", (float(parts[3]), float(parts[4])))
    except ValueError:
        pass  # reported below with the expected form
    raise argparse.ArgumentTypeError(f"scene change {text!r}: expected FRAME:COLOR:remove or FRAME:COLOR:move:DX:DY")


def main(argv: Optional[List[str]] = None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from ..core.trajectory import KINDS, MovingCamera

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--reliable", action="store_true", help="reliable QoS (the default, as realsense2_camera)")
    parser.add_argument("--best-effort", action="store_true", help="sensor-data QoS (best effort, as simulators)")
    parser.add_argument("--trajectory", choices=KINDS, help="move the camera (and publish ~/pose)")
    parser.add_argument("--frames", type=int, default=60, help="trajectory length in frames (then it holds)")
    parser.add_argument("--change", type=_scene_change, action="append", default=[],
                        help="scene change FRAME:COLOR:remove or FRAME:COLOR:move:DX:DY (repeatable)")
    parser.add_argument("--world-frame", default=DEFAULT_WORLD_FRAME, help="frame of ~/pose (the table frame)")
    args, ros_args = parser.parse_known_args(argv)
    trajectory = None
    if args.trajectory:
        trajectory = MovingCamera(args.seed, args.trajectory, n_frames=args.frames, fps=args.rate or 5.0,
                                  changes=args.change)
    rclpy.init(args=ros_args)
    node = SyntheticCamera(seed=args.seed, rate_hz=args.rate, reliable=not args.best_effort, trajectory=trajectory,
                           world_frame=args.world_frame)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # the normal way to stop
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
