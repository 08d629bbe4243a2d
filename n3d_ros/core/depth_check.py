"""Is a frame usable at all? Cheap checks (vectorised numpy, run once per frame) before any backend sees it.

A frame whose depth holds no readings in range, or whose intrinsics cannot belong to a real camera, used to
reach the backends and come back as "I see no red sphere". These checks refuse it with the reason instead:

* **Depth.** At least MIN_VALID_FRACTION of the pixels must hold a finite reading inside
  [min_range_m, max_range_m]. Below that the tabletop backend cannot fit a support plane and the N3D point map
  is almost all "centroid" patches (spec 1.5), so any answer would be made up. The refusal says what the
  depth held instead: all NaN, all 0, all 65535, negative values, millimetres in a 32FC1 image, a wrong byte
  order. A decoder that applies the range itself (the ROS node, the CLI) turns out-of-range readings into
  NaN; it can keep a :class:`DepthReadout` of the raw payload on the frame (``RGBDFrame.depth_readout``, built by
  :func:`read_depth_payload`) so that the refusal still names what the sensor sent.
* **Intrinsics.** Focal lengths must be finite and positive, and each axis's field of view,
  2 * atan(size / (2 * f)), must lie within [MIN_FOV_DEG, MAX_FOV_DEG]. That band holds every pinhole lens a
  robot carries (telephoto ~5 deg, RealSense 42-90 deg, wide lenses up to ~150 deg); outside it K belongs to
  another resolution, is in the wrong unit, or is not a calibration at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .images import SUPPORTED_DEPTH_ENCODINGS, Buffer, _unpack
from .types import InputError, PinholeCamera, RGBDFrame

# 1 % of 640x480 is 3072 pixels, a 55x55 patch: less than one small object on a table.
MIN_VALID_FRACTION = 0.01
MIN_FOV_DEG, MAX_FOV_DEG = 3.0, 170.0
# Medians (in metres) of out-of-range 32FC1 readings that a millimetre image would give: 0.1 m .. 65.535 m
# written as 100 .. 65535. A real metric reading is never that far for an RGB-D camera.
_MILLIMETRE_MEDIANS = (100.0, 65535.0)
_UINT16_MAX = 65535
# Byte-order test (_roughness): the flipped image must be this many times smoother, over at least this many pairs.
_SMOOTHER_FACTOR = 10.0
_SAMPLE_ROWS = 16
_MIN_ROUGHNESS_PAIRS = 100


@dataclass(frozen=True)
class DepthReadout:
    """What a depth payload held before decoding dropped anything. Values are in the encoding's own unit
    (millimetres for 16UC1, metres for 32FC1). median: over the finite positive values (NaN if none);
    swapped_median: the same with the byte order flipped. swapped_is_smoother: the flipped image is far smoother
    than the image as flagged, which only happens when is_bigendian is wrong (see _roughness)."""

    encoding: str
    pixels: int
    nan: int
    inf: int
    zero: int
    negative: int
    positive: int
    saturated: int  # 16UC1 pixels at 65535 (the type's maximum: an unset or saturated sensor)
    median: float
    swapped_median: float
    swapped_is_smoother: bool = False

    @property
    def scale_to_m(self) -> float:
        return 0.001 if self.encoding == "16UC1" else 1.0


def read_depth_payload(buffer: Buffer, encoding: str, width: int, height: int, step=None,
                       is_bigendian: bool = False) -> DepthReadout:
    """Summarise a raw sensor_msgs/Image depth payload (same arguments as core.images.decode_depth)."""
    if encoding not in SUPPORTED_DEPTH_ENCODINGS:
        raise InputError(f"depth encoding {encoding!r} is not supported; use one of {SUPPORTED_DEPTH_ENCODINGS}")
    raw = _unpack(buffer, encoding, width, height, step, is_bigendian)
    # Counts are exact; the byte-order test uses every 16th row (40 000 neighbour pairs at 640x480 are plenty)
    # and the medians every 8th row and column: a decoder runs this on every frame.
    rows = raw[::_SAMPLE_ROWS]
    swapped = rows.byteswap()
    sample, swapped_sample = raw[::8, ::8], raw[::8, ::8].byteswap()
    smoother = _roughness(swapped) * _SMOOTHER_FACTOR < _roughness(rows)  # NaN (too few pairs) compares False
    if encoding == "16UC1":
        return DepthReadout(encoding, raw.size, nan=0, inf=0, zero=int(np.count_nonzero(raw == 0)), negative=0,
                            positive=int(np.count_nonzero(raw)), saturated=int(np.count_nonzero(raw == _UINT16_MAX)),
                            median=_positive_median(sample), swapped_median=_positive_median(swapped_sample),
                            swapped_is_smoother=smoother)
    finite = np.isfinite(raw)
    with np.errstate(invalid="ignore"):
        return DepthReadout(encoding, raw.size, nan=int(np.count_nonzero(np.isnan(raw))),
                            inf=int(np.count_nonzero(np.isinf(raw))), zero=int(np.count_nonzero(raw == 0)),
                            negative=int(np.count_nonzero(finite & (raw < 0))),
                            positive=int(np.count_nonzero(finite & (raw > 0))), saturated=0,
                            median=_positive_median(sample), swapped_median=_positive_median(swapped_sample),
                            swapped_is_smoother=smoother)


def _roughness(values: np.ndarray) -> float:
    """Typical step between horizontal neighbours that both hold a reading (in the rows given).

    Real depth is piecewise smooth. Read with the wrong byte order, the low byte of each reading lands in the
    high byte: a 1 mm step in 16UC1 becomes a step of 256, and a float32's exponent becomes noise. So a flipped
    image that is much smoother than the image as flagged means is_bigendian is wrong. 16UC1: median non-zero
    step in mm (real: 1-5; swapped: >= 255); 32FC1: median step relative to the readings (real: ~0.003).
    """
    if values.dtype.kind == "u":
        rows = values.astype(np.int32)
        ok = rows > 0
        pairs = ok[:, 1:] & ok[:, :-1]
        steps = np.abs(rows[:, 1:] - rows[:, :-1])[pairs]
        steps = steps[steps > 0]  # a flat run is 0 steps under either byte order: it tells nothing
        return float(np.median(steps)) if steps.size >= _MIN_ROUGHNESS_PAIRS else float("nan")
    rows = values.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(rows) & (rows > 0)
        pairs = ok[:, 1:] & ok[:, :-1]
        if np.count_nonzero(pairs) < _MIN_ROUGHNESS_PAIRS:
            return float("nan")
        left, right = rows[:, :-1][pairs], rows[:, 1:][pairs]
        return float(np.median(np.abs(right - left) / np.maximum(left, right)))


def _positive_median(values: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        positive = values[np.isfinite(values) & (values > 0)] if values.dtype.kind == "f" else values[values > 0]
    return float(np.median(positive)) if positive.size else float("nan")


# ------------------------------------------------------------------------------------------ checks
def intrinsics_problem(camera: PinholeCamera) -> Optional[str]:
    """Why these intrinsics cannot be a real camera's, or None."""
    for name, focal, size in (("fx", camera.fx, camera.width), ("fy", camera.fy, camera.height)):
        if not (math.isfinite(focal) and focal > 0):
            return f"camera intrinsics are implausible: {name} = {focal} must be a positive focal length in pixels"
        fov = math.degrees(2.0 * math.atan(size / (2.0 * focal)))
        if not MIN_FOV_DEG <= fov <= MAX_FOV_DEG:
            axis = "horizontal" if name == "fx" else "vertical"
            return (f"camera intrinsics are implausible: {name} = {focal:g} px on a {size} px {axis} axis gives a "
                    f"{fov:.3g} deg field of view (2*atan(size/(2*{name}))), outside the {MIN_FOV_DEG:g}-"
                    f"{MAX_FOV_DEG:g} deg of real lenses: is camera_info for this resolution and calibrated?")
    if not (math.isfinite(camera.cx) and math.isfinite(camera.cy)):
        return f"camera intrinsics are implausible: principal point ({camera.cx}, {camera.cy}) is not finite"
    return None


