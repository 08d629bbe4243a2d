"""Explicit 3D reasoning over boxes: the answer to a parsed question, computed in code.

Every answer has path "geometry", text with metres to 2 decimals, a float value and unit where the question
is quantitative, the boxes it used and a reasoning trace with the numbers. The geometric definitions (viewer
frame, relations, clock) are in geometry.py; phrase matching in matching.py.

Policy:
* a phrase that matches nothing -> success False, "I see no red mug.";
* a phrase that matches several boxes -> success False, the candidates listed, none picked; except for
  counting and superlatives, which are about the whole set;
* words no box can confirm (a category the backend cannot recognise) -> answered, with the caveat in the text;
* near-equal values (TIE_TOLERANCE_M, 1 % for volumes) are ties and are reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np

from ..core.types import Answer, Box3D, InputError
from .geometry import (ViewerFrame, box_dimensions, box_volume, clock_position, frame_from_boxes, surface_distance,
                       viewer_frame)
from .matching import TIE_TOLERANCE_M, MatchResult, describe_box, match_phrase, selector_key, split_phrase
from .questions import ParsedQuestion

Matcher = Callable[..., MatchResult]


class _Unanswerable(Exception):
    def __init__(self, text: str, candidates: Sequence[Box3D] = (), trace: str = ""):
        super().__init__(text)
        self.text, self.candidates, self.trace = text, list(candidates), trace


def m(value: float) -> str:
    """Metres with 2 decimals, never '-0.00'."""
    return f"{round(float(value), 2) + 0.0:.2f}"


def _vec(v) -> str:
    return "(" + ", ".join(m(c) for c in v) + ")"


@dataclass
class _Context:
    boxes: List[Box3D]
    frame: ViewerFrame
    match: Matcher
    trace: List[str] = field(default_factory=list)
    caveats: List[str] = field(default_factory=list)

    def matches(self, phrase: str) -> MatchResult:
        result = self.match(phrase, self.boxes, self.frame)
        self.trace.append(f"'{phrase}': {result.reason}")
        if result.unverified and result.matches:
            what = ", ".join(f"'{w}'" for w in result.unverified)
            caveat = (f"I cannot verify {what} for the objects I see (their categories or colours are unknown), "
                      f"so '{phrase}' was matched by its other words only.")
            if caveat not in self.caveats:
                self.caveats.append(caveat)
        return result

    def one(self, phrase: str) -> Box3D:
        result = self.matches(phrase)
        if not result.matches:
            raise _Unanswerable(f"I see no {phrase}.")
        if result.ambiguous:
            listed = "; ".join(f"{describe_box(b)} at {_vec(b.center)} m" for b in result.matches)
            raise _Unanswerable(
                f"'{phrase}' is ambiguous: {len(result.matches)} objects fit ({listed}). Say which one, e.g. "
                f"with left/right/nearest or 'object <id>'.", result.matches)
        box = result.matches[0]
        self.trace.append(f"{describe_box(box)}: centre {_vec(box.center)} m, size {_vec(box.size)} m")
        return box

    def two(self, first: str, second: str):
        a, b = self.one(first), self.one(second)
        if a is b:
            raise _Unanswerable(f"'{first}' and '{second}' are the same object ({describe_box(a)}).", [a])
        return a, b


def _answer(ctx: _Context, text: str, objects, value=None, unit: str = "") -> Answer:
    full = " ".join([text] + ctx.caveats)
    return Answer(success=True, text=full, path="geometry", value=None if value is None else float(value),
                  unit=unit, objects=list(objects), reasoning="\n".join(ctx.trace),
                  message=" ".join(ctx.caveats))


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------------- operations
def _distance(q: ParsedQuestion, ctx: _Context) -> Answer:
    if len(q.phrases) == 1:
        box = ctx.one(q.phrases[0])
        rng = float(np.linalg.norm(box.center))
        ctx.trace.append(f"range = |centre| = {rng:.4f} m")
        return _answer(ctx, f"{_cap(describe_box(box))} is {m(rng)} m from the camera (to its centre).", [box],
                       rng, "m")
    a, b = ctx.two(*q.phrases[:2])
    delta = b.center - a.center
    dist = float(np.linalg.norm(delta))
    ctx.trace.append(f"centre difference {_vec(delta)} m; length = {dist:.4f} m")
    return _answer(ctx, f"{_cap(describe_box(a))} and {describe_box(b)} are {m(dist)} m apart (centre to centre).",
                   [a, b], dist, "m")


def _distance_surface(q: ParsedQuestion, ctx: _Context) -> Answer:
    a, b = ctx.two(*q.phrases[:2])
    gap = surface_distance(a, b)
    ctx.trace.append(f"closest-surface distance between the boxes = {gap:.4f} m")
    if gap == 0.0:
        text = f"{_cap(describe_box(a))} and {describe_box(b)} touch or overlap (0.00 m between their surfaces)."
    else:
        text = f"The closest surfaces of {describe_box(a)} and {describe_box(b)} are {m(gap)} m apart."
    return _answer(ctx, text, [a, b], gap, "m")


_DIMENSIONS = {"width": (0, "wide"), "height": (1, "tall"), "depth": (2, "deep")}


def _dimension(q: ParsedQuestion, ctx: _Context) -> Answer:
    box = ctx.one(q.phrases[0])
    axis, adjective = _DIMENSIONS[q.op]
    dims, source = box_dimensions(box, ctx.frame)
    value = float(dims[axis])
    ctx.trace.append(f"{q.op} = {value:.4f} m ({source})")
    return _answer(ctx, f"{_cap(describe_box(box))} is {m(value)} m {adjective}.", [box], value, "m")


def _size(q: ParsedQuestion, ctx: _Context) -> Answer:
    box = ctx.one(q.phrases[0])
    (w, h, d), source = box_dimensions(box, ctx.frame)
    volume = box_volume(box)
    ctx.trace.append(f"width {w:.4f}, height {h:.4f}, depth {d:.4f} m ({source}); volume {volume:.6f} m^3")
    return _answer(ctx, f"{_cap(describe_box(box))} is {m(w)} m wide, {m(h)} m tall and {m(d)} m deep "
                        f"(volume {volume:.3g} m^3).", [box], volume, "m^3")


# relation -> (viewer axis, sign: + means "A has the larger coordinate")
_RELATION_AXIS = {"left": (0, -1), "right": (0, 1), "above": (1, 1), "below": (1, -1), "front": (2, -1),
                  "behind": (2, 1)}
_RELATION_WORDS = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below",
                   "front": "in front of", "behind": "behind", "larger": "larger than", "smaller": "smaller than",
                   "taller": "taller than", "shorter": "shorter than"}
_AXIS_NAMES = ("left-right", "height", "distance from the camera")


def _relation_holds(relation: str, viewpoint: str, a: Box3D, b: Box3D, frame: ViewerFrame):
    """(True/False/None for a tie, the compared numbers as text)."""
    if viewpoint == "opposite":  # walking round the table swaps left/right and front/behind
        relation = {"left": "right", "right": "left", "front": "behind", "behind": "front"}.get(relation, relation)
    if relation in _RELATION_AXIS:
        axis, sign = _RELATION_AXIS[relation]
        ca, cb = frame.coords(a.center)[axis], frame.coords(b.center)[axis]
        label = ("right", "up", "forward")[axis]
        detail = f"{label} coordinate {ca:.3f} vs {cb:.3f} m (camera view)"
        if abs(ca - cb) < TIE_TOLERANCE_M:
            return None, detail
        return bool(sign * (ca - cb) > 0), detail
    if relation in ("larger", "smaller"):
        va, vb = box_volume(a), box_volume(b)
        detail = f"volume {va:.6f} vs {vb:.6f} m^3"
        if abs(va - vb) <= 0.01 * max(va, vb):
            return None, detail
        return (va > vb) == (relation == "larger"), detail
    ha, hb = box_dimensions(a, frame)[0][1], box_dimensions(b, frame)[0][1]
    detail = f"height {ha:.3f} vs {hb:.3f} m"
    if abs(ha - hb) < TIE_TOLERANCE_M:
        return None, detail
    return (ha > hb) == (relation == "taller"), detail


def _relation(q: ParsedQuestion, ctx: _Context) -> Answer:
    words = _RELATION_WORDS[q.relation]
    view = " as seen from the opposite side" if q.viewpoint == "opposite" else ""
    up_source = "the support plane normal" if ctx.frame.gravity_known else "the camera's up (no gravity known)"
    ctx.trace.append(f"viewer frame up = {up_source}; viewpoint = {q.viewpoint}")
    if q.form == "list":
        ref = ctx.one(q.reference or q.phrases[0])
        hits = []
        for box in ctx.boxes:
            if box is ref:
                continue
            holds, detail = _relation_holds(q.relation, q.viewpoint, box, ref, ctx.frame)
            ctx.trace.append(f"{describe_box(box)} vs {describe_box(ref)}: {detail} -> {holds}")
            if holds:
                hits.append(box)
        if not hits:
            return _answer(ctx, f"Nothing is {words} {describe_box(ref)}{view}.", [ref], 0, "count")
        names = ", ".join(describe_box(b) for b in hits)
        return _answer(ctx, f"{_cap(words)} {describe_box(ref)}{view}: {names}.", hits + [ref], len(hits), "count")
    a, b = ctx.two(*q.phrases[:2])
    holds, detail = _relation_holds(q.relation, q.viewpoint, a, b, ctx.frame)
    ctx.trace.append(f"{detail}" + (f"; inverted for the opposite viewpoint" if view else ""))
    if holds is None:
        return _answer(ctx, f"That is False: {describe_box(a)} and {describe_box(b)} are level within "
                            f"{TIE_TOLERANCE_M * 100:.1f} cm, so neither is {words} the other{view}.", [a, b], 0.0, "bool")
    verdict = "True" if holds else "False"
    negation = "" if holds else "not "
    return _answer(ctx, f"That is {verdict}: {describe_box(a)} is {negation}{words} {describe_box(b)}{view}.",
                   [a, b], 1.0 if holds else 0.0, "bool")


# superlative -> what its value measures; a pair is (word if >= 0, word if < 0) for signed coordinates
_EXTREME_MEASURE = {"nearest": "from the camera", "farthest": "from the camera", "tallest": "tall", "largest": "",
                    "smallest": "",
                    "shortest": "tall", "leftmost": ("right of", "left of"), "rightmost": ("right of", "left of"),
                    "highest": ("above", "below"), "lowest": ("above", "below")}
# superlative -> the adjective a tie is reported with ("equally near")
_TIE_WORDS = {"nearest": "near", "farthest": "far", "largest": "large", "smallest": "small", "tallest": "tall",
              "shortest": "short", "leftmost": "far left", "rightmost": "far right", "highest": "high",
              "lowest": "low"}


def _extreme(q: ParsedQuestion, ctx: _Context) -> Answer:
    reference = ctx.one(q.reference) if q.reference else None
    if q.form == "which":
        candidates = list(ctx.two(*q.phrases[:2]))
    elif q.among:
        result = ctx.matches(q.among)
        if not result.matches:
            raise _Unanswerable(f"I see no {q.among}.")
        candidates = result.matches
    else:
        candidates = list(ctx.boxes)
    candidates = [b for b in candidates if b is not reference]
    if not candidates:
        raise _Unanswerable("There is no object to compare." if not ctx.boxes else
                            f"There is no other object than {describe_box(reference)}.")
    if reference is not None:
        values = np.array([np.linalg.norm(b.center - reference.center) for b in candidates])
        sign, tolerance, unit = (-1 if q.extreme == "nearest" else 1), TIE_TOLERANCE_M, "m"
        what = f"centre to centre from {describe_box(reference)}"
    else:
        values, sign, tolerance = selector_key(q.extreme, candidates, ctx.frame)
        unit = "m^3" if q.extreme in ("largest", "smallest") else "m"
        what = _EXTREME_MEASURE[q.extreme]
    scored = sign * values
    best = scored.max()
    winners = [b for b, s in zip(candidates, scored) if best - s <= tolerance]
    for b, v in zip(candidates, values):
        ctx.trace.append(f"{describe_box(b)}: {v:.4f} {unit}")
    value = float(values[int(np.argmax(scored))])
    if unit == "m^3":
        measure = f"{value:.3g} m^3"
    elif isinstance(what, tuple):  # a signed coordinate relative to the camera
        measure = f"{m(abs(value))} m {what[0] if value >= 0 else what[1]} the camera"
    else:
        measure = f"{m(value)} m {what}"
    if len(winners) > 1:
        names = " and ".join(describe_box(b) for b in winners)
        return _answer(ctx, f"It is a tie: {names} are equally {_TIE_WORDS[q.extreme]} ({measure}).", winners,
                       value, unit)
    return _answer(ctx, f"The {q.extreme} is {describe_box(winners[0])} ({measure}).", winners, value, unit)


def _count(q: ParsedQuestion, ctx: _Context) -> Answer:
    if not q.among:
        n = len(ctx.boxes)
        return _answer(ctx, f"I count {n} object{'s' if n != 1 else ''}.", ctx.boxes, n, "count")
    result = ctx.matches(q.among)
    parts = split_phrase(q.among)
    if set(result.unverified) >= set(parts.nouns) and parts.nouns and not (parts.colors or parts.shapes):
        raise _Unanswerable(f"I cannot tell which objects are {q.among}: I cannot recognise object categories "
                            f"(I see {len(ctx.boxes)} objects in all).", result.matches)
    n = len(result.matches)
    if n == 0:
        return _answer(ctx, f"I see no {q.among} (count 0).", [], 0, "count")
    return _answer(ctx, f"I count {n} {q.among}.", result.matches, n, "count")


def _direction(q: ParsedQuestion, ctx: _Context) -> Answer:
    origin, target = ctx.two(*q.phrases[:2])
    d = ctx.frame.coords(target.center - origin.center)
    ground = float(np.hypot(d[0], d[2]))
    if ground < TIE_TOLERANCE_M:
        # stacked (or coincident): no clock direction exists, but "above/below" is the answer
        ctx.trace.append(f"ground-plane offset {ground:.4f} m < {TIE_TOLERANCE_M} m; up offset {d[1]:.3f} m")
        if abs(d[1]) < TIE_TOLERANCE_M:
            raise _Unanswerable(f"{_cap(describe_box(origin))} and {describe_box(target)} are at the same place: "
                                "there is no direction between them.", [origin, target])
        where = "directly above" if d[1] > 0 else "directly below"
        return _answer(ctx, f"Standing at {describe_box(origin)}, {describe_box(target)} is {where} it, "
                            f"{m(abs(d[1]))} m {'up' if d[1] > 0 else 'down'} (no clock direction).",
                       [origin, target], None, "")
    hour, angle = clock_position(ctx.frame, origin.center, target.center)
    ctx.trace.append(f"ground-plane vector origin->target: right {d[0]:.3f}, forward {d[2]:.3f} m; angle from "
                     f"forward towards the left = {angle:.1f} deg; clock = 12 - {angle:.1f} // 30 = {hour}")
    return _answer(ctx, f"Standing at {describe_box(origin)} and facing away from the camera, {describe_box(target)} "
                        f"is at about {hour} o'clock, {m(ground)} m away.", [origin, target], hour, "")


def _words_for_position(frame: ViewerFrame, center: np.ndarray) -> str:
    r, u, f = frame.coords(center)
    bearing = np.degrees(np.arctan2(r, f))
    side = ("straight ahead" if abs(bearing) < 5 else
            f"slightly to the {'right' if bearing > 0 else 'left'}" if abs(bearing) < 20 else
            f"to the {'right' if bearing > 0 else 'left'}")
    basis = ("measured level with the support surface" if frame.gravity_known else
             "along the camera's axes: no support surface is known")
    return f"{side}, {m(abs(r))} m {'right' if r >= 0 else 'left'} of the camera and {m(f)} m ahead of it ({basis})"


def _where(q: ParsedQuestion, ctx: _Context) -> Answer:
    box = ctx.one(q.phrases[0])
    rng = float(np.linalg.norm(box.center))
    words = _words_for_position(ctx.frame, box.center)
    ctx.trace.append(f"range {rng:.4f} m; viewer coordinates (right, up, forward) "
                     f"{_vec(ctx.frame.coords(box.center))} m")
    return _answer(ctx, f"{_cap(describe_box(box))} is {m(rng)} m from the camera, {words} "
                        f"(centre x {m(box.center[0])}, y {m(box.center[1])}, z {m(box.center[2])} m in the "
                        f"camera optical frame).", [box], rng, "m")


_HANDLERS = {
    "distance": _distance, "distance_surface": _distance_surface, "size": _size, "height": _dimension,
    "width": _dimension, "depth": _dimension, "relation": _relation, "extreme": _extreme, "count": _count,
    "direction": _direction, "where": _where,
}


def answer_question(parsed: ParsedQuestion, boxes: Sequence[Box3D], match: Matcher = match_phrase,
                    up: Optional[Sequence[float]] = None) -> Answer:
    """Answer a parsed question from boxes (optical frame). up: gravity-up in optical coordinates, if known;
    None uses the boxes' ``support_up`` attribute when they all carry the same one, else the camera's up."""
    if parsed.op not in _HANDLERS:
        raise ValueError(f"unknown operation {parsed.op!r}; known: {sorted(_HANDLERS)}")
    boxes = list(boxes)
    try:
        frame = viewer_frame(up) if up is not None else frame_from_boxes(boxes)
    except InputError as exc:  # a zero or non-finite up vector: no viewer frame, so no spatial answer
        text = f"I cannot set up a viewing frame: {exc}."
        return Answer(success=False, text=text, path="geometry", message=text, objects=[])
    ctx = _Context(boxes, frame, match)
    try:
        return _HANDLERS[parsed.op](parsed, ctx)
    except _Unanswerable as failure:
        return Answer(success=False, text=failure.text, path="geometry", message=failure.text,
                      reasoning="\n".join(ctx.trace), objects=failure.candidates)
