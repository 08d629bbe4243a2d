"""A moving synthetic camera: a seeded trajectory (orbit, pan, approach) around a scene from core.scene, with
the camera pose per frame and scene changes mid-run (an object removed or moved), for the object memory's
tests, benchmark and the synthetic camera node.

Frames: the scene's table frame (z up, table top at z = 0) is the fixed "world"; pose is the 4x4
p_table = pose @ [p_optical, 1]. Objects are known by their colour (one colour per object in a scene): the
scene's per-view ids are numbered left to right in each image, so they change as the camera moves.
Trajectories start from make_scene's own viewpoint (distance D, pitch, heading, looking at the table origin):
* orbit: the camera circles the table origin at D and the same pitch, heading from -arc/2 to +arc/2 about it;
* pan: the camera stays put and turns left and right (heading +- arc/2, one full sine period), so objects leave
  the view and come back;
* approach: the camera moves towards the origin from 1.4 D to 0.7 D.
Every pose gets a small seeded shake (hand-held / robot vibration): about 0.3 deg and 2 mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .scene import TABLE_HALF, SyntheticScene, make_scene, render_view
from .types import InputError

KINDS = ("orbit", "pan", "approach")
START_NS = 1_000_000_000  # first frame's stamp: 1 s, so that no stamp is zero ("unset" in ROS)


@dataclass(frozen=True)
class SceneChange:
    """From frame ``frame`` on, the object of colour ``color`` is removed, or moved by offset_m (table x, y)."""

    frame: int
    color: str
    kind: str = "remove"
    offset_m: Tuple[float, float] = (0.0, 0.0)


@dataclass
class TrajectoryFrame:
    index: int
    scene: SyntheticScene                 # this view; scene.frame.stamp_ns is the frame's stamp
    pose: np.ndarray                      # 4x4, p_table = pose @ [p_optical, 1]
    centers_table: Dict[str, np.ndarray]  # colour -> ground-truth centre (table frame) of every object present
    visible_px: Dict[str, int]            # colour -> pixels of it in this image (0 when out of view or hidden)
    removed: List[str] = field(default_factory=list)  # colours removed so far

    @property
    def stamp_ns(self) -> int:
        return int(self.scene.frame.stamp_ns)


def look_at(eye: np.ndarray, target: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(R, C) as core.scene uses them: R's rows are the optical axes (right, down, forward) in the table frame,
    C the camera centre. The camera has no roll (right is horizontal)."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(eye, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-6:
        raise InputError("camera looks straight up or down: heading undefined, tilt the trajectory")
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(forward, right), forward]), np.asarray(eye, dtype=np.float64)


def _direction(pitch: float, heading: float) -> np.ndarray:
    return np.array([np.sin(heading) * np.cos(pitch), np.cos(heading) * np.cos(pitch), -np.sin(pitch)])


def _rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class MovingCamera:
    """Iterate to render the frames. MovingCamera(seed, kind, n_frames, ...) is deterministic."""

    def __init__(self, seed: int, kind: str = "orbit", n_frames: int = 30, fps: float = 5.0,
                 changes: Sequence[SceneChange] = (), arc_deg: Optional[float] = None, width: int = 640,
                 height: int = 480, n_objects: Optional[int] = None, noise: bool = True):
        if kind not in KINDS:
            raise InputError(f"trajectory kind must be one of {list(KINDS)}, got {kind!r}")
        if n_frames < 1 or not fps > 0:
            raise InputError(f"need n_frames >= 1 and fps > 0, got {n_frames} and {fps}")
        self.seed, self.kind, self.n_frames, self.fps, self.noise = seed, kind, int(n_frames), float(fps), noise
        self.base = make_scene(seed, width=width, height=height, n_objects=n_objects, noise=noise)
        self.arc = np.radians(arc_deg if arc_deg is not None else {"orbit": 90.0, "pan": 60.0, "approach": 0.0}[kind])
        colors = [s.color for s in self.base.solids]
        for change in changes:
            if change.color not in colors:
                raise InputError(f"scene change names colour {change.color!r}; the scene has {colors}")
            if change.kind not in ("remove", "move"):
                raise InputError(f"scene change kind must be 'remove' or 'move', got {change.kind!r}")
            if not 0 <= change.frame < self.n_frames:
                raise InputError(f"scene change at frame {change.frame} is outside 0..{self.n_frames - 1}")
        self.changes = sorted(changes, key=lambda c: c.frame)
        self._layouts = self._check_layouts()
        R0 = self.base.optical_from_table[:3, :3]
        self._eye0 = -R0.T @ self.base.optical_from_table[:3, 3]
        forward = R0[2]
        self._distance = float(np.linalg.norm(self._eye0))
        self._pitch = float(np.arcsin(-forward[2]))
        self._heading = float(np.arctan2(forward[0], forward[1]))

    @property
    def colors(self) -> List[str]:
        return [s.color for s in self.base.solids]

    def _check_layouts(self) -> Dict[int, list]:
        """The solids present from each change on, each checked to stay on the table and not overlap."""
        solids = list(self.base.solids)
        layouts = {0: list(solids)}
        for change in self.changes:
            k = next(i for i, s in enumerate(solids) if s is not None and s.color == change.color) \
                if any(s is not None and s.color == change.color for s in solids) else None
            if k is None:
                raise InputError(f"scene change at frame {change.frame}: the {change.color} object was removed")
            if change.kind == "remove":
                solids[k] = None
            else:
                moved = replace(solids[k], x=solids[k].x + change.offset_m[0], y=solids[k].y + change.offset_m[1])
                r = moved.footprint_radius
                if abs(moved.x) + r > TABLE_HALF[0] or abs(moved.y) + r > TABLE_HALF[1]:
                    raise InputError(f"moving the {change.color} object by {list(change.offset_m)} m puts it off "
                                     "the table")
                for other in solids:
                    if other is not None and other is not solids[k] and \
                            np.hypot(moved.x - other.x, moved.y - other.y) < r + other.footprint_radius + 0.01:
                        raise InputError(f"moving the {change.color} object by {list(change.offset_m)} m makes it "
                                         f"overlap the {other.color} object")
                solids[k] = moved
            layouts[change.frame] = list(solids)
        return layouts

    def _solids_at(self, index: int) -> list:
        start = max(f for f in self._layouts if f <= index)
        return [s for s in self._layouts[start] if s is not None]

    def camera_at(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """(R, C) of frame ``index`` (see core.scene), shake included."""
        s = index / max(self.n_frames - 1, 1)
        target = np.zeros(3)
        if self.kind == "orbit":
            eye = target - self._distance * _direction(self._pitch, self._heading + self.arc * (s - 0.5))
        elif self.kind == "pan":
            heading = self._heading + self.arc / 2 * np.sin(2 * np.pi * s)
            eye = self._eye0
            target = eye + _direction(self._pitch, heading)
        else:
            eye = target - self._distance * (1.4 - 0.7 * s) * _direction(self._pitch, self._heading)
        rng = np.random.default_rng([self.seed, index, 7])
        R, C = look_at(eye, target)
        shake = _rotation_z(np.radians(rng.normal(0.0, 0.3)))
        return R @ shake, C + rng.normal(0.0, 0.002, 3)

    def frame(self, index: int) -> TrajectoryFrame:
        if not 0 <= index < self.n_frames:
            raise InputError(f"frame {index} is outside 0..{self.n_frames - 1}")
        R, C = self.camera_at(index)
        solids = self._solids_at(index)
        stamp_ns = START_NS + int(round(index * 1e9 / self.fps))
        scene = render_view(solids, self.base.frame.camera, R, C, np.random.default_rng([self.seed, index]),
                            noise=self.noise, seed=self.seed, stamp_ns=stamp_ns)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = R.T, C
        centers = {b.attributes["color"]: pose[:3, :3] @ b.center + pose[:3, 3] for b in scene.objects}
        visible = {b.attributes["color"]: int(b.attributes["visible_px"]) for b in scene.objects}
        removed = [s.color for s in self.base.solids if s.color not in centers]
        return TrajectoryFrame(index, scene, pose, centers, visible, removed)

    def __iter__(self) -> Iterator[TrajectoryFrame]:
        for index in range(self.n_frames):
            yield self.frame(index)
