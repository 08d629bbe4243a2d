"""Object memory core: association keeps ids across frames and viewpoints, fusion shrinks uncertainty and error,
moved objects, eviction, forget/clear and the errors for bad poses and unknown ids. Boxes are made by hand from
a known world, so every expectation is exact; test_memory_trajectory.py does the same on rendered scenes."""

from __future__ import annotations

import numpy as np
import pytest

from n3d_ros.core.frames import OPTICAL_TO_BODY
from n3d_ros.core.scene import realsense_like_camera
from n3d_ros.core.types import Box3D, GroundingResult, InputError, RGBDFrame
from n3d_ros.memory import CameraPose, MemoryConfig, ObjectMemory, UnknownObject
from n3d_ros.memory.upright import GravityBasis, UprightBox, upright_from_box, upright_iou

CAMERA = realsense_like_camera(320, 240)
S = 1_000_000_000  # one second in ns


def camera_pose(yaw_deg: float, stamp_ns: int, eye=(0.0, 0.0, 1.0), pitch_deg: float = 0.0) -> CameraPose:
    """A camera in a z-up world, turned yaw about z and pitched down; at yaw 0 it looks along +x."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    turn = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    tilt = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0], [-np.sin(pitch), 0, np.cos(pitch)]])
    matrix = np.eye(4)
    matrix[:3, :3] = turn @ tilt @ OPTICAL_TO_BODY  # optical -> body (x forward, y left, z up) -> world
    matrix[:3, 3] = eye
    return CameraPose(matrix, "odom", stamp_ns, CAMERA.frame_id)


def frame_at(stamp_ns: int, depth_m: float = 4.0) -> RGBDFrame:
    depth = np.full((CAMERA.height, CAMERA.width), depth_m, np.float32)
    return RGBDFrame(np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8), depth, CAMERA, stamp_ns,
                     CAMERA.frame_id)


def seen(pose: CameraPose, label: str, center_world, diameter=0.08, height=0.12, noise=None, color=None) -> Box3D:
    """The optical box a level camera reports for an upright cylinder (its box is the same from every side)."""
    center = pose.to_camera(np.asarray(center_world, dtype=float))
    if noise is not None:
        center = center + noise
    return Box3D(label=label, center=center, size=[diameter, height, diameter],
                 attributes={"color": color or label.split()[0]})


def ingest(memory, pose, *boxes, scope=None):
    return memory.ingest(GroundingResult(list(boxes), "test"), frame_at(pose.stamp_ns), pose, scope=scope)


MUG, BALL = np.array([1.5, 0.2, 0.8]), np.array([1.6, -0.3, 0.8])


def test_ids_survive_frames_and_viewpoints():
    memory = ObjectMemory(MemoryConfig())
    first = ingest(memory, camera_pose(0, S), seen(camera_pose(0, S), "red mug", MUG),
                   seen(camera_pose(0, S), "blue ball", BALL))
    ids = {memory.get(i).label: i for i in first.created}
    assert set(ids) == {"red mug", "blue ball"} and len(first.created) == 2
    for k, yaw in enumerate((-20, -10, 10, 25), start=2):  # walk round: the optical boxes all differ
        pose = camera_pose(yaw, k * S, eye=(0.3 * np.sin(np.radians(yaw)), 0.0, 1.0))
        # the detections come in the other order: association, not order, keeps the ids
        update = ingest(memory, pose, seen(pose, "blue ball", BALL), seen(pose, "red mug", MUG))
        assert update.created == [] and update.matched == {0: ids["blue ball"], 1: ids["red mug"]}
    assert len(memory) == 2 and memory.get(ids["red mug"]).observations == 5


def test_labels_that_contradict_make_new_objects():
    memory = ObjectMemory()
    pose = camera_pose(0, S)
    ingest(memory, pose, seen(pose, "red mug", MUG))
    # query groundings (scope = their phrases): only what the phrase describes can lose confidence
    later = camera_pose(0, 2 * S)
    update = ingest(memory, later, seen(later, "blue mug", MUG + 0.01), scope=["blue mug"])
    assert len(update.created) == 1 and update.missed == []  # another colour at the same place
    later = camera_pose(0, 3 * S)
    update = ingest(memory, later, seen(later, "red laptop", MUG, color="red"), scope=["red laptop"])
    assert len(update.created) == 1 and update.missed == []  # same colour, another category
    assert sorted(o.label for o in memory.objects(include_tentative=True)) == ["blue mug", "red laptop", "red mug"]
    # a backend that cannot recognise categories never contradicts one: it continues a red object
    unknown = seen(camera_pose(0, 4 * S), "red object", MUG)
    unknown.attributes["category_known"] = False
    update = ingest(memory, camera_pose(0, 4 * S), unknown, scope=["red object"])
    assert update.created == [] and memory.get(update.matched[0]).label.startswith("red")


def test_one_detection_per_object_per_frame():
    memory = ObjectMemory()
    pose = camera_pose(0, S)
    ingest(memory, pose, seen(pose, "red mug", MUG))
    pose = camera_pose(0, 2 * S)
    update = ingest(memory, pose, seen(pose, "red mug", MUG + [0.0, 0.05, 0.0]), seen(pose, "red mug", MUG))
    # the exact one continues object 1, the other becomes a new object
    assert update.matched[1] == 1 and update.created == [update.matched[0]] != [1]


@pytest.mark.parametrize("process_sigma", [0.0, 0.002])
def test_fusion_shrinks_uncertainty_and_error(process_sigma):
    rng = np.random.default_rng(0)
    config = MemoryConfig(process_sigma_m_per_sqrt_s=process_sigma)
    memory = ObjectMemory(config)
    sigmas, errors, single = [], [], []
    for k in range(1, 21):
        pose = camera_pose(rng.uniform(-15, 15), k * S)
        noise = rng.normal(0.0, 0.015, 3)
        box = seen(pose, "red mug", MUG, noise=noise)
        single.append(np.linalg.norm(upright_from_box(box, pose, memory.basis).center - MUG))
        ingest(memory, pose, box)
        obj = memory.get(1)
        sigmas.append(obj.center_sigma.max())
        errors.append(np.linalg.norm(obj.center - MUG))
    assert all(b < a for a, b in zip(sigmas, sigmas[1:]))  # each consistent observation narrows it
    r = (config.center_sigma_m + config.center_sigma_per_m * np.linalg.norm(MUG - [0, 0, 1])) ** 2
    expected = r
    for _ in range(19):  # the scalar Kalman recursion: 1 s of random walk, then one observation
        expected += process_sigma ** 2 * 1.0
        expected = expected * r / (expected + r)
    assert sigmas[-1] == pytest.approx(np.sqrt(expected), rel=0.01)  # r varies with the noisy range
    if process_sigma == 0.0:
        assert sigmas[-1] == pytest.approx(np.sqrt(r / 20), rel=0.01)  # r / n for a static object
    assert errors[-1] < 0.5 * np.median(single)
    assert memory.get(1).confidence == pytest.approx(1 / (1 + np.exp(-MemoryConfig().max_log_odds)))


def test_moved_object_keeps_its_id_and_restarts_its_estimate():
    memory = ObjectMemory()
    for k in range(1, 6):
        pose = camera_pose(0, k * S)
        ingest(memory, pose, seen(pose, "red mug", MUG))
    pose = camera_pose(0, 6 * S)
    moved_to = MUG + [0.0, 0.12, 0.0]  # nudged 12 cm: within the 15 cm gate, beyond 4 innovation sigmas
    update = ingest(memory, pose, seen(pose, "red mug", moved_to))
    obj = memory.get(1)
    assert update.moved == [1] and update.created == [] and obj.resets == 1
    assert np.allclose(obj.center, moved_to, atol=1e-9)  # not averaged with the old place
    # beyond the gate it is a new object; the old one then loses confidence where it is seen to be gone
    pose = camera_pose(0, 7 * S)
    update = ingest(memory, pose, seen(pose, "red mug", moved_to + [0.0, 0.3, 0.0]))
    assert update.created == [2] and update.missed == [1]


def test_bounded_memory_evicts_the_least_recently_seen():
    memory = ObjectMemory(MemoryConfig(max_objects=3))
    places = [MUG + [0, 0.18 * k - 0.27, 0] for k in range(4)]  # 18 cm apart: beyond the gate, all in view
    pose = camera_pose(0, S)
    ingest(memory, pose, *(seen(pose, "red mug", place) for place in places[:3]))
    # the first one is re-seen later; scope [] (a query about nothing in particular): nothing loses confidence
    pose = camera_pose(0, 10 * S)
    ingest(memory, pose, seen(pose, "red mug", places[0]), scope=[])
    pose = camera_pose(0, 11 * S)
    update = ingest(memory, pose, seen(pose, "red mug", places[3]), scope=[])
    assert update.evicted == [2] and sorted(o.id for o in memory.objects(include_tentative=True)) == [1, 3, 4]


def test_forget_clear_and_unknown_ids():
    memory = ObjectMemory()
    pose = camera_pose(0, S)
    ingest(memory, pose, seen(pose, "red mug", MUG), seen(pose, "blue ball", BALL))
    assert memory.forget(1).label == "red mug" and len(memory) == 1
    with pytest.raises(UnknownObject, match=r"no object 1 in memory \(known ids: 2\)"):
        memory.forget(1)
    with pytest.raises(InputError, match="no object 99"):
        memory.get(99)
    assert len(memory) == 1  # the failed forget lost nothing
    assert memory.clear() == 1 and len(memory) == 0
    update = ingest(memory, camera_pose(0, 2 * S), seen(camera_pose(0, 2 * S), "red mug", MUG))
    assert update.created == [3]  # ids are never reused: a planner's "object 1" cannot become another object


def test_find_by_phrase():
    memory = ObjectMemory()
    for k in (1, 2):
        pose = camera_pose(0, k * S)
        ingest(memory, pose, seen(pose, "red mug", MUG), seen(pose, "blue ball", BALL))
    assert [o.label for o in memory.find("the red mug")] == ["red mug"]
    assert [o.id for o in memory.find("object 2")] == [2]
    assert memory.find("green cup") == []


@pytest.mark.parametrize("bad, message", [
    (lambda p: CameraPose(np.full((4, 4), np.nan), "odom", S), "non-finite"),
    (lambda p: CameraPose(np.diag([1.0, 1.0, -1.0, 1.0]), "odom", S), "not rigid"),
    (lambda p: CameraPose(p.matrix, "map", S, CAMERA.frame_id), "in frame 'map' but the memory is kept in 'odom'"),
    (lambda p: CameraPose(p.matrix, "odom", S, "other_camera_optical_frame"), "give the pose of the image's"),
    (lambda p: CameraPose(p.matrix, "odom", S - int(0.2 * S), CAMERA.frame_id), "stale"),
    (lambda p: CameraPose.from_quaternion([0, 0, 0], [0, 0, 0, 2.0], "odom", S), "unit length"),
])
def test_bad_poses_are_refused_and_lose_nothing(bad, message):
    memory = ObjectMemory()
    good = camera_pose(0, S)
    ingest(memory, good, seen(good, "red mug", MUG))
    before = memory.get(1)
    with pytest.raises(InputError, match=message):
        pose = bad(good)
        memory.ingest(GroundingResult([seen(good, "red mug", MUG)], "test"), frame_at(S), pose)
    after = memory.get(1)
    assert len(memory) == 1 and after.observations == before.observations and after.log_odds == before.log_odds


def test_bad_boxes_are_skipped_with_a_reason():
    memory = ObjectMemory()
    pose = camera_pose(0, S)
    broken = Box3D(label="red mug", center=[np.nan, 0, 1], size=[0.1, 0.1, 0.1])
    update = ingest(memory, pose, broken, seen(pose, "blue ball", BALL))
    assert update.matched == {1: 1} and "non-finite" in update.skipped[0]


@pytest.mark.parametrize("settings, message", [
    ({"up": (0.0, 0.0, 2.0)}, "unit 3-vector"), ({"max_objects": 0}, "max_objects"),
    ({"min_iou": 0.0}, "min_iou"), ({"drop_below_confidence": 0.7}, "drop_below_confidence"),
    ({"frame_id": " "}, "frame_id"), ({"nonsense": 1}, "unknown memory settings"),
])
def test_config_errors_say_what_to_change(settings, message):
    with pytest.raises(InputError, match=message):
        MemoryConfig.from_dict(settings)


def test_upright_box_from_a_pitched_camera_uses_the_measured_dimensions():
    """A camera pitched down 35 deg sees an upright 10 x 10 x 20 cm box: its axis-aligned optical box is tilted
    in the world, so its upright bound is too tall; the backend's measured dimensions are the object's."""
    pose = camera_pose(0, S, pitch_deg=35.0)
    basis = GravityBasis((0.0, 0.0, 1.0))
    world = UprightBox(np.array([1.2, 0.0, 0.1]), np.array([0.1, 0.1, 0.2]), 0.0)
    corners = pose.to_camera(world.corners(basis))
    lo, hi = corners.min(0), corners.max(0)
    optical = Box3D(label="red box", center=(lo + hi) / 2, size=hi - lo)
    bound = upright_from_box(optical, pose, basis)
    assert np.allclose(bound.center, world.center, atol=1e-9) and bound.size[2] > 0.25
    optical.attributes.update({"width_m": 0.1, "height_m": 0.2, "depth_m": 0.1,
                               "support_up": list(pose.rotation.T @ basis.up)})
    measured = upright_from_box(optical, pose, basis)
    assert np.allclose(measured.size, [0.1, 0.1, 0.2]) and abs(measured.yaw) < 1e-9
    assert upright_iou(measured, world, basis) == pytest.approx(1.0)
    shifted = UprightBox(world.center + [0.05, 0, 0], world.size, 0.0)
    assert upright_iou(measured, shifted, basis) == pytest.approx(0.5 / 1.5)
    turned = UprightBox(world.center, np.array([0.1, 0.2, 0.2]), np.pi / 2).canonical()
    assert turned.yaw == pytest.approx(0.0) and np.allclose(turned.size, [0.2, 0.1, 0.2])


def test_boxes_cut_by_the_image_border_only_update_known_objects():
    """A box reaching the image border shows part of an object: it cannot start one, and it moves a remembered
    one partial_variance_scale times less than a whole view would. (Optical (x, y, z) is world (z, -x, 1 - y)
    for this camera; the right image border is at optical x = 0.77 m at 1.5 m.)"""
    memory = ObjectMemory()

    def optical(k, x, width):
        pose = camera_pose(0, k * S)
        box = Box3D(label="red mug", center=[x, 0.2, 1.5], size=[width, 0.12, 0.08], attributes={"color": "red"})
        return memory.ingest(GroundingResult([box], "test"), frame_at(k * S), pose, scope=[])

    update = optical(1, 0.75, 0.08)
    assert update.created == [] and update.matched == {} and "cut by the image border" in update.skipped[0]
    optical(2, 0.60, 0.08)
    optical(3, 0.60, 0.08)
    before = memory.get(1)
    update = optical(4, 0.70, 0.20)  # the same object, its box stretched over the border: partial
    after = memory.get(1)
    assert update.matched == {0: 1} and update.skipped == [] and update.moved == []
    r = (memory.config.center_sigma_m + memory.config.center_sigma_per_m * np.linalg.norm([0.7, 0.2, 1.5])) ** 2
    p = before.center_var[1] + memory.config.process_sigma_m_per_sqrt_s ** 2
    assert before.center[1] - after.center[1] == pytest.approx(0.10 * p / (p + 25 * r), rel=1e-3)


def test_a_full_memory_evicting_during_a_frame_keeps_serving():
    """Eviction picks an object the same frame then judges by negative evidence: it must simply be gone."""
    memory = ObjectMemory(MemoryConfig(max_objects=2))
    places = [MUG + [0, 0.18 * k - 0.27, 0] for k in range(4)]
    pose = camera_pose(0, S)
    ingest(memory, pose, *(seen(pose, "red mug", place) for place in places[:2]))
    pose = camera_pose(0, 2 * S)
    update = ingest(memory, pose, *(seen(pose, "red mug", place) for place in places[2:]))
    assert update.evicted == [1, 2] and update.created == [3, 4] and update.missed == []
    assert [o.id for o in memory.objects(include_tentative=True)] == [3, 4]


def test_partial_uses_the_backends_pixel_box_when_it_has_one():
    """From a pitched camera an optical box's projection overshoots the object; the pixels decide."""
    memory = ObjectMemory()
    pose = camera_pose(0, S)
    inside = seen(pose, "red mug", MUG)
    inside.attributes["pixel_box"] = [100, 100, 30, 40]
    at_border = seen(pose, "blue ball", BALL)
    at_border.attributes["pixel_box"] = [0, 100, 30, 40]  # its pixels start at the left image border
    update = ingest(memory, pose, inside, at_border)
    assert update.created == [1] and "box 1 'blue ball': cut by the image border" in update.skipped[0]


