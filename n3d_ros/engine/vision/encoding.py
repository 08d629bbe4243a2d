"""N3D-VLM's 3D position encoding, added to a stock Qwen2.5-VL vision tower by a forward pre-hook.

Spec 1.5 (mask, 640 reshape, pooling, quantisation), 2.1 (sinusoids) and 2.3 (ordering). The encoding has no
parameters, so the checkpoint is a plain Qwen2.5-VL state dict and the stock transformers class loads it; the
hook on ``visual.merger`` supplies the only behaviour the fine-tune adds.

Ordering (spec 2.3): the merger input is in window-permuted merge-block order, while the encoding is computed in
raster order over the (gh, gw) patch grid. The checkpoint was trained with the raster-order encoding added slot
by slot to that permuted sequence, so we add it unchanged. "Fixing" the order would not reproduce the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ...core.types import InputError

EMBED_DIM = 1280  # vision hidden size of every Qwen2.5-VL; the encoding hard-codes it
FEATS_PER_AXIS = EMBED_DIM // 3  # 426
TEMPERATURE = 10000.0
MAP_LONG_SIDE = 640  # the official code reshapes with a literal 640
QUANT_STEP = 0.001  # divided by, not multiplied by 1000: the float results differ


def sine_encoding_3d(q: torch.Tensor) -> torch.Tensor:
    """(N, 3) integer-valued float32 coordinates -> (N, 1280) float32 encoding.

    Per axis 426 interleaved values sin(q/d0), cos(q/d1), sin(q/d2), ... with d_k = T^(2*floor(k/2)/426) in
    float32 (pairs share a frequency); x | y | z blocks, then 2 zeros.
    """
    q = q.to(torch.float32)
    k = torch.arange(FEATS_PER_AXIS, dtype=torch.float32, device=q.device)
    dim_t = TEMPERATURE ** (2 * torch.div(k, 2, rounding_mode="floor") / FEATS_PER_AXIS)
    blocks = []
    for axis in range(3):
        phase = q[:, axis, None] / dim_t  # (N, 426)
        blocks.append(torch.stack((phase[:, 0::2].sin(), phase[:, 1::2].cos()), dim=2).flatten(1))
    pad = torch.zeros(q.shape[0], EMBED_DIM - 3 * FEATS_PER_AXIS, dtype=torch.float32, device=q.device)
    return torch.cat(blocks + [pad], dim=1)


def map_layout(n_points: int, grid_hw: Tuple[int, int]) -> Tuple[int, int]:
    """(rows, cols) the official code reshapes the flat map to: H x 640 if gh < gw, else 640 x W."""
    if n_points % MAP_LONG_SIDE:
        raise InputError(f"point map has {n_points} points, not a multiple of {MAP_LONG_SIDE}: its long side must be 640")
    gh, gw = grid_hw
    short = n_points // MAP_LONG_SIDE
    return (short, MAP_LONG_SIDE) if gh < gw else (MAP_LONG_SIDE, short)


def quantized_coordinates(points: torch.Tensor, map_hw: Tuple[int, int], grid_hw: Tuple[int, int],
                          dtype: torch.dtype) -> torch.Tensor:
    """Spec 1.5: (N, 4) normalised [x, y, z, valid] (N3D frame, row-major map_hw) -> (gh*gw, 3) integer bins.

    dtype is the vision tower's: the official code casts the point cloud to it before masking, which quantises
    the coordinates in bf16 (spec 1.4). Works on a fresh copy (the official in-place write mutated the caller's
    tensor, spec 7 item 24).
    """
    if points.ndim != 2 or points.shape[1] != 4:
        raise InputError(f"point map must be (N, 4) [x, y, z, valid], got {tuple(points.shape)}")
    layout = map_layout(points.shape[0], grid_hw)
    if tuple(map_hw) != layout:
        # The official reshape would silently scramble such a map (spec 7 item 2): refuse instead.
        raise InputError(
            f"point map is {map_hw[0]}x{map_hw[1]} but the model reshapes it as {layout[0]}x{layout[1]} for a "
            f"{grid_hw[0]}x{grid_hw[1]} patch grid: landscape maps need a short side <= 630 (crop), or 640x640"
        )
    cloud = points.to(dtype=dtype).clone()
    valid = cloud[:, 3] > 0
    if not bool(valid.any()):
        raise InputError("point map has no valid point: check the depth image (units, range limits)")
    xyz = cloud[:, :3]
    if not bool(valid.all()):
        xyz[~valid] = xyz[valid].mean(dim=0)  # the scene centroid, in the model dtype (spec 1.5 step 2)
    if not bool(torch.isfinite(xyz).all()):
        raise InputError("point map has non-finite coordinates at valid points (NaN/inf depth marked valid)")
    grid = xyz.reshape(1, layout[0], layout[1], 3).permute(0, 3, 1, 2).to(torch.float32)
    pooled = F.adaptive_avg_pool2d(grid, tuple(grid_hw))  # (1, 3, gh, gw), onto the unmerged patch grid
    centre = pooled.mean(dim=(2, 3)).mean()  # ONE scalar: the mean of the channel means (named min_xyz upstream)
    q = torch.round((pooled - centre) / QUANT_STEP)  # torch.round is round-half-to-even
    return q[0].permute(1, 2, 0).reshape(-1, 3)


def point_encoding(points: torch.Tensor, map_hw, grid_hw, dtype: torch.dtype) -> torch.Tensor:
    """(gh*gw, 1280) float32 encoding in raster order over the patch grid."""
    return sine_encoding_3d(quantized_coordinates(points, map_hw, grid_hw, dtype))


@dataclass
class _Armed:
    points: torch.Tensor
    map_hw: Tuple[int, int]
    grid_hw: Tuple[int, int]


class PointEncodingHook:
    """A forward pre-hook on ``model.model.visual.merger`` that adds the 3D encoding.

    ``arm(...)`` before a call that runs the vision tower (a generate prefill); the hook consumes the stash the
    first time the merger runs. The merger only runs when pixel_values are fed, i.e. at prefill, so decode steps
    with a KV cache never see it. Running the vision tower unarmed is an error: the model without its encoding
    silently answers like a different model (spec 7 item 26).
    """

    def __init__(self, merger: torch.nn.Module):
        self._armed: Optional[_Armed] = None
        self.applied = 0  # how many times the encoding was added (tests and stats read it)
        self._handle = merger.register_forward_pre_hook(self._hook)

    def arm(self, points: torch.Tensor, map_hw, grid_hw) -> None:
        self._armed = _Armed(points.detach(), (int(map_hw[0]), int(map_hw[1])), (int(grid_hw[0]), int(grid_hw[1])))

    def disarm(self) -> None:
        self._armed = None

    @property
    def armed(self) -> bool:
        return self._armed is not None

    def remove(self) -> None:
        self._handle.remove()

    def _hook(self, module, args):
        (hidden,) = args
        stash, self._armed = self._armed, None
        if stash is None:
            raise RuntimeError("the vision tower ran without a point map: call PointEncodingHook.arm() first")
        gh, gw = stash.grid_hw
        if hidden.shape[0] != gh * gw or hidden.shape[-1] != EMBED_DIM:
            raise RuntimeError(f"merger input {tuple(hidden.shape)} does not match the armed grid {gh}x{gw}x{EMBED_DIM}")
        pe = point_encoding(stash.points.to(hidden.device), stash.map_hw, stash.grid_hw, hidden.dtype)
        self.applied += 1
        # Upstream does `hidden += pe` with a float32 pe into model-dtype features: add in float32, round once.
        return ((hidden.to(torch.float32) + pe).to(hidden.dtype),)
