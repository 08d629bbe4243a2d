"""Questions answered from memory: the spatial reasoning runs on remembered boxes seen from the camera's
current pose, answers say which objects came from memory and how long ago they were seen, and a question can
name a memory id."""

from __future__ import annotations

import numpy as np
import pytest

from n3d_ros.core.frames import OPTICAL_TO_BODY
from n3d_ros.core.scene import realsense_like_camera
from n3d_ros.core.types import Box3D, GroundingResult, RGBDFrame
from n3d_ros.memory import CameraPose, ObjectMemory
from n3d_ros.memory.answers import answer_from_memory, format_age, names_memory_id

CAMERA = realsense_like_camera(320, 240)
S = 1_000_000_000
MUG, BALL = np.array([1.5, 0.2, 0.8]), np.array([1.6, -0.3, 0.85])


def pose_at(stamp_ns: int, yaw_deg: float = 0.0, eye=(0.0, 0.0, 1.0)) -> CameraPose:
    yaw = np.radians(yaw_deg)
    turn = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = turn @ OPTICAL_TO_BODY, eye
    return CameraPose(matrix, "odom", stamp_ns, CAMERA.frame_id)


def frame_at(stamp_ns: int) -> RGBDFrame:
    depth = np.full((CAMERA.height, CAMERA.width), 4.0, np.float32)
    return RGBDFrame(np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8), depth, CAMERA, stamp_ns,
                     CAMERA.frame_id)


def box(pose: CameraPose, label: str, place, size) -> Box3D:
    return Box3D(label=label, center=pose.to_camera(place), size=size, attributes={"color": label.split()[0]})


def feed(memory, k, *labels, scope=None):
    pose = pose_at(k * S)
    boxes = [box(pose, "red mug", MUG, [0.08, 0.12, 0.08]) if label == "mug" else
             box(pose, "blue ball", BALL, [0.1, 0.1, 0.1]) for label in labels]
    return memory.ingest(GroundingResult(boxes, "test"), frame_at(k * S), pose, scope=scope)


@pytest.fixture
def memory():
    memory = ObjectMemory()
    for k in (1, 2, 3):
        feed(memory, k, "mug", "ball")
    return memory


def test_distance_from_memory_says_how_old_the_objects_are(memory):
    away = pose_at(17 * S, yaw_deg=90)  # looking elsewhere now: neither object is in view
    answer = answer_from_memory(memory, "how far is the red mug from the blue ball?", 17 * S, away)
    assert answer.success and answer.path == "geometry" and answer.unit == "m"
    assert answer.value == pytest.approx(np.linalg.norm(MUG - BALL), abs=1e-9)
    assert answer.text.startswith("From memory: the red mug (id 1) was last seen 14 s ago; the blue ball (id 2) "
                                  "was last seen 14 s ago.")
    assert "0.51 m apart" in answer.text and "answered from memory (objects 1, 2)" in answer.message
    assert [b.attributes["memory"]["id"] for b in answer.objects] == [1, 2]
    assert all(b.attributes["from_memory"] and b.attributes["memory"]["age_s"] == 14.0 for b in answer.objects)
    assert "3 observations" in answer.reasoning


def test_relations_are_judged_from_the_current_viewpoint(memory):
    question = "is the red mug to the left of the blue ball?"
    here = answer_from_memory(memory, question, 20 * S, pose_at(20 * S))
    assert here.success and here.value == 1.0
    # from the far side of the table (looking back along -x) the mug is on the right
    behind = answer_from_memory(memory, question, 20 * S, pose_at(20 * S, yaw_deg=180, eye=(3.0, 0.0, 1.0)))
    assert behind.success and behind.value == 0.0 and "is not to the left of" in behind.text


def test_sizes_come_from_the_fused_upright_box(memory):
    answer = answer_from_memory(memory, "how tall is the red mug", 5 * S, pose_at(5 * S, yaw_deg=45))
    assert answer.success and answer.value == pytest.approx(0.12, abs=1e-6)


def test_a_question_can_name_a_memory_id(memory):
    assert names_memory_id("where is memory object 2?") and not names_memory_id("where is object 2?")
    answer = answer_from_memory(memory, "where is memory object 2?", 8 * S)  # default: the last pose
    assert answer.success and [b.id for b in answer.objects] == [2]
    assert "the blue ball (id 2) was last seen 5.0 s ago" in answer.text
    assert "In odom it is at (1.60, -0.30, 0.85) m." in answer.text
    assert answer_from_memory(memory, "how far is object 1 from object 2", 8 * S).value == \
        pytest.approx(np.linalg.norm(MUG - BALL))


def test_objects_in_the_current_frame_get_no_age(memory):
    feed(memory, 30, "mug", scope=["red mug"])  # the mug is seen now, the ball is remembered
    answer = answer_from_memory(memory, "how far is the red mug from the blue ball", 30 * S)
    assert answer.success and "the blue ball (id 2) was last seen 27 s ago" in answer.text
    assert "red mug (id 1) was last seen" not in answer.text
    assert [b.attributes["from_memory"] for b in answer.objects] == [False, True]
    assert answer.message.startswith("answered from memory (objects 2)")


def test_what_memory_cannot_answer(memory):
    missing = answer_from_memory(memory, "where is the green cup", 5 * S)
    assert not missing.success and missing.text == "I remember no green cup."
    assert "searched 2 remembered objects" in missing.message
    free_form = answer_from_memory(memory, "what is the mug made of", 5 * S)
    assert not free_form.success and "geometry questions only" in free_form.message
    empty = answer_from_memory(memory, "   ", 5 * S)
    assert not empty.success and "query is empty" in empty.message
    assert "no camera pose yet" in answer_from_memory(ObjectMemory(), "where is the red mug", S).message
    other = CameraPose(np.eye(4), "map", 5 * S)
    assert "kept in 'odom'" in answer_from_memory(memory, "where is the red mug", 5 * S, other).message


def test_tentative_objects_are_not_answered_about():
    memory = ObjectMemory()
    feed(memory, 1, "mug")  # seen once: could be a spurious detection
    assert not answer_from_memory(memory, "where is the red mug", 10 * S).success
    assert answer_from_memory(memory, "where is the red mug", S).success  # ...unless it is in the frame now


@pytest.mark.parametrize("seconds, text", [(0.25, "0.2 s"), (9.96, "10.0 s"), (14.2, "14 s"), (600, "10 min"),
                                           (7200, "2.0 h")])
def test_age_wording(seconds, text):
    assert format_age(seconds) == text
