"""ROS side of the object memory (issue 14), kept out of the node shell: camera poses from a pose topic
(geometry_msgs/PoseStamped or nav_msgs/Odometry), from tf2, or none (a fixed camera whose memory is its own
optical frame); and the memory as vision_msgs/Detection3DArray and RViz markers in the memory frame.

A pose message gives the camera's optical frame in header.frame_id (the memory frame). Odometry's child_frame_id
must be the camera's optical frame when set (publish the odometry of the camera, or use the tf2 source, which
chains base -> camera itself). Poses are kept in a short buffer and picked nearest to the image stamp.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import replace
from typing import List, Optional, Sequence

import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import ColorRGBA, Header
from vision_msgs.msg import BoundingBox3D, Detection3D, Detection3DArray, ObjectHypothesisWithPose
from visualization_msgs.msg import Marker, MarkerArray

from ..core.types import InputError
from ..memory import CameraPose, MemoryObject, ObjectMemory
from ..memory.answers import format_age
from ..memory.upright import GravityBasis
from .conversions import label_color, matrix_to_quat, ns_to_stamp, stamp_to_ns
from .memory_params import POSE_SOURCES


def objects_qos() -> QoSProfile:
    """Latched-ish: the last list stays available to RViz and planners that subscribe later."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def camera_pose_from_msg(msg, camera_frame: str) -> CameraPose:
    """PoseStamped or Odometry (told apart by their fields) -> CameraPose of ``camera_frame``."""
    pose = msg.pose.pose if hasattr(msg, "child_frame_id") else msg.pose
    child = getattr(msg, "child_frame_id", "") or camera_frame
    if child != camera_frame:
        raise InputError(f"odometry is of '{child}' but the image is in '{camera_frame}': publish the camera's "
                         "odometry or use the tf pose source")
    if not msg.header.frame_id:
        raise InputError("camera pose message has no header.frame_id: it must name the memory frame")
    p, q = pose.position, pose.orientation
    return CameraPose.from_quaternion([p.x, p.y, p.z], [q.x, q.y, q.z, q.w], msg.header.frame_id,
                                      stamp_to_ns(msg.header.stamp), camera_frame)


def camera_pose_from_tf(tf_lookup, memory_frame: str, camera_frame: str, stamp_ns: int,
                        timeout_s: float) -> CameraPose:
    """The camera optical frame in the memory frame at the image stamp, through ros.tf.TfLookup (which raises
    InputError naming both frames when there is no transform)."""
    rotation, translation = tf_lookup.lookup(memory_frame, camera_frame, stamp_ns, timeout_s)
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rotation, translation
    return CameraPose(matrix, memory_frame, int(stamp_ns), camera_frame)


class PoseBuffer:
    """The last ``capacity`` poses from the pose topic, by stamp; thread-safe (topic callback vs inference)."""

    def __init__(self, capacity: int = 400):
        self._stamps: List[int] = []
        self._poses: List[CameraPose] = []
        self._capacity = int(capacity)
        self._lock = threading.Lock()

    def add(self, pose: CameraPose) -> None:
        with self._lock:
            index = bisect.bisect(self._stamps, pose.stamp_ns)
            self._stamps.insert(index, pose.stamp_ns)
            self._poses.insert(index, pose)
            if len(self._stamps) > self._capacity:
                del self._stamps[0], self._poses[0]

    def __len__(self) -> int:
        with self._lock:
            return len(self._stamps)

    def clear(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._poses.clear()

    def at(self, stamp_ns: int, tolerance_s: float) -> CameraPose:
        """The pose nearest the stamp; InputError when there is none within tolerance_s."""
        with self._lock:
            if not self._stamps:
                raise InputError("no camera pose received yet on the pose topic: is odometry running?")
            index = bisect.bisect(self._stamps, stamp_ns)
            nearest = min((i for i in (index - 1, index) if 0 <= i < len(self._stamps)),
                          key=lambda i: abs(self._stamps[i] - stamp_ns))
            pose, gap_s = self._poses[nearest], abs(self._stamps[nearest] - stamp_ns) * 1e-9
        if gap_s > tolerance_s:
            raise InputError(f"the nearest camera pose is {gap_s:.3f} s from the image stamp (tolerance "
                             f"{tolerance_s:.3f} s): the pose is stale; the frame was not added to the memory")
        return pose


def _box_pose(obj: MemoryObject, basis: GravityBasis, lift_m: float = 0.0) -> Pose:
    center = obj.center + basis.up * lift_m
    q = matrix_to_quat(basis.axes(obj.yaw).T)  # columns: the box's axes a, b, up in the memory frame
    return Pose(position=Point(x=float(center[0]), y=float(center[1]), z=float(center[2])),
                orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))


