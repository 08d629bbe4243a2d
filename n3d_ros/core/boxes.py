"""3D boxes in one place: corners, frame conversions (N3D <-> optical <-> body), 2D projection, 3D IoU and
rigid transforms.

A :class:`~n3d_ros.core.types.Box3D` lives in the camera OPTICAL frame and turns only about +y_optical (yaw),
which is all N3D-VLM predicts. Once a box is moved into another frame (a robot base, a map) its axes are no
longer tied to the camera's vertical, so :func:`transform_box` returns an :class:`OrientedBox`: centre, unit
quaternion (x, y, z, w) of the box axes in the target frame, and sizes along the box's own axes.

Quaternions are (x, y, z, w) as in geometry_msgs. Matrix <-> quaternion is written here rather than pulling in
scipy for two short, well-known formulas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np

from .frames import OPTICAL_TO_BODY, n3d_yaw_to_optical
from .types import Box3D, InputError, PinholeCamera

# No RGB-D camera reads beyond ~65 m (16UC1 millimetres end at 65.535 m); a box centre or size beyond this
# bound can only come from garbage decoding, and would overflow downstream geometry (volumes, IoU areas).
MAX_BOX_EXTENT_M = 1000.0

# corner sign pattern: every combination of -/+ half size along (x, y, z)
_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)


@dataclass
class OrientedBox:
    """A box with a full orientation: the solid {center + R(quat) @ (s * size / 2) : s in [-1, 1]^3}."""

    center: np.ndarray
    quat_xyzw: np.ndarray
    size: np.ndarray
    frame_id: str = ""
    label: str = ""
    score: float = 1.0
    id: Optional[int] = None
    attributes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=np.float64).reshape(3)
        self.size = np.abs(np.asarray(self.size, dtype=np.float64).reshape(3))
        q = np.asarray(self.quat_xyzw, dtype=np.float64).reshape(4)
        norm = np.linalg.norm(q)
        if not norm > 0:
            raise InputError("box orientation quaternion must be non-zero")
        self.quat_xyzw = q / norm

    @property
    def rotation(self) -> np.ndarray:
        return quaternion_to_matrix(self.quat_xyzw)

    def corners(self) -> np.ndarray:
        """(8, 3) corners in this box's frame."""
        return self.center + (_SIGNS * self.size / 2.0) @ self.rotation.T


def degenerate_box_reason(box: Box3D) -> Optional[str]:
    """Why a box cannot describe a real object (non-finite, zero or absurd size, absurd position), or None.
    Callers drop such boxes with this reason instead of answering "0.00 m tall"."""
    center, size = box.center, box.size
    if not (np.all(np.isfinite(center)) and np.all(np.isfinite(size)) and np.isfinite(box.yaw)):
        return f"non-finite centre {center.tolist()}, size {size.tolist()} or yaw {box.yaw}"
    if np.any(size <= 0):
        return f"zero size {size.tolist()} m (no extent along at least one axis)"
    if np.any(np.abs(center) > MAX_BOX_EXTENT_M) or np.any(size > MAX_BOX_EXTENT_M):
        return (f"centre {np.round(center, 1).tolist()} m or size {np.round(size, 1).tolist()} m beyond "
                f"{MAX_BOX_EXTENT_M:g} m, which no depth camera measures")
    return None


def rotation_about_y(angle: float) -> np.ndarray:
    """Right-handed rotation by ``angle`` about +y."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def quaternion_to_matrix(q_xyzw: Sequence[float]) -> np.ndarray:
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64) / np.linalg.norm(q_xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def quaternion_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w), w >= 0, of a proper rotation matrix (branch on the largest diagonal term
    for numerical stability)."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise InputError(f"not a proper rotation matrix: {R.tolist()}")
    trace = np.trace(R)
    if trace > 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
        q[i], q[j], q[k] = s / 4, (R[j, i] + R[i, j]) / s, (R[k, i] + R[i, k]) / s
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def quaternion_from_yaw_optical(yaw: float) -> np.ndarray:
    """(x, y, z, w) of a rotation by ``yaw`` about +y_optical."""
    return np.array([0.0, np.sin(yaw / 2.0), 0.0, np.cos(yaw / 2.0)])


def box_corners(box: Box3D) -> np.ndarray:
    """(8, 3) optical-frame corners of the box, yaw included."""
    return box.center + (_SIGNS * box.size / 2.0) @ rotation_about_y(box.yaw).T


def box_from_n3d(center_n3d: Sequence[float], size: Sequence[float], yaw_n3d: float = 0.0, label: str = "",
                 score: float = 1.0, id: Optional[int] = None, attributes: Optional[dict] = None) -> Box3D:
    """A decoded model box (centre x-left/y-up/z-forward, sizes along x/y/z, angle about +y_N3D) -> Box3D.
    Spec 5.4: optical centre = (-x, -y, z), sizes unchanged, yaw negated."""
    c = np.asarray(center_n3d, dtype=np.float64).reshape(3)
    return Box3D(label=label, center=np.array([-c[0], -c[1], c[2]]), size=size, yaw=n3d_yaw_to_optical(yaw_n3d),
                 score=score, id=id, attributes=dict(attributes or {}))


def box_to_n3d(box: Box3D) -> Tuple[np.ndarray, np.ndarray, float]:
    """(centre in the N3D frame, sizes, yaw about +y_N3D): the numbers of the turn-2 scene condition."""
    return np.array([-box.center[0], -box.center[1], box.center[2]]), box.size.copy(), -float(box.yaw)


def box_to_oriented(box: Box3D, frame_id: str = "") -> OrientedBox:
    """The same box as an OrientedBox in the optical frame."""
    return OrientedBox(center=box.center, quat_xyzw=quaternion_from_yaw_optical(box.yaw), size=box.size,
                       frame_id=frame_id, label=box.label, score=box.score, id=box.id,
                       attributes=dict(box.attributes))


def transform_box(box, R: np.ndarray, t: Sequence[float], frame_id: str = "") -> OrientedBox:
    """Move a Box3D (optical frame) or OrientedBox into a target frame where p_target = R @ p + t.
    The centre is transformed, the box axes are rotated (quaternion), the sizes stay on the box's own axes."""
    R = np.asarray(R, dtype=np.float64)
    quaternion_from_matrix(R)  # validates R
    source = box if isinstance(box, OrientedBox) else box_to_oriented(box)
    rotation = R @ source.rotation
    return OrientedBox(center=R @ source.center + np.asarray(t, dtype=np.float64).reshape(3),
                       quat_xyzw=quaternion_from_matrix(rotation), size=source.size, frame_id=frame_id,
                       label=source.label, score=source.score, id=source.id, attributes=dict(source.attributes))


def box_to_body(box: Box3D, frame_id: str = "camera_link") -> OrientedBox:
    """The box in the camera body frame (x forward, y left, z up) as spec 5.4 states it: centre
    (z, -x, -y)_optical, sizes along body axes (sz, sx, sy), a yaw of -yaw_optical about +z_body."""
    yaw_body = -float(box.yaw)
    return OrientedBox(center=OPTICAL_TO_BODY @ box.center, quat_xyzw=[0.0, 0.0, np.sin(yaw_body / 2),
                                                                        np.cos(yaw_body / 2)],
                       size=box.size[[2, 0, 1]], frame_id=frame_id, label=box.label, score=box.score, id=box.id,
                       attributes=dict(box.attributes))


def project_box_normalized(box: Box3D, intr_n: Tuple[float, float, float, float]) -> Tuple[float, float, float, float]:
    """The model's 2D box (spec 5.5): (u_c, v_c, width, height) in normalised image units, not clipped.
    Yaw is ignored, corners with z <= 0 are dropped; raises InputError if all corners or the centre are
    behind the camera."""
    fx_n, fy_n, cx_n, cy_n = intr_n
    corners = box.center + _SIGNS * box.size / 2.0
    corners = corners[corners[:, 2] > 0]
    if corners.shape[0] == 0 or box.center[2] <= 0:
        raise InputError(f"box '{box.label}' at z={box.center[2]:.3f} m is behind the camera: no 2D box")
    u = fx_n * corners[:, 0] / corners[:, 2] + cx_n
    v = fy_n * corners[:, 1] / corners[:, 2] + cy_n
    u_c = fx_n * box.center[0] / box.center[2] + cx_n
    v_c = fy_n * box.center[1] / box.center[2] + cy_n
    return float(u_c), float(v_c), float(u.max() - u.min()), float(v.max() - v.min())


