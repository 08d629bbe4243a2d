"""Core types -> ROS messages: poses, transforms, vision_msgs fields, markers, label info, answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from n3d_ros.core.types import Answer, Box3D


def _rotate(axis, angle, vector):
    """Rodrigues' formula: the reference for the quaternion code."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    v = np.asarray(vector, dtype=float)
    return v * math.cos(angle) + np.cross(axis, v) * math.sin(angle) + axis * axis.dot(v) * (1 - math.cos(angle))


angles = st.floats(-math.pi, math.pi, allow_nan=False)
axes = st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 3).filter(lambda a: np.linalg.norm(a) > 0.1)


@settings(max_examples=100, deadline=None)
@given(axes, angles, axes, angles)
def test_quaternion_algebra_matches_rodrigues(axis_a, angle_a, axis_b, angle_b):
    from n3d_ros.ros.conversions import matrix_to_quat, quat_multiply, quat_to_matrix

    def quat(axis, angle):
        axis = np.asarray(axis) / np.linalg.norm(axis)
        return np.array([*(axis * math.sin(angle / 2)), math.cos(angle / 2)])

    v = np.array([0.3, -1.2, 2.0])
    qa, qb = quat(axis_a, angle_a), quat(axis_b, angle_b)
    expected = _rotate(axis_a, angle_a, _rotate(axis_b, angle_b, v))
    assert np.allclose(quat_to_matrix(quat_multiply(qa, qb)) @ v, expected, atol=1e-9)
    back = matrix_to_quat(quat_to_matrix(qa))
    assert np.allclose(quat_to_matrix(back), quat_to_matrix(qa), atol=1e-9) and back[3] >= 0


def _boxes():
    return [Box3D("red mug", [0.1, 0.05, 0.8], [0.08, 0.1, 0.08], yaw=0.3, score=0.9, id=4),
            Box3D("laptop", [-0.3, 0.1, 1.1], [0.35, 0.02, 0.25])]


def test_detection3d_array_is_self_consistent(ros_context):
    from std_msgs.msg import Header

    from n3d_ros.ros.conversions import detections_3d, ns_to_stamp

    header = Header(stamp=ns_to_stamp(1_700_000_000_123_456_789), frame_id="camera_color_optical_frame")
    array = detections_3d(_boxes(), header)
    assert array.header.frame_id == "camera_color_optical_frame"
    assert (array.header.stamp.sec, array.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    mug, laptop = array.detections
    assert (mug.id, laptop.id) == ("4", "1")  # backend id, else the index
    assert mug.results[0].hypothesis.class_id == "red mug" and mug.results[0].hypothesis.score == pytest.approx(0.9)
    assert mug.results[0].pose.pose == mug.bbox.center  # centre repeated in results[].pose
    assert (mug.bbox.size.x, mug.bbox.size.y, mug.bbox.size.z) == pytest.approx((0.08, 0.1, 0.08))
    q = mug.bbox.center.orientation
    assert (q.x, q.y, q.z, q.w) == pytest.approx((0.0, math.sin(0.15), 0.0, math.cos(0.15)))
    assert mug.header == header


def test_target_frame_transform_moves_centres_and_rotations(ros_context):
    from std_msgs.msg import Header

    from n3d_ros.ros.conversions import detections_3d, quat_to_matrix

    # The usual camera_link <- optical rotation plus a mount offset, built from axes (independent of quaternions).
    rotation = np.column_stack([[0, -1, 0], [0, 0, -1], [1, 0, 0]]).astype(float)
    translation = np.array([0.2, 0.0, 1.1])
    array = detections_3d(_boxes(), Header(frame_id="base_link"), (rotation, translation))
    mug = array.detections[0]
    p = mug.bbox.center.position
    assert (p.x, p.y, p.z) == pytest.approx((0.8 + 0.2, -0.1, -0.05 + 1.1))
    q = mug.bbox.center.orientation
    # The box's own x axis (optical x turned by yaw about +y) seen in the target frame:
    box_x = _rotate([0, 1, 0], 0.3, [1, 0, 0])
    assert quat_to_matrix([q.x, q.y, q.z, q.w]) @ [1, 0, 0] == pytest.approx(rotation @ box_x)


def test_markers_replace_everything_and_label_each_box(ros_context):
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from n3d_ros.ros.conversions import markers

    array = markers(_boxes(), Header(frame_id="cam"), "n3d")
    assert array.markers[0].action == Marker.DELETEALL
    cubes = [m for m in array.markers if m.type == Marker.CUBE]
    texts = [m for m in array.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(cubes) == len(texts) == 2
    assert texts[0].text == "red mug [4]" and cubes[0].scale.y == pytest.approx(0.1)
    assert len({m.id for m in array.markers[1:]}) == 4
    # Above the box means smaller optical y.
    assert texts[0].pose.position.y < cubes[0].pose.position.y - 0.05


def test_answer_fills_the_service_response(ros_context):
    from vision_msgs.msg import Detection2DArray, Detection3DArray

    from n3d_ros.ros.conversions import fill_answer
    from n3d_ros.srv import SpatialQuery

    answer = Answer(success=True, text="0.42 m", path="geometry", value=0.42, unit="m")
    response = fill_answer(SpatialQuery.Response(), answer, Detection3DArray(), Detection2DArray(), 0.5)
    assert (response.success, response.answer, response.has_value, response.value, response.unit,
            response.answer_path, response.latency_s) == (True, "0.42 m", True, 0.42, "m", "geometry", 0.5)
    empty = fill_answer(SpatialQuery.Response(), Answer(False, "", "none", message="why"), Detection3DArray(),
                        None, 0.1)
    assert (empty.has_value, empty.message) == (False, "why")


def test_alignment_check_names_the_problem(ros_context):
    from sensor_msgs.msg import CameraInfo, Image

    from n3d_ros.ros.conversions import check_alignment

    def image(w, h, enc, frame="cam"):
        msg = Image(width=w, height=h, encoding=enc)
        msg.header.frame_id = frame
        return msg

    info = CameraInfo(width=64, height=48, k=[50.0, 0, 32, 0, 50.0, 24, 0, 0, 1])
    info.header.frame_id = "cam"
    assert check_alignment(image(64, 48, "rgb8"), image(64, 48, "16UC1"), info) is None
    assert "aligned" in check_alignment(image(64, 48, "rgb8"), image(32, 24, "16UC1"), info)
    assert "depth encoding 'rgb8'" in check_alignment(image(64, 48, "rgb8"), image(64, 48, "rgb8"), info)
    assert "colour encoding 'bayer_rggb8'" in check_alignment(image(64, 48, "bayer_rggb8"), image(64, 48, "16UC1"),
                                                              info)
    assert "depth frame 'depth_optical'" in check_alignment(
        image(64, 48, "rgb8"), image(64, 48, "32FC1", "depth_optical"), info)
    assert "camera_info is 32x24" in check_alignment(image(64, 48, "rgb8"), image(64, 48, "16UC1"),
                                                     CameraInfo(width=32, height=24))
    bad_k = CameraInfo(width=64, height=48)
    assert "intrinsics" in check_alignment(image(64, 48, "rgb8"), image(64, 48, "16UC1"), bad_k)
