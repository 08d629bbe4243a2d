"""Model bins -> metric boxes in the optical frame (spec 5.3, 5.4), and boxes -> turn-2 scene numbers (4.5, 5.5).

The constants undo the training-side discretisation exactly, with no clipping and no half-bin offset (the
demo's -0.5 bin bias is part of what the model learned to expect downstream, so it is reproduced as is).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

from ...core.boxes import box_from_n3d, box_to_n3d, project_box_normalized
from ...core.camera import backproject_normalized
from ...core.types import Box3D
from .box_parser import RawBox
from .prompts import SceneBox

NUM_BINS = 1000
WORLD_MAX = 2.0  # normalised depth spanned by Z bins
SCALE_MAX = 0.625  # normalised size spanned by SX/SY/SZ bins
ANGLE_SPAN = 4 * math.pi  # A bins span [-2 pi, 2 pi]


_BIN_NAMES = ("U", "V", "Z", "A", "SX", "SY", "SZ")
# Bins the model writes in 0-999 by construction (spec 5.1: Z clipped, A of a yaw in [-2 pi, 2 pi), sizes of
# non-negative extents). U and V may leave 0-999 for a box centre outside the image, so they only need to be finite.
_BOUNDED_BINS = ("Z", "A", "SX", "SY", "SZ")
_SIZE_BINS = ("SX", "SY", "SZ")


def bins_problem(bins: Sequence[float]) -> Optional[str]:
    """Why a parsed line's bins cannot be decoded into a real box, or None (see decode_box's callers)."""
    named = dict(zip(_BIN_NAMES, (float(b) for b in bins)))
    bad = [f"{name}={value}" for name, value in named.items() if not math.isfinite(value)]
    if bad:
        return f"bins {', '.join(bad)} are not finite"
    outside = [f"{name}={value:g}" for name, value in named.items()
               if name in _BOUNDED_BINS and not 0 <= value <= NUM_BINS - 1]
    if outside:
        return f"bins {', '.join(outside)} lie outside the model's representable 0-{NUM_BINS - 1}"
    zero = [name for name in _SIZE_BINS if named[name] == 0]
    if zero:
        return f"size bins {', '.join(zero)} are 0 (the box has no extent)"
    return None


def decode_box(raw: RawBox, shift0: Sequence[float], scaling: float, intrinsics_n: Tuple[float, float, float, float]) -> Box3D:
    """One parsed line -> Box3D (optical frame, metres). The raw bins stay in attributes["bins"]."""
    u_bin, v_bin, z_bin, a_bin, sx_bin, sy_bin, sz_bin = raw.bins
    u, v = u_bin / NUM_BINS, v_bin / NUM_BINS
    z = (z_bin / NUM_BINS * WORLD_MAX) / scaling + float(shift0[2])
    size = [s / NUM_BINS * SCALE_MAX / scaling for s in (sx_bin, sy_bin, sz_bin)]
    yaw_n3d = a_bin / NUM_BINS * ANGLE_SPAN - ANGLE_SPAN / 2
    X, Y, Z = (float(c) for c in backproject_normalized(u, v, z, intrinsics_n))  # OpenCV frame, spec 5.4 step 1
    attributes = {"bins": [int(b) if float(b).is_integer() else float(b) for b in raw.bins], "uv": [u, v]}
    # Bin 999 is the largest depth / size the model can write (spec 7 item 25): the true value may be larger.
    saturated = [name for name, b in zip(("z", "sx", "sy", "sz"), (z_bin, sx_bin, sy_bin, sz_bin)) if b >= NUM_BINS - 1]
    if saturated:
        attributes["saturated"] = saturated
    # The demo stores (-X, -Y, Z) (x-left / y-up); box_from_n3d maps that frame to ours.
    return box_from_n3d((-X, -Y, Z), size, yaw_n3d, label=raw.label.strip(), id=raw.id, attributes=attributes)


def decode_boxes(raws: Sequence[RawBox], shift0, scaling: float, intrinsics_n) -> list:
    return [decode_box(raw, shift0, scaling, intrinsics_n) for raw in raws]


def scene_box(box: Box3D, caption: str, intrinsics_n) -> SceneBox:
    """The numbers the demo writes into turn 2: N3D-frame centre + sizes, and the projected 2D box."""
    center_n3d, size, _ = box_to_n3d(box)
    box2d = project_box_normalized(box, intrinsics_n)
    return SceneBox(caption=caption, box3d=tuple(float(v) for v in (*center_n3d, *size)),
                    box2d=tuple(float(v) for v in box2d))
