"""Image decoding: every encoding, step padding, byte order, compressed forms, and every refusal path.
References are built byte by byte with struct, independently of the numpy views the decoder uses."""

from __future__ import annotations

import array
import struct

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from n3d_ros.core.images import (SUPPORTED_COLOR_ENCODINGS, SUPPORTED_DEPTH_ENCODINGS, decode_color,
                                 decode_compressed_color, decode_compressed_depth, decode_depth,
                                 encode_depth_16uc1)
from n3d_ros.core.types import InputError


def _pack_rows(values, fmt, width, step):
    """Bytes of a row-major image: each row packed with struct, then zero padding up to step."""
    out = bytearray()
    for row in values:
        packed = b"".join(struct.pack(fmt, *np.atleast_1d(v).tolist()) for v in row)
        out += packed + b"\x00" * (step - len(packed))
    return bytes(out)


# ---------------------------------------------------------------------- raw depth
def test_16uc1_millimetres_zero_is_no_reading():
    mm = [[0, 1, 1000], [65535, 250, 4]]
    got = decode_depth(_pack_rows(mm, "<H", 3, 6), "16UC1", 3, 2)
    assert got.dtype == np.float32 and got.shape == (2, 3)
    assert np.isnan(got[0, 0])
    assert np.allclose(got[~np.isnan(got)], np.array([0.001, 1.0, 65.535, 0.25, 0.004], dtype=np.float32))


def test_16uc1_big_endian_and_step_padding():
    mm = [[1200, 3], [7, 65000]]
    data = _pack_rows(mm, ">H", 2, 8)
    got = decode_depth(data, "16UC1", 2, 2, step=8, is_bigendian=True)
    assert np.allclose(got, np.array(mm, dtype=np.float32) / 1000)
    little = decode_depth(data, "16UC1", 2, 2, step=8, is_bigendian=False)
    assert not np.allclose(little, got, equal_nan=True)


def test_32fc1_metres_nan_inf_zero_negative_are_no_reading():
    values = [[1.5, float("nan"), float("inf")], [0.0, -2.0, 3.25]]
    got = decode_depth(_pack_rows(values, "<f", 3, 12), "32FC1", 3, 2)
    assert got[0, 0] == 1.5 and got[1, 2] == 3.25
    assert np.isnan(got[0, 1:]).all() and np.isnan(got[1, :2]).all()
    big = decode_depth(_pack_rows(values, ">f", 3, 16), "32FC1", 3, 2, step=16, is_bigendian=True)
    assert np.array_equal(big, got, equal_nan=True)


def test_range_limits_inclusive():
    mm = [[100, 99, 5000, 5001]]
    got = decode_depth(_pack_rows(mm, "<H", 4, 8), "16UC1", 4, 1, min_range_m=0.1, max_range_m=5.0)
    assert got[0, 0] == np.float32(0.1) and np.isnan(got[0, 1]) and got[0, 2] == 5.0 and np.isnan(got[0, 3])


def test_buffer_types_bytes_bytearray_memoryview_array_numpy():
    mm = np.array([[10, 20], [30, 40]], dtype=np.uint16)
    raw = _pack_rows(mm, "<H", 2, 4)
    expected = mm.astype(np.float32) / 1000
    for buffer in (raw, bytearray(raw), memoryview(raw), array.array("B", raw), np.frombuffer(raw, np.uint8), mm):
        assert np.allclose(decode_depth(buffer, "16UC1", 2, 2), expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 9), st.integers(0, 7), st.booleans(), st.integers(0, 2**32 - 1))
def test_16uc1_round_trip_any_size_step_and_order(width, height, pad, bigendian, seed):
    mm = np.random.default_rng(seed).integers(0, 65536, size=(height, width)).tolist()
    step = width * 2 + pad
    got = decode_depth(_pack_rows(mm, ">H" if bigendian else "<H", width, step), "16UC1", width, height,
                       step=step, is_bigendian=bigendian)
    for i in range(height):
        for j in range(width):
            assert (np.isnan(got[i, j]) if mm[i][j] == 0 else got[i, j] == np.float32(mm[i][j]) / np.float32(1000))


