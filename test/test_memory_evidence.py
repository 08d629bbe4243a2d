"""Negative evidence: a remembered object loses confidence only when the frame could have seen it (in view, in
front of the measured depth) and did not detect it; occluded, out-of-view, too-close and no-depth objects keep
their state; a query's grounding only counts against the objects its phrases describe."""

from __future__ import annotations

import numpy as np
import pytest

from n3d_ros.core.frames import OPTICAL_TO_BODY
from n3d_ros.core.scene import realsense_like_camera
from n3d_ros.core.types import Box3D, GroundingResult, RGBDFrame
from n3d_ros.memory import CameraPose, MemoryConfig, ObjectMemory
from n3d_ros.memory.evidence import NO_DEPTH, OCCLUDED, OUT_OF_VIEW, VISIBLE, visibility

CAMERA = realsense_like_camera(320, 240)
S = 1_000_000_000
MUG = np.array([1.5, 0.2, 0.8])  # world (z up); the camera stands at (0, 0, 1) looking along +x


def pose_at(stamp_ns: int, yaw_deg: float = 0.0) -> CameraPose:
    yaw = np.radians(yaw_deg)
    turn = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = turn @ OPTICAL_TO_BODY, (0.0, 0.0, 1.0)
    return CameraPose(matrix, "odom", stamp_ns, CAMERA.frame_id)


def frame_at(stamp_ns: int, depth: np.ndarray = None) -> RGBDFrame:
    if depth is None:
        depth = np.full((CAMERA.height, CAMERA.width), 4.0, np.float32)  # a wall behind everything
    return RGBDFrame(np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8), depth.astype(np.float32), CAMERA,
                     stamp_ns, CAMERA.frame_id)


def mug_box(pose: CameraPose, place=MUG) -> Box3D:
    return Box3D(label="red mug", center=pose.to_camera(place), size=[0.08, 0.12, 0.08], attributes={"color": "red"})


def remembered(hits: int = 5) -> ObjectMemory:
    memory = ObjectMemory(MemoryConfig())
    for k in range(1, hits + 1):
        memory.ingest(GroundingResult([mug_box(pose_at(k * S))], "test"), frame_at(k * S), pose_at(k * S))
    return memory


def empty_frame(memory, k, depth=None, yaw_deg=0.0, scope=None):
    return memory.ingest(GroundingResult([], "test"), frame_at(k * S, depth), pose_at(k * S, yaw_deg), scope=scope)


def test_removed_object_in_view_is_dropped_after_a_few_frames():
    memory = remembered(hits=5)  # confidence at the cap (log-odds 3.0)
    config = memory.config
    drop_at = np.log(config.drop_below_confidence / (1 - config.drop_below_confidence))
    expected = int(np.floor((config.max_log_odds - drop_at) / config.miss_log_odds)) + 1
    for k in range(expected - 1):
        update = empty_frame(memory, 10 + k)
        assert update.missed == [1] and update.dropped == []
        assert memory.get(1).misses == k + 1
    update = empty_frame(memory, 10 + expected)
    assert update.dropped == [1] and len(memory) == 0
    assert expected == 4  # with the defaults: 3.0 -> 1.6 -> 0.2 -> -1.2 -> -2.6 < log(0.2 / 0.8)


def test_a_detection_resets_the_misses():
    memory = remembered(hits=5)
    empty_frame(memory, 10)
    empty_frame(memory, 11)
    memory.ingest(GroundingResult([mug_box(pose_at(12 * S))], "test"), frame_at(12 * S), pose_at(12 * S))
    obj = memory.get(1)
    assert obj.misses == 0 and obj.log_odds == pytest.approx(3.0 - 2 * 1.4 + 0.85)


def test_a_single_spurious_detection_goes_at_the_next_clear_view():
    memory = remembered(hits=1)
    update = empty_frame(memory, 2)
    assert update.dropped == [1]


def test_occluded_object_keeps_its_confidence():
    memory = remembered()
    before = memory.get(1).log_odds
    depth = np.full((CAMERA.height, CAMERA.width), 4.0, np.float32)
    depth[:, 60:200] = 0.5  # an arm between the camera and the mug
    for k in range(10, 20):
        update = empty_frame(memory, k, depth)
        assert update.occluded == [1] and update.missed == []
    assert memory.get(1).log_odds == before


def test_depth_just_behind_the_object_counts_as_seeing_through():
    """The object gone, the table right behind where it stood (a few cm beyond its near face)."""
    memory = remembered()
    near_face = MUG[0] - 0.04
    depth = np.full((CAMERA.height, CAMERA.width), near_face + 0.05, np.float32)
    assert empty_frame(memory, 10, depth).missed == [1]


def test_out_of_view_objects_survive():
    memory = remembered()
    before = memory.get(1)
    for k, yaw in enumerate((60, 90, 180, -90), start=10):  # turned away: the mug is beside or behind
        update = empty_frame(memory, k, yaw_deg=yaw)
        assert update.missed == [] and update.dropped == []
    after = memory.get(1)
    assert after.log_odds == before.log_odds and np.array_equal(after.center, before.center)
    assert after.last_seen_ns == before.last_seen_ns


def test_no_depth_where_the_object_should_be_is_no_evidence():
    memory = remembered()
    depth = np.full((CAMERA.height, CAMERA.width), np.nan, np.float32)
    assert empty_frame(memory, 10, depth).missed == []


def test_visibility_statuses():
    config = MemoryConfig()
    pose = pose_at(S)
    corners = pose.to_camera(MUG + 0.05 * np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1)
                                                    for sz in (-1, 1)]))
    assert visibility(corners, frame_at(S), config).status == VISIBLE
    near = corners.copy()
    near[:, 2] -= near[:, 2].min() - 0.05  # 5 cm from the lens: closer than the sensor's minimum range
    assert visibility(near, frame_at(S), config).status == OUT_OF_VIEW
    at_edge = corners + [1.7, 0.0, 0.0]  # straddles the right edge of the image
    assert visibility(at_edge, frame_at(S), config).status == OUT_OF_VIEW
    blocked = np.full((CAMERA.height, CAMERA.width), 0.3, np.float32)
    assert visibility(corners, frame_at(S, blocked), config).status == OCCLUDED
    holes = np.full((CAMERA.height, CAMERA.width), np.nan, np.float32)
    assert visibility(corners, frame_at(S, holes), config).status == NO_DEPTH


def test_a_query_grounding_only_counts_against_what_its_phrases_describe():
    memory = remembered()
    pose = pose_at(10 * S)
    ball = Box3D(label="blue ball", center=pose.to_camera(MUG + [0, -0.4, 0]), size=[0.1] * 3,
                 attributes={"color": "blue"})
    update = memory.ingest(GroundingResult([ball], "test"), frame_at(10 * S), pose, scope=["the blue ball"])
    assert update.missed == []  # the query was about the ball: not finding the mug says nothing
    update = empty_frame(memory, 11, scope=["the red mug"])
    assert update.missed == [1]
    update = empty_frame(memory, 12, scope=["the left one"])  # says where, not what: no evidence
    assert update.missed == []
