"""The N3D point map (spec 1.1-1.3, 1.6, 7.2) against independent arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from n3d_ros.core.pointmap import (assert_layout_matches, build_point_map, processor_grid, target_size)
from n3d_ros.core.scene import make_scene
from n3d_ros.core.types import InputError, PinholeCamera, RGBDFrame


def _frame(depth, fx=615.0, fy=615.0, cx=None, cy=None, distortion=()):
    depth = np.asarray(depth, dtype=np.float32)
    h, w = depth.shape
    cam = PinholeCamera(width=w, height=h, fx=fx, fy=fy, cx=(w - 1) / 2 if cx is None else cx,
                        cy=(h - 1) / 2 if cy is None else cy, distortion=tuple(distortion))
    color = (np.indices((h, w)).sum(0) % 256).astype(np.uint8)[:, :, None].repeat(3, 2)
    return RGBDFrame(color=color, depth=depth, camera=cam)


def _reference_metric(depth_map, intr_n):
    """Per-pixel metric N3D points via the inverse normalised K matrix (spec 5.4 form), NaN where no depth."""
    fx_n, fy_n, cx_n, cy_n = intr_n
    h, w = depth_map.shape
    k_inv = np.linalg.inv(np.array([[fx_n, 0, cx_n], [0, fy_n, cy_n], [0, 0, 1.0]]))
    i, j = np.indices((h, w))
    uv1 = np.stack([(j + 0.5) / w, (i + 0.5) / h, np.ones((h, w))], -1)
    optical = (uv1 @ k_inv.T) * depth_map[..., None].astype(np.float64)
    return (optical * [-1.0, -1.0, 1.0]).reshape(-1, 3)


@pytest.fixture(scope="module")
def scene_inputs():
    scene = make_scene(5)
    return scene, build_point_map(scene.frame)


def test_sizes_and_grids_of_the_spec_table():
    assert target_size(640, 480) == (640, 480)
    assert target_size(769, 512) == (640, 426)
    assert target_size(1024, 683) == (640, 426)
    assert target_size(767, 1023) == (479, 640)
    assert processor_grid(640, 480) == (34, 46)
    assert processor_grid(640, 426) == (30, 46)
    assert processor_grid(479, 640) == (46, 34)
    assert processor_grid(640, 640) == (46, 46)
    grid = processor_grid(640, 426)
    assert grid[0] * grid[1] // 4 == 345


def test_points_match_inverse_intrinsics_and_normalisation_definition(scene_inputs):
    scene, inputs = scene_inputs
    H, W = inputs.map_hw
    assert inputs.points.shape == (H * W, 4) and inputs.points.dtype == np.float32
    valid = inputs.points[:, 3] > 0
    assert set(np.unique(inputs.points[:, 3])) <= {0.0, 1.0}
    metric = _reference_metric(inputs.depth, inputs.intrinsics_n)[valid]
    shift0 = np.array([metric[:, a].min() for a in range(3)])
    scaling = 1.0 / np.linalg.norm(metric - shift0, axis=1).mean()
    assert np.allclose(inputs.shift0, shift0, rtol=0, atol=2e-6)
    assert inputs.scaling == pytest.approx(scaling, rel=1e-6)
    assert np.allclose(inputs.points[valid, :3], (metric - shift0) * scaling, atol=2e-6)
    assert np.all(inputs.points[~valid, :3] == 0)
    normed = inputs.points[valid, :3].astype(np.float64)
    assert np.allclose(normed.min(axis=0), 0.0, atol=1e-6)
    assert np.linalg.norm(normed, axis=1).mean() == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(inputs.metric_points_n3d()[valid], metric, atol=2e-6)


def test_frame_signs_and_reprojection_to_half_pixel_centres():
    # the spec's demo3 normalised intrinsics on its 480x640 portrait map, flat wall at 3 m
    fx_n, fy_n = 2.4436, 1.8327
    W, H = 480, 640
    frame = _frame(np.full((H, W), 3.0), fx=fx_n * W, fy=fy_n * H, cx=0.5 * W - 0.5, cy=0.5 * H - 0.5)
    inputs = build_point_map(frame)
    assert inputs.map_hw == (640, 480) and inputs.image.size == (480, 640)
    assert np.allclose(inputs.intrinsics_n, (fx_n, fy_n, 0.5, 0.5))
    metric = inputs.metric_points_n3d().reshape(H, W, 3)
    assert np.all(metric[:, 0, 0] > 0) and np.all(metric[:, -1, 0] < 0)  # left columns: x > 0 (x left)
    assert np.all(metric[0, :, 1] > 0) and np.all(metric[-1, :, 1] < 0)  # top rows: y > 0 (y up)
    X, Y, Z = -metric[..., 0], -metric[..., 1], metric[..., 2]
    u, v = fx_n * X / Z + 0.5, fy_n * Y / Z + 0.5
    j, i = np.meshgrid(np.arange(W), np.arange(H))
    assert np.allclose(u * W, j + 0.5, atol=1e-4) and np.allclose(v * H, i + 0.5, atol=1e-4)
    assert inputs.valid_fraction == 1.0
    assert_layout_matches(inputs.map_hw, processor_grid(*inputs.image.size))


def test_resize_is_nearest_and_image_is_lanczos_truncated():
    depth = np.where(np.indices((720, 1280)).sum(0) % 7 < 3, 1.0, 2.0)
    depth[100:140, 200:260] = np.nan
    frame = _frame(depth, fx=900.0, fy=900.0, cx=640.3, cy=359.1)
    inputs = build_point_map(frame, filter_outliers=False)
    assert inputs.map_hw == (360, 640)
    assert set(np.unique(inputs.depth[np.isfinite(inputs.depth)])) == {1.0, 2.0}  # never blended
    expected = np.asarray(Image.fromarray(frame.color).resize((640, 360), Image.LANCZOS))
    assert np.array_equal(np.asarray(inputs.image), expected)
    # nearest at pixel centres: map pixel (i, j) reads source (floor((i+.5)*2), floor((j+.5)*2)) = (2i+1, 2j+1)
    assert np.array_equal(inputs.depth, depth[1::2, 1::2].astype(np.float32), equal_nan=True)
    # normalised intrinsics are those of the source (resolution independent, spec 1.6 step 3)
    assert np.allclose(inputs.intrinsics_n, (900 / 1280, 900 / 720, 640.8 / 1280, 359.6 / 720))


@pytest.mark.parametrize("source_wh", [(640, 631), (640, 635), (640, 639), (1280, 1268), (800, 790)])
def test_short_side_631_to_639_is_cropped_to_630(source_wh):
    W0, H0 = source_wh
    _, h_full = target_size(W0, H0)
    assert 631 <= h_full <= 639
    with pytest.raises(InputError, match="scramble"):
        assert_layout_matches((h_full, 640), processor_grid(640, h_full))
    cam_cx, cam_cy = W0 / 2 + 3.3, H0 / 2 - 7.1
    frame = _frame(np.full((H0, W0), 2.0), fx=0.9 * W0, fy=0.9 * W0, cx=cam_cx, cy=cam_cy)
    inputs = build_point_map(frame)
    assert inputs.map_hw == (630, 640) and inputs.image.size == (640, 630)
    top, bottom = inputs.crop_rows
    assert top + bottom == h_full - 630 and abs(top - bottom) <= 1
    assert_layout_matches(inputs.map_hw, processor_grid(*inputs.image.size))
    # every map pixel back-projects onto the source ray through its pixel centre: OpenCV pixel of map (i, j) is
    # ((j + .5) * W0 / 640 - .5, (i + top + .5) * H0 / h_full - .5)
    metric = inputs.metric_points_n3d().reshape(630, 640, 3)
    X, Y, Z = -metric[..., 0], -metric[..., 1], metric[..., 2]
    u_px, v_px = 0.9 * W0 * X / Z + cam_cx, 0.9 * W0 * Y / Z + cam_cy
    j, i = np.meshgrid(np.arange(640), np.arange(630))
    assert np.allclose(u_px, (j + 0.5) * W0 / 640 - 0.5, atol=2e-3)
    assert np.allclose(v_px, (i + top + 0.5) * H0 / h_full - 0.5, atol=2e-3)


def test_square_and_portrait_layouts():
    for w, h in [(640, 640), (480, 640), (767, 1023), (720, 1280)]:
        inputs = build_point_map(_frame(np.full((h, w), 1.5)))
        assert max(inputs.map_hw) == 640 and inputs.map_hw[0] == 640
        assert_layout_matches(inputs.map_hw, processor_grid(*inputs.image.size))
    with pytest.raises(InputError, match="640 wide"):
        assert_layout_matches((480, 630), (34, 45))


def test_no_valid_point_is_refused():
    with pytest.raises(InputError, match="no valid depth"):
        build_point_map(_frame(np.full((48, 64), np.nan)))
    with pytest.raises(InputError, match="no valid depth"):
        build_point_map(_frame(np.full((48, 64), 12.0)), max_range_m=10.0)
    with pytest.raises(InputError, match="no valid depth"):
        build_point_map(_frame(np.full((48, 64), 0.05)), min_range_m=0.1)
    with pytest.raises(InputError, match="range"):
        build_point_map(_frame(np.full((48, 64), 1.0)), min_range_m=2.0, max_range_m=1.0)


def test_range_limits_are_inclusive_and_drop_outside():
    depth = np.full((48, 64), 1.0)
    depth[:, :8] = 0.05
    depth[:, -8:] = 20.0
    inputs = build_point_map(_frame(depth), filter_outliers=False)
    mask = (inputs.points[:, 3] > 0).reshape(inputs.map_hw)
    valid_src = (depth >= 0.1) & (depth <= 10.0)
    assert mask.mean() == pytest.approx(valid_src.mean(), abs=0.02)
    assert np.nanmin(inputs.depth) == 1.0


def test_outlier_filter_removes_speckles_and_flying_pixels_but_keeps_surfaces():
    clean = make_scene(9, noise=False)
    base = build_point_map(clean.frame)
    assert base.valid_fraction > 0.97  # the filter does not eat clean surfaces
    depth = clean.frame.depth.copy()
    edges = np.argwhere(np.abs(np.diff(np.nan_to_num(depth), axis=1)) > 0.1)[:200]
    for i, j in edges:      # flying pixels half-way between foreground and background
        depth[i, j] = 0.5 * (depth[i, j] + depth[i, j + 1])
    depth[200, 300] = 0.2   # a near speckle: would become the new z minimum
    depth[50, 60] = 9.0     # a far speckle
    frame = RGBDFrame(color=clean.frame.color, depth=depth, camera=clean.frame.camera)
    dirty = build_point_map(frame, filter_outliers=False)
    filtered = build_point_map(frame)
    assert dirty.shift0[2] == pytest.approx(0.2, abs=1e-6)
    assert filtered.shift0 == pytest.approx(base.shift0, abs=1e-3)
    assert filtered.scaling == pytest.approx(base.scaling, rel=2e-3)
    flat = filtered.depth
    assert np.isnan(flat[200, 300]) and np.isnan(flat[50, 60])
    assert np.mean([np.isnan(flat[i, j]) for i, j in edges]) > 0.9


def test_noisy_scene_filter_keeps_most_points(scene_inputs):
    _, inputs = scene_inputs
    assert 0.85 < inputs.valid_fraction < 1.0


def test_distortion_is_undistorted_or_refused():
    frame = _frame(np.full((48, 64), 1.0), fx=60.0, fy=60.0, distortion=(0.1, -0.05, 0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="distortion"):
        build_point_map(frame, undistort=False)
    inputs = build_point_map(frame)
    assert inputs.undistorted and inputs.map_hw == (480, 640)


def test_float16_option_rounds_like_the_official_npz(scene_inputs):
    scene, inputs = scene_inputs
    rounded = build_point_map(scene.frame, match_float16=True)
    metric = inputs.metric_points_n3d()
    valid = np.isfinite(metric[:, 0])
    got = rounded.metric_points_n3d()[valid]
    # every metric value is (to float32 normalisation error) a float16 number, within one float16 step of ours
    assert np.allclose(got, got.astype(np.float16).astype(np.float64), rtol=1e-6, atol=1e-6)
    assert np.allclose(got, metric[valid], rtol=2.0**-10, atol=1e-6)
    assert not np.allclose(rounded.points, inputs.points, atol=1e-6, rtol=0)


@settings(max_examples=25, deadline=None)
@given(st.integers(200, 1400), st.integers(200, 1400), st.floats(0.6, 1.4), st.floats(0.3, 0.7),
       st.floats(0.3, 0.7), st.integers(0, 2**32 - 1))
@example(552, 824, 1.0, 0.5, 0.5, 0)  # a map pixel centre exactly on a source pixel boundary (j = 53)
def test_any_frame_size_maps_back_to_its_source_pixels(w0, h0, focal, px, py, seed):
    """Property: for any frame size and intrinsics, every valid map pixel lies on the source camera ray through
    the source pixel its depth was taken from (nearest at centres), and the layout suits the model."""
    depth = np.random.default_rng(seed).uniform(0.5, 4.0, size=(h0, w0)).astype(np.float32)
    cam_cx, cam_cy = px * w0, py * h0
    frame = _frame(depth, fx=focal * w0, fy=focal * w0, cx=cam_cx, cy=cam_cy)
    inputs = build_point_map(frame, filter_outliers=False)
    H, W = inputs.map_hw
    assert max(H, W) == 640 and inputs.image.size == (W, H)
    assert_layout_matches(inputs.map_hw, processor_grid(W, H))
    w_t, h_full = target_size(w0, h0)
    top = inputs.crop_rows[0]
    metric = inputs.metric_points_n3d().reshape(H, W, 3)
    X, Y, Z = -metric[..., 0], -metric[..., 1], metric[..., 2]
    u_px, v_px = focal * w0 * X / Z + cam_cx, focal * w0 * Y / Z + cam_cy
    j, i = np.meshgrid(np.arange(W), np.arange(H))
    assert np.allclose(u_px, (j + 0.5) * w0 / W - 0.5, atol=1e-3)
    assert np.allclose(v_px, (i + top + 0.5) * h0 / h_full - 0.5, atol=1e-3)
    src_i = np.minimum(((i + top + 0.5) * h0 / h_full).astype(int), h0 - 1)
    src_j = np.minimum(((j + 0.5) * w0 / W).astype(int), w0 - 1)
    assert np.array_equal(inputs.depth, depth[src_i, src_j])