def project_box_pixels(box: Box3D, camera: PinholeCamera, clip: bool = True) -> Tuple[float, float, float, float]:
    """(x_min, y_min, x_max, y_max) in OpenCV pixels around the projected corners (yaw included; pinhole,
    no distortion). clip=True limits it to the image's extent [-0.5, W - 0.5] x [-0.5, H - 0.5], which may
    leave an empty box for an object outside the view. Corners at z <= 0 are dropped; InputError if all are."""
    corners = box_corners(box)
    corners = corners[corners[:, 2] > 0]
    if corners.shape[0] == 0:
        raise InputError(f"box '{box.label}' is entirely behind the camera: no 2D box")
    u = camera.fx * corners[:, 0] / corners[:, 2] + camera.cx
    v = camera.fy * corners[:, 1] / corners[:, 2] + camera.cy
    x0, x1, y0, y1 = u.min(), u.max(), v.min(), v.max()
    if clip:
        x0, x1 = np.clip([x0, x1], -0.5, camera.width - 0.5)
        y0, y1 = np.clip([y0, y1], -0.5, camera.height - 0.5)
    return float(x0), float(y0), float(x1), float(y1)


def footprint_xz(box: Box3D) -> np.ndarray:
    """(4, 2) counter-clockwise (x, z) corners of the box seen from above (along the optical y axis)."""
    half_x, half_z = box.size[0] / 2, box.size[2] / 2
    local = np.array([[-half_x, -half_z], [half_x, -half_z], [half_x, half_z], [-half_x, half_z]])
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    # rotation about +y maps (x, z) -> (c x + s z, -s x + c z)
    return np.stack([c * local[:, 0] + s * local[:, 1], -s * local[:, 0] + c * local[:, 1]], -1) + box.center[[0, 2]]


def _polygon_area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clip_convex(subject: np.ndarray, clipper: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman intersection of two convex polygons (clipper counter-clockwise), in float64.
    Hand-written because OpenCV's intersectConvexConvex works in float32 and mishandles shared edges."""
    output = list(subject)
    for k in range(len(clipper)):
        a, b = clipper[k], clipper[(k + 1) % len(clipper)]
        edge = b - a
        inputs, output = output, []
        if not inputs:
            break
        for i, p in enumerate(inputs):
            q = inputs[(i + 1) % len(inputs)]
            side_p = edge[0] * (p[1] - a[1]) - edge[1] * (p[0] - a[0])
            side_q = edge[0] * (q[1] - a[1]) - edge[1] * (q[0] - a[0])
            if side_p >= 0:
                output.append(p)
            if (side_p >= 0) != (side_q >= 0):
                output.append(p + (q - p) * (side_p / (side_p - side_q)))
    return np.array(output).reshape(-1, 2)


def iou_3d(a: Box3D, b: Box3D) -> float:
    """Exact intersection-over-union of two boxes that may each turn about the vertical optical y axis:
    bird's-eye (x-z) polygon intersection times the overlap along y. Boxes with equal yaw take an
    interval-only fast path (exact too)."""
    overlap_y = max(0.0, min(a.max_corner[1], b.max_corner[1]) - max(a.min_corner[1], b.min_corner[1]))
    if overlap_y == 0.0:
        return 0.0
    if a.yaw == b.yaw:
        # both boxes are axis-aligned in the frame turned by their common yaw
        rot = rotation_about_y(a.yaw)
        ca, cb = rot.T @ a.center, rot.T @ b.center
        lo = np.maximum(ca - a.size / 2, cb - b.size / 2)
        hi = np.minimum(ca + a.size / 2, cb + b.size / 2)
        area = float(max(0.0, hi[0] - lo[0]) * max(0.0, hi[2] - lo[2]))
    else:
        area = _polygon_area(_clip_convex(footprint_xz(a), footprint_xz(b)))
    intersection = area * overlap_y
    union = a.volume + b.volume - intersection
    return float(intersection / union) if union > 0 else 0.0
