"""The two resizes of the image path, giving the pixels of Pillow 11 (what N3D-VLM was run with) on any Pillow >= 9.

Pillow resamples in two separable passes with an 8-bit image between them. Up to Pillow 12 the horizontal
pass always ran first; Pillow 13 (upstream PR #9549) runs the vertical pass first in some cases, e.g. when
the width grows and the height shrinks, which is exactly the processor's 640x480 -> 644x476 BICUBIC step:
there about 10 % of pixel_values change by up to 5 grey levels (spec 1.1). We therefore run the two passes
ourselves, each as a single-axis Pillow resize, which is one pass in every Pillow version: the result is
bit-equal to Pillow 9-12's own two-pass resize (test/fixtures/pixel_values_pillow11.json proves it).

Also here: the Qwen2-VL processor's smart_resize rule (spec 1.1 step 4), so that we resize to its target size
ourselves and the processor's own resize is skipped.
"""

from __future__ import annotations

import math
from typing import Tuple

from .types import InputError

PATCH_FACTOR = 28  # patch_size 14 * merge_size 2
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 3136, 12845056  # stock Qwen2.5-VL preprocessor_config.json
# Modes that Pillow resamples as they are. It converts RGBA/LA to premultiplied alpha around the whole
# resize (so doing the passes one by one would round differently) and resizes 1/P with NEAREST.
SEPARABLE_MODES = ("RGB", "L")


def resize_horizontal_first(image, size: Tuple[int, int], resample):
    """``image.resize(size, resample)`` as Pillow <= 12 computes it: horizontal pass, then vertical pass.

    image: a PIL image in one of SEPARABLE_MODES. size: (width, height). Returns a new image (a copy when
    the size does not change).
    """
    width, height = (int(v) for v in size)
    if width <= 0 or height <= 0:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    if image.mode not in SEPARABLE_MODES:
        raise ValueError(f"resize_horizontal_first takes {SEPARABLE_MODES} images, got mode {image.mode!r}: "
                         "convert to RGB first")
    if image.size == (width, height):
        return image.copy()
    if image.width != width:
        image = image.resize((width, image.height), resample)
    if image.height != height:
        image = image.resize((width, height), resample)
    return image


def smart_resize_size(width: int, height: int, factor: int = PATCH_FACTOR, min_pixels: int = QWEN_MIN_PIXELS,
                      max_pixels: int = QWEN_MAX_PIXELS) -> Tuple[int, int]:
    """(width, height) that Qwen2-VL's smart_resize gives: multiples of factor, area within [min, max]."""
    if width <= 0 or height <= 0:
        raise InputError(f"image size must be positive, got {width}x{height}")
    if max(width, height) / min(width, height) > 200:  # the processor's own limit
        raise InputError(f"aspect ratio of {width}x{height} exceeds 200, which the image processor refuses")
    h_bar = round(height / factor) * factor  # Python round: half to even, as the processor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return w_bar, h_bar
