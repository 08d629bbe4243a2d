"""ObjectMemory: id-stable 3D objects in a fixed frame, fed one grounding result (plus the camera pose) at a
time. Thread-safe: the node feeds it from continuous detection and from queries while services read it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..core.camera import project_pixels
from ..core.types import Box3D, GroundingResult, InputError, PinholeCamera, RGBDFrame
from ..reasoning.matching import match_phrase, split_phrase
from .association import associate
from .config import MemoryConfig
from .evidence import OCCLUDED, VISIBLE, visibility
from .objects import MemoryObject, Observation, confidence_of, observation_variances
from .pose import CameraPose, check_pose
from .upright import GravityBasis, UprightBox, upright_from_box


class UnknownObject(InputError):
    """A memory id that is not (or no longer) in the memory."""


@dataclass
class MemoryUpdate:
    """What one ingest did. matched: {box index in the grounding: object id}; the lists hold object ids."""

    matched: Dict[int, int] = field(default_factory=dict)
    created: List[int] = field(default_factory=list)
    moved: List[int] = field(default_factory=list)       # re-observed far from the estimate: restarted
    missed: List[int] = field(default_factory=list)      # in view, not occluded, not detected
    occluded: List[int] = field(default_factory=list)
    dropped: List[int] = field(default_factory=list)     # confidence fell below the threshold
    evicted: List[int] = field(default_factory=list)     # the memory was full
    skipped: List[str] = field(default_factory=list)     # boxes not used, with why



def _constraining(phrase: str) -> bool:
    """A phrase that says what an object is (colour, shape or category), not only where ("the left one") or
    which backend id it had in that frame (not a memory id)."""
    parts = split_phrase(phrase)
    return bool(parts.colors or parts.shapes or parts.nouns)


def _cut_by_border(box: Box3D, upright: UprightBox, pose: CameraPose, basis: GravityBasis, camera: PinholeCamera,
                   margin_px: float) -> bool:
    """True when only part of the object was in the image: its pixels (the backend's ``pixel_box`` x, y, w, h
    when it gives one) or else the projection of its upright box reach the image border, or it is partly behind
    the camera. The optical box's own projection is no test: seen from a pitched camera its corners stick out
    well beyond the object's silhouette."""
    pixel_box = box.attributes.get("pixel_box")
    if pixel_box is not None and len(pixel_box) == 4:
        x, y, w, h = (float(v) for v in pixel_box)
        x0, y0, x1, y1 = x, y, x + w - 1, y + h - 1
    else:
        corners = pose.to_camera(upright.corners(basis))
        if corners[:, 2].min() <= 1e-3:
            return True
        u, v = project_pixels(corners, camera)
        x0, y0, x1, y1 = u.min(), v.min(), u.max(), v.max()
    return x0 < margin_px or y0 < margin_px or x1 > camera.width - 1 - margin_px or \
        y1 > camera.height - 1 - margin_px