def memory_detections(objects: Sequence[MemoryObject], header: Header, basis: GravityBasis) -> Detection3DArray:
    """Remembered objects in the memory frame: id = memory id (stable), class_id = label, score = confidence,
    size along the box's heading, across it and up."""
    array = Detection3DArray(header=header)
    for obj in objects:
        pose = _box_pose(obj, basis)
        result = ObjectHypothesisWithPose()
        result.hypothesis.class_id, result.hypothesis.score = obj.label, float(obj.confidence)
        result.pose.pose = pose
        size = Vector3(x=float(obj.size[0]), y=float(obj.size[1]), z=float(obj.size[2]))
        array.detections.append(Detection3D(header=header, results=[result], bbox=BoundingBox3D(center=pose, size=size),
                                            id=str(obj.id)))
    return array


def memory_markers(objects: Sequence[MemoryObject], header: Header, basis: GravityBasis, now_ns: int,
                   namespace: str = "memory") -> MarkerArray:
    """DELETEALL, then a cube (more opaque the more confident) and 'label [id] age' above it per object."""
    array = MarkerArray(markers=[Marker(header=header, ns=namespace, action=Marker.DELETEALL)])
    for obj in objects:
        r, g, b = label_color(obj.label)
        array.markers.append(Marker(
            header=header, ns=namespace, id=2 * obj.id, type=Marker.CUBE, action=Marker.ADD,
            pose=_box_pose(obj, basis), scale=Vector3(x=float(obj.size[0]), y=float(obj.size[1]),
                                                      z=float(obj.size[2])),
            color=ColorRGBA(r=r, g=g, b=b, a=float(0.15 + 0.4 * obj.confidence))))
        array.markers.append(Marker(
            header=header, ns=namespace, id=2 * obj.id + 1, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
            pose=_box_pose(obj, basis, lift_m=float(obj.size[2]) / 2 + 0.04), scale=Vector3(z=0.05),
            color=ColorRGBA(r=r, g=g, b=b, a=1.0),
            text=f"{obj.label} [{obj.id}] {format_age(obj.age_s(now_ns))}"))
    return array


def memory_header(frame_id: str, stamp_ns: Optional[int]) -> Header:
    return Header(frame_id=frame_id, stamp=ns_to_stamp(int(stamp_ns or 0)))


