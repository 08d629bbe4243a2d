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
    if not objects or not observations:
        return {}
    obs_centers = np.array([o.upright.center for o in observations])
    obj_centers = np.array([o.center for o in objects])
    distances = np.linalg.norm(obs_centers[:, None, :] - obj_centers[None, :, :], axis=2)
    # boxes farther apart than half their diagonals cannot overlap: only nearer pairs are looked at in Python
    reach = 0.5 * (np.linalg.norm([o.upright.size for o in observations], axis=1)[:, None]
                   + np.linalg.norm([o.size for o in objects], axis=1)[None, :])
    gate = config.max_center_distance_m
    admitted = []
    for i, j in zip(*np.nonzero((distances <= gate) | (distances <= reach))):
        obs, obj, distance = observations[i], objects[j], float(distances[i, j])
        if not labels_compatible(obj, obs.box):
            continue
        iou = None
        if distance > gate:  # only the overlap can admit it
            iou = upright_iou(obs.upright, obj.upright, basis)
            if iou < config.min_iou:
                continue
        admitted.append((int(i), int(j), distance, iou))
    rows = np.bincount([a[0] for a in admitted], minlength=len(observations))
    cols = np.bincount([a[1] for a in admitted], minlength=len(objects))
    for i, j, distance, iou in admitted:
        if iou is None and rows[i] == 1 and cols[j] == 1:
            iou = 0.0  # no competitor on either side: its cost cannot change the assignment, skip the IoU
        elif iou is None:
            iou = upright_iou(observations[i].upright, objects[j].upright, basis)
        pairs.append(((1.0 - iou) + distance / gate, i, j))
    pairs.sort()
    taken_obs, taken_obj, result = set(), set(), {}
    for _, i, j in pairs:
        if i not in taken_obs and j not in taken_obj:
            result[i] = j
            taken_obs.add(i)
            taken_obj.add(j)
    return result