class ObjectMemory:
    def __init__(self, config: Optional[MemoryConfig] = None):
        self.config = (config or MemoryConfig()).validated()
        self.basis = GravityBasis(self.config.up)
        self._objects: Dict[int, MemoryObject] = {}
        self._next_id = 1
        self._lock = threading.Lock()
        self.last_pose: Optional[CameraPose] = None

    @property
    def frame_id(self) -> str:
        return self.config.frame_id

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    # ------------------------------------------------------------------------------------------ feeding
    def ingest(self, grounding: GroundingResult, frame: RGBDFrame, pose: CameraPose,
               scope: Optional[Sequence[str]] = None) -> MemoryUpdate:
        """Fold one frame's boxes (camera optical frame) into the memory.

        pose: the camera optical frame in the memory frame at the image stamp. scope: None when the grounding is
        a complete detection (every object the backend can find); else the phrases it grounded: only remembered
        objects those phrases describe can lose confidence for not being detected. Raises InputError for a bad
        pose before changing anything.
        """
        check_pose(pose, self.frame_id, frame.frame_id, frame.stamp_ns, self.config.max_pose_offset_s)
        update = MemoryUpdate()
        observations, indices = self._observations(grounding, frame, pose, scope, update)
        with self._lock:
            self.last_pose = pose
            ids = list(self._objects)
            objects = [self._objects[i] for i in ids]
            pairs = associate(objects, observations, self.basis, self.config)
            for k, obs in enumerate(observations):
                if k in pairs:
                    obj = objects[pairs[k]]
                    if obj.fuse(obs, self.config):
                        update.moved.append(obj.id)
                elif obs.partial and not self.config.create_from_partial:
                    update.skipped.append(f"box {indices[k]} '{obs.box.label}': cut by the image border, so it "
                                          "only updates a remembered object")
                    continue
                else:
                    obj = self._create(obs, update)
                update.matched[indices[k]] = obj.id
            seen = set(update.matched.values())
            self._negative_evidence([o for o in objects if o.id not in seen], frame, pose, scope, update)
        return update

    def _observations(self, grounding, frame, pose, scope, update):
        observations, indices = [], []
        phrases = [p for p in (scope or ()) if p and p.strip()]
        for index, box in enumerate(grounding.boxes):
            if not (np.all(np.isfinite(box.center)) and np.all(np.isfinite(box.size)) and np.isfinite(box.yaw)):
                update.skipped.append(f"box {index} '{box.label}': non-finite centre, size or yaw")
                continue
            range_m = float(np.linalg.norm(box.center))
            center_var, size_var, yaw_var = observation_variances(range_m, self.config)
            upright = upright_from_box(box, pose, self.basis)
            partial = _cut_by_border(box, upright, pose, self.basis, frame.camera, self.config.edge_margin_px)
            if partial:
                center_var, size_var = center_var * self.config.partial_variance_scale, \
                    size_var * self.config.partial_variance_scale
            said = tuple(p for p in phrases if match_phrase(p, [box]).matches)
            observations.append(Observation(box=box, upright=upright,
                                            center_var=center_var, size_var=size_var, yaw_var=yaw_var,
                                            stamp_ns=int(frame.stamp_ns), phrases=said, partial=partial))
            indices.append(index)
        return observations, indices

    def _create(self, obs: Observation, update: MemoryUpdate) -> MemoryObject:
        if len(self._objects) >= self.config.max_objects:
            oldest = min(self._objects.values(), key=lambda o: (o.last_seen_ns, o.log_odds, o.id))
            del self._objects[oldest.id]
            update.evicted.append(oldest.id)
        obj = MemoryObject.start(self._next_id, obs, self.config)
        self._next_id += 1
        self._objects[obj.id] = obj
        update.created.append(obj.id)
        return obj

    def _negative_evidence(self, unseen, frame, pose, scope, update) -> None:
        if scope is not None:
            phrases = [p for p in scope if p and _constraining(p)]
            unseen = [o for o in unseen if any(match_phrase(p, [self._as_box(o)]).matches for p in phrases)]
        drop_below = self.config.drop_below_confidence
        for obj in unseen:
            if obj.id not in self._objects:
                continue  # evicted by a new object earlier in this frame
            corners = pose.to_camera(obj.upright.corners(self.basis))
            seen = visibility(corners, frame, self.config)
            if seen.status != VISIBLE:
                if seen.status == OCCLUDED:
                    update.occluded.append(obj.id)
                continue
            obj.miss(self.config)
            update.missed.append(obj.id)
            if confidence_of(obj.log_odds) < drop_below:
                del self._objects[obj.id]
                update.dropped.append(obj.id)

    # ------------------------------------------------------------------------------------------ reading
    def objects(self, include_tentative: bool = False) -> List[MemoryObject]:
        """Copies of the remembered objects, by id; tentative ones (seen fewer than confirm_observations
        times) only when asked."""
        with self._lock:
            chosen = [o for o in self._objects.values()
                      if include_tentative or o.observations >= self.config.confirm_observations]
            return [o.copy() for o in sorted(chosen, key=lambda o: o.id)]

    def get(self, object_id: int) -> MemoryObject:
        with self._lock:
            if object_id not in self._objects:
                raise UnknownObject(self._unknown(object_id))
            return self._objects[object_id].copy()

    def find(self, phrase: str, include_tentative: bool = False) -> List[MemoryObject]:
        """Objects a phrase can mean ("red mug", "object 7"), by colour, shape, category and id; position words
        are ignored (there is no viewer here)."""
        found = []
        for obj in self.objects(include_tentative):
            if match_phrase(phrase, [self._as_box(obj)]).matches:
                found.append(obj)
        return found

    def forget(self, object_id: int) -> MemoryObject:
        """Remove one object and return it; UnknownObject (an InputError) for an id not in memory."""
        with self._lock:
            if object_id not in self._objects:
                raise UnknownObject(self._unknown(object_id))
            return self._objects.pop(object_id)

    def clear(self) -> int:
        """Forget everything (ids are not reused); returns how many objects were removed."""
        with self._lock:
            count = len(self._objects)
            self._objects.clear()
            self.last_pose = None
            return count

    def _unknown(self, object_id) -> str:
        known = sorted(self._objects)
        listed = ", ".join(str(i) for i in known[:20]) + (" ..." if len(known) > 20 else "")
        return (f"no object {object_id} in memory (known ids: {listed or 'none'}); it may have been dropped, "
                "evicted or forgotten")

    @staticmethod
    def _as_box(obj: MemoryObject) -> Box3D:
        """For phrase matching only: label, id and words; geometry is irrelevant there."""
        return Box3D(label=obj.label, center=obj.center, size=obj.size, id=obj.id, attributes=obj.attributes())
