"""Seeded synthetic RGB-D tabletop scenes with exact ground truth, for tests, the offline demo and benchmarks.

A camera looks down at a table (pitch 30-42 deg, 0.6-1.0 m from the point it looks at) holding upright
coloured boxes, cylinders and spheres (4-25 cm). Every pixel is ray cast exactly (vectorised numpy), so the
noise-free depth is exact z-depth along the optical axis. Sensor effects mimic a RealSense D4xx: depth noise
growing with z^2, dropped and flying pixels at depth edges, random holes, 16UC1 millimetre quantisation.

Ground truth per object is the tight axis-aligned box IN THE OPTICAL FRAME around the whole solid (yaw 0):
the kind of box N3D-VLM predicts. Objects get ids 0..n-1 from left to right in the image.
Internally a table frame has z up, the table top at z = 0 and the floor at z = -FLOOR_DEPTH.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from .images import decode_depth, encode_depth_16uc1
from .types import Box3D, InputError, PinholeCamera, RGBDFrame

COLORS = {  # distinct names a user would say, with the RGB they are drawn in
    "red": (210, 35, 35), "green": (40, 165, 60), "blue": (35, 75, 215), "yellow": (235, 205, 35),
    "orange": (245, 130, 20), "purple": (125, 50, 165), "white": (235, 235, 235), "black": (30, 30, 30),
}
SHAPES = ("box", "cylinder", "sphere")
FLOOR_DEPTH = 0.74          # table height above the floor, metres
TABLE_HALF = (0.75, 0.5)    # table top half extents along table x and y around the point the camera looks at
SENSOR_MAX_RANGE = 6.0      # beyond this the synthetic sensor returns no reading
NOISE_PER_M2 = 0.0026       # depth noise sigma = NOISE_PER_M2 * z^2 (D435-like: ~2.6 mm at 1 m)
_LIGHT = np.array([-0.3, -0.5, 1.0]) / np.linalg.norm([-0.3, -0.5, 1.0])  # towards the light, table frame


@dataclass
class SyntheticScene:
    """One rendered scene. frame.depth went through the sensor effects and 16UC1 quantisation (noise=True) or
    is exact (noise=False); depth_mm is what a 16UC1 driver would publish. objects: optical-frame ground
    truth. The table plane is {p : table_normal . p + table_offset = 0} in the optical frame, normal pointing
    up out of the table. depth_exact/object_mask (id per pixel, -1 = table/floor)/optical_from_table exist for
    generated scenes, not for loaded ones."""

    frame: RGBDFrame
    depth_mm: np.ndarray
    objects: List[Box3D]
    table_normal: np.ndarray
    table_offset: float
    seed: Optional[int] = None
    depth_exact: Optional[np.ndarray] = None
    object_mask: Optional[np.ndarray] = None
    optical_from_table: Optional[np.ndarray] = None  # 4x4: p_optical = T @ [p_table, 1]; table z up, top at z=0
    solids: Optional[list] = None  # the layout (table frame), so core.trajectory can render it from other poses


@dataclass
class _Solid:
    shape: str
    color: str
    x: float
    y: float
    yaw: float      # boxes only, about table z
    dims: tuple     # box (sx, sy, h); cylinder (r, h); sphere (r,)

    @property
    def footprint_radius(self) -> float:
        return float(np.hypot(self.dims[0], self.dims[1]) / 2) if self.shape == "box" else float(self.dims[0])

    @property
    def height(self) -> float:
        return float(2 * self.dims[0]) if self.shape == "sphere" else float(self.dims[-1])


def realsense_like_camera(width: int = 640, height: int = 480) -> PinholeCamera:
    """Intrinsics like a D435 colour stream at 640x480 (fx ~ 615), scaled to the requested size. The principal
    point is deliberately off-centre so that half-pixel mistakes show up in tests."""
    scale = width / 640.0
    return PinholeCamera(width=width, height=height, fx=615.0 * scale, fy=615.0 * scale,
                         cx=(width - 1) / 2.0 + 0.8 * scale, cy=(height - 1) / 2.0 - 1.2 * scale,
                         frame_id="camera_color_optical_frame", distortion_model="plumb_bob",
                         distortion=(0.0,) * 5)


def _camera_pose(rng: np.random.Generator):
    """World(table)->optical rotation R (rows: right, down, forward) and camera centre C in the table frame."""
    pitch = np.radians(rng.uniform(30.0, 42.0))
    heading = np.radians(rng.uniform(-10.0, 10.0))
    distance = rng.uniform(0.6, 1.0)
    forward = np.array([np.sin(heading) * np.cos(pitch), np.cos(heading) * np.cos(pitch), -np.sin(pitch)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward]), -distance * forward  # looks at the table origin


def _optical_aabb(solid: _Solid, R: np.ndarray, C: np.ndarray):
    """Exact optical-frame (min, max) corners of the whole solid."""
    if solid.shape == "sphere":
        centre = R @ (np.array([solid.x, solid.y, solid.dims[0]]) - C)
        return centre - solid.dims[0], centre + solid.dims[0]
    if solid.shape == "cylinder":
        r, h = solid.dims
        centre = R @ (np.array([solid.x, solid.y, h / 2]) - C)
        axis = R[:, 2]  # table z in optical coordinates
        half = r * np.sqrt(np.clip(1.0 - axis**2, 0.0, None)) + (h / 2) * np.abs(axis)
        return centre - half, centre + half
    sx, sy, h = solid.dims
    c, s = np.cos(solid.yaw), np.sin(solid.yaw)
    local = np.array([[a * sx / 2, b * sy / 2, z] for a in (-1, 1) for b in (-1, 1) for z in (0.0, h)])
    world = local @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) + [solid.x, solid.y, 0.0]
    optical = (world - C) @ R.T
    return optical.min(axis=0), optical.max(axis=0)


def _intersect(solid: _Solid, origin: np.ndarray, dirs: np.ndarray):
    """Ray parameter t (= z-depth, since dirs have unit optical z) of the first hit, inf where missed,
    and the table-frame surface normal at the hit."""
    n = dirs.shape[0]
    t = np.full(n, np.inf)
    normal = np.zeros((n, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        if solid.shape == "sphere":
            centre = np.array([solid.x, solid.y, solid.dims[0]])
            oc = origin - centre
            a = np.einsum("ij,ij->i", dirs, dirs)
            b = 2.0 * dirs @ oc
            disc = b * b - 4 * a * (oc @ oc - solid.dims[0] ** 2)
            hit = disc >= 0
            t[hit] = (-b[hit] - np.sqrt(disc[hit])) / (2 * a[hit])
            normal = (origin + t[:, None] * dirs - centre) / solid.dims[0]
        elif solid.shape == "cylinder":
            r, h = solid.dims
            o = origin[:2] - [solid.x, solid.y]
            a = dirs[:, 0] ** 2 + dirs[:, 1] ** 2
            b = 2.0 * dirs[:, :2] @ o
            disc = b * b - 4 * a * (o @ o - r * r)
            t_side = (-b - np.sqrt(disc)) / (2 * a)
            z_side = origin[2] + t_side * dirs[:, 2]
            side = (disc >= 0) & (t_side > 0) & (z_side >= 0) & (z_side <= h)
            t_cap = (h - origin[2]) / dirs[:, 2]
            cap_xy = origin[:2] + t_cap[:, None] * dirs[:, :2] - [solid.x, solid.y]
            cap = (t_cap > 0) & (np.einsum("ij,ij->i", cap_xy, cap_xy) <= r * r)
            t = np.where(side, t_side, np.inf)
            use_cap = cap & (t_cap < t)
            t[use_cap] = t_cap[use_cap]
            p = origin + t[:, None] * dirs
            normal[:, :2] = (p[:, :2] - [solid.x, solid.y]) / r
            normal[use_cap] = (0.0, 0.0, 1.0)
        else:
            sx, sy, h = solid.dims
            c, s = np.cos(solid.yaw), np.sin(solid.yaw)
            to_local = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])  # rows: the box's axes in the table frame
            o = to_local @ (origin - [solid.x, solid.y, h / 2])
            d = dirs @ to_local.T
            half = np.array([sx / 2, sy / 2, h / 2])
            t1, t2 = (-half - o) / d, (half - o) / d
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            axis = np.argmax(near, axis=1)
            t_near = near[np.arange(n), axis]
            hit = (t_near <= far.min(axis=1)) & (t_near > 0)
            t[hit] = t_near[hit]
            local_normal = np.zeros((n, 3))
            local_normal[np.arange(n), axis] = -np.sign(d[np.arange(n), axis])
            normal = local_normal @ to_local
    t[~(t > 0)] = np.inf
    return t, normal


def _place(rng: np.random.Generator, n_objects: int, camera: PinholeCamera, R, C) -> List[_Solid]:
    """Upright, non-overlapping solids whose whole box projects inside the image (rejection sampling)."""
    colors = rng.permutation(list(COLORS))[:n_objects]
    solids: List[_Solid] = []
    for color in colors:
        for _ in range(500):
            shape = SHAPES[rng.integers(len(SHAPES))]
            if shape == "box":
                dims = (rng.uniform(0.05, 0.18), rng.uniform(0.05, 0.18), rng.uniform(0.05, 0.22))
            elif shape == "cylinder":
                dims = (rng.uniform(0.025, 0.08), rng.uniform(0.06, 0.25))
            else:
                dims = (rng.uniform(0.025, 0.09),)
            solid = _Solid(shape, str(color), rng.uniform(-0.35, 0.35), rng.uniform(-0.25, 0.25),
                           rng.uniform(0.0, np.pi / 2), dims)
            if any(np.hypot(solid.x - o.x, solid.y - o.y) < solid.footprint_radius + o.footprint_radius + 0.02
                   for o in solids):
                continue
            lo, hi = _optical_aabb(solid, R, C)
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            u = camera.fx * corners[:, 0] / corners[:, 2] + camera.cx
            v = camera.fy * corners[:, 1] / corners[:, 2] + camera.cy
            margin = 6
            if u.min() >= margin and v.min() >= margin and u.max() <= camera.width - 1 - margin \
                    and v.max() <= camera.height - 1 - margin:
                solids.append(solid)
                break
        else:
            raise InputError(f"could not place {n_objects} objects without overlap; ask for fewer objects")
    return solids


def _shade(base, normal_world, extra=None):
    lambert = np.clip(normal_world @ _LIGHT, 0.0, None)
    gain = 0.35 + 0.65 * lambert
    if extra is not None:
        gain = gain * extra
    return np.asarray(base, dtype=np.float64)[None, :] * gain[:, None]


def _render(camera: PinholeCamera, R, C, solids: List[_Solid]):
    """Exact z-depth (NaN = no surface within SENSOR_MAX_RANGE), shaded RGB, object-id mask, per-object pixel
    counts when rendered alone."""
    H, W = camera.height, camera.width
    cols, rows = np.meshgrid(np.arange(W), np.arange(H))
    rays_c = np.stack([(cols - camera.cx) / camera.fx, (rows - camera.cy) / camera.fy, np.ones((H, W))], axis=-1)
    dirs = rays_c.reshape(-1, 3) @ R  # optical -> table frame (R is orthonormal, rows = optical axes)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_table = (0.0 - C[2]) / dirs[:, 2]
        t_floor = (-FLOOR_DEPTH - C[2]) / dirs[:, 2]
    p_table = C + t_table[:, None] * dirs
    on_table = (t_table > 0) & (np.abs(p_table[:, 0]) <= TABLE_HALF[0]) & (np.abs(p_table[:, 1]) <= TABLE_HALF[1])
    depth = np.where(on_table, t_table, np.where(t_floor > 0, t_floor, np.inf))
    p = C + np.where(np.isfinite(depth), depth, 0.0)[:, None] * dirs
    # table and floor face up, so their Lambert term is one number; only the texture varies per pixel
    flat_gain = 0.35 + 0.65 * max(float(_LIGHT[2]), 0.0)
    grain = 1.0 + 0.07 * np.sin(2 * np.pi * p[:, 0] / 0.035 + 3.0 * np.sin(7.0 * p[:, 1]))
    checker = 1.0 + 0.08 * np.where((np.floor(p[:, 0] / 0.3) + np.floor(p[:, 1] / 0.3)) % 2 == 0, 1, -1)
    color = (np.where(on_table[:, None], np.array([165.0, 120.0, 80.0]), np.array([125.0, 125.0, 130.0]))
             * (flat_gain * np.where(on_table, grain, checker))[:, None])
    mask = np.full(H * W, -1, dtype=np.int16)
    alone = []
    for k, solid in enumerate(solids):
        lo, hi = _optical_aabb(solid, R, C)
        if lo[2] <= 1e-6:
            # part of the solid is beside or behind the camera (a moving camera): its projection is unbounded
            j0, j1, i0, i1 = 0, W - 1, 0, H - 1
        else:
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            u = camera.fx * corners[:, 0] / corners[:, 2] + camera.cx
            v = camera.fy * corners[:, 1] / corners[:, 2] + camera.cy
            # only rays inside the projected box can hit the solid: casting just those keeps a scene under 0.1 s
            j0, j1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())), W - 1)
            i0, i1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())), H - 1)
        index = (np.arange(i0, i1 + 1)[:, None] * W + np.arange(j0, j1 + 1)[None, :]).reshape(-1)
        t, normal = _intersect(solid, C, dirs[index])
        alone.append(int(np.isfinite(t).sum()))
        closer = t < depth[index]
        index, t, normal = index[closer], t[closer], normal[closer]
        depth[index] = t
        mask[index] = k
        color[index] = _shade(COLORS[solid.color], normal)
    depth[depth > SENSOR_MAX_RANGE] = np.inf
    depth[~np.isfinite(depth)] = np.nan
    rgb = np.clip(np.rint(color), 0, 255).reshape(H, W, 3)
    return depth.reshape(H, W), rgb, mask.reshape(H, W), alone


def _sensor_effects(rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """RealSense-like corruption of exact depth (metres, NaN = none); returns metres with NaN holes."""
    import cv2

    H, W = depth.shape
    noisy = depth + rng.standard_normal(depth.shape) * NOISE_PER_M2 * depth**2
    filled = np.nan_to_num(depth, nan=0.0).astype(np.float32)
    # depth edges: a neighbour differs by more than 2 cm + 2 % of the depth
    local_max = cv2.dilate(filled, np.ones((3, 3), np.uint8))
    local_min = cv2.erode(filled, np.ones((3, 3), np.uint8))
    edge = (local_max - local_min) > 0.02 + 0.02 * filled
    draw = rng.random(depth.shape)
    flying = edge & (draw < 0.15)  # stereo matching blends foreground and background at edges
    noisy[flying] = local_min[flying] + rng.random(int(flying.sum())) * (local_max - local_min)[flying]
    noisy[edge & (draw >= 0.15) & (draw < 0.65)] = np.nan
    holes = np.zeros((H, W), np.uint8)
    for _ in range(rng.integers(2, 6)):
        centre = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        axes = (int(rng.integers(3, 13) * W / 640), int(rng.integers(3, 13) * W / 640))
        cv2.ellipse(holes, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    noisy[(holes > 0) | (rng.random(depth.shape) < 0.003)] = np.nan
    noisy[~(noisy > 0)] = np.nan
    return noisy


def make_scene(seed: int, width: int = 640, height: int = 480, n_objects: Optional[int] = None,
               noise: bool = True) -> SyntheticScene:
    """Render the scene for ``seed`` (same seed and arguments -> identical arrays)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"scene seed must be a non-negative integer, got {seed!r}")
    if not (64 <= width <= 4096 and 48 <= height <= 4096):
        raise InputError(f"scene size {width}x{height} is out of range (64..4096 x 48..4096)")
    if n_objects is not None and not 1 <= n_objects <= len(COLORS):
        raise InputError(f"n_objects must be 1..{len(COLORS)} (one colour each), got {n_objects}")
    rng = np.random.default_rng(seed)
    camera = realsense_like_camera(width, height)
    count = int(rng.integers(3, 7)) if n_objects is None else int(n_objects)
    for _ in range(50):
        R, C = _camera_pose(rng)
        solids = _place(rng, count, camera, R, C)
        depth, rgb, mask, alone = _render(camera, R, C, solids)
        visible = np.bincount(mask[mask >= 0].ravel(), minlength=len(solids))
        if all(v >= 0.6 * a and a >= 60 for v, a in zip(visible, alone)):
            break
    else:
        raise InputError(f"seed {seed}: no layout with every object visible; ask for fewer objects")
    return render_view(solids, camera, R, C, rng, noise=noise, seed=seed, rendered=(depth, rgb, mask, alone))