def test_depth_refusals():
    with pytest.raises(InputError, match="not supported"):
        decode_depth(b"\x00" * 8, "mono16", 2, 2)
    with pytest.raises(InputError, match="needs 8 bytes, got 6"):
        decode_depth(b"\x00" * 6, "16UC1", 2, 2)
    with pytest.raises(InputError, match="step 2 is smaller"):
        decode_depth(b"\x00" * 4, "16UC1", 2, 2, step=2)
    with pytest.raises(InputError, match="positive"):
        decode_depth(b"", "16UC1", 0, 2)
    with pytest.raises(InputError, match="range"):
        decode_depth(b"\x00" * 8, "16UC1", 2, 2, min_range_m=3.0, max_range_m=1.0)
    with pytest.raises(InputError, match="bytes-like"):
        decode_depth(12345, "16UC1", 1, 1)
    assert SUPPORTED_DEPTH_ENCODINGS == ("16UC1", "32FC1")


# ---------------------------------------------------------------------- colour
RGB = [[(255, 0, 0), (0, 255, 0), (0, 0, 255)], [(10, 20, 30), (200, 100, 50), (1, 2, 3)]]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_give_rgb(encoding):
    order = {"r": 0, "g": 1, "b": 2}
    channels = [order[c] for c in encoding[:3]]
    rows = [[tuple(px[c] for c in channels) + ((99,) if "a" in encoding else ()) for px in row] for row in RGB]
    bpp = 4 if "a" in encoding else 3
    step = 3 * bpp + 5
    got = decode_color(_pack_rows(rows, "B" * bpp, 3, step), encoding, 3, 2, step=step)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 3) and got.flags.c_contiguous
    assert got.tolist() == [[list(px) for px in row] for row in RGB]
    got[0, 0] = 0  # a fresh writable array, not a view of the (immutable) message bytes


def test_mono8_is_replicated():
    got = decode_color(bytes([0, 128, 255, 7]), "mono8", 2, 2)
    assert got.tolist() == [[[0] * 3, [128] * 3], [[255] * 3, [7] * 3]]


