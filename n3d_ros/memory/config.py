"""Every threshold of the object memory, with its unit. Defaults suit a tabletop RGB-D camera at 0.4-2 m."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Tuple

import numpy as np

from ..core.types import InputError


@dataclass(frozen=True)
class MemoryConfig:
    # The fixed frame objects are kept in (odom, map, base_link for a fixed arm, or the camera's own optical
    # frame for a fixed camera) and its gravity-up direction, a unit vector in that frame. Yaw turns about it.
    frame_id: str = "odom"
    up: Tuple[float, float, float] = (0.0, 0.0, 1.0)
    max_objects: int = 200                 # bounded memory: the least recently seen object is evicted first

    # Association (memory frame): a detection may continue an object only if their labels are compatible and
    # their centres are within max_center_distance_m, or their upright boxes overlap by min_iou (large objects)
    max_center_distance_m: float = 0.15
    min_iou: float = 0.25

    # Measurement model: standard deviation of one observation along each axis = base + per_m * range
    # + per_m2 * range^2 (metres, range = camera to box centre; stereo depth error grows with range squared).
    # Fusion is a per-axis Kalman filter with a constant-position model.
    center_sigma_m: float = 0.01
    center_sigma_per_m: float = 0.01
    center_sigma_per_m2: float = 0.0
    size_sigma_m: float = 0.015
    size_sigma_per_m: float = 0.01
    size_sigma_per_m2: float = 0.0
    yaw_sigma_rad: float = 0.25
    # A box whose object reaches within edge_margin_px of the image border (its pixel_box attribute, else its
    # projected upright box) is cut off: its centre and size are biased towards the visible part. Its variances
    # are scaled by partial_variance_scale (25: sigma x 5), and it only continues a remembered object unless
    # create_from_partial.
    edge_margin_px: float = 2.0
    partial_variance_scale: float = 25.0
    create_from_partial: bool = False
    # random walk an object may make between observations (m per sqrt(s)): keeps the filter from locking
    process_sigma_m_per_sqrt_s: float = 0.002
    # an associated observation this many innovation sigmas away on some axis means the object was moved:
    # its estimate restarts from the observation (same id) instead of averaging the old and new places
    reset_innovation_sigmas: float = 4.0

    # Confidence that the object is there, as log-odds: + hit per detection, - miss per frame in which it was
    # in view, not occluded and not detected; dropped below drop_below_confidence (a probability).
    initial_log_odds: float = 0.0          # a new object starts at confidence 0.5
    hit_log_odds: float = 0.85
    miss_log_odds: float = 1.4
    max_log_odds: float = 3.0              # confidence cap 0.95, so a few clear misses always remove an object
    drop_below_confidence: float = 0.2
    confirm_observations: int = 2          # objects seen fewer times are tentative (not listed by default)

    # Negative evidence: "in view" = every box corner at least min_range_m ahead of the camera and at least
    # min_in_view_fraction of its projected 2D box inside the image (minus image_margin_px). Depth is sampled in
    # the central sample_fraction of that 2D box; a sample more than occlusion_margin_m in front of the box's
    # nearest face is an occluder. The object counts as seen-through (a miss if undetected) when at least
    # min_unoccluded_fraction of min_depth_samples or more valid samples are not occluders.
    min_range_m: float = 0.1
    min_in_view_fraction: float = 0.9
    image_margin_px: float = 4.0
    sample_fraction: float = 0.5
    occlusion_margin_m: float = 0.03
    min_unoccluded_fraction: float = 0.6
    min_depth_samples: int = 20
    max_depth_samples: int = 400           # a stride keeps the check cheap for large boxes

    # Camera poses: the pose's stamp may differ from the image's by at most this (seconds)
    max_pose_offset_s: float = 0.05

    def validated(self) -> "MemoryConfig":
        """Return self, or raise InputError naming the bad setting and what it must be."""
        if not self.frame_id.strip():
            raise InputError("memory frame_id must name a frame (e.g. odom, map, base_link)")
        up = np.asarray(self.up, dtype=np.float64)
        if up.shape != (3,) or not np.all(np.isfinite(up)) or abs(np.linalg.norm(up) - 1.0) > 1e-3:
            raise InputError(f"memory up must be a unit 3-vector in the memory frame, got {list(self.up)}")
        if self.max_objects < 1:
            raise InputError(f"max_objects must be at least 1, got {self.max_objects}")
        positive = ("max_center_distance_m", "center_sigma_m", "size_sigma_m", "yaw_sigma_rad", "hit_log_odds",
                    "miss_log_odds", "reset_innovation_sigmas", "occlusion_margin_m", "max_pose_offset_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.partial_variance_scale < 1.0:
            raise InputError(f"partial_variance_scale must be >= 1, got {self.partial_variance_scale}")
        for name in ("center_sigma_per_m", "size_sigma_per_m", "center_sigma_per_m2", "size_sigma_per_m2",
                     "process_sigma_m_per_sqrt_s", "min_range_m",
                     "image_margin_px", "edge_margin_px"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("min_iou", "min_in_view_fraction", "min_unoccluded_fraction", "sample_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise InputError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if not 0.0 < self.drop_below_confidence < 1.0 / (1.0 + np.exp(-self.initial_log_odds)):
            raise InputError(f"drop_below_confidence must be in (0, initial confidence), got "
                             f"{self.drop_below_confidence}")
        if self.max_log_odds <= self.initial_log_odds:
            raise InputError("max_log_odds must exceed initial_log_odds")
        if self.confirm_observations < 1 or self.min_depth_samples < 1 or \
                self.max_depth_samples < self.min_depth_samples:
            raise InputError("need confirm_observations >= 1 and 1 <= min_depth_samples <= max_depth_samples")
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "MemoryConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown memory settings {unknown}; known: {sorted(known)}")
        values = dict(values)
        if "up" in values:
            values["up"] = tuple(float(v) for v in values["up"])
        return cls(**values).validated()