def render_view(solids: list, camera: PinholeCamera, R: np.ndarray, C: np.ndarray, rng: np.random.Generator,
                noise: bool = True, seed: Optional[int] = None, stamp_ns: int = 0, rendered=None) -> SyntheticScene:
    """The scene's solids (table frame) seen by a camera with rotation R (rows: optical axes in the table
    frame) centred at C, with ground truth for this view. Solids out of view keep a ground-truth box with
    visible_px 0. rendered: _render's output when the caller already has it (make_scene's layout check)."""
    depth, rgb, mask, _ = rendered if rendered is not None else _render(camera, R, C, solids)
    visible = np.bincount(mask[mask >= 0].ravel(), minlength=len(solids))
    if noise:
        measured = _sensor_effects(rng, depth)
        depth_mm = encode_depth_16uc1(measured)
        frame_depth = decode_depth(depth_mm, "16UC1", camera.width, camera.height)
        rgb = rgb + rng.normal(0.0, 2.0, rgb.shape)
    else:
        frame_depth = depth.astype(np.float32)
        depth_mm = encode_depth_16uc1(frame_depth)
    color = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    frame = RGBDFrame(color=color, depth=frame_depth, camera=camera, stamp_ns=stamp_ns, frame_id=camera.frame_id)

    centres_u = []
    boxes = []
    for k, solid in enumerate(solids):
        lo, hi = _optical_aabb(solid, R, C)
        centre = (lo + hi) / 2
        centres_u.append(camera.fx * centre[0] / centre[2] + camera.cx)
        dims = dict(zip({"box": ("size_x", "size_y", "height"), "cylinder": ("radius", "height"),
                         "sphere": ("radius",)}[solid.shape], [float(d) for d in solid.dims]))
        pose = {"x": float(solid.x), "y": float(solid.y), "yaw": float(solid.yaw if solid.shape == "box" else 0.0),
                **dims}
        boxes.append(Box3D(label=f"{solid.color} {solid.shape}", center=centre, size=hi - lo, yaw=0.0, score=1.0,
                           attributes={"color": solid.color, "shape": solid.shape, "pose_table": pose,
                                       "visible_px": int(visible[k])}))
    order = np.argsort(centres_u, kind="stable")
    objects = [boxes[k] for k in order]
    renumber = np.full(len(solids) + 1, -1, dtype=np.int16)
    for new_id, k in enumerate(order):
        objects[new_id].id = new_id
        renumber[k] = new_id
    object_mask = renumber[mask]  # index -1 picks the trailing -1
    normal = R @ np.array([0.0, 0.0, 1.0])
    offset = float(-normal @ (R @ (np.zeros(3) - C)))
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = R, -R @ C
    return SyntheticScene(frame=frame, depth_mm=depth_mm, objects=objects, table_normal=normal, table_offset=offset,
                          seed=seed, depth_exact=depth.astype(np.float32), object_mask=object_mask,
                          optical_from_table=transform, solids=list(solids))


