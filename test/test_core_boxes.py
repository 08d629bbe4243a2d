"""Boxes: frame conversions, spec 5.5 projection (demo3 vector), IoU against brute force, transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from n3d_ros.core.boxes import (OrientedBox, box_corners, box_from_n3d, box_to_body, box_to_n3d, iou_3d,
                                project_box_normalized, project_box_pixels, quaternion_from_matrix,
                                quaternion_from_yaw_optical, quaternion_to_matrix, transform_box)
from n3d_ros.core.camera import backproject_normalized
from n3d_ros.core.frames import OPTICAL_TO_BODY
from n3d_ros.core.types import Box3D, InputError, PinholeCamera

coord = st.floats(-5, 5, allow_nan=False)
extent = st.floats(0.01, 2.0, allow_nan=False)
angle = st.floats(-math.pi, math.pi, allow_nan=False)


def _box(center, size, yaw=0.0, label="thing"):
    return Box3D(label=label, center=center, size=size, yaw=yaw)


def _same_point_set(a, b, atol=1e-9):
    return all(np.min(np.linalg.norm(b - p, axis=1)) < atol for p in a) and len(a) == len(b)


def _random_rotation(rng):
    q = rng.normal(size=4)
    return quaternion_to_matrix(q / np.linalg.norm(q))


# ---------------------------------------------------------------------- N3D <-> optical <-> body
@given(st.tuples(coord, coord, st.floats(0.1, 8)), st.tuples(extent, extent, extent), angle)
def test_n3d_round_trip_and_signs(center, size, yaw):
    box = box_from_n3d(center, size, yaw, label="cup")
    assert box.center.tolist() == [-center[0], -center[1], center[2]]
    assert box.yaw == -yaw
    back_center, back_size, back_yaw = box_to_n3d(box)
    assert np.allclose(back_center, center) and np.allclose(back_size, size) and back_yaw == pytest.approx(yaw)


@given(st.tuples(coord, coord, st.floats(0.1, 8)), st.tuples(extent, extent, extent), angle)
def test_body_box_is_the_same_solid(center, size, yaw):
    box = _box(center, size, yaw)
    body = box_to_body(box)
    # independent: body = (z, -x, -y) of each optical corner
    corners = box_corners(box)
    expected = np.stack([corners[:, 2], -corners[:, 0], -corners[:, 1]], -1)
    assert _same_point_set(body.corners(), expected, atol=1e-9)
    assert np.allclose(body.center, [center[2], -center[0], -center[1]])
    assert np.allclose(body.size, [size[2], size[0], size[1]])
    # the generic transform gives another representation of the same solid
    generic = transform_box(box, OPTICAL_TO_BODY, np.zeros(3))
    assert _same_point_set(generic.corners(), expected, atol=1e-9)


def test_n3d_yaw_positive_turns_counter_clockwise_seen_from_above():
    # +0.3 rad about +y_N3D (up) moves the box's +x (left) axis towards -z (the camera) ... seen in body frame
    # it is +0.3 about +z_body (spec 5.4)
    box = box_from_n3d([0, 0, 2], [1.0, 0.1, 0.1], 0.3)
    body = box_to_body(box)
    assert np.allclose(body.quat_xyzw, [0, 0, math.sin(0.15), math.cos(0.15)])


def test_box_corners_follow_yaw_about_optical_y():
    box = _box([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], yaw=math.pi / 2)
    corners = box_corners(box)
    # yaw +90 deg about +y maps local +x to -z and local +z to +x: extents swap between x and z
    assert np.allclose(corners.min(axis=0), [1 - 3, 2 - 2, 3 - 1]) and np.allclose(corners.max(axis=0), [4, 4, 4])
    x_axis_tip = box.center + (corners[4] - corners[0])  # corners 0 and 4 differ only in the x sign
    assert np.allclose(x_axis_tip - box.center, [0, 0, -2.0])


# ---------------------------------------------------------------------- projection
def _spec_2d_box(center_n3d, size, intr):
    """Spec 5.5 literally: corners in the N3D frame, p = K_n @ [-x, -y, z], (u, v) = p01 / p2."""
    fx_n, fy_n, cx_n, cy_n = intr
    K = np.array([[fx_n, 0, cx_n], [0, fy_n, cy_n], [0, 0, 1]])
    x, y, z = center_n3d
    sx, sy, sz = size
    us, vs = [], []
    for dx in (-sx / 2, sx / 2):
        for dy in (-sy / 2, sy / 2):
            for dz in (-sz / 2, sz / 2):
                if z + dz <= 0:
                    continue
                p = K @ np.array([-(x + dx), -(y + dy), z + dz])
                us.append(p[0] / p[2])
                vs.append(p[1] / p[2])
    pc = K @ np.array([-x, -y, z])
    return [pc[0] / pc[2], pc[1] / pc[2], max(us) - min(us), max(vs) - min(vs)]


def test_demo3_person_projects_to_the_released_2d_box():
    intr = (2.4436, 1.8327, 0.5, 0.5)
    X, Y, Z = backproject_normalized(0.275, 0.483, 2.9717, intr)
    box = box_from_n3d([-X, -Y, Z], [0.6150, 0.9108, 0.7590], label="person")
    centre, size, _ = box_to_n3d(box)
    assert [round(float(v), 2) for v in centre] == [0.27, 0.03, 2.97]
    result = project_box_normalized(box, intr)
    assert [round(v, 2) for v in result] == [0.28, 0.48, 0.58, 0.64]
    assert result[:2] == pytest.approx((0.275, 0.483))  # the centre returns the model's (u, v)
    assert np.allclose(result, _spec_2d_box(centre, size, intr))


@given(st.tuples(coord, coord, st.floats(-1, 6)), st.tuples(extent, extent, extent), angle,
       st.tuples(st.floats(0.5, 3), st.floats(0.5, 3), st.floats(0.3, 0.7), st.floats(0.3, 0.7)))
def test_projection_matches_spec_recipe_and_ignores_yaw(center, size, yaw, intr):
    box = box_from_n3d(center, size, yaw)
    if center[2] <= 0 or center[2] + size[2] / 2 <= 0:
        with pytest.raises(InputError, match="behind"):
            project_box_normalized(box, intr)
        return
    assert np.allclose(project_box_normalized(box, intr), _spec_2d_box(center, size, intr), rtol=1e-9, atol=1e-9)


def test_pixel_projection_clipping_and_refusal():
    cam = PinholeCamera(width=640, height=480, fx=600.0, fy=600.0, cx=320.0, cy=240.0)
    box = _box([0.0, 0.0, 2.0], [0.4, 0.2, 0.0])
    assert project_box_pixels(box, cam) == pytest.approx((260.0, 210.0, 380.0, 270.0))
    wide = _box([0.0, 0.0, 1.0], [4.0, 0.2, 0.0])
    assert project_box_pixels(wide, cam)[::2] == pytest.approx((-0.5, 639.5))
    assert project_box_pixels(wide, cam, clip=False)[::2] == pytest.approx((-880.0, 1520.0))
    with pytest.raises(InputError, match="behind"):
        project_box_pixels(_box([0, 0, -3.0], [1, 1, 1]), cam)


# ---------------------------------------------------------------------- IoU
def _monte_carlo_iou(a, b, n=400_000, seed=0):
    """Sample the union's bounding box; membership by mapping each sample into each box's own axes."""
    rng = np.random.default_rng(seed)
    ca, cb = box_corners(a), box_corners(b)
    lo, hi = np.minimum(ca.min(0), cb.min(0)), np.maximum(ca.max(0), cb.max(0))
    pts = rng.uniform(lo, hi, size=(n, 3))

    def inside(box):
        c, s = math.cos(box.yaw), math.sin(box.yaw)
        local_rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        local = (pts - box.center) @ local_rot  # row-vector form of R^T (p - c)
        return np.all(np.abs(local) <= box.size / 2, axis=1)

    ia, ib = inside(a), inside(b)
    return (ia & ib).sum() / max((ia | ib).sum(), 1)


@pytest.mark.parametrize("a,b", [
    (_box([0, 0, 2], [1, 1, 1]), _box([0.5, 0, 2], [1, 1, 1])),
    (_box([0, 0, 2], [1, 1, 1], 0.4), _box([0.3, 0.2, 2.2], [0.8, 1.2, 0.6], -0.7)),
    (_box([0, 0, 2], [2, 0.5, 1], 1.0), _box([0, 0.1, 2], [1, 0.5, 2], 1.0)),
    (_box([0, 0, 2], [1, 1, 1], 0.0), _box([0, 0, 2], [1, 1, 1], math.pi / 4)),
])
def test_iou_matches_monte_carlo(a, b):
    assert iou_3d(a, b) == pytest.approx(_monte_carlo_iou(a, b), abs=0.006)
    assert iou_3d(a, b) == pytest.approx(iou_3d(b, a), abs=1e-12)


def test_iou_exact_cases():
    a = _box([0, 0, 2], [1, 1, 1])
    assert iou_3d(a, a) == pytest.approx(1.0)
    assert iou_3d(a, _box([0.5, 0, 2], [1, 1, 1])) == pytest.approx(0.5 / 1.5)
    assert iou_3d(a, _box([3, 0, 2], [1, 1, 1])) == 0.0
    assert iou_3d(a, _box([0, 2, 2], [1, 1, 1])) == 0.0
    # a unit cube and itself turned 45 deg: intersection is the regular octagon of area 2(sqrt2 - 1)
    octagon = 2 * (math.sqrt(2) - 1)
    assert iou_3d(a, _box([0, 0, 2], [1, 1, 1], math.pi / 4)) == pytest.approx(octagon / (2 - octagon), abs=1e-12)
    # same solid under a quarter-turn with swapped sizes
    assert iou_3d(_box([0, 0, 2], [2, 1, 1]), _box([0, 0, 2], [1, 1, 2], math.pi / 2)) == pytest.approx(1.0)
    # a box inside another
    assert iou_3d(a, _box([0, 0, 2], [0.5, 0.5, 0.5], 0.3)) == pytest.approx(0.125)


@settings(max_examples=60)
@given(st.tuples(coord, coord, coord), st.tuples(extent, extent, extent), angle, angle)
def test_iou_is_one_for_identical_boxes_and_bounded(center, size, yaw_a, yaw_b):
    a = _box(center, size, yaw_a)
    assert iou_3d(a, a) == pytest.approx(1.0, abs=1e-9)
    b = _box(np.asarray(center) + 0.1, size, yaw_b)
    assert 0.0 <= iou_3d(a, b) <= 1.0 + 1e-12


# ---------------------------------------------------------------------- transforms and quaternions
@given(st.integers(0, 10_000), st.tuples(coord, coord, coord), st.tuples(extent, extent, extent), angle)
def test_transform_round_trip_and_corners(seed, center, size, yaw):
    rng = np.random.default_rng(seed)
    R, t = _random_rotation(rng), rng.normal(size=3)
    box = _box(center, size, yaw)
    moved = transform_box(box, R, t, frame_id="base_link")
    assert moved.frame_id == "base_link" and np.allclose(moved.size, size)
    assert _same_point_set(moved.corners(), box_corners(box) @ R.T + t, atol=1e-9)
    back = transform_box(moved, R.T, -R.T @ t)
    assert np.allclose(back.center, box.center, atol=1e-9)
    assert _same_point_set(back.corners(), box_corners(box), atol=1e-9)
    assert np.allclose(np.abs(back.quat_xyzw @ quaternion_from_yaw_optical(yaw)), 1.0, atol=1e-9)


@given(st.integers(0, 10_000))
def test_quaternion_matrix_round_trip(seed):
    R = _random_rotation(np.random.default_rng(seed))
    q = quaternion_from_matrix(R)
    assert q[3] >= 0 and np.isclose(np.linalg.norm(q), 1.0)
    assert np.allclose(quaternion_to_matrix(q), R, atol=1e-12)


def test_quaternion_known_values_and_refusals():
    assert np.allclose(quaternion_from_yaw_optical(math.pi / 2), [0, math.sqrt(0.5), 0, math.sqrt(0.5)])
    # 180 deg about x goes through the non-trace branch
    assert np.allclose(quaternion_from_matrix(np.diag([1.0, -1.0, -1.0])), [1, 0, 0, 0])
    with pytest.raises(InputError, match="rotation"):
        quaternion_from_matrix(np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(InputError, match="rotation"):
        transform_box(_box([0, 0, 1], [1, 1, 1]), np.eye(3) * 2, np.zeros(3))
    with pytest.raises(InputError, match="quaternion"):
        OrientedBox(center=[0, 0, 0], quat_xyzw=[0, 0, 0, 0], size=[1, 1, 1])
