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
_NUMBER = r"\s*([-+]?\d+(?:\.\d*)?)\s*"
# The class cannot hold ',', '(' , ')' or a line break; numbers may be floats (the demo used float()).
_BOX = re.compile(r"bbox_(\d+)\s*=\s*Bbox\(\s*([^,()\n]*?)\s*," + ",".join([_NUMBER] * N_BINS) + r"\)")


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