class MemoryFeed:
    """What the node holds when the object memory is on: the memory, its pose source and its two topics.

    pose_source: "tf" (tf_lookup: ros.tf.TfLookup, the camera optical frame looked up in the memory frame at the
    image stamp), "topic" (pose_topic carries PoseStamped, or nav_msgs/Odometry with pose_type "odometry"), or
    "none" (the memory is kept in the camera's optical frame: its frame_id must be that frame, or with
    follow_camera_frame the memory takes the frame of the first image). Publishes ~/objects (Detection3DArray)
    and ~/objects_markers (MarkerArray), both transient-local.
    """

    def __init__(self, node, memory: ObjectMemory, pose_source: str, pose_topic: str = "", pose_type: str = "pose",
                 tf_lookup=None, tf_timeout_s: float = 0.05, follow_camera_frame: bool = False):
        if pose_source not in POSE_SOURCES:
            raise InputError(f"memory pose source must be one of {list(POSE_SOURCES)}, got {pose_source!r}")
        if pose_source == "tf" and tf_lookup is None:
            raise InputError("memory pose source 'tf' needs tf2 (set a target frame or use the 'topic' source)")
        if follow_camera_frame and pose_source != "none":
            raise InputError("a memory kept in the camera frame takes no camera pose: use pose source 'none'")
        self.node, self.memory, self.pose_source = node, memory, pose_source
        self._follow_camera_frame, self._camera_frame_known = follow_camera_frame, not follow_camera_frame
        self._tf, self._tf_timeout_s = tf_lookup, float(tf_timeout_s)
        self.poses = PoseBuffer()
        self._camera_frame = ""
        self._subscription = None
        self.last_pose_error = ""
        if pose_source == "topic":
            if not pose_topic:
                raise InputError("memory pose source 'topic' needs a pose topic name")
            self._subscription = node.create_subscription(_pose_message_type(pose_type), pose_topic,
                                                          self._on_pose, 50)
        self._objects_pub = node.create_publisher(Detection3DArray, "~/objects", objects_qos())
        self._markers_pub = node.create_publisher(MarkerArray, "~/objects_markers", objects_qos())

    def _on_pose(self, msg) -> None:
        # the camera frame is known once the first image arrived; until then any child frame is kept
        try:
            self.poses.add(camera_pose_from_msg(msg, self._camera_frame or getattr(msg, "child_frame_id", "") or ""))
        except InputError as exc:  # a bad message is refused and said, the node keeps serving
            self.last_pose_error = str(exc)
            self.node.get_logger().warning(f"camera pose refused: {exc}", throttle_duration_sec=5.0)

    def pose_for(self, frame) -> CameraPose:
        """The camera pose at the frame's stamp from the configured source; InputError says why there is none."""
        self._camera_frame = frame.frame_id
        tolerance_s = self.memory.config.max_pose_offset_s
        if self.pose_source == "none":
            if not self._camera_frame_known:  # the first image names the camera frame: the memory is still empty
                self.memory = ObjectMemory(replace(self.memory.config, frame_id=frame.frame_id))
                self._camera_frame_known = True
            if frame.frame_id != self.memory.frame_id:
                raise InputError(f"with no pose source the memory is kept in the camera frame, but it is kept in "
                                 f"'{self.memory.frame_id}': set the memory frame to '{frame.frame_id}' or give a "
                                 "pose source (tf or topic)")
            return CameraPose.identity(frame.frame_id, frame.stamp_ns)
        if self.pose_source == "tf":
            return camera_pose_from_tf(self._tf, self.memory.frame_id, frame.frame_id, frame.stamp_ns,
                                       self._tf_timeout_s)
        return self.poses.at(frame.stamp_ns, tolerance_s)

    def feed(self, grounding, frame, scope=None):
        """Ingest one grounding (scope as ObjectMemory.ingest) and publish the memory; InputError for a pose that
        cannot be had or is refused (nothing else is lost; the caller logs it and keeps serving)."""
        pose = self.pose_for(frame)  # first: it may set up the memory (the camera frame became known)
        update = self.memory.ingest(grounding, frame, pose, scope=scope)
        self.publish(frame.stamp_ns)
        return update

    def publish(self, now_ns: int) -> None:
        objects = self.memory.objects()
        header = memory_header(self.memory.frame_id, now_ns)
        self._objects_pub.publish(memory_detections(objects, header, self.memory.basis))
        self._markers_pub.publish(memory_markers(objects, header, self.memory.basis, now_ns))

    def close(self) -> None:
        """Lifecycle cleanup: forget everything and drop the topics."""
        self.memory.clear()
        self.poses.clear()
        if self._subscription is not None:
            self.node.destroy_subscription(self._subscription)
        self.node.destroy_publisher(self._objects_pub)
        self.node.destroy_publisher(self._markers_pub)


def _pose_message_type(pose_type: str):
    if pose_type == "pose":
        from geometry_msgs.msg import PoseStamped

        return PoseStamped
    if pose_type == "odometry":
        try:
            from nav_msgs.msg import Odometry
        except ImportError as exc:
            raise InputError(f"memory pose type 'odometry' needs nav_msgs ({exc}): install ros-$ROS_DISTRO-nav-msgs "
                             "or publish a geometry_msgs/PoseStamped") from exc
        return Odometry
    raise InputError(f"memory pose type must be 'pose' (PoseStamped) or 'odometry', got {pose_type!r}")
