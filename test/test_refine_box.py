"""Box refinement from measured depth, the support plane fit and the completion of hidden extents."""

import math
from dataclasses import replace

import numpy as np
import pytest

from n3d_ros.backends.refine import SupportPlane, complete_box, fit_support_plane, refine_box
from n3d_ros.core.boxes import iou_3d
from n3d_ros.core.camera import backproject_depth
from n3d_ros.core.scene import make_scene
from n3d_ros.core.types import Box3D, InputError


@pytest.fixture(scope="module")
def scene():
    return make_scene(5)


def test_support_plane_matches_the_table(scene):
    points = backproject_depth(scene.frame.depth, scene.frame.camera)
    plane = fit_support_plane(points[np.isfinite(scene.frame.depth)])
    angle = math.degrees(math.acos(min(1.0, float(plane.normal @ scene.table_normal))))
    assert angle < 0.5
    assert plane.offset == pytest.approx(scene.table_offset, abs=0.003)
    assert 0 < plane.noise_m < 0.005 and plane.inlier_fraction > 0.3


def test_no_plane_among_too_few_points():
    assert fit_support_plane(np.zeros((10, 3))) is None


@pytest.mark.parametrize("seed", [5, 9])
def test_perturbed_ground_truth_is_pulled_back(seed):
    scene = make_scene(seed)
    rng = np.random.default_rng(seed)
    for truth in scene.objects:
        shift = rng.normal(0.0, 0.02, 3)
        guess = replace(truth, center=truth.center + shift, size=truth.size * rng.uniform(0.8, 1.25, 3))
        refined, report = refine_box(guess, scene.frame)
        assert iou_3d(refined, truth) > max(0.75, iou_3d(guess, truth)), truth.label
        assert np.linalg.norm(refined.center - truth.center) < 0.015
        # the report describes the move it made
        assert report.moved_m == pytest.approx(np.linalg.norm(refined.center - guess.center))
        assert report.size_change_m == pytest.approx((refined.size - guess.size).tolist())
        assert report.points_used >= 30 and report.plane_used
        assert report.method == ("sphere" if truth.attributes["shape"] == "sphere" else "prism")
        assert refined.label == guess.label and refined.id == guess.id
        assert refined.attributes == guess.attributes and refined.attributes is not guess.attributes


def test_box_out_of_view_is_kept_and_reported(scene):
    behind = Box3D("ghost", [0.0, 0.0, -1.0], [0.1, 0.1, 0.1])
    refined, report = refine_box(behind, scene.frame)
    assert refined is behind and report.method == "kept" and report.moved_m == 0.0
    assert "not in the image" in report.message


def test_box_over_empty_table_is_kept_and_reported(scene):
    # a box floating high above every object: no points near it once the table is removed
    up = scene.table_normal
    far_corner = -scene.table_offset * up + 0.6 * up  # 0.6 m above the table, under the camera's gaze
    empty = Box3D("air", far_corner + np.array([0.0, 0.0, 0.4]), [0.05, 0.05, 0.05])
    refined, report = refine_box(empty, scene.frame)
    assert refined is empty and report.method == "kept" and report.message


def test_without_a_plane_the_box_is_the_visible_extent(scene):
    truth = scene.objects[0]
    refined, report = refine_box(truth, scene.frame, plane=None)
    assert report.method == "visible" and not report.plane_used
    # visible points only: the box cannot reach behind the visible surface by less than the prior depth
    assert refined.size[2] >= truth.size[2] - 1e-9


def test_bad_plane_argument_is_refused(scene):
    with pytest.raises(InputError, match="plane must be"):
        refine_box(scene.objects[0], scene.frame, plane="table")


def _sphere_points(centre, radius, n=2000, seed=0):
    """Points on the camera-facing half of a sphere (normals with negative optical z)."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d[:, 2] = -np.abs(d[:, 2])
    return np.asarray(centre) + radius * d


def test_completion_of_a_sphere_resting_on_a_plane():
    # horizontal table 0.5 m below the camera (optical y down): up = -y, plane y = 0.5
    plane = SupportPlane(normal=np.array([0.0, -1.0, 0.0]), offset=0.5, inlier_fraction=1.0, noise_m=0.001,
                         noise_depth_m=1.0)
    centre = np.array([0.1, 0.5 - 0.04, 0.9])
    points = _sphere_points(centre, 0.04)
    points = points[plane.height(points) > 0.012]
    fitted = complete_box(points, plane)
    assert fitted.method == "sphere" and fitted.shape == "sphere"
    assert np.allclose(fitted.center, centre, atol=1e-3) and np.allclose(fitted.size, 0.08, atol=2e-3)


def test_completion_of_a_cube_seen_from_the_front_and_top():
    plane = SupportPlane(normal=np.array([0.0, -1.0, 0.0]), offset=0.5, inlier_fraction=1.0)
    rng = np.random.default_rng(1)
    # a 10 cm cube on the table: visible top face (y = 0.4) and front face (z = 0.85); hidden back at z = 0.95
    top = np.column_stack([rng.uniform(-0.05, 0.05, 800), np.full(800, 0.4), rng.uniform(0.85, 0.95, 800)])
    front = np.column_stack([rng.uniform(-0.05, 0.05, 800), rng.uniform(0.4, 0.488, 800), np.full(800, 0.85)])
    fitted = complete_box(np.vstack([top, front]), plane)
    assert fitted.method == "prism" and fitted.shape is None
    expected = Box3D("cube", [0.0, 0.45, 0.9], [0.1, 0.1, 0.1])
    assert iou_3d(Box3D("fit", fitted.center, fitted.size), expected) > 0.95


def test_too_few_points_is_an_input_error():
    with pytest.raises(InputError, match="too few"):
        complete_box(np.zeros((5, 3)), None)


def test_report_serialises():
    scene = make_scene(2)
    _, report = refine_box(scene.objects[0], scene.frame)
    payload = report.to_dict()
    assert set(payload) >= {"moved_m", "size_change_m", "points_used", "method", "plane_used"}
