"""Parse turn-1 output ``bbox_N=Bbox(class,U,V,Z,A,SX,SY,SZ)`` tolerantly (spec 5.1, 5.2).

Unlike the demo (which drops every box when one field fails to parse, and only decodes when ``bbox_0`` is
present), each line stands alone: a line that is not a box is skipped and counted, the others are kept with the
ids the model wrote. A truncated last line (max_new_tokens reached) is reported as truncated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Tuple

N_BINS = 7
# Parentheses in a class must balance, nested at most this deep (box_grammar allows the same): "mug (red)".
MAX_CLASS_PAREN_DEPTH = 2
_NUMBER = r"\s*([-+]?\d+(?:\.\d*)?)\s*"


def _balanced_class(depth: int) -> str:
    """Regex for text without ',' or a line break whose parentheses balance, nested up to ``depth``."""
    plain = r"[^,()\n]"
    if depth == 0:
        return plain
    return rf"(?:{plain}|\((?:{_balanced_class(depth - 1)})*\))"


# The official regex takes any text up to the first ',' as the class ([^,]+, spec 5.2), parentheses included.
# Ours also keeps a line break out of it (lines stand alone) and needs parentheses to balance, so that a line
# broken inside the class ("bbox_0=Bbox(bbox_1=Bbox(cup,...") still yields the box that follows. Numbers may be
# floats (the demo used float()).
_BOX = re.compile(rf"bbox_(\d+)\s*=\s*Bbox\(\s*({_balanced_class(MAX_CLASS_PAREN_DEPTH)}*?)\s*,"
                  + ",".join([_NUMBER] * N_BINS) + r"\)")
_LOOSE_CLASS = re.compile(r"bbox_\d+\s*=\s*Bbox\(([^,\n]*),")  # what the official regex would take as the class


@dataclass(frozen=True)
class RawBox:
    """One parsed line: the model's id, class and seven bins (U, V, Z, A, SX, SY, SZ), as written."""

    id: int
    label: str
    bins: Tuple[float, ...]


@dataclass
class ParsedOutput:
    boxes: List[RawBox] = field(default_factory=list)
    skipped_lines: int = 0
    truncated: bool = False  # the last line is an unfinished box
    problems: List[str] = field(default_factory=list)


def parse_boxes(text: str) -> ParsedOutput:
    out = ParsedOutput()
    seen = set()
    lines = text.split("\n")
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        matches = list(_BOX.finditer(line))
        if not matches:
            out.skipped_lines += 1
            is_last = number == len(lines) - 1 or not any(rest.strip() for rest in lines[number + 1:])
            if is_last and "bbox_" in line:
                out.truncated = True
            loose = _LOOSE_CLASS.search(line)
            if loose and set("()") & set(loose.group(1)):
                out.problems.append(f"line {number + 1}: class {loose.group(1)[:40]!r} has unbalanced parentheses "
                                    f"(or nests deeper than {MAX_CLASS_PAREN_DEPTH})")
            else:
                out.problems.append(f"line {number + 1} is not a box: {line[:80]!r}")
            continue
        for match in matches:
            box_id, label = int(match.group(1)), match.group(2)
            if not label:
                out.skipped_lines += 1
                out.problems.append(f"line {number + 1}: empty class")
                continue
            if box_id in seen:
                out.skipped_lines += 1
                out.problems.append(f"line {number + 1}: repeated id bbox_{box_id} (kept the first)")
                continue
            seen.add(box_id)
            out.boxes.append(RawBox(box_id, label, tuple(float(match.group(3 + k)) for k in range(N_BINS))))
    return out