def test_colour_refusals():
    with pytest.raises(InputError, match="not supported"):
        decode_color(b"\x00" * 4, "bayer_rggb8", 2, 2)
    with pytest.raises(InputError, match="needs 12 bytes"):
        decode_color(b"\x00" * 11, "rgb8", 2, 2)
    assert set(SUPPORTED_COLOR_ENCODINGS) == {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422_yuy2", "yuv422"}


# ---------------------------------------------------------------------- YUV 4:2:2
YUV422_CODES = {"yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuv422": cv2.COLOR_YUV2RGB_UYVY}


def _bt601_video_range(y, u, v):
    """Independent float reference: BT.601 with Y in [16, 235] and chroma in [16, 240] (what YUYV cameras send)."""
    luma = 1.164 * np.maximum(y - 16.0, 0.0)
    rgb = np.stack([luma + 1.596 * (v - 128.0),
                    luma - 0.391 * (u - 128.0) - 0.813 * (v - 128.0),
                    luma + 2.018 * (u - 128.0)], axis=-1)
    return np.clip(np.rint(rgb), 0, 255)


def _pack_yuv422(y, u, v, encoding, step):
    """Bytes of a 4:2:2 image from full-width luma and per-pair chroma, rows padded with 0xEE up to step."""
    height, width = y.shape
    pairs = np.empty((height, width // 2, 4), dtype=np.uint8)
    order = (y[:, 0::2], u, y[:, 1::2], v) if encoding == "yuv422_yuy2" else (u, y[:, 0::2], v, y[:, 1::2])
    for index, plane in enumerate(order):
        pairs[:, :, index] = plane
    rows = pairs.reshape(height, width * 2)
    return b"".join(row.tobytes() + b"\xee" * (step - width * 2) for row in rows)


@pytest.mark.parametrize("encoding", sorted(YUV422_CODES))
@pytest.mark.parametrize("width,height,pad", [(640, 480, 0), (2, 1, 0), (38, 7, 6), (100, 3, 1)])
def test_yuv422_matches_opencv_and_bt601(encoding, width, height, pad):
    rng = np.random.default_rng(width * 1000 + height + pad)
    y = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    u, v = (rng.integers(0, 256, size=(height, width // 2), dtype=np.uint8) for _ in range(2))
    step = width * 2 + pad
    got = decode_color(_pack_yuv422(y, u, v, encoding, step), encoding, width, height, step=step)
    assert got.dtype == np.uint8 and got.shape == (height, width, 3) and got.flags.c_contiguous
    packed = np.frombuffer(_pack_yuv422(y, u, v, encoding, width * 2), np.uint8).reshape(height, width, 2)
    assert np.array_equal(got, cv2.cvtColor(packed, YUV422_CODES[encoding]))  # what cv_bridge gives
    # each pixel pair shares its (U, V): the chroma planes repeated to full width
    reference = _bt601_video_range(y.astype(float), np.repeat(u, 2, axis=1).astype(float),
                                   np.repeat(v, 2, axis=1).astype(float))
    assert np.abs(got.astype(int) - reference).max() <= 1
    got[0, 0] = 0  # fresh and writable


def test_yuv422_known_colours_and_byte_orders():
    # (Y, U, V) -> RGB: video black, video white, and BT.601 primaries
    cases = [((16, 128, 128), (0, 0, 0)), ((235, 128, 128), (255, 255, 255)), ((81, 90, 240), (255, 0, 0)),
             ((145, 54, 34), (0, 255, 0)), ((41, 240, 110), (0, 0, 255))]
    for (y, u, v), rgb in cases:
        yuyv = decode_color(bytes([y, u, y, v]), "yuv422_yuy2", 2, 1)
        uyvy = decode_color(bytes([u, y, v, y]), "yuv422", 2, 1)
        assert np.array_equal(yuyv, uyvy)
        assert np.abs(yuyv.astype(int) - np.array([rgb, rgb])).max() <= 2, ((y, u, v), yuyv.tolist())
    # the two Y bytes of a pair land in the left and right pixel, in the right place for each byte order
    assert decode_color(bytes([16, 128, 235, 128]), "yuv422_yuy2", 2, 1).tolist() == [[[0] * 3, [255] * 3]]
    assert decode_color(bytes([128, 16, 128, 235]), "yuv422", 2, 1).tolist() == [[[0] * 3, [255] * 3]]


@pytest.mark.parametrize("encoding", sorted(YUV422_CODES))
def test_yuv422_refusals(encoding):
    with pytest.raises(InputError, match="width must be even, got 3"):
        decode_color(b"\x00" * 12, encoding, 3, 2)
    with pytest.raises(InputError, match="needs 16 bytes, got 15"):
        decode_color(b"\x00" * 15, encoding, 4, 2)
    with pytest.raises(InputError, match="step 6 is smaller than width\\*2 = 8"):
        decode_color(b"\x00" * 12, encoding, 4, 2, step=6)
    with pytest.raises(InputError, match="positive"):
        decode_color(b"", encoding, 0, 2)


# ---------------------------------------------------------------------- compressed
def test_compressed_colour_png_exact_and_jpeg_close():
    rgb = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    png = cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()
    assert np.array_equal(decode_compressed_color(png), rgb)
    smooth = np.tile(np.linspace(0, 255, 30, dtype=np.uint8)[None, :, None], (20, 1, 3))
    jpeg = cv2.imencode(".jpg", smooth[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert np.abs(decode_compressed_color(jpeg).astype(int) - smooth).max() <= 6
    with pytest.raises(InputError, match="could not be decoded"):
        decode_compressed_color(b"definitely not an image")
    with pytest.raises(InputError, match="could not be decoded"):
        decode_compressed_color(b"")


def _png16(mm):
    return cv2.imencode(".png", np.asarray(mm, dtype=np.uint16))[1].tobytes()


def test_compressed_depth_16uc1_with_header_and_plain_png():
    mm = np.array([[0, 500], [1234, 65535]], dtype=np.uint16)
    expected = np.array([[np.nan, 0.5], [1.234, 65.535]], dtype=np.float32)
    header = struct.pack("<iff", 0, 0.0, 0.0)
    for data, fmt in ((header + _png16(mm), "16UC1; compressedDepth png"), (header + _png16(mm), "16UC1; compressedDepth"),
                      (_png16(mm), "16UC1; png"), (_png16(mm), "png")):
        assert np.allclose(decode_compressed_depth(data, fmt), expected, equal_nan=True), fmt
    ranged = decode_compressed_depth(_png16(mm), "png", min_range_m=1.0, max_range_m=2.0)
    assert np.isnan(ranged[0, 1]) and ranged[1, 0] == np.float32(1.234) and np.isnan(ranged[1, 1])


def test_compressed_depth_32fc1_inverse_depth_quantisation():
    # image_transport's coding: A = depth_quantization, B = 1 - A / depth_max, stored = A / depth + B
    quant, depth_max = 100.0, 10.0
    A, B = quant, 1.0 - quant / depth_max
    depth = np.array([[0.5, 1.0, np.nan], [2.0, 7.5, 9.9]])
    stored = np.where(np.isfinite(depth), np.rint(A / np.nan_to_num(depth, nan=1.0) + B), 0).astype(np.uint16)
    data = struct.pack("<iff", 0, A, B) + _png16(stored)
    got = decode_compressed_depth(data, "32FC1; compressedDepth png")
    finite = np.isfinite(depth)
    assert np.isnan(got[~finite]).all()
    exact = A / (stored[finite].astype(np.float64) - B)  # what the codec can represent
    assert np.allclose(got[finite], exact, rtol=1e-6)
    assert np.allclose(got[finite], depth[finite], rtol=0.1)


def test_compressed_depth_refusals():
    mm = np.ones((2, 2), np.uint16)
    with pytest.raises(InputError, match="RVL"):
        decode_compressed_depth(b"\x00" * 20, "16UC1; compressedDepth rvl")
    with pytest.raises(InputError, match="after the 12-byte"):
        decode_compressed_depth(_png16(mm), "16UC1; compressedDepth png")
    with pytest.raises(InputError, match="at the start"):
        decode_compressed_depth(b"\x00" * 12 + _png16(mm), "png")
    with pytest.raises(InputError, match="not supported"):
        decode_compressed_depth(_png16(mm), "8UC1; compressedDepth png")
    with pytest.raises(InputError, match="32FC1"):
        decode_compressed_depth(_png16(mm), "32FC1; png")
    eight_bit = cv2.imencode(".png", np.ones((2, 2), np.uint8))[1].tobytes()
    with pytest.raises(InputError, match="16-bit"):
        decode_compressed_depth(eight_bit, "png")


# ---------------------------------------------------------------------- encoding for writers
def test_encode_16uc1_rounds_and_marks_no_reading():
    depth = np.array([[0.0004, 0.0006, 1.2344, 1.2346], [np.nan, np.inf, -1.0, 65.535]])
    assert encode_depth_16uc1(depth).tolist() == [[0, 1, 1234, 1235], [0, 0, 0, 65535]]
    with pytest.raises(InputError, match="does not fit"):
        encode_depth_16uc1(np.array([[65.6]]))
    with pytest.raises(InputError, match="HxW"):
        encode_depth_16uc1(np.zeros(3))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_encode_decode_round_trip(seed):
    mm = np.random.default_rng(seed).integers(0, 65536, size=(5, 7)).astype(np.uint16)
    metres = decode_depth(mm, "16UC1", 7, 5)
    assert np.array_equal(encode_depth_16uc1(metres), mm)