def depth_problem(depth: np.ndarray, min_range_m: float, max_range_m: float,
                  readout: Optional[DepthReadout] = None) -> Optional[str]:
    """Why this depth image has too few readings in [min_range_m, max_range_m], or None if it has enough."""
    with np.errstate(invalid="ignore"):
        in_range = (depth >= min_range_m) & (depth <= max_range_m) & (depth > 0)  # NaN compares False
    valid = int(np.count_nonzero(in_range))
    if readout is not None and readout.swapped_is_smoother:
        # swapped bytes can still land in range for a few % of the pixels: refuse whatever the count
        return (f"depth byte order is wrong: the {readout.encoding} image is noise as flagged but smooth with its "
                f"bytes swapped (median {readout.swapped_median * readout.scale_to_m:.3g} m then); fix the "
                "publisher's is_bigendian flag")
    if valid >= MIN_VALID_FRACTION * depth.size:
        return None
    how_many = "no" if valid == 0 else f"only {valid} ({valid / depth.size:.2%} of the pixels)"
    seen = _describe_readout(readout, min_range_m, max_range_m) if readout is not None else \
        _describe_metres(depth, min_range_m, max_range_m)
    return (f"depth has {how_many} valid readings in range {min_range_m:g}-{max_range_m:g} m "
            f"(min_range_m-max_range_m; at least {MIN_VALID_FRACTION:.0%} of the pixels are needed): {seen}")


def frame_problem(frame: RGBDFrame, min_range_m: float, max_range_m: float) -> Optional[str]:
    """intrinsics_problem, then depth_problem, cached on the frame (keyed by the range)."""
    key = ("usable", float(min_range_m), float(max_range_m))
    if key not in frame.checks:
        frame.checks[key] = intrinsics_problem(frame.camera) or depth_problem(
            frame.depth, min_range_m, max_range_m, frame.depth_readout)
    return frame.checks[key]


# ------------------------------------------------------------------------------------------ descriptions
def _share(count: int, total: int) -> str:
    return "all" if count == total else f"{count / total:.0%}"


def _describe_metres(depth: np.ndarray, lo: float, hi: float) -> str:
    """What a float depth image in metres holds, for a refusal: the kinds of pixel and a hint at the cause."""
    total = depth.size
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(depth)
        kinds = [
            ("NaN", int(np.count_nonzero(np.isnan(depth)))),
            ("+-inf", int(np.count_nonzero(np.isinf(depth)))),
            ("0", int(np.count_nonzero(depth == 0))),
            ("negative", int(np.count_nonzero(finite & (depth < 0)))),
            (f"between 0 and {lo:g} m", int(np.count_nonzero(finite & (depth > 0) & (depth < lo)))),
            (f"beyond {hi:g} m", int(np.count_nonzero(finite & (depth > hi)))),
        ]
        far = depth[finite & (depth > hi)]
        near = depth[finite & (depth > 0) & (depth < lo)]
    parts = [f"{_share(n, total)} {name}" for name, n in kinds if n]
    text = ", ".join(parts) if parts else "no pixels"
    out_of_range = far if far.size >= near.size else near
    if out_of_range.size:
        median = float(np.median(out_of_range))
        text += f"; their median {median:g} m" + _unit_hint(median, 1.0, "32FC1", lo, hi)
    elif kinds[0][1] == total:
        text += (" (no readings; a decoder that applies the range, like the ROS node's, also turns out-of-range "
                 "readings into NaN)")
    return text


def _describe_readout(readout: DepthReadout, lo: float, hi: float) -> str:
    """What the raw payload held, in the encoding's own unit, with a hint at the cause."""
    total, enc = readout.pixels, readout.encoding
    if enc == "16UC1":
        if readout.zero == total:
            return "all 0 (16UC1 0 means no reading: the sensor sees nothing, or the depth stream is not running)"
        if readout.saturated == total:
            return "all 65535 (the 16UC1 maximum, 65.5 m: an unset or saturated depth image)"
    else:
        for count, what in ((readout.nan, "NaN (no reading)"), (readout.inf, "+-inf"), (readout.zero, "0")):
            if count == total:
                return f"all {what} in the {enc} image"
    kinds = [("NaN", readout.nan), ("+-inf", readout.inf), ("0", readout.zero), ("negative", readout.negative),
             ("65535", readout.saturated), ("positive", readout.positive - readout.saturated)]
    text = f"{enc} image: " + ", ".join(f"{_share(n, total)} {name}" for name, n in kinds if n)
    if readout.positive:
        median_m = readout.median * readout.scale_to_m
        unit = "mm" if enc == "16UC1" else "m"
        text += f", median {readout.median:g} {unit}"
        if lo <= median_m <= hi:
            text += " (in range, but too few readings: is the camera covered or too close to a surface?)"
        else:
            text += _unit_hint(readout.median, readout.scale_to_m, enc, lo, hi)
    return text


def _unit_hint(median: float, scale_to_m: float, encoding: str, lo: float, hi: float) -> str:
    """A likely cause for readings whose median (in the encoding's unit) lies out of range."""
    median_m = median * scale_to_m
    if encoding == "32FC1" and _MILLIMETRE_MEDIANS[0] <= median <= _MILLIMETRE_MEDIANS[1]:
        return (" (looks like millimetres in a 32FC1 image, which must be metres: publish 16UC1 for millimetres "
                "or divide by 1000)")
    if encoding == "16UC1" and lo <= median <= hi:
        return " (looks like metres in a 16UC1 image, which must be millimetres)"
    if median_m > hi:
        if median_m > 1000.0:
            return " (no depth camera reads that far: check the encoding and byte order)"
        return " (beyond max_range_m: raise it if the scene really is that far)"
    return " (closer than min_range_m: is the camera too close to a surface, or min_range_m too large?)"
