"""The geometric definitions behind every spatial word, stated once.

Boxes are in the OPTICAL frame (x right, y down, z forward), metres.

Viewer frame. Left/right, above/below, in front/behind and clock directions are judged in a "viewer frame"
with axes (right, up, forward):
* up: the gravity direction reversed, when known (the tabletop backend measures the table normal and stores
  it in every box as ``attributes["support_up"]``); otherwise the camera's up, -y_optical. With a camera
  pitched down at a table, camera-up would call a farther object "above" a nearer one on the same table;
  the table normal does not.
* forward: the optical axis with its up component removed (horizontal, away from the camera). When the camera
  looks nearly straight down or up (that horizontal part is under sin 15 deg), its direction would hang on the
  sign of a tiny tilt and flip left/right; the image's up direction (-y_optical) made horizontal is used
  instead. Without roll both give the same direction, so the switch is seamless.
* right = forward x up, so that with no pitch the viewer frame is (x, -y, z) of the optical frame.

Relations compare box centres in that frame (as N3D-Bench does: demo2 compares centre z). "As seen from the
opposite side" swaps left/right and front/behind and keeps above/below.

Dimensions (box_dimensions): width, height and depth are extents along right, up and forward. The tabletop
backend measures them for the upright object (attributes width_m/height_m/depth_m: footprint and height
above the table), which is tighter than the optical box; otherwise, with gravity known, they are the box
solid's extents along the viewer axes; with no gravity, the sizes along optical x, y, z (N3D's convention,
height = sy, spec section 6).

Clock direction (N3D-Bench, spec section 6): standing at A and facing forward (away from the camera), the
angle of B - A in the ground plane is measured counter-clockwise seen from above (towards the left), starting
at forward, normalised to [0, 360); clock = 12 - angle // 30. So [0, 30) deg is 12 o'clock, 90 deg (left) is
9 o'clock, 270 deg (right) is 3 o'clock and (330, 360) is 1 o'clock: the bins are floors, not nearest hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..core.boxes import footprint_xz, rotation_about_y
from ..core.types import Box3D, InputError

CAMERA_UP = np.array([0.0, -1.0, 0.0])
OPTICAL_FORWARD = np.array([0.0, 0.0, 1.0])
NEAR_VERTICAL_SIN = np.sin(np.radians(15.0))  # optical axis within 15 deg of vertical: forward from image up
MEASURED_DIMENSIONS = ("width_m", "height_m", "depth_m")  # box attributes a backend measured (module docstring)


@dataclass(frozen=True)
class ViewerFrame:
    right: np.ndarray
    up: np.ndarray
    forward: np.ndarray
    gravity_known: bool

    def coords(self, point: np.ndarray) -> np.ndarray:
        """Optical-frame point(s) (..., 3) -> (right, up, forward) coordinates."""
        basis = np.stack([self.right, self.up, self.forward])
        return np.asarray(point, dtype=np.float64) @ basis.T


def viewer_frame(up: Optional[Sequence[float]] = None) -> ViewerFrame:
    """The viewer frame for a gravity 'up' direction in optical coordinates (None: the camera's up)."""
    if up is None:
        return ViewerFrame(np.array([1.0, 0.0, 0.0]), CAMERA_UP.copy(), OPTICAL_FORWARD.copy(), False)
    up = np.asarray(up, dtype=np.float64).reshape(3)
    norm = np.linalg.norm(up)
    if not np.isfinite(norm) or norm < 1e-9:
        raise InputError(f"the up direction must be a non-zero finite 3-vector, got {up.tolist()}")
    up = up / norm
    forward = OPTICAL_FORWARD - OPTICAL_FORWARD.dot(up) * up
    if np.linalg.norm(forward) < NEAR_VERTICAL_SIN:
        # optical axis (nearly) vertical: its horizontal part's direction is noise; the image's up is not
        # (y and z are orthogonal, so -y is then nearly horizontal)
        forward = CAMERA_UP - CAMERA_UP.dot(up) * up
    forward /= np.linalg.norm(forward)
    return ViewerFrame(np.cross(forward, up), up, forward, True)


def frame_from_boxes(boxes: Sequence[Box3D]) -> ViewerFrame:
    """Use the support normal the boxes carry when they agree (one table); else the camera's up."""
    ups = [np.asarray(b.attributes["support_up"], dtype=np.float64) for b in boxes if "support_up" in b.attributes]
    if not ups or len(ups) != len(boxes):
        return viewer_frame(None)
    for up in ups:
        if up.shape != (3,) or not np.all(np.isfinite(up)) or np.linalg.norm(up) < 1e-9:
            raise InputError(f"a box's support_up must be a non-zero finite 3-vector, got {up.tolist()}")
    mean = np.mean(ups, axis=0)
    if any(np.dot(u / np.linalg.norm(u), mean / np.linalg.norm(mean)) < np.cos(np.radians(2.0)) for u in ups):
        return viewer_frame(None)
    return viewer_frame(mean)


def box_dimensions(box: Box3D, frame: ViewerFrame) -> tuple:
    """((width, height, depth) along the viewer's right, up, forward; how they were obtained): module docstring."""
    measured = [box.attributes.get(key) for key in MEASURED_DIMENSIONS]
    if frame.gravity_known:
        # extent of the (yawed) box solid along unit axis a: sum_i |a . R[:, i]| size_i
        axes = np.stack([frame.right, frame.up, frame.forward])
        dims = np.abs(axes @ rotation_about_y(box.yaw)) @ box.size
        source = "the box's extent along the support plane's axes"
    else:
        dims = box.size.copy()
        source = "the box's size along the camera's x, y, z (no support plane known)"
    if any(v is not None for v in measured):
        dims = np.array([d if v is None else float(v) for d, v in zip(dims, measured)])
        source = "measured on the object above its support plane"
    return dims, source


def box_volume(box: Box3D) -> float:
    """The measured upright box's volume when a backend measured all three dimensions, else the box's."""
    measured = [box.attributes.get(key) for key in MEASURED_DIMENSIONS]
    if all(v is not None for v in measured):
        return float(np.prod([float(v) for v in measured]))
    return box.volume


def clock_position(frame: ViewerFrame, origin: np.ndarray, target: np.ndarray) -> tuple:
    """(clock hour 1..12, angle in degrees) of target seen from origin facing forward (module docstring)."""
    delta = frame.coords(np.asarray(target) - np.asarray(origin))
    left, forward = -delta[0], delta[2]
    if abs(left) < 1e-12 and abs(forward) < 1e-12:
        raise InputError("the two objects are at the same ground position: no direction between them")
    angle = float(np.degrees(np.arctan2(left, forward))) % 360.0
    return 12 - int(angle // 30.0), angle


def _separated(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test for two convex quadrilaterals."""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return True
    return False


def _point_segment(p: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> float:
    d = s1 - s0
    t = np.clip(np.dot(p - s0, d) / max(np.dot(d, d), 1e-18), 0.0, 1.0)
    return float(np.linalg.norm(p - (s0 + t * d)))


def surface_distance(a: Box3D, b: Box3D) -> float:
    """Shortest distance between the surfaces of two boxes (0 when they touch or overlap).

    Each box is a footprint rectangle in x-z times an interval in y, so the squared distance splits into the
    footprint distance squared plus the y-interval gap squared. Two disjoint convex polygons are closest at
    a vertex of one and an edge of the other.
    """
    gap_y = max(0.0, abs(a.center[1] - b.center[1]) - (a.size[1] + b.size[1]) / 2.0)
    fa, fb = footprint_xz(a), footprint_xz(b)
    if not _separated(fa, fb):
        gap_xz = 0.0
    else:
        gap_xz = min(
            min(_point_segment(p, q[i], q[(i + 1) % 4]) for p in pts for i in range(4))
            for pts, q in ((fa, fb), (fb, fa))
        )
    return float(np.hypot(gap_xz, gap_y))
