"""Model-free grounding for tabletop scenes: support plane, object clusters, completed boxes, colour names.

detect(frame):
1. back-project the depth (metres, range-limited) into optical-frame points;
2. RANSAC the support plane (refine.fit_support_plane), normal pointing up at the camera;
3. object pixels: higher than ABOVE_PLANE_M over the plane and not on a depth edge (edges hold flying pixels
   and would join an object to whatever is behind it);
4. clusters: 8-connected components of the object pixels (cv2). On an RGB-D image this is what a 3D
   Euclidean clustering (e.g. open3d cluster_dbscan) finds, in about a millisecond instead of a second;
5. one box per cluster: refine.complete_box (sphere fit, else an upright prism on the plane), so the hidden
   back and bottom are included;
6. colour name from the cluster's pixels (reasoning.colors), label "<colour> object".

It cannot recognise categories: every box carries attributes["category_known"] = False, and the reasoning
step says so when a question names one ("the red mug" is matched by colour only). It does claim "sphere" when
the sphere fit passes; other shapes are not named.
Boxes are optical-frame, axis-aligned (yaw 0); ids 0..n-1 from left to right in the image. Each also carries
the upright object's measured width_m/height_m/depth_m (footprint along the viewer's right/forward and height
above the table, refine.CompletedBox): the optical box of a pitched camera mixes height with depth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import List, Optional, Tuple

import cv2
import numpy as np

from ..core.camera import backproject_depth, undistort_frame
from ..core.frame_size import tabletop_size_problem
from ..core.types import Box3D, GroundingResult, InputError, RGBDFrame
from ..reasoning.colors import dominant_color
from ..reasoning.matching import match_phrase, split_phrase
from ..reasoning.questions import extract_object_phrases, parse_question
from .base import BackendUnsupported
from .refine import (ABOVE_PLANE_M, MIN_OBJECT_POINTS, complete_box, depth_edges, fit_support_plane,
                     pixel_pad_m)

CATEGORY_NOTE = ("tabletop backend: no object categories (no recognition model); objects are named by colour, "
                 "and 'sphere' when their points fit one")


@dataclass(frozen=True)
class TabletopConfig:
    min_range_m: float = 0.1
    max_range_m: float = 3.0         # a tabletop is within arm's reach; the floor and walls beyond are clutter
    min_object_pixels: int = 40
    min_object_height_m: float = 0.02
    plane_threshold_m: float = 0.008

    def validated(self) -> "TabletopConfig":
        if not 0.0 <= self.min_range_m < self.max_range_m:
            raise InputError(f"need 0 <= min_range_m < max_range_m, got {self.min_range_m}, {self.max_range_m}")
        if self.min_object_pixels < MIN_OBJECT_POINTS:
            raise InputError(f"min_object_pixels must be >= {MIN_OBJECT_POINTS}, got {self.min_object_pixels}")
        if self.plane_threshold_m <= 0 or self.min_object_height_m <= 0:
            raise InputError("plane_threshold_m and min_object_height_m must be positive")
        return self


class TabletopBackend:
    """Backend protocol (backends/base.py) without a model. TabletopBackend(config) or keyword overrides."""

    name = "tabletop"
    cancelled = None  # the pipeline checks cancellation between stages; nothing here runs long enough to poll

    def __init__(self, config: Optional[TabletopConfig] = None, **overrides):
        known = {f.name for f in fields(TabletopConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InputError(f"unknown tabletop settings {unknown}; known: {sorted(known)}")
        base = config or TabletopConfig()
        self.config = TabletopConfig(**{**{k: getattr(base, k) for k in known}, **overrides}).validated()

    @property
    def depth_range_m(self) -> Tuple[float, float]:
        return self.config.min_range_m, self.config.max_range_m

    def frame_problem(self, frame: RGBDFrame) -> Optional[str]:
        return tabletop_size_problem(frame.width, frame.height)

    # ----------------------------------------------------------------------------------------- detection
    def detect(self, frame: RGBDFrame) -> GroundingResult:
        cfg = self.config
        timings = {}
        start = time.perf_counter()
        frame = undistort_frame(frame)
        depth = frame.depth.astype(np.float32, copy=True)
        depth[~((depth >= cfg.min_range_m) & (depth <= cfg.max_range_m))] = np.nan
        points = backproject_depth(depth, frame.camera)
        valid = np.isfinite(depth)
        timings["points"] = time.perf_counter() - start

        start = time.perf_counter()
        plane = fit_support_plane(points[valid], threshold=cfg.plane_threshold_m)
        timings["plane"] = time.perf_counter() - start
        if plane is None:
            return GroundingResult(boxes=[], backend=self.name, timings=timings, notes=[
                CATEGORY_NOTE, f"no support plane found among {int(valid.sum())} valid depth pixels: point the "
                "camera at a table (range {:.1f}-{:.1f} m)".format(cfg.min_range_m, cfg.max_range_m)])

        start = time.perf_counter()
        height = np.where(valid, np.nan_to_num(points) @ plane.normal + plane.offset, -np.inf)
        objects = (height > ABOVE_PLANE_M) & ~depth_edges(depth)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(objects.astype(np.uint8), connectivity=8)
        timings["segment"] = time.perf_counter() - start

        start = time.perf_counter()
        boxes = []
        for k in range(1, count):
            if stats[k, cv2.CC_STAT_AREA] < cfg.min_object_pixels:
                continue
            x, y, w, h = (stats[k, c] for c in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                                cv2.CC_STAT_HEIGHT))
            mask = labels[y:y + h, x:x + w] == k
            if height[y:y + h, x:x + w][mask].max() < cfg.min_object_height_m:
                continue  # a stain or a flat sheet, not an object to reason about
            object_points = points[y:y + h, x:x + w][mask]
            fitted = complete_box(object_points, plane, pad_m=pixel_pad_m(object_points, frame.camera.fx))
            color, share = dominant_color(frame.color[y:y + h, x:x + w][mask])
            attributes = {"color": color, "color_share": round(share, 3), "category_known": False,
                          "support_up": [float(v) for v in plane.normal], "points": int(mask.sum()),
                          "box_method": fitted.method, "pixel_box": [int(x), int(y), int(w), int(h)],
                          **fitted.measured_attributes()}
            if fitted.shape:
                attributes["shape"] = fitted.shape
            u_centre = x + float(np.nonzero(mask)[1].mean())
            boxes.append((u_centre, Box3D(label=f"{color} object", center=fitted.center, size=fitted.size,
                                          score=share, attributes=attributes)))
        boxes.sort(key=lambda ub: ub[0])
        for new_id, (_, box) in enumerate(boxes):
            box.id = new_id
        timings["boxes"] = time.perf_counter() - start
        notes = [CATEGORY_NOTE, f"support plane normal {np.round(plane.normal, 3).tolist()}, "
                                f"{plane.inlier_fraction:.0%} of the points on it"]
        return GroundingResult(boxes=[b for _, b in boxes], backend=self.name, timings=timings, notes=notes)

    # ----------------------------------------------------------------------------------------- grounding
    def ground(self, frame: RGBDFrame, phrases: List[str]) -> GroundingResult:
        """Every box some phrase could mean (ambiguous candidates included: the reasoning step decides)."""
        result = self.detect(frame)
        chosen, notes = [], list(result.notes)
        for phrase in phrases:
            match = match_phrase(phrase, result.boxes)
            notes.append(f"'{phrase}': {match.reason}")
            chosen.extend(b for b in match.matches if all(b is not c for c in chosen))
        result.boxes = sorted(chosen, key=lambda b: b.id)
        result.notes = notes
        return result

    def ground_question(self, frame: RGBDFrame, question: str) -> GroundingResult:
        """Boxes for a whole question. Counting, superlatives and "what is left of X" are about every object,
        so they get all of them; so do phrases with a selector ("the middle object", "the left red box"):
        a selector ranks its candidates among every object, and the reasoning step re-matches the phrases, so
        on a narrowed set it would rank again and could pick one of several boxes that were tied among all.
        Otherwise the objects its phrases can mean (colour, shape, category and id are checked box by box,
        so narrowing cannot change what they match)."""
        parsed = parse_question(question)
        phrases = extract_object_phrases(question)
        whole_scene = parsed is None or parsed.op in ("count", "extreme") or parsed.form == "list"
        if whole_scene or not phrases or any(split_phrase(p).selectors for p in phrases):
            return self.detect(frame)
        return self.ground(frame, phrases)

    def answer_freeform(self, frame: RGBDFrame, question: str, grounding: GroundingResult):
        raise BackendUnsupported(
            "The tabletop backend has no language model, so it cannot answer this question in free form; it answers "
            "distance, size, left/right/above/below/front/behind, nearest/largest, counting, clock direction and "
            "'where is' questions about objects named by colour or position.")

    def close(self) -> None:
        """Nothing to free: the backend holds no model or device memory."""