def _box_to_json(box: Box3D) -> dict:
    return {"id": box.id, "label": box.label, "center_m": [float(c) for c in box.center],
            "size_m": [float(s) for s in box.size], "yaw_rad": float(box.yaw), "attributes": box.attributes}


def save_scene(scene: SyntheticScene, out_dir) -> List[Path]:
    """Write color.png, depth.png (16-bit millimetres), camera_info.json and ground_truth.json; return the paths."""
    import cv2

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    camera = scene.frame.camera
    paths = [out / "color.png", out / "depth.png", out / "camera_info.json", out / "ground_truth.json"]
    if not cv2.imwrite(str(paths[0]), np.ascontiguousarray(scene.frame.color[:, :, ::-1])):
        raise OSError(f"could not write {paths[0]}")
    if not cv2.imwrite(str(paths[1]), scene.depth_mm.astype(np.uint16)):
        raise OSError(f"could not write {paths[1]}")
    info = {"width": camera.width, "height": camera.height,
            "k": [camera.fx, 0.0, camera.cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0],
            "d": [float(v) for v in camera.distortion], "distortion_model": camera.distortion_model,
            "frame_id": camera.frame_id}
    paths[2].write_text(json.dumps(info, indent=2) + "\n")
    truth = {"seed": scene.seed, "frame_id": camera.frame_id, "depth_units": "16UC1 millimetres, 0 = no reading",
             "table_plane": {"normal": [float(v) for v in scene.table_normal], "offset": float(scene.table_offset)},
             "objects": [_box_to_json(box) for box in scene.objects]}
    paths[3].write_text(json.dumps(truth, indent=2) + "\n")
    return paths


