"""Colour names: one vocabulary for what the tabletop backend sees and what users type.

Pixels are named in OpenCV HSV (H 0-179, S and V 0-255). Shading darkens the side of an object that faces
away from the light, so an object's colour is voted by its brighter half only (a red cube's shadowed face
would otherwise read as brown or black).
"""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from ..core.types import InputError

COLOR_NAMES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "black", "gray", "white")

# Words users type for the same colours.
_SYNONYMS = {
    "grey": "gray", "violet": "purple", "magenta": "pink", "navy": "blue", "teal": "cyan",
    "turquoise": "cyan", "gold": "yellow", "golden": "yellow", "silver": "gray", "crimson": "red",
    "scarlet": "red", "lime": "green", "beige": "brown", "tan": "brown",
}

# Hue bands (OpenCV hue, degrees / 2): upper bounds, exclusive, in order. Red wraps around 180.
_HUE_BANDS = ((8, "red"), (21, "orange"), (34, "yellow"), (85, "green"), (100, "cyan"),
              (130, "blue"), (150, "purple"), (170, "pink"), (180, "red"))
_DARK_V = 50        # below this value everything is black
_GRAY_S = 50        # below this saturation a pixel is achromatic
_WHITE_V = 140      # achromatic and brighter than this: white (a shaded white face reads ~150)
_BROWN_V = 130      # orange hue but darker than this: brown (a shaded orange face reads ~145)


def canonical_color(word: str) -> Optional[str]:
    """'Grey' -> 'gray'; None when the word is not a colour."""
    word = word.lower().strip()
    if word in COLOR_NAMES:
        return word
    return _SYNONYMS.get(word)


def name_hsv(hsv: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 OpenCV HSV -> (N,) array of colour names."""
    hsv = np.asarray(hsv).reshape(-1, 3).astype(np.int32)
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    bounds = np.array([b for b, _ in _HUE_BANDS])
    hue_names = np.array([n for _, n in _HUE_BANDS], dtype=object)
    names = hue_names[np.searchsorted(bounds, h, side="right").clip(max=len(bounds) - 1)]
    names = np.where((names == "orange") & (v < _BROWN_V), "brown", names)
    achromatic = np.where(v > _WHITE_V, "white", "gray")
    names = np.where(s < _GRAY_S, achromatic, names)
    return np.where(v < _DARK_V, "black", names).astype(object)


def name_rgb(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) colour names, pixel by pixel."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
        raise InputError(f"colour pixels must be (N, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    hsv = cv2.cvtColor(rgb.reshape(-1, 1, 3), cv2.COLOR_RGB2HSV)
    return name_hsv(hsv.reshape(-1, 3))


def dominant_color(rgb: np.ndarray) -> Tuple[str, float]:
    """(name, share of the voting pixels) for an object's pixels, voted by the brighter half."""
    rgb = np.asarray(rgb).reshape(-1, 3)
    if len(rgb) == 0:
        raise InputError("cannot name the colour of an object with no pixels")
    rgb = rgb[:: max(1, len(rgb) // 4000)]  # a few thousand pixels decide a vote as well as all of them
    value = rgb.max(axis=1)  # HSV value channel, cheaper than a conversion
    bright = rgb[value >= np.median(value)]
    names, counts = np.unique(name_rgb(bright).astype(str), return_counts=True)
    best = int(np.argmax(counts))
    return str(names[best]), float(counts[best] / counts.sum())