@pytest.mark.parametrize("roll_deg", [0.0, 90.0])
def test_measured_width_and_depth_land_on_the_right_axes(roll_deg):
    """The backend measures width along the viewer's right and depth along its forward; with the camera rolled
    a quarter turn the box's optical axes swap roles, the measured sides must not."""
    pose = camera_pose(0, S)
    if roll_deg:
        roll = np.radians(roll_deg)
        about_z = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
        matrix = pose.matrix.copy()
        matrix[:3, :3] = pose.rotation @ about_z
        pose = CameraPose(matrix, "odom", S, CAMERA.frame_id)
    basis = GravityBasis((0.0, 0.0, 1.0))
    box = Box3D(label="red box", center=pose.to_camera(MUG), size=[0.2, 0.2, 0.2],
                attributes={"width_m": 0.1, "height_m": 0.12, "depth_m": 0.3,
                            "support_up": list(pose.rotation.T @ basis.up)})
    upright = upright_from_box(box, pose, basis)
    # viewer right is world -y, forward is world +x (the camera looks along +x)
    assert upright.extent_along(np.array([0.0, 1.0, 0.0]), basis) == pytest.approx(0.1)
    assert upright.extent_along(np.array([1.0, 0.0, 0.0]), basis) == pytest.approx(0.3)
    assert upright.size[2] == pytest.approx(0.12)
