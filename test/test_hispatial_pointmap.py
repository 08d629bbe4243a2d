"""HiSpatial point map from aligned depth + CameraInfo, against independent computation (hispatial-spec 2)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from n3d_ros.core.types import InputError, PinholeCamera, RGBDFrame
from n3d_ros.hispatial.pointmap import (CLAMP_M, SIZE, build_xyz_inputs, clamp_xyz, legacy_nearest_indices)

CAM = PinholeCamera(width=640, height=480, fx=615.0, fy=610.0, cx=318.5, cy=243.25)


def _frame(depth, camera=CAM, color=None):
    h, w = depth.shape
    if color is None:
        color = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return RGBDFrame(color=color, depth=depth.astype(np.float32), camera=camera)


def _ramp_depth(h=480, w=640):
    rows, cols = np.mgrid[0:h, 0:w]
    return 0.5 + 0.002 * rows + 0.001 * cols  # every pixel distinct, 0.5 .. 2.1 m


@pytest.mark.parametrize("source", [480, 640, 720, 1280, 300, 448, 449])
def test_indices_match_cv2_inter_nearest(source):
    index_image = np.tile(np.arange(source, dtype=np.float32)[:, None], (1, 3))
    resized = cv2.resize(index_image, (3, SIZE), interpolation=cv2.INTER_NEAREST)[:, 0]
    assert np.array_equal(legacy_nearest_indices(source), resized.astype(np.int64))


def test_values_at_chosen_pixels():
    depth = _ramp_depth()
    inputs = build_xyz_inputs(_frame(depth), min_range_m=0.1, max_range_m=10.0)
    assert inputs.xyz.shape == (4, SIZE, SIZE) and inputs.xyz.dtype == np.float32
    for i, j in [(0, 0), (100, 200), (223, 224), (447, 447), (300, 13)]:
        row, col = math.floor(i * 480 / 448), math.floor(j * 640 / 448)  # top-left-biased legacy nearest
        z = 0.5 + 0.002 * row + 0.001 * col
        expected = [(col - 318.5) * z / 615.0, (row - 243.25) * z / 610.0, z, 1.0]
        np.testing.assert_allclose(inputs.xyz[:, i, j], expected, rtol=1e-6, atol=1e-7)


def test_same_as_reference_order_full_backprojection_then_cv2_resize():
    depth = _ramp_depth()
    depth[100:140, 300:360] = np.nan
    inputs = build_xyz_inputs(_frame(depth), max_range_m=2.0)
    cols, rows = np.meshgrid(np.arange(640), np.arange(480))
    valid = np.isfinite(depth) & (depth > 0.1) & (depth < 2.0)
    z = np.where(valid, depth, 0.0)
    planes = [(cols - CAM.cx) * z / CAM.fx, (rows - CAM.cy) * z / CAM.fy, z]
    xyz = np.stack([cv2.resize(p.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) for p in planes])
    mask = cv2.resize(valid.astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_allclose(inputs.xyz[:3], xyz, rtol=1e-6, atol=1e-6)
    assert np.array_equal(inputs.xyz[3], mask.astype(np.float32))
    assert inputs.valid_fraction == pytest.approx(mask.mean())


def test_invalid_pixels_are_zero_with_mask_zero():
    depth = _ramp_depth()
    depth[0:10, :] = np.nan   # no reading
    depth[:, 0:10] = 0.0      # 16UC1 zero
    depth[-10:, :] = 12.0     # beyond max_range
    depth[223, 300] = np.inf
    inputs = build_xyz_inputs(_frame(depth), max_range_m=10.0)
    # (0, 200) reads row 0 (NaN), (200, 0) column 0 (zero), (447, 200) row 478 (12 m), (209, 210) pixel (200, 300)
    for i, j in [(0, 200), (200, 0), (447, 200), (209, 210)]:
        assert (math.floor(i * 480 / 448), math.floor(j * 640 / 448)) in {(0, 285), (214, 0), (478, 285), (223, 300)}
        assert inputs.xyz[:, i, j].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert np.all(np.isfinite(inputs.xyz))


def test_clamp_is_one_sided():
    values = np.array([np.nan, np.inf, -np.inf, 300.0, 250.0, -300.0, 1.5], dtype=np.float32)
    clamp_xyz(values)
    assert values.tolist() == [250.0, 250.0, 250.0, 250.0, 250.0, -300.0, 1.5]


def test_far_wide_points_clamp_x_above_250_only():
    camera = PinholeCamera(width=64, height=48, fx=20.0, fy=20.0, cx=31.5, cy=23.5)
    inputs = build_xyz_inputs(_frame(np.full((48, 64), 200.0), camera), max_range_m=249.0)
    x = inputs.xyz[0]
    assert x.max() == CLAMP_M  # (63 - 31.5) * 200 / 20 = 315 -> 250
    assert x.min() == pytest.approx((0 - 31.5) * 200 / 20)  # -315 stays


def test_optical_frame_signs():
    inputs = build_xyz_inputs(_frame(np.full((480, 640), 2.0)))
    upper_right = inputs.xyz[:, 50, 400]
    assert upper_right[0] > 0 and upper_right[1] < 0 and upper_right[2] == pytest.approx(2.0)


def test_colour_is_bilinear_squash_in_rgb():
    color = np.zeros((480, 640, 3), dtype=np.uint8)
    color[..., 0] = 200  # red
    color[:, 320:, 2] = 90
    inputs = build_xyz_inputs(_frame(_ramp_depth(), color=color))
    assert inputs.rgb.shape == (SIZE, SIZE, 3) and inputs.rgb.dtype == np.uint8
    assert np.array_equal(inputs.rgb, cv2.resize(color, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR))
    assert inputs.rgb[10, 10].tolist() == [200, 0, 0]


def test_distorted_camera_is_undistorted_or_refused():
    camera = PinholeCamera(width=640, height=480, fx=615.0, fy=610.0, cx=318.5, cy=243.25,
                           distortion_model="plumb_bob", distortion=(0.1, -0.05, 0.0, 0.0, 0.0))
    frame = _frame(np.full((480, 640), 1.0), camera)
    assert build_xyz_inputs(frame).undistorted
    with pytest.raises(InputError, match="distortion"):
        build_xyz_inputs(frame, undistort=False)


def test_no_valid_depth_is_a_clear_error():
    with pytest.raises(InputError, match="no depth reading"):
        build_xyz_inputs(_frame(np.full((480, 640), np.nan)))
    with pytest.raises(InputError, match="range"):
        build_xyz_inputs(_frame(_ramp_depth()), min_range_m=2.0, max_range_m=1.0)
