"""Coordinate conventions, stated once and reused everywhere.

Three right-handed frames meet in this package. All are attached to the colour camera:

* OPTICAL (REP-103 ``*_optical_frame``): x right, y down, z forward. Every 3D box the core hands out
  is in this frame, in metres. It is the frame of ``sensor_msgs/CameraInfo`` and of our ROS output.
* N3D (the model's point-map frame, MoGe with x and y negated): x left, y up, z forward.
  Only the point map fed to the model and the scene-condition numbers of turn 2 use it.
* BODY (REP-103 ``camera_link``): x forward, y left, z up.

Pixels follow OpenCV: integer pixel (col j, row i) has its centre at (j, i). The model's normalised image
coordinates put pixel centres at ((j + 0.5) / W, (i + 0.5) / H) over a [0, 1] x [0, 1] image.

Yaw: the model's ``angle_y`` turns about +y_N3D (up). The same rotation is -yaw about +y_OPTICAL and
+yaw about +z_BODY (the axis permutation optical->body is a proper rotation, spec section 5.4).
"""

from __future__ import annotations

import numpy as np

# Rotation matrices R such that p_target = R @ p_source, for column vectors.
OPTICAL_TO_N3D = np.diag([-1.0, -1.0, 1.0])
N3D_TO_OPTICAL = OPTICAL_TO_N3D.T  # its own inverse
# body x = optical z, body y = -optical x, body z = -optical y
OPTICAL_TO_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
BODY_TO_OPTICAL = OPTICAL_TO_BODY.T

# Quaternion (x, y, z, w) of the optical frame expressed in the body frame: the fixed
# camera_link -> camera_optical_frame rotation every RGB-D driver publishes (roll -90deg, yaw -90deg).
OPTICAL_IN_BODY_QUAT_XYZW = (-0.5, 0.5, -0.5, 0.5)


def optical_to_n3d(points: np.ndarray) -> np.ndarray:
    """(..., 3) optical-frame points -> N3D frame (x left, y up, z forward)."""
    return np.asarray(points, dtype=np.float64) @ OPTICAL_TO_N3D.T


def n3d_to_optical(points: np.ndarray) -> np.ndarray:
    """(..., 3) N3D-frame points -> optical frame (x right, y down, z forward)."""
    return np.asarray(points, dtype=np.float64) @ N3D_TO_OPTICAL.T


def optical_to_body(points: np.ndarray) -> np.ndarray:
    """(..., 3) optical-frame points -> camera body frame (x forward, y left, z up)."""
    return np.asarray(points, dtype=np.float64) @ OPTICAL_TO_BODY.T


def body_to_optical(points: np.ndarray) -> np.ndarray:
    """(..., 3) body-frame points -> optical frame."""
    return np.asarray(points, dtype=np.float64) @ BODY_TO_OPTICAL.T


def pixel_to_normalized(col, row, width: int, height: int):
    """OpenCV pixel coordinates (integer centres) -> model-normalised (u, v) with half-pixel centres."""
    return (np.asarray(col, dtype=np.float64) + 0.5) / width, (np.asarray(row, dtype=np.float64) + 0.5) / height


def normalized_to_pixel(u, v, width: int, height: int):
    """Model-normalised (u, v) -> OpenCV pixel coordinates at a width x height resolution."""
    return np.asarray(u, dtype=np.float64) * width - 0.5, np.asarray(v, dtype=np.float64) * height - 0.5


def n3d_yaw_to_optical(yaw: float) -> float:
    """Yaw about +y_N3D (up) -> yaw about +y_OPTICAL (down)."""
    return -float(yaw)


def optical_yaw_to_body(yaw_optical: float) -> float:
    """Yaw about +y_OPTICAL -> yaw about +z_BODY."""
    return -float(yaw_optical)