def load_scene(out_dir) -> SyntheticScene:
    """Read back what save_scene wrote (depth through the 16UC1 decoder; no exact depth or mask)."""
    import cv2

    from .camera import camera_from_info

    out = Path(out_dir)
    for name in ("color.png", "depth.png", "camera_info.json", "ground_truth.json"):
        if not (out / name).is_file():
            raise InputError(f"{out}: missing {name}; write a scene with `n3d scene --seed N --out {out}`")
    bgr = cv2.imread(str(out / "color.png"), cv2.IMREAD_COLOR)
    depth_mm = cv2.imread(str(out / "depth.png"), cv2.IMREAD_UNCHANGED)
    if bgr is None or depth_mm is None or depth_mm.dtype != np.uint16 or depth_mm.ndim != 2:
        raise InputError(f"{out}: color.png must be 8-bit colour and depth.png 16-bit single channel")
    info = json.loads((out / "camera_info.json").read_text())
    truth = json.loads((out / "ground_truth.json").read_text())
    camera = camera_from_info(int(info["width"]), int(info["height"]), info["k"], d=tuple(info.get("d", ())),
                              distortion_model=info.get("distortion_model", "plumb_bob"),
                              frame_id=info.get("frame_id", "camera_color_optical_frame"))
    height, width = depth_mm.shape
    depth = decode_depth(depth_mm, "16UC1", width, height)
    frame = RGBDFrame(color=np.ascontiguousarray(bgr[:, :, ::-1]), depth=depth, camera=camera,
                      frame_id=camera.frame_id)
    objects = [Box3D(label=o["label"], center=o["center_m"], size=o["size_m"], yaw=o.get("yaw_rad", 0.0),
                     id=o["id"], attributes=o.get("attributes", {})) for o in truth["objects"]]
    plane = truth["table_plane"]
    return SyntheticScene(frame=frame, depth_mm=depth_mm, objects=objects, table_normal=np.array(plane["normal"]),
                          table_offset=float(plane["offset"]), seed=truth.get("seed"))
