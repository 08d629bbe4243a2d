"""The N3D point map from an RGB-D frame, exactly as spec sections 1.1-1.3 and 1.6 define it.

Steps: undistort if needed -> target size with the long side 640 (short side by int() truncation) -> colour
LANCZOS, depth nearest-neighbour at pixel centres (never blended across holes or edges) -> valid mask (finite,
inside the range, optionally minus outliers) -> back-projection with normalised intrinsics and half-pixel
centres -> x-left / y-up / z-forward storage -> host normalisation (shift0 = per-axis minimum over valid
points, scaling_init = 1 / mean norm of the shifted valid points).

The 631-639 short-side trap (spec section 7 item 2): a landscape map 640 wide and 631-639 high gets a square
patch grid, so the model reshapes it as 640 x W and silently scrambles it. We CROP such a map (and the image)
centrally to 630 rows and adjust fy_n/cy_n to the crop, losing at most 9 rows (1.4 %) of real pixels;
padding instead would feed the model rows of invented content.

Invalid pixels store xyz = 0 and valid = 0 (their xyz is never used by the model, spec 1.4-1.5; zeros keep
every consumer free of inf arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from .resize import PATCH_FACTOR, QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, resize_horizontal_first, smart_resize_size
from .types import InputError, RGBDFrame

LONG_SIDE = 640                 # hard-coded in the model's reshape (spec 1.5 step 3)
MAX_LANDSCAPE_SHORT_SIDE = 630  # 631-639 rows would round to a square 46x46 patch grid


@dataclass
class N3DInputs:
    """Everything the model and the box decoder need from one frame.

    image: PIL RGB image handed to the image processor (same FOV and size as the point map).
    points: (H*W, 4) float32, row-major: normalised x, y, z in the N3D frame and the valid flag (1/0).
    map_hw: (H, W) of the point map. shift0: (3,) metres; scaling: scaling_init (1/m); both decode z and sizes.
    intrinsics_n: (fx_n, fy_n, cx_n, cy_n) of the map/image (after any crop). source_hw: (H0, W0) of the frame.
    crop_rows: rows dropped (top, bottom) from the resized map by the 631-639 rule. depth: (H, W) float32
    metres at map resolution, NaN where not valid. undistorted: whether the frame was undistorted first.
    """

    image: object
    points: np.ndarray
    map_hw: Tuple[int, int]
    shift0: np.ndarray
    scaling: float
    intrinsics_n: Tuple[float, float, float, float]
    source_hw: Tuple[int, int]
    valid_fraction: float
    crop_rows: Tuple[int, int] = (0, 0)
    depth: np.ndarray = None
    undistorted: bool = False

    @property
    def valid(self) -> np.ndarray:
        return self.points[:, 3] > 0

    def metric_points_n3d(self) -> np.ndarray:
        """(H*W, 3) metric N3D-frame points (x left, y up, z forward), NaN where invalid."""
        metric = self.points[:, :3].astype(np.float64) / self.scaling + self.shift0
        metric[~self.valid] = np.nan
        return metric


def target_size(width: int, height: int) -> Tuple[int, int]:
    """(W, H) with the long side 640 and the short side truncated with int(), as the official demo does."""
    if width >= height:
        return LONG_SIDE, int(height * LONG_SIDE / width)
    return int(width * LONG_SIDE / height), LONG_SIDE


def processor_grid(width: int, height: int, min_pixels: int = QWEN_MIN_PIXELS,
                   max_pixels: int = QWEN_MAX_PIXELS) -> Tuple[int, int]:
    """(gh, gw) patch grid that Qwen2-VL's smart_resize gives an image of width x height (spec 1.1 step 4)."""
    w_bar, h_bar = smart_resize_size(width, height, PATCH_FACTOR, min_pixels, max_pixels)
    return h_bar // 14, w_bar // 14


