"""Negative evidence: could this frame have seen the remembered object? (MemoryConfig states the thresholds.)

An object is judged only when its whole box is ahead of the camera and its projected 2D box lies (mostly)
inside the image. Then the frame's depth in the middle of that 2D box tells the rest: readings more than
occlusion_margin_m in front of the box's nearest face belong to something between the camera and the object
(an arm, another object), readings at or behind it show the object or, if it is gone, what was behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.camera import project_pixels
from ..core.types import RGBDFrame
from .config import MemoryConfig

OUT_OF_VIEW, OCCLUDED, NO_DEPTH, VISIBLE = "out_of_view", "occluded", "no_depth", "visible"


@dataclass
class Visibility:
    status: str          # one of OUT_OF_VIEW, OCCLUDED, NO_DEPTH, VISIBLE
    detail: str = ""


def visibility(corners_optical: np.ndarray, frame: RGBDFrame, config: MemoryConfig) -> Visibility:
    """Whether an undetected object with these optical-frame box corners (8, 3) counts as a miss (VISIBLE)."""
    camera = frame.camera
    if corners_optical[:, 2].min() < config.min_range_m:
        return Visibility(OUT_OF_VIEW, f"nearest corner {corners_optical[:, 2].min():.2f} m ahead of the camera")
    u, v = project_pixels(corners_optical, camera)
    x0, x1, y0, y1 = u.min(), u.max(), v.min(), v.max()
    area = max(x1 - x0, 1e-9) * max(y1 - y0, 1e-9)
    margin = config.image_margin_px
    inside_w = max(0.0, min(x1, camera.width - 1 - margin) - max(x0, margin))
    inside_h = max(0.0, min(y1, camera.height - 1 - margin) - max(y0, margin))
    inside = inside_w * inside_h / area
    if inside < config.min_in_view_fraction:
        return Visibility(OUT_OF_VIEW, f"{inside:.0%} of its image box inside the image")
    # the middle of the 2D box: mostly the object itself, little of its surroundings
    cu, cv_, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * config.sample_fraction / 2, \
        (y1 - y0) * config.sample_fraction / 2
    j0, j1 = int(np.clip(np.floor(cu - hw), 0, camera.width - 1)), int(np.clip(np.ceil(cu + hw), 0, camera.width - 1))
    i0, i1 = int(np.clip(np.floor(cv_ - hh), 0, camera.height - 1)), \
        int(np.clip(np.ceil(cv_ + hh), 0, camera.height - 1))
    count = (j1 - j0 + 1) * (i1 - i0 + 1)
    stride = max(1, int(np.ceil(np.sqrt(count / config.max_depth_samples))))
    samples = frame.depth[i0:i1 + 1:stride, j0:j1 + 1:stride].ravel()
    samples = samples[np.isfinite(samples) & (samples > 0)]
    if samples.size < config.min_depth_samples:
        return Visibility(NO_DEPTH, f"{samples.size} depth readings where it should be")
    near_face = corners_optical[:, 2].min()
    clear = float(np.mean(samples >= near_face - config.occlusion_margin_m))
    if clear < config.min_unoccluded_fraction:
        return Visibility(OCCLUDED, f"{1 - clear:.0%} of the depth readings are in front of it")
    return Visibility(VISIBLE, f"{clear:.0%} of {samples.size} depth readings at or behind its near face")
