"""The 3D position encoding: values against the spec and an independent numpy reference, masking, layouts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from n3d_ros.core.types import InputError
from n3d_ros.engine.vision.encoding import (PointEncodingHook, map_layout, point_encoding, quantized_coordinates,
                                     sine_encoding_3d)


def reference_encoding(q):
    """Spec 2.1 written out element by element in float64."""
    out = np.zeros(1280)
    for axis in range(3):
        for k in range(426):
            d = 10000.0 ** (2 * (k // 2) / 426)
            out[axis * 426 + k] = math.sin(q[axis] / d) if k % 2 == 0 else math.cos(q[axis] / d)
    return out


def reference_quantization(points, hw, grid):
    """Spec 1.5 with explicit pooling windows [floor(i*H/g), ceil((i+1)*H/g)), in float64."""
    xyz = points[:, :3].astype(np.float64).copy()
    valid = points[:, 3] > 0
    xyz[~valid] = xyz[valid].mean(axis=0)
    grid_map = xyz.reshape(hw[0], hw[1], 3)
    gh, gw = grid
    pooled = np.zeros((gh, gw, 3))
    for i in range(gh):
        r0, r1 = (i * hw[0]) // gh, -((-(i + 1) * hw[0]) // gh)
        for j in range(gw):
            c0, c1 = (j * hw[1]) // gw, -((-(j + 1) * hw[1]) // gw)
            pooled[i, j] = grid_map[r0:r1, c0:c1].mean(axis=(0, 1))
    centre = pooled.reshape(-1, 3).mean(axis=0).mean()
    return pooled.reshape(-1, 3), centre


def random_map(h, w, seed=0, invalid=0.3):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:h, 0:w]
    xyz = np.stack([cols / w * 2.0, 1.5 - rows / h, 1.0 + 0.3 * np.sin(cols / 37.0)], axis=-1).reshape(-1, 3)
    xyz = xyz + rng.normal(0, 0.01, xyz.shape)
    valid = (rng.uniform(size=(h * w, 1)) > invalid).astype(np.float64)
    xyz[valid[:, 0] == 0] = [-np.inf, -np.inf, np.inf]  # how MoGe stores masked points
    return np.concatenate([xyz, valid], axis=1).astype(np.float32)


def test_check_value_and_norm():
    pe = sine_encoding_3d(torch.tensor([[326.0, 345.0, 564.0]]))
    expected = [-0.66361, 0.74808, -0.92694, -0.37520, -0.51435, -0.85758]
    np.testing.assert_allclose(pe[0, :6].numpy(), expected, atol=2e-5)
    assert pe.shape == (1, 1280) and pe.dtype == torch.float32
    assert torch.all(pe[:, 1278:] == 0)


def test_encoding_matches_elementwise_reference():
    rng = np.random.default_rng(1)
    q = rng.integers(-500, 1800, size=(5, 3)).astype(np.float32)
    pe = sine_encoding_3d(torch.from_numpy(q)).numpy()
    for row, coords in zip(pe, q):
        np.testing.assert_allclose(row, reference_encoding(coords), atol=5e-4)  # float32 phase of |q| <= 1800
        assert math.isclose(np.linalg.norm(row), math.sqrt(639), rel_tol=1e-5)


@pytest.mark.parametrize("hw,grid", [((480, 640), (34, 46)), ((426, 640), (30, 46)), ((640, 480), (46, 34)),
                                     ((640, 640), (46, 46))])
def test_quantization_matches_reference(hw, grid):
    points = random_map(*hw, seed=hw[0])
    q = quantized_coordinates(torch.from_numpy(points), hw, grid, torch.float32).numpy()
    pooled, centre = reference_quantization(points, hw, grid)
    ref = np.round((pooled - centre) / 0.001)
    assert q.shape == (grid[0] * grid[1], 3)
    assert np.abs(q - ref).max() <= 1  # float32 vs float64 at rounding boundaries
    assert (q == ref).mean() > 0.99
    # raster order: the first rows of the map are the first patches; y (up) falls with the row
    assert q[0, 1] > q[-1, 1] and q[0, 0] < q[grid[1] - 1, 0]


def test_input_tensor_not_mutated_and_invalid_values_ignored():
    points = torch.from_numpy(random_map(480, 640))
    before = points.clone()
    q1 = quantized_coordinates(points, (480, 640), (34, 46), torch.float32)
    assert torch.equal(points.isinf(), before.isinf()) and torch.equal(points.nan_to_num(), before.nan_to_num())
    changed = points.clone()
    changed[changed[:, 3] == 0, :3] = 123.0  # whatever invalid points hold must not matter
    assert torch.equal(q1, quantized_coordinates(changed, (480, 640), (34, 46), torch.float32))


def test_translation_and_scale_shift_only_through_normalisation():
    points = random_map(480, 640, invalid=0.0)
    q = quantized_coordinates(torch.from_numpy(points), (480, 640), (34, 46), torch.float32)
    shifted = points.copy()
    shifted[:, :3] += 0.25  # the centre is subtracted: a constant offset cancels
    q2 = quantized_coordinates(torch.from_numpy(shifted), (480, 640), (34, 46), torch.float32)
    assert (q - q2).abs().max() <= 1


def test_bf16_quantises_coordinates_first():
    points = torch.from_numpy(random_map(480, 640))
    q32 = quantized_coordinates(points, (480, 640), (34, 46), torch.float32)
    q16 = quantized_coordinates(points, (480, 640), (34, 46), torch.bfloat16)
    diff = (q32 - q16).abs()
    assert diff.max() > 0 and diff.max() < 20  # spec 1.4: a few units


def test_bad_maps_are_refused():
    points = torch.from_numpy(random_map(480, 640))
    with pytest.raises(InputError, match="reshapes it as"):
        quantized_coordinates(points, (640, 480), (34, 46), torch.float32)  # portrait map, landscape grid
    with pytest.raises(InputError, match="multiple of 640"):
        map_layout(635 * 10, (34, 46))
    # a 636-row landscape map gives a square grid: the official code would scramble it
    with pytest.raises(InputError, match="short side <= 630"):
        quantized_coordinates(torch.zeros(636 * 640, 4), (636, 640), (46, 46), torch.float32)
    none_valid = points.clone()
    none_valid[:, 3] = 0
    with pytest.raises(InputError, match="no valid point"):
        quantized_coordinates(none_valid, (480, 640), (34, 46), torch.float32)
    nan_valid = points.clone()
    nan_valid[0] = torch.tensor([float("nan"), 0, 0, 1])
    with pytest.raises(InputError, match="non-finite"):
        quantized_coordinates(nan_valid, (480, 640), (34, 46), torch.float32)


def test_hook_adds_raster_encoding_once_and_refuses_unarmed():
    merger = torch.nn.Identity()
    hook = PointEncodingHook(merger)
    points = torch.from_numpy(random_map(480, 640))
    features = torch.randn(34 * 46, 1280)
    with pytest.raises(RuntimeError, match="without a point map"):
        merger(features)
    hook.arm(points, (480, 640), (34, 46))
    out = merger(features)
    np.testing.assert_allclose((out - features).numpy(),
                               point_encoding(points, (480, 640), (34, 46), torch.float32).numpy(), atol=1e-5)
    assert hook.applied == 1 and not hook.armed
    hook.arm(points, (480, 640), (34, 46))
    with pytest.raises(RuntimeError, match="does not match"):
        merger(torch.randn(10, 1280))
