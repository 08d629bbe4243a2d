"""Which boxes an object phrase ("the red mug", "the box on the left", "object 3") refers to.

A phrase is split into constraints:
* colour words (colors.py vocabulary) -> the box's ``attributes["color"]``, else colour words in its label;
* shape words (box/cube/block, cylinder, sphere/ball) -> ``attributes["shape"]``, else its label;
* an id ("object 3", "#3", "id 3") -> ``Box3D.id``;
* selectors (left/right, nearest/farthest, largest/smallest, tallest/shortest, highest/lowest, middle) pick
  among the boxes that pass the other constraints, in the viewer frame of geometry.py;
* any other word is a category noun ("mug", "laptop"), checked against the label's words.

A box whose ``attributes["category_known"]`` is False (the tabletop backend cannot recognise categories) cannot
confirm or refute a noun: it stays a candidate and the noun is reported in ``unverified`` so the answer can say
so. Likewise a colour or shape the box carries no information about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from ..core.types import Box3D
from .colors import COLOR_NAMES, canonical_color
from .geometry import ViewerFrame, box_dimensions, box_volume, frame_from_boxes

SHAPES = {
    "box": "box", "cube": "box", "block": "box", "cuboid": "box", "brick": "box",
    "cylinder": "cylinder", "cylindrical": "cylinder", "tube": "cylinder",
    "sphere": "sphere", "ball": "sphere", "spherical": "sphere", "globe": "sphere",
}
GENERIC_NOUNS = {"object", "thing", "item", "one", "stuff", "shape", "solid"}
# Words that only glue a phrase together ("the box on the left side").
FILLER = {"the", "a", "an", "this", "that", "these", "those", "all", "any", "every", "each", "of", "on", "in",
          "at", "to", "side", "most", "very", "colored", "coloured", "color", "colour", "from", "camera",
          "there", "me", "you", "one's", "which", "is"}
SELECTORS = {
    "left": "leftmost", "leftmost": "leftmost", "right": "rightmost", "rightmost": "rightmost",
    "near": "nearest", "nearest": "nearest", "nearer": "nearest", "closest": "nearest", "closer": "nearest",
    "front": "nearest", "far": "farthest", "farthest": "farthest", "furthest": "farthest",
    "farther": "farthest", "further": "farthest", "back": "farthest", "rear": "farthest",
    "big": "largest", "bigger": "largest", "biggest": "largest", "large": "largest", "larger": "largest",
    "largest": "largest", "small": "smallest", "smaller": "smallest", "smallest": "smallest",
    "little": "smallest", "tiny": "smallest", "tall": "tallest", "taller": "tallest", "tallest": "tallest",
    "short": "shortest", "shorter": "shortest", "shortest": "shortest", "flat": "shortest",
    "high": "highest", "higher": "highest", "highest": "highest", "top": "highest", "upper": "highest",
    "low": "lowest", "lower": "lowest", "lowest": "lowest", "bottom": "lowest",
    "middle": "middle", "center": "middle", "centre": "middle", "central": "middle",
}
# Two values closer than this are a tie: below the 1 cm resolution of the answers' text.
TIE_TOLERANCE_M = 0.005
# "object 3", "#3", "id 3", "bbox_3", and the spec's given-question form "{id}_{class}" ("4_hotair ballon",
# spec 4.4 A): the id prefix is stripped and the rest of the word stays as the noun.
_ID = re.compile(r"(?:#|\bid\s*|\bobject\s*#?|\bbox\s*#|\bbbox_?)(\d+)\b|(?:^|(?<=\s))(\d+)_(?=[a-z])")


@dataclass
class PhraseParts:
    colors: List[str] = field(default_factory=list)
    shapes: List[str] = field(default_factory=list)
    selectors: List[str] = field(default_factory=list)
    nouns: List[str] = field(default_factory=list)
    box_id: Optional[int] = None
    plural: bool = False


@dataclass
class MatchResult:
    phrase: str
    matches: List[Box3D]
    reason: str
    unverified: List[str] = field(default_factory=list)  # words no candidate could confirm (e.g. "mug")

    @property
    def found(self) -> bool:
        return bool(self.matches)

    @property
    def ambiguous(self) -> bool:
        return len(self.matches) > 1


# Nouns that end in "s" but are singular (or have no singular): "lens" is not the plural of "len".
_INVARIANT_NOUNS = {"lens", "gas", "canvas", "atlas", "series", "species", "news", "chess", "scissors", "pliers",
                    "tongs", "tweezers", "jeans", "pants", "shorts", "trousers", "binoculars"}


def singular(word: str) -> str:
    """Crude English singular, enough for object nouns (boxes -> box, spheres -> sphere, glasses -> glass)."""
    if word in _INVARIANT_NOUNS:
        return word
    if word.endswith("es") and word[:-2] in _INVARIANT_NOUNS:  # lenses -> lens
        return word[:-2]
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def split_phrase(phrase: str) -> PhraseParts:
    text = phrase.lower()
    parts = PhraseParts()
    id_match = _ID.search(text)
    if id_match:
        parts.box_id = int(id_match.group(1) or id_match.group(2))
        text = _ID.sub(" ", text)
    for raw in re.findall(r"[a-z0-9_'/-]+", text):
        word = singular(raw)
        if raw != word and raw not in SELECTORS:
            parts.plural = True
        if raw in FILLER or word in FILLER:
            continue
        if canonical_color(raw):
            parts.colors.append(canonical_color(raw))
        elif word in SHAPES:
            parts.shapes.append(SHAPES[word])
        elif raw in SELECTORS:
            parts.selectors.append(SELECTORS[raw])
        elif word in GENERIC_NOUNS:
            continue
        else:
            parts.nouns.append(word)
    return parts


def _label_words(box: Box3D) -> set:
    """Words a phrase noun can match: each word of the label, the whole label, and the pieces of a
    "/"-joined alternative ("orange/tangerine" -> orange/tangerine, orange, tangerine), since split_phrase
    keeps "orange/tangerine" as one noun."""
    label = box.label.lower().strip()
    words = set(re.findall(r"[a-z0-9_'/-]+", label))
    if label:
        words.add(label)
    words |= {piece for w in list(words) for piece in w.split("/") if piece}
    return {singular(w) for w in words}


def _box_color(box: Box3D) -> Optional[str]:
    color = box.attributes.get("color")
    if color:
        return canonical_color(str(color)) or str(color).lower()
    found = [c for c in (canonical_color(w) for w in _label_words(box)) if c]
    return found[0] if len(found) == 1 else None


def _box_shape(box: Box3D) -> Optional[str]:
    shape = box.attributes.get("shape")
    if shape:
        return SHAPES.get(str(shape).lower(), str(shape).lower())
    if box.attributes.get("category_known", True):
        found = {SHAPES[w] for w in _label_words(box) if w in SHAPES}
        if len(found) == 1:
            return found.pop()
    return None


def _label_colors(boxes: Sequence[Box3D]) -> set:
    """Colour words that recognised boxes' labels contain ("orange" in "orange/tangerine")."""
    return {c for b in boxes if b.attributes.get("category_known", True)
            for c in (canonical_color(w) for w in _label_words(b)) if c}


