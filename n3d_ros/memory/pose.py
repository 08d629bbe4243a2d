"""The camera pose the memory needs with every frame: where the camera's optical frame was in the memory frame
at the image stamp. It comes from tf2, a PoseStamped/Odometry topic, or is the identity (memory kept in the
camera frame of a fixed camera)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.boxes import quaternion_from_matrix, quaternion_to_matrix
from ..core.types import InputError


@dataclass(frozen=True, eq=False)
class CameraPose:
    """p_memory = matrix @ [p_camera, 1]. frame_id: the memory frame; child_frame_id: the camera optical frame
    ("" = not stated, not checked); stamp_ns: when the pose held."""

    matrix: np.ndarray
    frame_id: str
    stamp_ns: int
    child_frame_id: str = ""
    _inverse: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        matrix = np.asarray(self.matrix, dtype=np.float64)
        if matrix.shape != (4, 4):
            raise InputError(f"camera pose must be a 4x4 transform, got shape {matrix.shape}")
        if not np.all(np.isfinite(matrix)):
            raise InputError(f"camera pose in '{self.frame_id}' has non-finite values (NaN or inf): check the "
                             "odometry / tf source; the frame was not used")
        if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0]):
            raise InputError(f"camera pose's last row must be [0, 0, 0, 1], got {matrix[3].tolist()}")
        try:
            quaternion_from_matrix(matrix[:3, :3])
        except InputError as exc:
            raise InputError(f"camera pose in '{self.frame_id}' is not rigid: {exc}") from None
        object.__setattr__(self, "matrix", matrix)
        inverse = np.eye(4)
        inverse[:3, :3] = matrix[:3, :3].T
        inverse[:3, 3] = -matrix[:3, :3].T @ matrix[:3, 3]
        object.__setattr__(self, "_inverse", inverse)

    @classmethod
    def from_quaternion(cls, position, quat_xyzw, frame_id: str, stamp_ns: int,
                        child_frame_id: str = "") -> "CameraPose":
        """From a geometry_msgs Pose (position, orientation x, y, z, w)."""
        quat = np.asarray(quat_xyzw, dtype=np.float64).reshape(4)
        position = np.asarray(position, dtype=np.float64).reshape(3)
        if not (np.all(np.isfinite(quat)) and np.all(np.isfinite(position))):
            raise InputError(f"camera pose in '{frame_id}' has non-finite values (NaN or inf)")
        norm = np.linalg.norm(quat)
        if abs(norm - 1.0) > 1e-2:
            raise InputError(f"camera pose quaternion must be unit length, got norm {norm:.4f}")
        matrix = np.eye(4)
        matrix[:3, :3], matrix[:3, 3] = quaternion_to_matrix(quat), position
        return cls(matrix, frame_id, int(stamp_ns), child_frame_id)

    @classmethod
    def identity(cls, frame_id: str, stamp_ns: int) -> "CameraPose":
        """A fixed camera whose memory is kept in its own optical frame."""
        return cls(np.eye(4), frame_id, int(stamp_ns), frame_id)

    @property
    def rotation(self) -> np.ndarray:
        return self.matrix[:3, :3]

    @property
    def translation(self) -> np.ndarray:
        return self.matrix[:3, 3]

    def to_memory(self, points_camera) -> np.ndarray:
        p = np.asarray(points_camera, dtype=np.float64)
        return p @ self.rotation.T + self.translation

    def to_camera(self, points_memory) -> np.ndarray:
        p = np.asarray(points_memory, dtype=np.float64)
        return p @ self._inverse[:3, :3].T + self._inverse[:3, 3]


def check_pose(pose: CameraPose, memory_frame: str, image_frame: str, image_stamp_ns: int,
               max_offset_s: float) -> None:
    """Raise InputError when the pose cannot place this image in the memory (another frame, another camera, or
    a stamp too far from the image's)."""
    if not isinstance(pose, CameraPose):
        raise InputError(f"camera pose must be a CameraPose, got {type(pose).__name__}")
    if pose.frame_id != memory_frame:
        raise InputError(f"camera pose is in frame '{pose.frame_id}' but the memory is kept in '{memory_frame}': "
                         f"look the pose up in '{memory_frame}' or set the memory frame to '{pose.frame_id}'")
    if pose.child_frame_id and image_frame and pose.child_frame_id != image_frame:
        raise InputError(f"camera pose is of frame '{pose.child_frame_id}' but the image is in '{image_frame}': "
                         "give the pose of the image's optical frame")
    offset_s = abs(int(image_stamp_ns) - int(pose.stamp_ns)) * 1e-9
    if offset_s > max_offset_s:
        raise InputError(f"camera pose is {offset_s:.3f} s away from the image stamp (tolerance "
                         f"{max_offset_s:.3f} s): the pose is stale; the frame was not used")
