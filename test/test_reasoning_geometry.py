"""Surface distance, viewer frame and clock directions against independent computations."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from n3d_ros.core.types import Box3D, InputError
from n3d_ros.reasoning.geometry import clock_position, surface_distance, viewer_frame


def _surface_samples(box: Box3D, n: int = 16) -> np.ndarray:
    """Points on the six faces of a (yawed) box, built from its local corners by brute force."""
    t = np.linspace(-0.5, 0.5, n)
    a, b = np.meshgrid(t, t)
    a, b = a.ravel(), b.ravel()
    faces = []
    for axis in range(3):
        for side in (-0.5, 0.5):
            local = np.zeros((a.size, 3))
            others = [i for i in range(3) if i != axis]
            local[:, axis] = side
            local[:, others[0]], local[:, others[1]] = a, b
            faces.append(local * box.size)
    local = np.concatenate(faces)
    # yaw about +y_optical: the rotation matrix written out (x' = cos x + sin z, z' = -sin x + cos z)
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return local @ rot.T + box.center


def _sampled_distance(a: Box3D, b: Box3D) -> float:
    pa, pb = _surface_samples(a), _surface_samples(b)
    diff = pa[:, None, :] - pb[None, :, :]
    return float(np.sqrt((diff ** 2).sum(-1)).min())


def test_axis_aligned_gap_is_per_axis_clearance():
    a = Box3D("a", [0, 0, 1], [0.2, 0.2, 0.2])
    b = Box3D("b", [0.5, 0.1, 1.4], [0.2, 0.1, 0.2])
    # x gap 0.5 - 0.2 = 0.3; y overlaps; z gap 0.4 - 0.2 = 0.2
    assert surface_distance(a, b) == pytest.approx(math.sqrt(0.3 ** 2 + 0.2 ** 2))
    assert surface_distance(b, a) == pytest.approx(math.sqrt(0.3 ** 2 + 0.2 ** 2))


def test_touching_and_overlapping_boxes_are_zero_apart():
    a = Box3D("a", [0, 0, 1], [0.2, 0.2, 0.2])
    assert surface_distance(a, Box3D("b", [0.2, 0, 1], [0.2, 0.2, 0.2])) == 0.0
    assert surface_distance(a, Box3D("c", [0.05, 0.05, 1.05], [0.2, 0.2, 0.2])) == 0.0


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=6, max_size=6), st.lists(st.floats(0.05, 0.4), min_size=6, max_size=6),
       st.floats(-math.pi, math.pi), st.floats(-math.pi, math.pi))
def test_yawed_surface_distance_matches_sampling(centres, sizes, yaw_a, yaw_b):
    a = Box3D("a", centres[:3], sizes[:3], yaw=yaw_a)
    b = Box3D("b", centres[3:], sizes[3:], yaw=yaw_b)
    exact = surface_distance(a, b)
    sampled = _sampled_distance(a, b)
    # samples are 1/15 of an edge apart (< 2.7 cm for 0.4 m edges): the sampled distance is at most that much
    # larger, and never smaller unless the boxes overlap (then the exact answer is 0)
    grid = 0.4 / 15 * math.sqrt(2)
    if exact > 0:
        assert exact <= sampled + 1e-9
    assert sampled - exact <= grid * 2 + 1e-9 or exact == 0.0


def test_viewer_frame_without_gravity_is_the_camera():
    f = viewer_frame(None)
    assert np.allclose(f.coords([1.0, 2.0, 3.0]), [1.0, -2.0, 3.0])


@given(st.floats(0.05, 1.2))
def test_viewer_frame_from_tilted_table_normal(pitch):
    # camera pitched down by `pitch`: world up seen in optical coordinates is (0, -cos, -sin)
    up = np.array([0.0, -math.cos(pitch), -math.sin(pitch)])
    f = viewer_frame(up * 3.0)  # any length
    assert np.allclose(f.up, up)
    assert np.allclose(f.right, [1, 0, 0])
    # forward is horizontal, away from the camera: the optical axis rotated up by the pitch
    assert np.allclose(f.forward, [0.0, -math.sin(pitch), math.cos(pitch)])


def test_viewer_frame_rejects_degenerate_up():
    with pytest.raises(InputError):
        viewer_frame([0, 0, 0])
    with pytest.raises(InputError):
        viewer_frame([0, float("inf"), 0])


@pytest.mark.parametrize("tilt_deg", (-5.0, -1.0, 0.0, 1.0, 5.0))
def test_viewer_frame_looking_straight_down_faces_the_image_top(tilt_deg):
    # optical z (nearly) along -up: forward is the image's up (-y optical) made horizontal, right is +x
    t = math.radians(tilt_deg)
    up = np.array([0.0, math.sin(t), -math.cos(t)])
    f = viewer_frame(up)
    # -y made horizontal: (0, -1, 0) + sin t * up, normalised by cos t
    assert np.allclose(f.forward, [0.0, -math.cos(t), -math.sin(t)])
    assert np.allclose(f.right, [1.0, 0.0, 0.0])
    assert abs(f.forward @ up) < 1e-12


@pytest.mark.parametrize("right, forward, hour", [
    (0.0, 1.0, 12), (-1.0, 0.0, 9), (1.0, 0.0, 3), (0.0, -1.0, 6),
    (-1.0, 1.0, 11),   # 45 deg to the left: 12 - 45 // 30 = 11
    (1.0, 1.0, 2),     # 45 deg to the right is 315 deg: 12 - 10 = 2 (floor bins, N3D-Bench)
    (-0.1, 1.0, 12),   # 5.7 deg left stays in the 12 o'clock bin
    (0.1, 1.0, 1),     # 5.7 deg right is 354 deg: 1 o'clock
    (-1.0, -1.0, 8),   # 135 deg
])
def test_clock_positions(right, forward, hour):
    f = viewer_frame(None)
    origin = np.array([0.2, 0.1, 1.0])
    # optical x is right, optical z is forward when there is no pitch
    target = origin + np.array([right, 0.05, forward])
    assert clock_position(f, origin, target)[0] == hour


def test_clock_uses_ground_plane_not_image_height():
    # camera pitched down 40 deg; B is straight ahead of A on the table (farther away): 12 o'clock.
    pitch = math.radians(40)
    up = np.array([0.0, -math.cos(pitch), -math.sin(pitch)])
    forward = np.array([0.0, -math.sin(pitch), math.cos(pitch)])
    a = np.array([0.0, 0.3, 1.0])
    b = a + 0.4 * forward
    assert clock_position(viewer_frame(up), a, b)[0] == 12
    with pytest.raises(InputError):
        clock_position(viewer_frame(up), a, a + 0.2 * up)  # straight above: no ground direction
