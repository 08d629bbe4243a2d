"""The smallest and most elongated frames each backend can use, checked before any work is done.

N3D-VLM (rules of the Qwen2-VL image processor, spec 1.1): the frame is first resized to a 640-px long side
(core.pointmap.target_size), then smart_resize rounds each side to a multiple of factor = patch_size 14 *
merge_size 2 = 28 and scales up to min_pixels (3136 = 56x56) when the rounded image is smaller. So:

* aspect ratio: smart_resize raises ValueError above 200 (max / min of the 640-px image);
* too few patches: a 640-px image whose short side rounds to zero patches (< 15 px: round(14 / 28) = 0), or
  whose rounded size is under min_pixels, is upscaled by the processor: its model tokens would come from
  pixels that do not exist. The frame itself must also hold at least min_pixels real pixels and a short side
  of one merged patch (28 px); smaller frames are blown up 23x or more to reach 640 px.

Tabletop: it fits a support plane and finds objects of at least min_object_pixels as 8-connected clusters
away from depth edges (3x3 neighbourhoods), so each side needs TABLETOP_MIN_SIDE px.
"""

from __future__ import annotations

import math
from typing import Optional

from .pointmap import LONG_SIDE, PATCH_FACTOR, QWEN_MIN_PIXELS, target_size

MAX_ASPECT_RATIO = 200.0  # smart_resize: "absolute aspect ratio must be smaller than 200"
TABLETOP_MIN_SIDE = 16


def min_short_side(factor: int = PATCH_FACTOR, min_pixels: int = QWEN_MIN_PIXELS) -> int:
    """Smallest short side of a 640-px image that smart_resize keeps without its upscaling branch."""
    long_bar = round(LONG_SIDE / factor) * factor
    for side in range(1, LONG_SIDE + 1):
        side_bar = round(side / factor) * factor  # Python round, half to even, as the processor
        if side_bar > 0 and side_bar * long_bar >= min_pixels:
            return side
    raise ValueError(f"no image with a {LONG_SIDE} px long side reaches min_pixels={min_pixels}")


def n3d_size_problem(width: int, height: int, factor: int = PATCH_FACTOR,
                     min_pixels: int = QWEN_MIN_PIXELS) -> Optional[str]:
    """Why a width x height frame cannot go through the N3D image processor, or None."""
    short, long = min(width, height), max(width, height)
    resized_w, resized_h = target_size(width, height)
    resized_short = min(resized_w, resized_h)
    if resized_short == 0 or LONG_SIDE / resized_short > MAX_ASPECT_RATIO:
        return (f"the {width}x{height} frame is too elongated for the n3d backend: resized to a {LONG_SIDE}-px long "
                f"side it is {resized_w}x{resized_h}, and the model's image processor refuses aspect ratios above "
                f"{MAX_ASPECT_RATIO:g}")
    need = min_short_side(factor, min_pixels)
    if resized_short < need:
        return (f"the {width}x{height} frame is too elongated for the n3d backend: resized to a {LONG_SIDE}-px long "
                f"side it is {resized_w}x{resized_h}, whose short side rounds to no {factor}-px patch row (it needs "
                f">= {need} px, i.e. an aspect ratio up to {LONG_SIDE / need:.1f}:1); the processor would upscale it")
    if short < factor or short * long < min_pixels:
        side = math.isqrt(min_pixels)
        return (f"the {width}x{height} frame is too small for the n3d backend: it needs a short side of at least "
                f"{factor} px (one merged patch: patch_size x merge_size) and at least {min_pixels} pixels (the "
                f"image processor's min_pixels, {side}x{side}); a smaller frame would be mostly upscaled pixels")
    return None


def tabletop_size_problem(width: int, height: int) -> Optional[str]:
    if min(width, height) < TABLETOP_MIN_SIDE:
        return (f"the {width}x{height} frame is too small for the tabletop backend: each side needs at least "
                f"{TABLETOP_MIN_SIDE} px (plane fit, 8-connected object clusters and depth edges need neighbours "
                "in both directions)")
    return None