def _check(box: Box3D, parts: PhraseParts, unverified: set, label_colors: frozenset = frozenset()) -> bool:
    """False when the box contradicts the phrase; adds words it cannot check to ``unverified``.

    label_colors: colour words some recognised box's label contains. Such a word may be a noun ("the
    orange" for an orange/tangerine), so a box with no colour information is not kept as a candidate for it:
    the box whose label says it is the likelier meaning (match_phrase falls back when that leaves none)."""
    if parts.box_id is not None and box.id != parts.box_id:
        return False
    color = _box_color(box)
    own_label_colors = {canonical_color(w) for w in _label_words(box)} if parts.colors else set()
    for wanted in parts.colors:
        if color == wanted or (color is None and wanted in own_label_colors):
            continue
        if color is not None or wanted in label_colors:
            return False
        unverified.add(wanted)
    shape = _box_shape(box)
    for wanted in parts.shapes:
        if shape is None:
            unverified.add(wanted)
        elif shape != wanted:
            return False
    if parts.nouns:
        if not box.attributes.get("category_known", True):
            unverified.update(parts.nouns)
        else:
            words = _label_words(box)
            if not all(noun in words or noun.replace("-", "") in words for noun in parts.nouns):
                return False
    return True


def _select(boxes: List[Box3D], selector: str, frame: ViewerFrame) -> List[Box3D]:
    """The boxes that win one selector, ties kept (so the caller sees the ambiguity)."""
    if len(boxes) <= 1:
        return boxes
    coords = frame.coords(np.array([b.center for b in boxes]))
    if selector == "middle":
        order = np.argsort(coords[:, 0], kind="stable")
        n = len(boxes)
        keep = [order[n // 2]] if n % 2 else [order[n // 2 - 1], order[n // 2]]
        return [boxes[i] for i in keep]
    key, sign, tolerance = selector_key(selector, boxes, frame)
    best = (sign * key).max()
    return [b for b, k in zip(boxes, sign * key) if best - k <= tolerance]


def selector_key(selector: str, boxes: Sequence[Box3D], frame: ViewerFrame):
    """(values, +1 to maximise / -1 to minimise, tie tolerance) for a selector over boxes."""
    coords = frame.coords(np.array([b.center for b in boxes]))
    ranges = np.linalg.norm(np.array([b.center for b in boxes]), axis=1)
    volumes = np.array([box_volume(b) for b in boxes])
    # height along gravity when known (a pitched camera's y mixes in depth), see geometry.box_dimensions
    heights = np.array([box_dimensions(b, frame)[0][1] for b in boxes])
    table = {
        "leftmost": (coords[:, 0], -1, TIE_TOLERANCE_M), "rightmost": (coords[:, 0], 1, TIE_TOLERANCE_M),
        "highest": (coords[:, 1], 1, TIE_TOLERANCE_M), "lowest": (coords[:, 1], -1, TIE_TOLERANCE_M),
        "nearest": (ranges, -1, TIE_TOLERANCE_M), "farthest": (ranges, 1, TIE_TOLERANCE_M),
        "tallest": (heights, 1, TIE_TOLERANCE_M), "shortest": (heights, -1, TIE_TOLERANCE_M),
        # volumes: a tie is a relative difference under 1 %
        "largest": (volumes, 1, 0.01 * volumes.max()), "smallest": (volumes, -1, 0.01 * volumes.max()),
    }
    if selector not in table:
        raise KeyError(f"unknown selector {selector!r}; known: {sorted(table) + ['middle']}")
    return table[selector]


def match_phrase(phrase: str, boxes: Sequence[Box3D], frame: Optional[ViewerFrame] = None) -> MatchResult:
    """The boxes a phrase can refer to. More than one match means ambiguous; none means not seen."""
    boxes = list(boxes)
    frame = frame or frame_from_boxes(boxes)
    parts = split_phrase(phrase)
    unverified: set = set()
    # prefer the reading where a colour some label names picks that box (see _check); when no box fits that
    # reading, fall back to treating the colour as merely unverifiable on colourless boxes
    label_colors = frozenset(_label_colors(boxes)) if parts.colors else frozenset()
    candidates = [b for b in boxes if _check(b, parts, unverified, label_colors)]
    if not candidates:
        unverified = set()
        candidates = [b for b in boxes if _check(b, parts, unverified)]
    constraints = parts.colors + parts.shapes + parts.nouns
    if not candidates:
        return MatchResult(phrase, [], f"no object is {_describe(parts)}")
    reason = f"{len(candidates)} object(s) {('are ' + _describe(parts)) if constraints else 'in view'}"
    if not parts.plural:
        for selector in parts.selectors:
            candidates = _select(candidates, selector, frame)
            reason += f", {selector} of them: {len(candidates)}"
    if unverified:
        reason += f"; cannot check {', '.join(sorted(unverified))}"
    return MatchResult(phrase, candidates, reason, sorted(unverified))


def _describe(parts: PhraseParts) -> str:
    words = parts.colors + parts.shapes + parts.nouns
    text = " ".join(words) if words else "an object"
    return text + (f" with id {parts.box_id}" if parts.box_id is not None else "")


def describe_box(box: Box3D) -> str:
    """'the red box (id 2)': how answers name a box."""
    name = box.label if box.label else "object"
    return f"the {name}" + (f" (id {box.id})" if box.id is not None else "")


__all__ = ["MatchResult", "match_phrase", "split_phrase", "describe_box", "COLOR_NAMES", "TIE_TOLERANCE_M"]