def assert_layout_matches(map_hw: Tuple[int, int], grid_hw: Tuple[int, int]) -> None:
    """Raise InputError unless the model's hard-coded reshape (spec 1.5 step 3) reads this map correctly:
    gh < gw needs an H x 640 map, otherwise a 640 x W map."""
    height, width = map_hw
    gh, gw = grid_hw
    if gh < gw and width != LONG_SIDE:
        raise InputError(f"point map {height}x{width} with landscape patch grid {gh}x{gw}: the model reshapes it "
                         f"as Hx640, so the map must be 640 wide")
    if gh >= gw and height != LONG_SIDE:
        raise InputError(f"point map {height}x{width} with patch grid {gh}x{gw} (gh >= gw): the model reshapes it "
                         f"as 640xW and would scramble it; landscape maps need a short side <= "
                         f"{MAX_LANDSCAPE_SHORT_SIDE} (build_point_map crops to that)")


def outlier_tolerance_m(z: np.ndarray) -> np.ndarray:
    """How close (metres) a neighbour's depth must be to support a pixel: 5 mm + 1 % of z + 0.8 %/m of z.
    It grows with z like stereo noise (D4xx sigma ~ 0.0026 z^2) plus the pixel-to-pixel depth gradient of a
    surface seen at a grazing angle, so that far or slanted surfaces are not eaten away."""
    return 0.005 + z * (0.01 + 0.008 * z)


