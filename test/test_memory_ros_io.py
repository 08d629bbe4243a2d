"""ROS side of the object memory: camera poses from PoseStamped / Odometry / tf2, the pose buffer's stamp
matching and staleness, and the memory as Detection3DArray and markers (ids stable, score = confidence)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from geometry_msgs.msg import PoseStamped

from n3d_ros.core.scene import realsense_like_camera
from n3d_ros.core.types import Box3D, GroundingResult, InputError, RGBDFrame
from n3d_ros.memory import CameraPose, MemoryConfig, ObjectMemory
from n3d_ros.ros.conversions import ns_to_stamp, quat_to_matrix
from n3d_ros.ros.memory_io import (PoseBuffer, camera_pose_from_msg, camera_pose_from_tf, memory_detections,
                                   memory_header, memory_markers, objects_qos)

CAMERA_FRAME = "camera_color_optical_frame"
S = 1_000_000_000
# optical axes in a z-up world (x forward, y left): right = -y, down = -z, forward = +x
OPTICAL_IN_WORLD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
QUAT = (-0.5, 0.5, -0.5, 0.5)  # the same rotation as a quaternion (x, y, z, w)


def pose_stamped(stamp_ns, frame="odom", position=(1.0, 2.0, 0.5)) -> PoseStamped:
    msg = PoseStamped()
    msg.header.frame_id, msg.header.stamp = frame, ns_to_stamp(stamp_ns)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = position
    msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = QUAT
    return msg


def test_pose_stamped_and_odometry():
    assert np.allclose(quat_to_matrix(QUAT), OPTICAL_IN_WORLD)
    pose = camera_pose_from_msg(pose_stamped(5 * S), CAMERA_FRAME)
    assert pose.frame_id == "odom" and pose.stamp_ns == 5 * S and pose.child_frame_id == CAMERA_FRAME
    assert np.allclose(pose.rotation, OPTICAL_IN_WORLD) and np.allclose(pose.translation, [1.0, 2.0, 0.5])
    # nav_msgs/Odometry has the pose one level deeper and names the moving frame (nav_msgs is not in our
    # environment, so its shape is built here)
    odometry = SimpleNamespace(header=pose_stamped(6 * S).header, child_frame_id=CAMERA_FRAME,
                               pose=SimpleNamespace(pose=pose_stamped(6 * S).pose))
    assert np.allclose(camera_pose_from_msg(odometry, CAMERA_FRAME).matrix[:3, 3], [1.0, 2.0, 0.5])
    odometry.child_frame_id = "base_link"
    with pytest.raises(InputError, match="odometry is of 'base_link'"):
        camera_pose_from_msg(odometry, CAMERA_FRAME)
    with pytest.raises(InputError, match="no header.frame_id"):
        camera_pose_from_msg(pose_stamped(S, frame=""), CAMERA_FRAME)
    broken = pose_stamped(S)
    broken.pose.position.x = float("nan")
    with pytest.raises(InputError, match="non-finite"):
        camera_pose_from_msg(broken, CAMERA_FRAME)


def test_pose_buffer_picks_the_nearest_stamp_and_refuses_stale_ones():
    buffer = PoseBuffer(capacity=3)
    with pytest.raises(InputError, match="no camera pose received yet"):
        buffer.at(S, 0.05)
    for k in (3, 1, 2, 4):  # out of order; the oldest (1) falls out of the 3 kept
        buffer.add(camera_pose_from_msg(pose_stamped(k * S, position=(k, 0.0, 0.0)), CAMERA_FRAME))
    assert buffer.at(int(2.02 * S), 0.05).translation[0] == 2.0
    assert buffer.at(int(3.97 * S), 0.05).translation[0] == 4.0
    with pytest.raises(InputError, match="stale"):
        buffer.at(int(1.0 * S), 0.05)  # pose 1 was dropped: the nearest is 1 s away
    buffer.clear()
    with pytest.raises(InputError, match="no camera pose"):
        buffer.at(2 * S, 0.05)


def test_tf_source_and_a_memory_frame_without_transform():
    class FakeTf:
        def lookup(self, target, source, stamp_ns, timeout_s):
            if target != "map":
                raise InputError(f"no transform from {source!r} to {target!r} at the image stamp")
            return OPTICAL_IN_WORLD, np.array([0.5, 0.0, 1.2])

    pose = camera_pose_from_tf(FakeTf(), "map", CAMERA_FRAME, 7 * S, 0.1)
    assert pose.frame_id == "map" and np.allclose(pose.translation, [0.5, 0.0, 1.2])
    with pytest.raises(InputError, match="no transform from 'camera_color_optical_frame' to 'odom'"):
        camera_pose_from_tf(FakeTf(), "odom", CAMERA_FRAME, 7 * S, 0.1)


def _memory_with_two_objects() -> ObjectMemory:
    camera = realsense_like_camera(320, 240)
    memory = ObjectMemory()
    for k in (1, 2):
        matrix = np.eye(4)
        matrix[:3, :3], matrix[:3, 3] = OPTICAL_IN_WORLD, (0.0, 0.0, 1.0)
        pose = CameraPose(matrix, "odom", k * S, CAMERA_FRAME)
        boxes = [Box3D("red mug", pose.to_camera([1.5, 0.2, 0.8]), [0.08, 0.12, 0.08], attributes={"color": "red"}),
                 Box3D("blue ball", pose.to_camera([1.6, -0.3, 0.8]), [0.1, 0.1, 0.1], attributes={"color": "blue"})]
        frame = RGBDFrame(np.zeros((240, 320, 3), np.uint8), np.full((240, 320), 4.0, np.float32), camera, k * S,
                          CAMERA_FRAME)
        memory.ingest(GroundingResult(boxes, "test"), frame, pose)
    return memory


def test_memory_as_detections_and_markers():
    memory = _memory_with_two_objects()
    objects = memory.objects()
    header = memory_header("odom", 2 * S)
    array = memory_detections(objects, header, memory.basis)
    assert [d.id for d in array.detections] == ["1", "2"] and array.header.frame_id == "odom"
    mug = array.detections[0]
    assert mug.results[0].hypothesis.class_id == "red mug"
    assert mug.results[0].hypothesis.score == pytest.approx(objects[0].confidence)
    c = mug.bbox.center.position
    assert np.allclose([c.x, c.y, c.z], [1.5, 0.2, 0.8], atol=1e-9)
    q = mug.bbox.center.orientation
    axes = quat_to_matrix([q.x, q.y, q.z, q.w])
    assert np.allclose(axes[:, 2], [0.0, 0.0, 1.0])  # upright: the box's third axis is the memory's up
    assert mug.bbox.size.z == pytest.approx(0.12)
    markers = memory_markers(objects, header, memory.basis, now_ns=16 * S)
    assert markers.markers[0].action == markers.markers[0].DELETEALL and len(markers.markers) == 5
    assert markers.markers[2].text == "red mug [1] 14 s"
    assert markers.markers[2].pose.position.z == pytest.approx(0.8 + 0.06 + 0.04)


def test_objects_topic_keeps_the_last_list_for_late_subscribers():
    qos = objects_qos()
    assert qos.depth == 1 and qos.durability.name == "TRANSIENT_LOCAL" and qos.reliability.name == "RELIABLE"


def _wait(predicate, timeout_s=10.0):
    from test_ros_node import _wait as wait

    return wait(predicate, timeout=timeout_s)


def test_memory_feed_over_dds(ros_context, ros_executor):
    """Pose topic in, ~/objects out (transient local: a late subscriber still gets the list), bad poses refused
    without stopping the node, cleanup forgets everything."""
    import rclpy
    from vision_msgs.msg import Detection3DArray

    from n3d_ros.ros.memory_io import MemoryFeed, objects_qos

    node = rclpy.create_node("memory_feed_test", context=ros_context)
    helper = rclpy.create_node("memory_feed_helper", context=ros_context)
    ros_executor.add_node(node)
    ros_executor.add_node(helper)
    try:
        feed = MemoryFeed(node, ObjectMemory(), "topic", pose_topic="/test_camera_pose")
        poses = helper.create_publisher(PoseStamped, "/test_camera_pose", 10)
        broken = pose_stamped(S)
        broken.pose.orientation.w = 7.0
        assert _wait(lambda: poses.get_subscription_count() > 0)
        poses.publish(broken)
        assert _wait(lambda: "unit length" in feed.last_pose_error)
        for k in (1, 2):
            poses.publish(pose_stamped(k * S, position=(0.0, 0.0, 1.0)))
        assert _wait(lambda: len(feed.poses._stamps) == 2)
        camera = realsense_like_camera(320, 240)
        for k in (1, 2):
            pose = feed.poses.at(k * S, 0.05)
            boxes = [Box3D("red mug", pose.to_camera([1.5, 0.2, 0.8]), [0.08, 0.12, 0.08],
                           attributes={"color": "red"})]
            frame = RGBDFrame(np.zeros((240, 320, 3), np.uint8), np.full((240, 320), 4.0, np.float32), camera,
                              k * S, CAMERA_FRAME)
            update = feed.feed(GroundingResult(boxes, "test"), frame)
        assert update.matched == {0: 1} and feed.memory.get(1).observations == 2
        late = []
        helper.create_subscription(Detection3DArray, "/memory_feed_test/objects", late.append, objects_qos())
        assert _wait(lambda: late)  # published before this subscriber existed
        assert [d.id for d in late[-1].detections] == ["1"] and late[-1].header.frame_id == "odom"
        stale = RGBDFrame(np.zeros((240, 320, 3), np.uint8), np.full((240, 320), 4.0, np.float32), camera,
                          9 * S, CAMERA_FRAME)
        with pytest.raises(InputError, match="stale"):
            feed.feed(GroundingResult([], "test"), stale)
        assert len(feed.memory) == 1  # nothing lost
        with pytest.raises(InputError, match="pose source"):
            MemoryFeed(node, ObjectMemory(), "gps")
        none_feed = MemoryFeed(node, ObjectMemory(), "none")
        with pytest.raises(InputError, match="set the memory frame to 'camera_color_optical_frame'"):
            none_feed.pose_for(stale)  # memory frame 'odom' but no pose source: it must be the camera frame
        fixed = MemoryFeed(node, ObjectMemory(MemoryConfig(frame_id=CAMERA_FRAME, up=(0.0, -1.0, 0.0))), "none")
        assert np.array_equal(fixed.pose_for(stale).matrix, np.eye(4))
        fixed.close()
        none_feed.close()
        feed.close()
        assert len(feed.memory) == 0
    finally:
        ros_executor.remove_node(node)
        ros_executor.remove_node(helper)
        node.destroy_node()
        helper.destroy_node()
