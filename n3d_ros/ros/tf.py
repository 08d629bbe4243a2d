"""Transforms to a target frame with tf2_ros, looked up at the image stamp.

tf2_ros is imported only when a target frame is in use: it comes from a ROS distribution and is not
installable in our own environment, where results stay in the camera optical frame.
"""

from __future__ import annotations

from ..core.types import InputError
from .conversions import Transform, transform_from_msg


class TfLookup:
    def __init__(self, node):
        try:
            import tf2_ros
        except ImportError as exc:
            raise InputError(
                "a target frame is set but tf2_ros is not installed (" + str(exc) + "): install "
                "ros-$ROS_DISTRO-tf2-ros, or leave target_frame empty to get results in the camera optical frame"
            ) from exc
        self._tf2_ros = tf2_ros
        self.buffer = tf2_ros.Buffer()
        self.listener = tf2_ros.TransformListener(self.buffer, node)

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int, timeout_s: float) -> Transform:
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            stamped = self.buffer.lookup_transform(target_frame, source_frame, Time(nanoseconds=stamp_ns),
                                                   timeout=Duration(seconds=timeout_s))
        except self._tf2_ros.TransformException as exc:
            raise InputError(f"no transform from {source_frame!r} to {target_frame!r} at the image stamp "
                             f"{stamp_ns / 1e9:.3f} s: {exc}") from exc
        return transform_from_msg(stamped.transform)

    def close(self) -> None:
        self.listener.unregister()