def _supported(z: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """True where a pixel has a neighbour on at least one side horizontally AND one vertically whose depth
    differs by at most the tolerance of the farther of the two.

    A flying pixel (stereo blending foreground and background) differs from both its left and right (or
    upper and lower) neighbours; an isolated speckle differs from all four. A real surface pixel, even on a
    silhouette edge or corner, keeps a same-surface neighbour in each direction. Invalid pixels hold NaN,
    which compares False, so they never support anything.
    """
    close_h = np.abs(z[:, 1:] - z[:, :-1]) <= np.maximum(tol[:, 1:], tol[:, :-1])  # pixel j+1 vs pixel j
    close_v = np.abs(z[1:, :] - z[:-1, :]) <= np.maximum(tol[1:, :], tol[:-1, :])
    horizontal = np.zeros(z.shape, dtype=bool)
    horizontal[:, 1:] = close_h
    horizontal[:, :-1] |= close_h
    vertical = np.zeros(z.shape, dtype=bool)
    vertical[1:, :] = close_v
    vertical[:-1, :] |= close_v
    return horizontal & vertical


def _resize_indices(source: int, target: int) -> np.ndarray:
    """Nearest source index for each target pixel, matching pixel centres: floor((i + 0.5) * source / target).
    Integer arithmetic, so a centre falling exactly on a source pixel boundary always picks the same side."""
    return np.minimum(((2 * np.arange(target, dtype=np.int64) + 1) * source) // (2 * target), source - 1)


def build_point_map(frame: RGBDFrame, min_range_m: float = 0.1, max_range_m: float = 10.0,
                    filter_outliers: bool = True, undistort: bool = True,
                    match_float16: bool = False) -> N3DInputs:
    """The model's image and normalised (H*W, 4) point map for one RGB-D frame.

    filter_outliers drops isolated readings and flying pixels (no neighbour at a similar depth), which would
    otherwise move shift0/scaling_init (spec 1.3). match_float16 rounds the metric map through float16 like the
    official .npz files. A frame with distortion is undistorted first (undistort=False refuses it instead).
    Raises InputError when no valid point remains.
    """
    from PIL import Image

    from .camera import has_distortion, undistort_frame

    if not (0.0 <= min_range_m < max_range_m < float("inf")):
        raise InputError(f"depth range must satisfy 0 <= min < max < inf, got min={min_range_m} max={max_range_m}")
    undistorted = has_distortion(frame.camera)
    if undistorted:
        if not undistort:
            raise InputError(f"camera has non-zero {frame.camera.distortion_model} distortion "
                             f"{frame.camera.distortion}; undistort the frame (core.camera.undistort_frame)")
        frame = undistort_frame(frame)
    H0, W0 = frame.depth.shape
    W, H_full = target_size(W0, H0)
    H = MAX_LANDSCAPE_SHORT_SIDE if W > H_full > MAX_LANDSCAPE_SHORT_SIDE else H_full
    top = (H_full - H) // 2

    image = Image.fromarray(frame.color)
    if (W, H_full) != (W0, H0):
        # horizontal pass first whatever the Pillow version, as the model's Pillow 11 did (core.resize)
        image = resize_horizontal_first(image, (W, H_full), Image.Resampling.LANCZOS)
    if H != H_full:
        image = image.crop((0, top, W, top + H))
    rows = _resize_indices(H0, H_full)[top:top + H]
    cols = _resize_indices(W0, W)
    depth = frame.depth if (W, H_full) == (W0, H0) and H == H_full else frame.depth[rows[:, None], cols[None, :]]
    depth = np.asarray(depth, dtype=np.float32)

    valid = (depth >= max(min_range_m, 1e-6)) & (depth <= max_range_m)  # NaN compares False
    depth = np.where(valid, depth, np.float32(np.nan))  # NaN: never supports a neighbour, marks "no point"
    if filter_outliers:
        valid &= _supported(depth, outlier_tolerance_m(depth))
        np.copyto(depth, np.float32(np.nan), where=~valid)
    z = np.where(valid, depth, np.float32(0.0))  # 0 for invalid keeps the arithmetic below finite
    count = int(np.count_nonzero(valid))
    if count == 0:
        raise InputError(f"no valid depth in [{min_range_m}, {max_range_m}] m remains in the {W0}x{H0} frame: "
                         "check the depth encoding/units (16UC1 is millimetres) and the range limits")

    fx_n, fy_n, cx_n, cy_n = frame.camera.normalized_intrinsics()
    if H != H_full:  # normalised coordinates of the crop: v' = (v * H_full - top) / H
        fy_n, cy_n = fy_n * H_full / H, (cy_n * H_full - top) / H
    # N3D frame: x = -X, y = -Y with X = (u - cx_n) / fx_n * Z and u = (j + 0.5) / W (spec 1.6 step 4).
    # Whole-image float32 planes rather than gathered (N, 3) rows: strided reductions over (N, 3) cost ~10x more.
    x_per_z = (-(((np.arange(W) + 0.5) / W - cx_n) / fx_n)).astype(np.float32)
    y_per_z = (-(((np.arange(H) + 0.5) / H - cy_n) / fy_n)).astype(np.float32)
    planes = [x_per_z[None, :] * z, y_per_z[:, None] * z, z.copy()]
    if match_float16:
        planes = [p.astype(np.float16).astype(np.float32) for p in planes]
    shift0 = np.array([float(np.min(p, where=valid, initial=np.inf)) for p in planes])
    # in-place arithmetic from here on: at 640x480 each temporary costs about as much as the maths
    for plane, offset in zip(planes, shift0):
        plane -= np.float32(offset)
    norms = planes[0] * planes[0]
    scratch = planes[1] * planes[1]
    norms += scratch
    np.multiply(planes[2], planes[2], out=scratch)
    norms += scratch
    np.sqrt(norms, out=norms)
    mean_norm = float(np.sum(norms, where=valid, dtype=np.float64)) / count
    if not mean_norm > 0:
        raise InputError(f"all {count} valid points coincide, so the map cannot be normalised (spec 1.3); "
                         "the depth image is degenerate")
    scaling = 1.0 / mean_norm
    np.multiply(valid, np.float32(scaling), out=scratch)  # per-pixel gain: 0 zeroes invalid pixels
    points = np.empty((H, W, 4), dtype=np.float32)
    for channel, plane in enumerate(planes):
        np.multiply(plane, scratch, out=points[:, :, channel])
    points[:, :, 3] = valid
    points = points.reshape(H * W, 4)
    return N3DInputs(image=image, points=points, map_hw=(H, W), shift0=shift0, scaling=scaling,
                     intrinsics_n=(float(fx_n), float(fy_n), float(cx_n), float(cy_n)), source_hw=(H0, W0),
                     valid_fraction=count / float(H * W), crop_rows=(top, H_full - H - top), depth=depth,
                     undistorted=undistorted)
