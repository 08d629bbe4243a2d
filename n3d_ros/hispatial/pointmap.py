"""HiSpatial's second input from a depth camera instead of MoGe: a metric XYZ map with a validity mask.

Conventions (hispatial-spec 2.1-2.6), all different from the N3D map in core.pointmap:
* frame: the colour camera's optical frame (x right, y down, z forward), metres, Z = depth along the axis;
  no flips, no centring, no normalisation;
* back-projection at NATIVE resolution with the real K and integer pixel centres (core.camera.backproject_depth),
  then both XYZ and the mask are sampled to 448x448 with cv2's legacy INTER_NEAREST (top-left biased:
  source index floor(i * H0 / 448)), never bilinear and never a back-projection on the 448 grid;
* colour: cv2 INTER_LINEAR straight to 448x448, aspect ratio squashed, no crop or pad;
* invalid pixels (no reading, outside the range): XYZ (0, 0, 0) and mask 0, the GT-depth convention of the
  reference eval and of ~88 % of the training data; then every component > 250, +-inf or NaN becomes 250
  (values below -250 stay: the reference clamp is one-sided).

How a depth camera differs from the MoGe maps of training: MoGe gives a dense, smooth map (only sky/far
background masked), while a stereo/ToF camera has holes (shadows next to edges, dark or shiny surfaces, closer
than its minimum range), flying pixels on silhouettes, noise growing with z^2, and a trustworthy range of a few
metres. We pass holes as mask 0 (the model saw masked pixels in training), cut the range at max_range_m, and
report the valid fraction so a caller can warn when most of the map is empty; we do not invent depth by
inpainting, which the model would read as real geometry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from ..core.camera import backproject_depth, has_distortion, undistort_frame
from ..core.types import InputError, PinholeCamera, RGBDFrame

SIZE = 448
CLAMP_M = 250.0
MIN_DEPTH_M = 0.01  # the reference GT-depth path keeps 0.01 < z < 250


@dataclass
class HiSpatialInputs:
    """rgb: (448, 448, 3) uint8 RGB. xyz: (4, 448, 448) float32 [X, Y, Z, mask]. camera: the (undistorted)
    native camera the map was built from. source_hw: (H0, W0). valid_fraction: share of the 448^2 mask set."""

    rgb: np.ndarray
    xyz: np.ndarray
    camera: PinholeCamera
    source_hw: Tuple[int, int]
    valid_fraction: float
    undistorted: bool = False


def legacy_nearest_indices(source: int, target: int = SIZE) -> np.ndarray:
    """Source index per target pixel of cv2.resize INTER_NEAREST: min(floor(i * source / target), source - 1),
    computed in double precision as OpenCV does (scale = 1 / (target / source))."""
    scale = 1.0 / (target / source)
    return np.minimum(np.floor(np.arange(target, dtype=np.float64) * scale).astype(np.int64), source - 1)


def clamp_xyz(values: np.ndarray) -> np.ndarray:
    """The reference clamp, in place: > 250, +-inf and NaN become 250; large negatives are kept."""
    np.copyto(values, np.float32(CLAMP_M), where=~(values <= CLAMP_M))  # NaN and +inf fail <=
    np.copyto(values, np.float32(CLAMP_M), where=np.isneginf(values))
    return values


def build_xyz_inputs(frame: RGBDFrame, min_range_m: float = 0.1, max_range_m: float = 10.0,
                     undistort: bool = True) -> HiSpatialInputs:
    """The 448x448 colour image and [4, 448, 448] xyz/mask tensor of one aligned RGB-D frame.

    valid = finite and max(min_range_m, 0.01) < z < min(max_range_m, 250). A distorted frame is undistorted
    first (the model assumes a pinhole); undistort=False refuses it. Raises InputError when no pixel is valid.
    """
    import cv2

    if not (0.0 <= min_range_m < max_range_m):
        raise InputError(f"depth range must satisfy 0 <= min < max, got min={min_range_m} max={max_range_m}")
    undistorted = has_distortion(frame.camera)
    if undistorted:
        if not undistort:
            raise InputError(f"camera has non-zero {frame.camera.distortion_model} distortion; publish rectified "
                             "images or let the backend undistort")
        frame = undistort_frame(frame)
    H0, W0 = frame.depth.shape
    rows, cols = legacy_nearest_indices(H0), legacy_nearest_indices(W0)
    # Sampling commutes with the per-pixel back-projection, so back-project the sampled native pixels only:
    # the same numbers as back-projecting the whole frame, at 448^2 instead of H0*W0 points.
    depth = np.asarray(frame.depth, dtype=np.float64)
    points = backproject_depth(depth, frame.camera)[rows[:, None], cols[None, :]]  # (448, 448, 3)
    z = points[..., 2]
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(z) & (z > max(min_range_m, MIN_DEPTH_M)) & (z < min(max_range_m, CLAMP_M))
    if not valid.any():
        raise InputError(f"no depth reading in ({min_range_m}, {max_range_m}) m in the {W0}x{H0} frame: check "
                         "the depth encoding/units (16UC1 is millimetres) and that depth is aligned to colour")
    xyz = np.empty((4, SIZE, SIZE), dtype=np.float32)
    xyz[:3] = np.moveaxis(np.where(valid[..., None], points, 0.0), -1, 0)
    clamp_xyz(xyz[:3])
    xyz[3] = valid
    rgb = cv2.resize(frame.color, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    return HiSpatialInputs(rgb=rgb, xyz=xyz, camera=frame.camera, source_hw=(H0, W0),
                           valid_fraction=float(valid.mean()), undistorted=undistorted)
