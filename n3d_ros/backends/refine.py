"""Boxes from measured depth: the support plane, completion of what the camera cannot see, and refinement of
any backend's box against the frame's points.

A depth camera sees only the surfaces facing it. Completion ("shape-aware"), when a support plane is known:
* round objects: if the points lie on a sphere resting on the plane (least-squares sphere fit), the box is
  the sphere's box, centre +- radius, back half included;
* everything else is taken as an upright prism standing on the plane: its footprint is the horizontal extent
  of the points (the top face or cap of a box or cylinder is visible from a camera above it, and it spans the
  whole footprint), its height the top of the points. The optical-frame box is the tight axis-aligned box of
  that prism, so it includes the hidden back and bottom.
Without a plane there is no "down", and the box is the robust extent of the visible points only, extended
back along the optical axis to at least a prior depth (refine_box passes the predicted box's).

Extents use robust percentiles (EDGE_PERCENTILE) so that a few flying pixels do not stretch a box.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Union

import cv2
import numpy as np

from ..core.camera import backproject_depth, crop_camera, project_pixels, undistort_frame
from ..core.types import Box3D, InputError, RGBDFrame
from ..reasoning.geometry import MEASURED_DIMENSIONS, viewer_frame

EDGE_PERCENTILE = 0.05          # percent of points allowed outside each face of a fitted box
PLANE_THRESHOLD_M = 0.008       # RANSAC inlier distance to the support plane
ABOVE_PLANE_M = 0.012           # points higher than this above the plane belong to objects
MIN_OBJECT_POINTS = 30


@dataclass(frozen=True)
class SupportPlane:
    """{p : normal . p + offset = 0} in the optical frame; normal points up, towards the camera's side."""

    normal: np.ndarray
    offset: float
    inlier_fraction: float
    noise_m: float = 0.002        # RMS distance of the inliers from the plane: the sensor's noise ...
    noise_depth_m: float = 1.0    # ... at this depth (median z of the inliers)

    def height(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points) @ self.normal + self.offset

    def noise_at(self, depth_m: float) -> float:
        """Expected depth noise at a depth: stereo noise grows with z^2, scaled from the table's residuals."""
        return self.noise_m * (float(depth_m) / self.noise_depth_m) ** 2


