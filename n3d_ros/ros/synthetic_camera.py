"""A camera node that publishes a seeded synthetic tabletop RGB-D scene, like a RealSense with aligned depth.

Topics (relative, so a namespace or remapping moves them): color/image_raw (rgb8),
aligned_depth_to_color/image_raw (16UC1 millimetres), color/camera_info; all with the same stamp, the
current time, published reliable like realsense2_camera (best effort, rclpy's sensor-data QoS, with
`reliable=False` / --best-effort, as simulators publish).
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from . import conversions as conv


class SyntheticCamera(Node):
    def __init__(self, seed: int = 0, rate_hz: float = 30.0, node_name: str = "synthetic_camera",
                 reliable: bool = True, **kwargs):
        super().__init__(node_name, **kwargs)
        from ..core.scene import make_scene

        self.scene = make_scene(seed)
        self.rate_hz = rate_hz
        qos = (QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE) if reliable
               else qos_profile_sensor_data)
        self.color_pub = self.create_publisher(Image, "~/color/image_raw", qos)
        self.depth_pub = self.create_publisher(Image, "~/aligned_depth_to_color/image_raw", qos)
        self.info_pub = self.create_publisher(CameraInfo, "~/color/camera_info", qos)
        self._messages = conv.frame_to_msgs(self.scene.frame, depth_mm=self.scene.depth_mm)
        self.published = 0
        self.timer = self.create_timer(1.0 / rate_hz, self.publish_once) if rate_hz > 0 else None

    def publish_once(self) -> None:
        color, depth, info = self._messages
        stamp = self.get_clock().now().to_msg()
        for msg in (color, depth, info):
            msg.header.stamp = stamp
        self.color_pub.publish(color)
        self.depth_pub.publish(depth)
        self.info_pub.publish(info)
        self.published += 1


def main(argv: Optional[List[str]] = None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--reliable", action="store_true", help="reliable QoS (the default, as realsense2_camera)")
    parser.add_argument("--best-effort", action="store_true", help="sensor-data QoS (best effort, as simulators)")
    args, ros_args = parser.parse_known_args(argv)
    rclpy.init(args=ros_args)
    node = SyntheticCamera(seed=args.seed, rate_hz=args.rate, reliable=not args.best_effort)
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
