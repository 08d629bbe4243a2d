"""Which detection continues which remembered object: label compatibility, then 3D overlap / centre distance
in the memory frame, one-to-one per frame.

Assignment is greedy, cheapest pair first, rather than Hungarian: scipy (linear_sum_assignment) is not a
dependency of this package, a frame holds tens of boxes at most, and the gates are tight (15 cm), so two
detections competing for one object - the only case where greedy and optimal differ - needs two same-label
objects within a gate of each other; the price of a wrong pick there is one swapped id for one frame.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from ..core.types import Box3D
from ..reasoning.colors import canonical_color
from ..reasoning.matching import split_phrase
from .config import MemoryConfig
from .objects import MemoryObject, Observation
from .upright import GravityBasis, upright_iou


def _nouns(label: str) -> set:
    return set(split_phrase(label).nouns)


def labels_compatible(obj: MemoryObject, box: Box3D) -> bool:
    """False when the detection contradicts the object: a different colour, or both recognised (category
    known) with no category noun in common ("mug" vs "laptop"). Unknown categories never contradict."""
    color = box.attributes.get("color")
    if color and obj.color:
        if (canonical_color(str(color)) or color) != (canonical_color(obj.color) or obj.color):
            return False
    if obj.category_known and box.attributes.get("category_known", True):
        box_nouns = _nouns(box.label)
        known = set().union(*(_nouns(label) for label in obj.labels)) if obj.labels else set()
        if box_nouns and known and not (box_nouns & known):
            return False
    return True


def associate(objects: Sequence[MemoryObject], observations: Sequence[Observation], basis: GravityBasis,
              config: MemoryConfig) -> Dict[int, int]:
    """{observation index: object index}, one-to-one."""
    pairs: List[tuple] = []
    for i, obs in enumerate(observations):
        for j, obj in enumerate(objects):
            distance = float(np.linalg.norm(obs.upright.center - obj.center))
            near = distance <= config.max_center_distance_m
            if not near and distance > 0.5 * (np.linalg.norm(obs.upright.size) + np.linalg.norm(obj.size)):
                continue  # cannot overlap: skip the IoU
            if not labels_compatible(obj, obs.box):
                continue
            iou = upright_iou(obs.upright, obj.upright, basis)
            if near or iou >= config.min_iou:
                pairs.append(((1.0 - iou) + distance / config.max_center_distance_m, i, j))
    pairs.sort()
    taken_obs, taken_obj, result = set(), set(), {}
    for _, i, j in pairs:
        if i not in taken_obs and j not in taken_obj:
            result[i] = j
            taken_obs.add(i)
            taken_obj.add(j)
    return result
