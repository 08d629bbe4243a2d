"""HiSpatial's free-text answers -> numbers with units, yes/no, choices and metric 3D boxes (spec 5.4, 5.7).

The model answers in metres with two decimals ("3.85m", "0.72 meters.", "We estimate the height of the faucet
to be 0.11 meters."), integers for counts ("4."), Yes/No, option labels, unit direction vectors and, for
grounding, six values "xmin ymin zmin xmax ymax zmax" with an "m" suffix in the colour optical frame.
Units follow reasoning.spatial: "m" (converted from cm/mm/ft/in when the answer says so), "count", "bool".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..core.types import Box3D

EOS = "<eos>"
_NUMBER = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)"
_NUMBER_RE = re.compile(_NUMBER)
# unit words after a number, longest first; value in metres per unit
_UNITS = (("centimeters", 0.01), ("centimetres", 0.01), ("centimeter", 0.01), ("centimetre", 0.01), ("cm", 0.01),
          ("millimeters", 0.001), ("millimetres", 0.001), ("mm", 0.001), ("meters", 1.0), ("metres", 1.0),
          ("meter", 1.0), ("metre", 1.0), ("m", 1.0), ("feet", 0.3048), ("foot", 0.3048), ("ft", 0.3048),
          ("inches", 0.0254), ("inch", 0.0254))  # never a bare "in": "2 in front of" is no length
_MEASURE_RE = re.compile(rf"({_NUMBER})\s*(" + "|".join(u for u, _ in _UNITS) + r")\b", re.IGNORECASE)
_AABB_RE = re.compile(rf"^\s*{_NUMBER}\s*m(?:\s+{_NUMBER}\s*m){{5}}\s*\.?\s*$")
_VECTOR_RE = re.compile(rf"^\s*{_NUMBER}\s*m?(?:\s+{_NUMBER}\s*m?){{2,5}}\s*\.?\s*$")  # xyz, AABB, direction
_COUNT_Q = re.compile(r"^\s*how many\b", re.IGNORECASE)


@dataclass
class ParsedAnswer:
    """text: the answer without <eos>. value/unit: as in core.types.Answer ("" and None when not numeric)."""

    text: str
    value: Optional[float] = None
    unit: str = ""


def clean(text: str) -> str:
    """Strip <eos> (decoding keeps special tokens, spec 4.3) and surrounding whitespace."""
    text = text.strip()
    while text.endswith(EOS):
        text = text[: -len(EOS)].rstrip()
    return text


def parse_measure(text: str) -> Optional[Tuple[float, str]]:
    """(metres, "m") from the first number followed by a length unit; None if there is none."""
    match = _MEASURE_RE.search(text)
    if match is None:
        return None
    factor = dict(_UNITS)[match.group(2).lower()]
    return float(match.group(1)) * factor, "m"


def parse_answer(text: str, question: str = "") -> ParsedAnswer:
    """value/unit of one answer. Lengths first (a sentence may also hold other numbers), then yes/no, then a
    bare integer as a count when the question asks "how many"."""
    text = clean(text)
    measure = parse_measure(text)
    if measure is not None and not _VECTOR_RE.match(text):  # a point or box is no scalar
        return ParsedAnswer(text, measure[0], measure[1])
    word = text.rstrip(".!").strip().lower()
    if word in ("yes", "no"):
        return ParsedAnswer(text, 1.0 if word == "yes" else 0.0, "bool")
    if _COUNT_Q.match(question):
        match = re.match(r"^\s*(\d+)\b", text)
        if match:
            return ParsedAnswer(text, float(match.group(1)), "count")
    return ParsedAnswer(text)


def parse_aabb(text: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(min corner, max corner) in metres from "xmin ymin zmin xmax ymax zmax" (each with an "m"), reordered
    per axis when min > max; None unless the answer is exactly six such values."""
    text = clean(text)
    if not _AABB_RE.match(text):
        return None
    values = np.array([float(v) for v in _NUMBER_RE.findall(text)], dtype=np.float64)
    first, second = values[:3], values[3:]
    return np.minimum(first, second), np.maximum(first, second)


def aabb_to_box(text: str, label: str, box_id: Optional[int] = None) -> Optional[Box3D]:
    """The grounding answer as an axis-aligned Box3D in the colour optical frame (yaw 0), or None."""
    corners = parse_aabb(text)
    if corners is None:
        return None
    low, high = corners
    return Box3D(label=label, center=(low + high) / 2.0, size=high - low, yaw=0.0, id=box_id,
                 attributes={"source": "hispatial_aabb"})
