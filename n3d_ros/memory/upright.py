"""Upright boxes in the memory frame: centre, size (along the box's heading a, along b = up x a, along up) and
yaw (the heading's angle about up from the frame's reference axis). Objects on a support rest upright, so this
is the box a planner wants, whatever the camera's pitch.

From a pipeline box (camera optical frame): the box is moved into the memory frame (as core.boxes.transform_box);
its height is its extent along up and its heading is the box axis with the larger horizontal part. A pitched
camera's axis-aligned box is tilted in the memory frame, so this upright bound is larger than the object; the
dimensions a backend measured on the upright object (attributes width_m/height_m/depth_m along the viewer's
right/up/forward, tabletop backend) replace it when the box's support normal agrees with the memory's up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.boxes import iou_3d, rotation_about_y
from ..core.types import Box3D
from ..reasoning.geometry import MEASURED_DIMENSIONS, viewer_frame
from .pose import CameraPose

HALF_PI = np.pi / 2
_SIGNS = np.array([[sa, sb, su] for sa in (-1, 1) for sb in (-1, 1) for su in (-1, 1)], dtype=np.float64)
SUPPORT_AGREEMENT_COS = np.cos(np.radians(10.0))  # a support normal within 10 deg of up is the same gravity


class GravityBasis:
    """Axes (e1, e2, up) of the memory frame's ground plane; yaw 0 points along e1, yaw pi/2 along e2."""

    def __init__(self, up) -> None:
        self.up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
        reference = np.eye(3)[int(np.argmin(np.abs(self.up)))]  # the frame axis least aligned with up
        e1 = reference - reference.dot(self.up) * self.up
        self.e1 = e1 / np.linalg.norm(e1)
        self.e2 = np.cross(self.up, self.e1)

    def heading(self, yaw: float) -> np.ndarray:
        return np.cos(yaw) * self.e1 + np.sin(yaw) * self.e2

    def yaw_of(self, direction: np.ndarray) -> float:
        return float(np.arctan2(direction.dot(self.e2), direction.dot(self.e1)))

    def axes(self, yaw: float) -> np.ndarray:
        """(3, 3) rows a, b, up of a box with this yaw."""
        a = self.heading(yaw)
        return np.stack([a, np.cross(self.up, a), self.up])


@dataclass
class UprightBox:
    center: np.ndarray
    size: np.ndarray   # extent along a, along b, along up (metres)
    yaw: float         # radians, normalised to [-pi/4, pi/4) by canonical()

    def canonical(self) -> "UprightBox":
        """The same solid with yaw in [-pi/4, pi/4): a quarter turn swaps the footprint's two sides."""
        turns = int(np.floor((self.yaw + np.pi / 4) / HALF_PI))
        size = self.size.copy()
        if turns % 2:
            size[[0, 1]] = size[[1, 0]]
        return UprightBox(self.center.copy(), size, float(self.yaw - turns * HALF_PI))

    def corners(self, basis: GravityBasis) -> np.ndarray:
        """(8, 3) corners in the memory frame."""
        return self.center + (_SIGNS * self.size / 2.0) @ basis.axes(self.yaw)

    def extent_along(self, direction: np.ndarray, basis: GravityBasis) -> float:
        return float(np.abs(basis.axes(self.yaw) @ direction) @ self.size)


def upright_from_box(box: Box3D, pose: CameraPose, basis: GravityBasis) -> UprightBox:
    """The upright box in the memory frame for a pipeline box seen from this camera pose (module docstring)."""
    # what core.boxes.transform_box computes, without its quaternion round trip (this runs per box per frame;
    # the pose's rotation was validated once when the CameraPose was built)
    axes = (pose.rotation @ rotation_about_y(box.yaw)).T  # rows: the box's own axes in the memory frame
    center = pose.to_memory(box.center)
    vertical = np.abs(axes @ basis.up)
    height = float(vertical @ box.size)
    horizontal = axes - np.outer(axes @ basis.up, basis.up)
    candidates = [k for k in range(3) if k != int(np.argmax(vertical))]
    k = max(candidates, key=lambda i: np.linalg.norm(horizontal[i]))
    a = horizontal[k] / np.linalg.norm(horizontal[k])
    b = np.cross(basis.up, a)
    size = np.array([np.abs(axes @ a) @ box.size, np.abs(axes @ b) @ box.size, height])
    measured = [box.attributes.get(key) for key in MEASURED_DIMENSIONS]
    support = box.attributes.get("support_up")
    if all(v is not None for v in measured) and support is not None:
        support_memory = pose.rotation @ np.asarray(support, dtype=np.float64)
        if support_memory.dot(basis.up) >= SUPPORT_AGREEMENT_COS * np.linalg.norm(support_memory):
            # measured along the viewer's (right, up, forward) (reasoning.geometry); put width on whichever of
            # a, b the viewer's right is closer to (a, for a camera without roll)
            right = pose.rotation @ viewer_frame(pose.rotation.T @ basis.up).right
            width, height_m, depth = (float(v) for v in measured)
            size = np.array([width, depth, height_m] if abs(right @ a) >= abs(right @ b) else
                            [depth, width, height_m])
    return UprightBox(center, size, basis.yaw_of(a)).canonical()


def upright_iou(first: UprightBox, second: UprightBox, basis: GravityBasis) -> float:
    """3D IoU of two upright boxes via core.boxes.iou_3d, in the gravity frame (e1, up, -e2), where yaw
    about up is core's yaw about +y (checked in test_memory_core)."""
    def local(box: UprightBox) -> Box3D:
        c = box.center
        return Box3D(label="", center=[c.dot(basis.e1), c.dot(basis.up), -c.dot(basis.e2)],
                     size=[box.size[0], box.size[2], box.size[1]], yaw=box.yaw)

    return iou_3d(local(first), local(second))


def optical_box(box: UprightBox, pose: CameraPose, basis: GravityBasis, label: str = "", **fields) -> Box3D:
    """The upright box as a pipeline box in the camera's optical frame at ``pose``: the axis-aligned optical box
    around it (what a backend would report) with the upright dimensions along the current viewer's
    right/up/forward as measured attributes, and the memory's up as the support normal."""
    corners = pose.to_camera(box.corners(basis))
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    up_optical = pose.rotation.T @ basis.up
    viewer = viewer_frame(up_optical)
    right, forward = viewer.right, viewer.forward
    attributes = dict(fields.pop("attributes", {}))
    attributes.update({"support_up": [float(v) for v in up_optical],
                       "width_m": round(box.extent_along(pose.rotation @ right, basis), 4),
                       "height_m": round(float(box.size[2]), 4),
                       "depth_m": round(box.extent_along(pose.rotation @ forward, basis), 4)})
    return Box3D(label=label, center=pose.to_camera(box.center), size=hi - lo, attributes=attributes, **fields)
