"""Camera model: CameraInfo validation, distortion policy, resize/crop, (un)projection, undistortion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from n3d_ros.core.camera import (backproject_depth, backproject_normalized, camera_from_info, crop_camera,
                                 project_normalized, project_pixels, resize_camera, undistort_frame)
from n3d_ros.core.types import InputError, PinholeCamera, RGBDFrame

K640 = [615.0, 0.0, 321.3, 0.0, 614.0, 238.7, 0.0, 0.0, 1.0]


def test_camera_from_info_reads_k_and_keeps_frame_and_distortion():
    cam = camera_from_info(640, 480, K640, d=[0.0] * 5, frame_id="cam_optical")
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (615.0, 614.0, 321.3, 238.7)
    assert cam.frame_id == "cam_optical" and cam.distortion == (0.0,) * 5
    assert camera_from_info(640, 480, K640, d=(0.0,) * 4, distortion_model="some_model").distortion_model == "some_model"
    assert camera_from_info(640, 480, np.array(K640).reshape(3, 3)).fx == 615.0


@pytest.mark.parametrize("kwargs,message", [
    (dict(k=K640[:8]), "9 finite"),
    (dict(k=[0.0] + K640[1:]), "positive"),
    (dict(k=K640[:4] + [-1.0] + K640[5:]), "positive"),
    (dict(k=[615.0, 2.0] + K640[2:]), "no skew"),
    (dict(k=K640[:8] + [2.0]), "no skew"),
    (dict(k=K640[:2] + [700.0] + K640[3:]), "outside"),
    (dict(k=K640[:5] + [-3.0] + K640[6:]), "outside"),
    (dict(k=[float("nan")] + K640[1:]), "finite"),
    (dict(width=0), "positive"),
    (dict(d=[0.1, 0, 0, 0, 0], distortion_model="fancy"), "cannot be undistorted"),
    (dict(d=[0.1, 0, 0], distortion_model="plumb_bob"), "coefficients"),
    (dict(d=[0.1, 0, 0, 0, 0], distortion_model="equidistant"), "coefficients"),
    (dict(d=[float("inf")] * 5), "finite"),
])
def test_camera_from_info_refusals(kwargs, message):
    args = dict(width=640, height=480, k=K640)
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        camera_from_info(args.pop("width"), args.pop("height"), args.pop("k"), **args)


@settings(max_examples=50)
@given(st.integers(100, 4000), st.integers(100, 4000), st.integers(50, 2000), st.integers(50, 2000),
       st.floats(0.05, 0.95), st.floats(0.05, 0.95), st.floats(-2, 2), st.floats(-2, 2), st.floats(0.5, 10))
def test_resize_keeps_rays_through_pixel_centres(w0, h0, w1, h1, px, py, x, y, z):
    cam = PinholeCamera(width=w0, height=h0, fx=0.9 * w0, fy=0.8 * w0, cx=px * w0, cy=py * h0)
    small = resize_camera(cam, w1, h1)
    assert np.allclose(small.normalized_intrinsics(), cam.normalized_intrinsics())
    u0, v0 = project_pixels([x, y, z], cam)
    u1, v1 = project_pixels([x, y, z], small)
    # the same ray crosses pixel u0 of the source and ((u0 + 0.5) * w1 / w0 - 0.5) of the resized image
    assert u1 == pytest.approx((u0 + 0.5) * w1 / w0 - 0.5) and v1 == pytest.approx((v0 + 0.5) * h1 / h0 - 0.5)


def test_crop_shifts_the_principal_point_and_checks_bounds():
    cam = camera_from_info(640, 480, K640)
    crop = crop_camera(cam, 10, 5, 600, 470)
    p = np.array([0.3, -0.2, 1.7])
    assert np.allclose(np.subtract(project_pixels(p, cam), project_pixels(p, crop)), (10, 5))
    with pytest.raises(InputError, match="does not fit"):
        crop_camera(cam, 50, 0, 600, 480)
    with pytest.raises(InputError, match="positive"):
        resize_camera(cam, 0, 10)


@given(st.floats(-0.5, 1.5), st.floats(-0.5, 1.5), st.floats(0.05, 20),
       st.tuples(st.floats(0.3, 3), st.floats(0.3, 3), st.floats(0.2, 0.8), st.floats(0.2, 0.8)))
def test_normalised_backprojection_round_trip_and_matrix_form(u, v, z, intr):
    X, Y, Z = backproject_normalized(u, v, z, intr)
    fx_n, fy_n, cx_n, cy_n = intr
    expected = z * np.linalg.solve(np.array([[fx_n, 0, cx_n], [0, fy_n, cy_n], [0, 0, 1.0]]), [u, v, 1.0])
    assert np.allclose([X, Y, Z], expected, rtol=1e-9, atol=1e-9)
    uu, vv = project_normalized([X, Y, Z], intr)
    assert uu == pytest.approx(u, abs=1e-9) and vv == pytest.approx(v, abs=1e-9)


def test_normalised_and_pixel_projection_agree_with_half_pixel_centres():
    cam = camera_from_info(640, 480, K640)
    p = np.array([[0.1, 0.2, 1.0], [-0.4, 0.3, 2.5]])
    u_px, v_px = project_pixels(p, cam)
    u_n, v_n = project_normalized(p, cam.normalized_intrinsics())
    assert np.allclose(u_n * 640, u_px + 0.5) and np.allclose(v_n * 480, v_px + 0.5)
    with pytest.raises(InputError, match="behind"):
        project_normalized([0.0, 0.0, 0.0], cam.normalized_intrinsics())
    with pytest.raises(InputError, match="behind"):
        project_pixels([0.0, 0.0, -1.0], cam)


def test_backproject_depth_matches_per_pixel_formula():
    cam = PinholeCamera(width=5, height=4, fx=3.0, fy=2.5, cx=2.2, cy=1.4)
    depth = np.arange(20, dtype=np.float64).reshape(4, 5) / 7 + 0.5
    depth[1, 2] = np.nan
    pts = backproject_depth(depth, cam)
    for i in range(4):
        for j in range(5):
            z = depth[i, j]
            ref = [(j - 2.2) * z / 3.0, (i - 1.4) * z / 2.5, z]
            assert np.allclose(pts[i, j], ref, equal_nan=True)
    with pytest.raises(InputError, match="does not match"):
        backproject_depth(depth.T, cam)


def _blob_frame(cam, centre_px, value):
    depth = np.full((cam.height, cam.width), 2.0, np.float32)
    color = np.zeros((cam.height, cam.width, 3), np.uint8)
    j, i = int(round(centre_px[0])), int(round(centre_px[1]))
    depth[i - 3:i + 4, j - 3:j + 4] = value
    color[i - 3:i + 4, j - 3:j + 4] = (255, 0, 0)
    return RGBDFrame(color=color, depth=depth, camera=cam)


@pytest.mark.parametrize("model,d", [("plumb_bob", (-0.3, 0.1, 0.001, -0.002, 0.0)),
                                     ("rational_polynomial", (-0.3, 0.1, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0)),
                                     ("equidistant", (-0.2, 0.05, 0.0, 0.0))])
def test_undistort_moves_a_blob_to_its_pinhole_pixel(model, d):
    cam = camera_from_info(640, 480, K640, d=d, distortion_model=model)
    point = np.array([[[0.35, -0.25, 1.0]]])
    ideal = project_pixels(point[0, 0], cam)
    if model == "equidistant":
        distorted = cv2.fisheye.projectPoints(point, np.zeros(3), np.zeros(3), cam.K, np.array(d))[0][0, 0]
    else:
        distorted = cv2.projectPoints(point, np.zeros(3), np.zeros(3), cam.K, np.array(d))[0][0, 0]
    assert np.hypot(*(np.array(distorted) - ideal)) > 5  # the test means something
    fixed = undistort_frame(_blob_frame(cam, distorted, 1.234))
    assert fixed.camera.distortion == (0.0,) * len(d) and fixed.camera.fx == cam.fx
    j, i = int(round(ideal[0])), int(round(ideal[1]))
    assert fixed.depth[i, j] == np.float32(1.234)  # nearest: the exact value, not a blend
    assert tuple(fixed.color[i, j]) == (255, 0, 0)
    values = set(np.unique(fixed.depth[np.isfinite(fixed.depth)]).tolist())
    assert values <= {np.float32(2.0).item(), np.float32(1.234).item()}


def test_undistort_without_distortion_is_identity():
    frame = _blob_frame(camera_from_info(640, 480, K640, d=[0.0] * 5), (100, 100), 1.0)
    assert undistort_frame(frame) is frame
