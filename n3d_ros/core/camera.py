"""Pinhole camera model from sensor_msgs/CameraInfo-style data, resizing/cropping, and (un)projection.

Distortion policy: all-zero D is a plain pinhole under any model name. Non-zero ``plumb_bob`` and
``rational_polynomial`` (OpenCV's Brown-Conrady) and ``equidistant`` (OpenCV fisheye) are accepted and
HONOURED BY UNDISTORTING: :func:`undistort_frame` remaps colour (bilinear) and depth (nearest, so depth is never
blended) onto an ideal pinhole with the same K; the point-map builder does this itself. Any other model with
non-zero D is refused, because we cannot undistort it exactly.

Two image-coordinate conventions meet here (see core.frames): OpenCV pixels with integer centres, and the
model's normalised [0, 1] coordinates with pixel centres at ((j + 0.5) / W, (i + 0.5) / H).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Sequence, Tuple

import numpy as np

from .types import InputError, PinholeCamera, RGBDFrame

UNDISTORTABLE_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")
_COEFFICIENT_COUNTS = {"plumb_bob": (4, 5), "rational_polynomial": (8, 12, 14), "equidistant": (4,)}


def camera_from_info(width: int, height: int, k: Sequence[float], d: Sequence[float] = (),
                     distortion_model: str = "plumb_bob",
                     frame_id: str = "camera_color_optical_frame") -> PinholeCamera:
    """Validated PinholeCamera from CameraInfo fields (K row-major 3x3, D, distortion_model).

    Refuses: K not 9 finite numbers, skew or a malformed last row, non-positive focal lengths, a principal
    point outside the image. Distortion: all-zero D is a plain pinhole whatever the model name; non-zero D is
    kept for plumb_bob / rational_polynomial / equidistant and honoured by undistorting the frame
    (:func:`undistort_frame`, done by build_point_map); any other model with non-zero D is refused.
    """
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise InputError(f"camera size must be positive, got {width}x{height}")
    k = np.asarray(list(k), dtype=np.float64).reshape(-1)
    if k.size != 9 or not np.all(np.isfinite(k)):
        raise InputError(f"K must be 9 finite numbers (row-major 3x3), got {k.size}: {k.tolist()}")
    fx, skew, cx, _, fy, cy = k[:6]
    if fx <= 0 or fy <= 0:
        raise InputError(f"focal lengths must be positive (K[0]={fx}, K[4]={fy}): is the camera calibrated?")
    if abs(skew) > 1e-9 * fx or k[3] != 0 or tuple(k[6:]) != (0.0, 0.0, 1.0):
        raise InputError(f"K must be [[fx,0,cx],[0,fy,cy],[0,0,1]] (no skew), got {k.tolist()}")
    if not (-0.5 <= cx <= width - 0.5 and -0.5 <= cy <= height - 0.5):
        raise InputError(f"principal point ({cx}, {cy}) lies outside the {width}x{height} image: K and the image "
                         "size do not belong together")
    d = tuple(float(v) for v in d)
    if not all(np.isfinite(d)):
        raise InputError(f"distortion D must be finite, got {d}")
    model = distortion_model or "plumb_bob"
    if any(d):
        if model not in UNDISTORTABLE_MODELS:
            raise InputError(f"distortion model {model!r} with non-zero D cannot be undistorted here; supported: "
                             f"{UNDISTORTABLE_MODELS} (or publish rectified images with zero D)")
        if len(d) not in _COEFFICIENT_COUNTS[model]:
            raise InputError(f"{model} needs {_COEFFICIENT_COUNTS[model]} coefficients, got {len(d)}")
    return PinholeCamera(width=width, height=height, fx=float(fx), fy=float(fy), cx=float(cx), cy=float(cy),
                         frame_id=frame_id, distortion_model=model, distortion=d)


def has_distortion(camera: PinholeCamera) -> bool:
    return any(camera.distortion)


def resize_camera(camera: PinholeCamera, width: int, height: int) -> PinholeCamera:
    """Intrinsics of the same field of view sampled at width x height. Pixel centres map as
    (j + 0.5) / W = (j' + 0.5) / W', so cx' = (cx + 0.5) * W'/W - 0.5. Distortion coefficients act on
    normalised coordinates and are unchanged."""
    if width <= 0 or height <= 0:
        raise InputError(f"resize target must be positive, got {width}x{height}")
    sx, sy = width / camera.width, height / camera.height
    return replace(camera, width=int(width), height=int(height), fx=camera.fx * sx, fy=camera.fy * sy,
                   cx=(camera.cx + 0.5) * sx - 0.5, cy=(camera.cy + 0.5) * sy - 0.5)


def crop_camera(camera: PinholeCamera, x0: int, y0: int, width: int, height: int) -> PinholeCamera:
    """Intrinsics of the sub-image [x0, x0 + width) x [y0, y0 + height)."""
    if x0 < 0 or y0 < 0 or width <= 0 or height <= 0 or x0 + width > camera.width or y0 + height > camera.height:
        raise InputError(f"crop {width}x{height}+{x0}+{y0} does not fit the {camera.width}x{camera.height} image")
    return replace(camera, width=int(width), height=int(height), cx=camera.cx - x0, cy=camera.cy - y0)


def backproject_normalized(u, v, z, intr_n: Tuple[float, float, float, float]):
    """Model-normalised (u, v) and z-depth -> optical-frame (X, Y, Z) (spec 5.4 step 1)."""
    fx_n, fy_n, cx_n, cy_n = intr_n
    z = np.asarray(z, dtype=np.float64)
    return (np.asarray(u, dtype=np.float64) - cx_n) / fx_n * z, (np.asarray(v, dtype=np.float64) - cy_n) / fy_n * z, z


def project_normalized(points_optical, intr_n: Tuple[float, float, float, float]):
    """(..., 3) optical-frame points -> model-normalised (u, v). Points must be in front (Z > 0)."""
    fx_n, fy_n, cx_n, cy_n = intr_n
    p = np.asarray(points_optical, dtype=np.float64)
    if np.any(p[..., 2] <= 0):
        raise InputError("cannot project points at or behind the camera (Z <= 0)")
    return fx_n * p[..., 0] / p[..., 2] + cx_n, fy_n * p[..., 1] / p[..., 2] + cy_n


def project_pixels(points_optical, camera: PinholeCamera):
    """(..., 3) optical-frame points -> OpenCV pixel (u, v), pinhole (no distortion). Z must be > 0."""
    p = np.asarray(points_optical, dtype=np.float64)
    if np.any(p[..., 2] <= 0):
        raise InputError("cannot project points at or behind the camera (Z <= 0)")
    return camera.fx * p[..., 0] / p[..., 2] + camera.cx, camera.fy * p[..., 1] / p[..., 2] + camera.cy


def backproject_depth(depth: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """(H, W) z-depth in metres -> (H, W, 3) optical-frame points (NaN where depth is NaN)."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.shape != (camera.height, camera.width):
        raise InputError(f"depth {depth.shape[1]}x{depth.shape[0]} does not match camera "
                         f"{camera.width}x{camera.height}")
    x = (np.arange(camera.width) - camera.cx) / camera.fx
    y = (np.arange(camera.height) - camera.cy) / camera.fy
    return np.stack([x[None, :] * depth, y[:, None] * depth, depth], axis=-1)


@functools.lru_cache(maxsize=8)
def _undistort_maps(camera: PinholeCamera):
    """Remap tables from the ideal pinhole (same K) back into the distorted image; cached per camera because a
    stream reuses one camera and building the maps costs more than applying them."""
    import cv2

    K, D, size = camera.K, np.asarray(camera.distortion, dtype=np.float64), (camera.width, camera.height)
    if camera.distortion_model == "equidistant":
        return cv2.fisheye.initUndistortRectifyMap(K, D, np.eye(3), K, size, cv2.CV_32FC1)
    return cv2.initUndistortRectifyMap(K, D, np.eye(3), K, size, cv2.CV_32FC1)


def undistort_frame(frame: RGBDFrame) -> RGBDFrame:
    """The frame as an ideal pinhole with the same K and zero D (returned unchanged if D is already zero).

    Depth uses nearest-neighbour sampling (z-depth of a surface point does not change when only its pixel
    moves); pixels that map from outside the source image get no colour (black) and no depth (NaN).
    """
    import cv2

    camera = frame.camera
    if not has_distortion(camera):
        return frame
    if camera.distortion_model not in UNDISTORTABLE_MODELS:
        raise InputError(f"cannot undistort model {camera.distortion_model!r}")
    map_x, map_y = _undistort_maps(camera)
    color = cv2.remap(frame.color, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    depth = cv2.remap(frame.depth, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=float("nan"))
    ideal = replace(camera, distortion=(0.0,) * len(camera.distortion))
    return RGBDFrame(color=color, depth=depth, camera=ideal, stamp_ns=frame.stamp_ns, frame_id=frame.frame_id)