def fit_support_plane(points: np.ndarray, threshold: float = PLANE_THRESHOLD_M, iterations: int = 200,
                      sample: int = 4000, seed: int = 0) -> Optional[SupportPlane]:
    """The plane with the most inliers among (N, 3) points (RANSAC, then least squares on its inliers).

    Written with numpy rather than open3d's segment_plane: a subsample of a few thousand points decides the
    plane in a few milliseconds and the result is deterministic for a given seed. None if there are too few
    points or no plane holds at least 10 % of them.
    """
    points = np.asarray(points, dtype=np.float64)
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) < 50:
        return None
    rng = np.random.default_rng(seed)
    subset = points[rng.choice(len(points), size=min(sample, len(points)), replace=False)]
    triples = subset[rng.integers(0, len(subset), size=(iterations, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    good = norms > 1e-9
    normals, triples = normals[good] / norms[good, None], triples[good]
    offsets = -np.einsum("ij,ij->i", normals, triples[:, 0])
    counts = (np.abs(subset @ normals.T + offsets) < threshold).sum(axis=0)
    if len(counts) == 0 or counts.max() < 0.1 * len(subset):
        return None
    best = int(np.argmax(counts))
    # least squares on the inliers of an evenly strided sample: as exact as all of them, at a fraction of the cost
    strided = points[:: max(1, len(points) // 40000)]
    inliers = strided[np.abs(strided @ normals[best] + offsets[best]) < threshold]
    centroid = inliers.mean(axis=0)
    normal = np.linalg.eigh(np.cov((inliers - centroid).T))[1][:, 0]  # direction of least spread
    offset = -float(normal @ centroid)
    if offset < 0:  # the camera (the origin) must be on the positive side: the normal points up at it
        normal, offset = -normal, -offset
    residual = strided @ normal + offset
    on_plane = np.abs(residual) < threshold
    noise = float(np.sqrt(np.mean(residual[on_plane] ** 2)))
    return SupportPlane(normal=normal, offset=offset, inlier_fraction=float(on_plane.mean()),
                        noise_m=max(noise, 1e-4), noise_depth_m=float(np.median(strided[on_plane, 2])))


def _sphere_fit(points: np.ndarray):
    """(centre, radius, rms residual) of the least-squares sphere (linear in centre and r^2 - |c|^2)."""
    a = np.hstack([2.0 * points, np.ones((len(points), 1))])
    b = (points ** 2).sum(axis=1)
    solution, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = solution[:3]
    radius = float(np.sqrt(max(solution[3] + centre @ centre, 0.0)))
    rms = float(np.sqrt(np.mean((np.linalg.norm(points - centre, axis=1) - radius) ** 2)))
    return centre, radius, rms


def _sphere_centre_fixed_radius(points: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Gauss-Newton for the centre of a sphere of known radius: with the radius free, noise on a visible cap
    pulls a small sphere's centre towards the camera."""
    for _ in range(8):
        offsets = points - centre
        dist = np.maximum(np.linalg.norm(offsets, axis=1), 1e-9)
        jac = -offsets / dist[:, None]
        step, *_ = np.linalg.lstsq(jac, -(dist - radius), rcond=None)
        centre = centre + step
        if np.linalg.norm(step) < 1e-6:
            break
    return centre


def _horizontal_basis(normal: np.ndarray) -> np.ndarray:
    """Two unit vectors spanning the plane (rows), the first along the camera's x as far as possible."""
    first = np.array([1.0, 0.0, 0.0]) - normal[0] * normal
    if np.linalg.norm(first) < 1e-6:
        first = np.array([0.0, 0.0, 1.0]) - normal[2] * normal
    first /= np.linalg.norm(first)
    return np.stack([first, np.cross(normal, first)])


@dataclass
class CompletedBox:
    center: np.ndarray
    size: np.ndarray
    shape: Optional[str]     # "sphere" when the sphere test passed, None otherwise (no category claimed)
    method: str              # "sphere", "prism" or "visible"
    # (width, height, depth) of the upright object along the viewer frame's right, up, forward
    # (reasoning.geometry) when a plane is known: its footprint and its height above the plane. A pitched
    # camera's optical box mixes height and depth, so this is what "how tall" must use. None without a plane.
    upright_size: Optional[np.ndarray] = None

    def measured_attributes(self) -> dict:
        """width_m/height_m/depth_m for Box3D.attributes (geometry.MEASURED_DIMENSIONS); {} without a plane."""
        if self.upright_size is None:
            return {}
        return {key: round(float(v), 4) for key, v in zip(MEASURED_DIMENSIONS, self.upright_size)}


def complete_box(points: np.ndarray, plane: Optional[SupportPlane], prior_depth: float = 0.0,
                 pad_m: float = 0.0) -> CompletedBox:
    """The tight optical-frame box of the whole object behind the visible points (module docstring).

    pad_m widens the footprint on every side: the outermost pixels of an object sit on depth edges and are
    dropped with them, so the measured footprint is short by about a pixel and a half per side
    (pixel_pad_m gives that distance at the object's depth)."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < MIN_OBJECT_POINTS:
        raise InputError(f"{len(points)} points are too few to fit a box (need {MIN_OBJECT_POINTS})")
    lo_q, hi_q = EDGE_PERCENTILE, 100.0 - EDGE_PERCENTILE
    if plane is None:
        lo, hi = np.percentile(points, [lo_q, hi_q], axis=0)
        hi[2] = max(hi[2], lo[2] + prior_depth)
        return CompletedBox((lo + hi) / 2, hi - lo, None, "visible")
    heights = plane.height(points)
    top = float(np.percentile(heights, hi_q))
    # Sphere test: the points lie on a sphere (residual within 6 % of its radius or twice the sensor noise at
    # its depth; on 40 synthetic scenes spheres stay under 1.3x the noise and boxes and cylinders over 2.7x)
    # whose centre is half the object's height above the plane. Noise shrinks the fitted radius of small far
    # spheres, so the size comes from the height of the top instead (a resting sphere is as tall as wide).
    centre, radius, rms = _sphere_fit(points[:: max(1, len(points) // 3000)])
    noise = plane.noise_at(float(np.median(points[:, 2])))
    rests_on_plane = abs(float(plane.height(centre[None])[0]) - top / 2) < 0.3 * top / 2
    if rms < max(0.06 * radius, 2.0 * noise) and rests_on_plane:
        centre = _sphere_centre_fixed_radius(points[:: max(1, len(points) // 3000)], centre, top / 2)
        centre = centre - (float(plane.height(centre[None])[0]) - top / 2) * plane.normal
        return CompletedBox(centre, np.full(3, top), "sphere", "sphere", np.full(3, top))
    # Upright prism: optical coordinate k of a prism point is q . h_k + w n_k, with q its horizontal
    # coordinates (footprint), w = height - offset and (h_k, n_k) the optical axis k split along the plane.
    basis = _horizontal_basis(plane.normal)
    q = points @ basis.T
    lo, hi = np.empty(3), np.empty(3)
    for k in range(3):
        axis_in_plane = basis[:, k]  # horizontal part of optical axis k, in (basis) coordinates
        along = q @ axis_in_plane
        vertical = plane.normal[k] * np.array([-plane.offset, top - plane.offset])
        pad = pad_m * float(np.linalg.norm(axis_in_plane))  # support function of a disc of radius pad_m
        lo[k] = np.percentile(along, lo_q) - pad + vertical.min()
        hi[k] = np.percentile(along, hi_q) + pad + vertical.max()
    # the footprint along the viewer's horizontal axes (right and forward are horizontal, so a dot product
    # with the points is their horizontal coordinate), padded like the box
    view = viewer_frame(plane.normal)
    footprint = [float(np.diff(np.percentile(points @ axis, [lo_q, hi_q]))[0]) + 2 * pad_m
                 for axis in (view.right, view.forward)]
    upright = np.array([footprint[0], top, footprint[1]])
    return CompletedBox((lo + hi) / 2, hi - lo, None, "prism", upright)


EDGE_PAD_PIXELS = 1.5


def pixel_pad_m(points: np.ndarray, fx: float) -> float:
    """EDGE_PAD_PIXELS pixels at the median depth of the points, in metres."""
    return EDGE_PAD_PIXELS * float(np.median(points[:, 2])) / fx


def depth_edges(depth: np.ndarray) -> np.ndarray:
    """Pixels next to a depth jump (> 2 cm + 2 % of the depth): where flying pixels and mixed colours live."""
    filled = np.nan_to_num(depth, nan=0.0).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(filled, kernel) - cv2.erode(filled, kernel)
    return spread > 0.02 + 0.02 * filled


@dataclass
class RefineReport:
    moved_m: float               # |new centre - old centre|
    size_change_m: list          # new size - old size, optical x/y/z
    points_used: int
    method: str                  # "sphere", "prism", "visible" or "kept" (not enough points: box unchanged)
    plane_used: bool
    message: str = ""

    def to_dict(self) -> dict:
        return {"moved_m": round(self.moved_m, 4), "size_change_m": [round(v, 4) for v in self.size_change_m],
                "points_used": self.points_used, "method": self.method, "plane_used": self.plane_used,
                **({"message": self.message} if self.message else {})}


def _window(box: Box3D, frame: RGBDFrame, grow: np.ndarray):
    """Pixel rectangle (i0, i1, j0, j1) covering the grown box, or None when it is not in view."""
    half = box.size / 2 + grow
    if box.center[2] + half[2] <= 0.05:
        return None  # wholly behind (or at) the camera
    corners = box.center + half * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    corners[:, 2] = np.maximum(corners[:, 2], 0.05)  # clip to just in front of the camera
    u, v = project_pixels(corners, frame.camera)
    j0, j1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())) + 1, frame.width)
    i0, i1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())) + 1, frame.height)
    return (i0, i1, j0, j1) if i0 < i1 and j0 < j1 else None


def refine_box(box: Box3D, frame: RGBDFrame, plane: Union[str, SupportPlane, None] = "auto",
               grow: float = 1.0, margin_m: float = 0.04,
               min_points: int = MIN_OBJECT_POINTS) -> tuple:
    """(refined box, RefineReport): the box refit to the measured points of the object it encloses.

    The search region is the box grown by ``grow`` x its size + 2 ``margin_m`` (a poor prediction may be off
    by half its size). There, the support plane and everything under it are removed (plane "auto": fitted to
    the whole frame; None: no plane, and points outside the search region are dropped too), the rest is split
    into image-connected pieces at depth edges, and the piece with most points inside the original box (else
    within 2 cm, else within 5 cm of it) is kept whole (cutting it at the box would fit half an object); its completed box (complete_box) is the
    answer. The result is axis-aligned (yaw 0). With fewer than ``min_points`` points the box comes back
    unchanged and the report says so (method "kept").
    """
    frame = undistort_frame(frame)
    grow_m = box.size * grow / 2 + margin_m
    if plane == "auto":
        plane = fit_support_plane(backproject_depth(frame.depth[::4, ::4], _subsampled(frame)).reshape(-1, 3))
    elif plane is not None and not isinstance(plane, SupportPlane):
        raise InputError(f"plane must be 'auto', None or a SupportPlane, got {plane!r}")
    window = _window(box, frame, grow_m)
    if window is None:
        return box, RefineReport(0.0, [0.0] * 3, 0, "kept", plane is not None, "the box is not in the image")
    i0, i1, j0, j1 = window
    depth = frame.depth[i0:i1, j0:j1]
    points = backproject_depth(depth, crop_camera(frame.camera, j0, i0, j1 - j0, i1 - i0))
    keep = np.isfinite(depth) & ~depth_edges(depth)
    if plane is not None:
        keep &= plane.height(np.nan_to_num(points)) > ABOVE_PLANE_M
    else:
        keep &= np.all((points >= box.min_corner - grow_m) & (points <= box.max_corner + grow_m), axis=-1)
    count, labels = cv2.connectedComponents(keep.astype(np.uint8), connectivity=8)
    # distance of each point to the box: a prediction off in depth may hold no surface point at all, so the
    # vote widens step by step until some piece is close enough
    outside = np.maximum(np.abs(np.nan_to_num(points) - box.center) - box.size / 2, 0.0)
    distance = np.where(keep, np.linalg.norm(outside, axis=-1), np.inf)
    for reach in (0.0, 0.02, 0.05):
        near = distance <= reach
        if near.any():
            break
    else:
        return box, RefineReport(0.0, [0.0] * 3, 0, "kept", plane is not None,
                                 "no measured object points within 5 cm of the box")
    best = 1 + int(np.argmax(np.bincount(labels[near], minlength=count)[1:]))
    chosen = points[labels == best]
    if len(chosen) < min_points:
        return box, RefineReport(0.0, [0.0] * 3, int(len(chosen)), "kept", plane is not None,
                                 f"only {len(chosen)} points near the box (need {min_points})")
    fitted = complete_box(chosen, plane, prior_depth=float(box.size[2]),
                          pad_m=pixel_pad_m(chosen, frame.camera.fx) if plane is not None else 0.0)
    # The attributes are the backend's and stay as they were, except measured dimensions (tabletop boxes):
    # with a plane they are measured again on the new fit. Without one the refit cannot say how tall the
    # object stands, and the backend's measurement is kept: dropping it while support_up stays would make
    # "how tall" fall back to the gravity extent of a camera-aligned box, which a pitched camera inflates.
    attributes = dict(box.attributes)
    if fitted.upright_size is not None and any(key in attributes for key in MEASURED_DIMENSIONS):
        attributes.update(fitted.measured_attributes())
    refined = replace(box, center=fitted.center, size=fitted.size, yaw=0.0, attributes=attributes)
    report = RefineReport(moved_m=float(np.linalg.norm(fitted.center - box.center)),
                          size_change_m=[float(v) for v in fitted.size - box.size], points_used=int(len(chosen)),
                          method=fitted.method, plane_used=plane is not None)
    return refined, report


def _subsampled(frame: RGBDFrame):
    """The camera of every 4th pixel of the frame, for a cheap plane fit: pixel j' is pixel 4 j', so
    cx' = cx / 4 (not the centre-preserving resize_camera, which describes a resampled image)."""
    cam = frame.camera
    h, w = frame.depth[::4, ::4].shape
    return replace(cam, width=w, height=h, fx=cam.fx / 4, fy=cam.fy / 4, cx=cam.cx / 4, cy=cam.cy / 4)
