"""Core data types shared by every layer. Plain dataclasses over numpy; no ROS.

Conventions (frames, pixel centres, yaw) live in :mod:`n3d_ros.core.frames`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np


class InputError(ValueError):
    """Bad input from a user or a sensor: the message says what is wrong and how to fix it."""


class Cancelled(RuntimeError):
    """The caller withdrew the request (timeout, action cancel, node shutdown) while the model was decoding."""


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole intrinsics in pixels (OpenCV: pixel centres at integer coordinates).

    ``distortion_model``/``distortion`` mirror sensor_msgs/CameraInfo (``D``); see core.camera for what is honoured.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    frame_id: str = "camera_color_optical_frame"
    distortion_model: str = "plumb_bob"
    distortion: Tuple[float, ...] = ()

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def normalized_intrinsics(self) -> Tuple[float, float, float, float]:
        """(fx_n, fy_n, cx_n, cy_n) in the model's [0,1] image with half-pixel centres (spec 1.6 step 3)."""
        return (
            self.fx / self.width,
            self.fy / self.height,
            (self.cx + 0.5) / self.width,
            (self.cy + 0.5) / self.height,
        )


@dataclass
class RGBDFrame:
    """One registered colour + depth pair.

    color: (H, W, 3) uint8 RGB. depth: (H, W) float32 metres along the optical axis, NaN where there is
    no reading. Both at the camera's resolution. stamp_ns: the colour image stamp in nanoseconds.
    depth_readout: optional core.depth_check.DepthReadout of the raw payload (kept by a decoder that applies the
    depth range, so that a refused frame can say what the sensor really sent). checks: per-frame results of the
    pipeline's usability checks (a frame is not modified after construction, so they are computed once).
    """

    color: np.ndarray
    depth: np.ndarray
    camera: PinholeCamera
    stamp_ns: int = 0
    frame_id: str = "camera_color_optical_frame"
    depth_readout: Optional[object] = None
    checks: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.color.ndim != 3 or self.color.shape[2] != 3 or self.color.dtype != np.uint8:
            raise InputError(f"colour must be HxWx3 uint8 RGB, got shape {self.color.shape} {self.color.dtype}")
        if self.depth.ndim != 2:
            raise InputError(f"depth must be HxW, got shape {self.depth.shape}")
        if self.color.shape[:2] != self.depth.shape:
            raise InputError(
                f"colour {self.color.shape[1]}x{self.color.shape[0]} and depth "
                f"{self.depth.shape[1]}x{self.depth.shape[0]} differ: depth must be aligned to colour "
                "(RealSense: align_depth.enable:=true, topic aligned_depth_to_color/image_raw)"
            )
        if (self.camera.width, self.camera.height) != (self.color.shape[1], self.color.shape[0]):
            raise InputError(
                f"camera_info is {self.camera.width}x{self.camera.height} but the image is "
                f"{self.color.shape[1]}x{self.color.shape[0]}"
            )

    @property
    def width(self) -> int:
        return int(self.color.shape[1])

    @property
    def height(self) -> int:
        return int(self.color.shape[0])


@dataclass
class Box3D:
    """An axis-aligned-in-camera 3D box (with optional yaw), optical frame, metres.

    center: (x right, y down, z forward). size: extents along optical (x, y, z), i.e. width, height, depth.
    yaw: rotation about +y_OPTICAL in radians (N3D boxes have yaw 0 in practice).
    id: the model's ``bbox_N`` index or the backend's object id; stable within one answer.
    """

    label: str
    center: np.ndarray
    size: np.ndarray
    yaw: float = 0.0
    score: float = 1.0
    id: Optional[int] = None
    attributes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=np.float64).reshape(3)
        self.size = np.abs(np.asarray(self.size, dtype=np.float64).reshape(3))

    @property
    def min_corner(self) -> np.ndarray:
        return self.center - self.size / 2.0

    @property
    def max_corner(self) -> np.ndarray:
        return self.center + self.size / 2.0

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "label": self.label,
            "center_m": [round(float(c), 4) for c in self.center],
            "size_m": [round(float(s), 4) for s in self.size],
            "yaw_rad": round(float(self.yaw), 4),
            "score": round(float(self.score), 4),
            **({"attributes": self.attributes} if self.attributes else {}),
        }


@dataclass
class GroundingResult:
    """Boxes a backend found in one frame, with what it could not parse and how long each stage took."""

    boxes: list
    backend: str
    raw_text: str = ""
    skipped_lines: int = 0
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    dropped: list = field(default_factory=list)  # "label: why" for each decoded box refused as degenerate

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "boxes": [b.to_dict() for b in self.boxes],
            "skipped_lines": self.skipped_lines,
            "dropped": list(self.dropped),
            "raw_text": self.raw_text,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "notes": list(self.notes),
        }


@dataclass
class Answer:
    """The answer to one spatial question.

    path: which part answered: "geometry" (explicit 3D reasoning in code), "model" (N3D-VLM turn 2) or
    "none" (nothing could answer; success is False and message says why).
    value/unit: set when the question is quantitative (e.g. 0.42, "m"); unit "" otherwise.
    """

    success: bool
    text: str
    path: str
    message: str = ""
    reasoning: str = ""
    value: Optional[float] = None
    unit: str = ""
    objects: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "success": self.success,
            "answer": self.text,
            "path": self.path,
            "message": self.message,
            "reasoning": self.reasoning,
            "value": self.value,
            "unit": self.unit,
            "objects": [b.to_dict() for b in self.objects],
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }
