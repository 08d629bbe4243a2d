"""Decoding of sensor_msgs/Image and CompressedImage payloads into numpy, without cv_bridge.

Depth comes out as float32 metres along the optical axis with NaN wherever there is no reading; colour comes
out as HxWx3 uint8 RGB. Anything we cannot decode exactly raises InputError saying what would work instead.
"""

from __future__ import annotations

import struct
from typing import Tuple, Union

import numpy as np

from .types import InputError

SUPPORTED_DEPTH_ENCODINGS: Tuple[str, ...] = ("16UC1", "32FC1")
SUPPORTED_COLOR_ENCODINGS: Tuple[str, ...] = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422_yuy2", "yuv422")
SUPPORTED_COMPRESSED_DEPTH_FORMATS: Tuple[str, ...] = ("16UC1; compressedDepth png", "32FC1; compressedDepth png",
                                                        "16UC1; png", "png")

# Per encoding: (numpy scalar type, channels). Byte order is applied separately from is_bigendian.
_LAYOUT = {
    "16UC1": (np.uint16, 1),
    "32FC1": (np.float32, 1),
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    # 4:2:2 packed: two pixels share one (U, V) pair, so every pixel takes two bytes and the width must be even.
    "yuv422_yuy2": (np.uint8, 2),  # Y0 U Y1 V (YUYV): RealSense's YUYV format
    "yuv422": (np.uint8, 2),       # U Y0 V Y1 (UYVY): ROS's name for it, as in cv_bridge
}
# OpenCV's BT.601 video-range conversions, the ones cv_bridge uses for these two encodings.
_YUV422_TO_RGB = {"yuv422_yuy2": "COLOR_YUV2RGB_YUY2", "yuv422": "COLOR_YUV2RGB_UYVY"}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# image_transport's compressed_depth header: int32 compression format, then two float32 quantisation
# parameters (A, B) used for 32FC1 inverse-depth coding: stored = A / depth + B, so depth = A / (stored - B).
_COMPRESSED_DEPTH_HEADER = struct.Struct("<iff")

Buffer = Union[bytes, bytearray, memoryview, np.ndarray]


def _as_bytes_array(buffer: Buffer) -> np.ndarray:
    """Any sensor_msgs data payload (bytes, array.array, memoryview, numpy) as a flat uint8 view, no copy."""
    if isinstance(buffer, np.ndarray):
        return np.ascontiguousarray(buffer).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(buffer, dtype=np.uint8)
    except TypeError as exc:
        raise InputError(f"image data must be bytes-like or a numpy array, got {type(buffer).__name__}") from exc


def _unpack(buffer: Buffer, encoding: str, width: int, height: int, step, is_bigendian: bool) -> np.ndarray:
    """The (H, W[, C]) pixel array of a raw sensor_msgs/Image, honouring step padding and byte order."""
    scalar, channels = _LAYOUT[encoding]
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise InputError(f"image size must be positive, got {width}x{height}")
    item = np.dtype(scalar).itemsize
    row_bytes = width * channels * item
    step = row_bytes if step is None or int(step) == 0 else int(step)
    if step < row_bytes:
        raise InputError(f"{encoding} row step {step} is smaller than width*{channels * item} = {row_bytes} bytes")
    data = _as_bytes_array(buffer)
    if data.size != step * height:
        raise InputError(f"{encoding} {width}x{height} with step {step} needs {step * height} bytes, got {data.size}: "
                         "check width/height/step against the publisher")
    rows = data.reshape(height, step)[:, :row_bytes]
    dtype = np.dtype(scalar).newbyteorder(">" if is_bigendian else "<")
    pixels = np.ascontiguousarray(rows).view(dtype)
    pixels = pixels.astype(pixels.dtype.newbyteorder("="), copy=False)
    return pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)


def _check_range(min_range_m: float, max_range_m: float) -> None:
    if not (min_range_m >= 0.0 and max_range_m > min_range_m):
        raise InputError(f"depth range must satisfy 0 <= min < max, got min={min_range_m} max={max_range_m}")


def _apply_range(metres: np.ndarray, min_range_m: float, max_range_m: float) -> np.ndarray:
    """NaN out everything that is not a reading inside [min, max] (in place on a float32 array)."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(metres) & (metres >= max(min_range_m, np.finfo(np.float32).tiny))
                & (metres <= max_range_m))
    metres[bad] = np.nan
    return metres


def decode_depth(buffer: Buffer, encoding: str, width: int, height: int, step=None, is_bigendian: bool = False,
                 min_range_m: float = 0.0, max_range_m: float = float("inf")) -> np.ndarray:
    """sensor_msgs/Image depth -> (H, W) float32 metres, NaN = no reading.

    16UC1 is millimetres with 0 = no reading; 32FC1 is metres with NaN, +-inf and 0 = no reading. Readings
    outside [min_range_m, max_range_m] become NaN too (0 is never a reading, whatever min_range_m says).
    """
    if encoding not in SUPPORTED_DEPTH_ENCODINGS:
        raise InputError(f"depth encoding {encoding!r} is not supported; use one of {SUPPORTED_DEPTH_ENCODINGS} "
                         "(16UC1 millimetres as RealSense publishes, or 32FC1 metres)")
    _check_range(min_range_m, max_range_m)
    raw = _unpack(buffer, encoding, width, height, step, is_bigendian)
    if encoding == "16UC1":
        metres = raw.astype(np.float32) / np.float32(1000.0)  # division: correctly rounded, 1234 -> 1.234f
    else:
        metres = raw.astype(np.float32, copy=True)
    return _apply_range(metres, min_range_m, max_range_m)


def decode_color(buffer: Buffer, encoding: str, width: int, height: int, step=None,
                 is_bigendian: bool = False) -> np.ndarray:
    """sensor_msgs/Image colour -> (H, W, 3) uint8 RGB (alpha dropped, mono replicated, YUV 4:2:2 converted
    with BT.601 video-range coefficients exactly as OpenCV/cv_bridge do)."""
    if encoding not in SUPPORTED_COLOR_ENCODINGS:
        raise InputError(f"colour encoding {encoding!r} is not supported; use one of {SUPPORTED_COLOR_ENCODINGS}")
    if encoding in _YUV422_TO_RGB and int(width) > 0 and int(width) % 2:
        raise InputError(f"{encoding} packs two pixels per (U, V) pair, so the width must be even, got {width}: "
                         "check the publisher's width")
    raw = _unpack(buffer, encoding, width, height, step, is_bigendian)
    if encoding in _YUV422_TO_RGB:
        import cv2

        # cvtColor returns a new array; the contiguous copy drops the step padding that _unpack sliced off
        return cv2.cvtColor(np.ascontiguousarray(raw), getattr(cv2, _YUV422_TO_RGB[encoding]))
    if encoding == "mono8":
        return np.repeat(raw[:, :, None], 3, axis=2)
    # always a fresh, writable array: a view would pin (and share) the message buffer
    if encoding.startswith("bgr"):
        return np.array(raw[:, :, 2::-1], order="C")
    return np.array(raw[:, :, :3], order="C")


def decode_compressed_color(data: Buffer) -> np.ndarray:
    """sensor_msgs/CompressedImage colour (JPEG, PNG, ...) -> (H, W, 3) uint8 RGB."""
    import cv2

    encoded = _as_bytes_array(data)
    image = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if encoded.size else None
    if image is None:
        raise InputError(f"compressed colour image of {encoded.size} bytes could not be decoded (expected JPEG or PNG)")
    return np.ascontiguousarray(image[:, :, ::-1])  # OpenCV decodes to BGR


def decode_compressed_depth(data: Buffer, format: str, min_range_m: float = 0.0,
                            max_range_m: float = float("inf")) -> np.ndarray:
    """sensor_msgs/CompressedImage depth -> (H, W) float32 metres, NaN = no reading.

    Accepts image_transport's ``compressedDepth`` PNG codec (a 12-byte header, then a 16-bit PNG holding
    millimetres for 16UC1 or quantised inverse depth for 32FC1) and a plain 16-bit PNG of millimetres.
    The ``rvl`` codec is refused: no decoder for it ships with numpy or OpenCV.
    """
    import cv2

    _check_range(min_range_m, max_range_m)
    text = (format or "").strip()
    encoded = _as_bytes_array(data)
    if "rvl" in text.lower():
        raise InputError(f"compressed depth format {text!r} (RVL) is not supported; set the publisher's "
                         "compressedDepth format to png")
    compressed_depth = "compresseddepth" in text.lower()
    source = text.split(";")[0].strip() if ";" in text else ("16UC1" if text.lower() in ("", "png") else text)
    if source not in SUPPORTED_DEPTH_ENCODINGS:
        raise InputError(f"compressed depth format {text!r} is not supported; use one of "
                         f"{SUPPORTED_COMPRESSED_DEPTH_FORMATS}")
    if source == "32FC1" and not compressed_depth:
        raise InputError(f"compressed depth format {text!r}: a plain PNG cannot hold 32FC1 metres; use the "
                         "compressedDepth transport")
    offset = _COMPRESSED_DEPTH_HEADER.size if compressed_depth else 0
    if encoded.size < offset + len(_PNG_MAGIC) or encoded[offset:offset + 8].tobytes() != _PNG_MAGIC:
        where = "after the 12-byte compressedDepth header" if compressed_depth else "at the start"
        raise InputError(f"compressed depth ({text!r}, {encoded.size} bytes) has no PNG {where}")
    stored = cv2.imdecode(encoded[offset:], cv2.IMREAD_UNCHANGED)
    if stored is None or stored.dtype != np.uint16 or stored.ndim != 2:
        got = "nothing" if stored is None else f"{stored.dtype} with shape {stored.shape}"
        raise InputError(f"compressed depth ({text!r}) must hold a single-channel 16-bit PNG, decoded {got}")
    if source == "16UC1":
        metres = stored.astype(np.float32) / np.float32(1000.0)
    else:
        _, quant_a, quant_b = _COMPRESSED_DEPTH_HEADER.unpack(encoded[:offset].tobytes())
        with np.errstate(divide="ignore", invalid="ignore"):
            metres = (np.float32(quant_a) / (stored.astype(np.float32) - np.float32(quant_b))).astype(np.float32)
        metres[stored == 0] = np.nan
    return _apply_range(metres, min_range_m, max_range_m)


def encode_depth_16uc1(depth_m: np.ndarray) -> np.ndarray:
    """(H, W) metres (NaN/inf/<=0 = no reading) -> uint16 millimetres, 0 = no reading, rounded to nearest.

    Depth beyond 65.535 m cannot be represented in 16UC1: that raises rather than wrapping or clipping.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim != 2:
        raise InputError(f"depth must be HxW, got shape {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    millimetres = np.zeros(depth.shape, dtype=np.float64)
    np.rint(depth * 1000.0, out=millimetres, where=valid)
    if millimetres.max(initial=0.0) > 65535:
        raise InputError(f"depth up to {depth[valid].max():.3f} m does not fit 16UC1 millimetres (max 65.535 m); "
                         "clip the range first")
    return millimetres.astype(np.uint16)
