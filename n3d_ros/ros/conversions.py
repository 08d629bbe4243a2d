"""Every conversion between ROS messages and core types, in one place (messages -> core, core -> messages).

3D boxes leave the core in the optical frame; a rigid transform (R, t) to another frame is applied here.
Quaternions are (x, y, z, w) like geometry_msgs; the few lines of quaternion algebra are written out with
numpy because tf_transformations / tf2_geometry_msgs are not available without a ROS distribution.
"""

from __future__ import annotations

import colorsys
import zlib
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import ColorRGBA, Header
from vision_msgs.msg import (BoundingBox2D, BoundingBox3D, Detection2D, Detection2DArray, Detection3D,
                             Detection3DArray, LabelInfo, ObjectHypothesisWithPose, VisionClass)
from visualization_msgs.msg import Marker, MarkerArray

from ..core.images import SUPPORTED_COLOR_ENCODINGS
from ..core.types import Answer, Box3D, InputError, PinholeCamera, RGBDFrame
from ..memory.objects import MEMORY_ID

COLOR_ENCODINGS = SUPPORTED_COLOR_ENCODINGS  # one list: what core.images decodes is what the node accepts
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
# Several drivers publish millimetre depth as mono16: the same bytes as 16UC1, decoded as such.
DEPTH_ENCODING_ALIASES = {"mono16": "16UC1"}

Transform = Tuple[np.ndarray, np.ndarray]  # (R 3x3, t 3): p_target = R @ p_source + t


# ---------------------------------------------------------------------- time
def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


# ---------------------------------------------------------------------- quaternions
def quat_multiply(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def quat_to_matrix(q: Sequence[float]) -> np.ndarray:
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (x, y, z, w) with w >= 0 (Shepperd's method)."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q if q[3] >= 0 else -q


def box_pose(box: Box3D, transform: Optional[Transform] = None) -> Pose:
    """The box centre and orientation (yaw about +y_optical), optionally moved into another frame."""
    center = np.asarray(box.center, dtype=np.float64)
    quat = np.array([0.0, np.sin(box.yaw / 2.0), 0.0, np.cos(box.yaw / 2.0)])
    if transform is not None:
        rotation, translation = transform
        center = rotation @ center + translation
        quat = quat_multiply(matrix_to_quat(rotation), quat)
    return Pose(position=Point(x=float(center[0]), y=float(center[1]), z=float(center[2])),
                orientation=Quaternion(x=float(quat[0]), y=float(quat[1]), z=float(quat[2]), w=float(quat[3])))


def transform_from_msg(transform) -> Transform:
    """geometry_msgs/Transform (target <- source) -> (R, t)."""
    r, t = transform.rotation, transform.translation
    return quat_to_matrix([r.x, r.y, r.z, r.w]), np.array([t.x, t.y, t.z])


# ---------------------------------------------------------------------- sensor messages -> core
def check_alignment(color: Image, depth: Image, info: CameraInfo) -> Optional[str]:
    """A cheap check before decoding: why this colour/depth/camera_info set is unusable, or None."""
    if color.encoding not in COLOR_ENCODINGS:
        return f"colour encoding {color.encoding!r} is not supported; use one of {list(COLOR_ENCODINGS)}"
    if depth.encoding not in DEPTH_ENCODINGS:
        return (f"depth encoding {depth.encoding!r} is not supported; use 16UC1 or mono16 (millimetres) or "
                "32FC1 (metres) depth aligned to colour")
    if (depth.width, depth.height) != (color.width, color.height):
        return (f"depth is {depth.width}x{depth.height} but colour is {color.width}x{color.height}: depth must be "
                "aligned to colour (RealSense: align_depth.enable:=true, topic aligned_depth_to_color/image_raw)")
    if (info.width, info.height) != (color.width, color.height):
        return f"camera_info is {info.width}x{info.height} but colour is {color.width}x{color.height}"
    if depth.header.frame_id and color.header.frame_id and depth.header.frame_id != color.header.frame_id:
        return (f"depth frame {depth.header.frame_id!r} differs from colour frame {color.header.frame_id!r}: "
                "subscribe to depth aligned to colour")
    if info.header.frame_id and color.header.frame_id and info.header.frame_id != color.header.frame_id:
        return (f"camera_info frame {info.header.frame_id!r} differs from colour frame "
                f"{color.header.frame_id!r}: use the colour camera's camera_info")
    if len(info.k) != 9 or info.k[0] <= 0 or info.k[4] <= 0:
        return "camera_info has no valid intrinsics (K[0] and K[4] must be positive): is the camera calibrated?"
    return None


def camera_from_msg(info: CameraInfo, frame_id: str) -> PinholeCamera:
    from ..core.camera import camera_from_info

    return camera_from_info(int(info.width), int(info.height), list(info.k), d=tuple(info.d),
                            distortion_model=info.distortion_model or "plumb_bob", frame_id=frame_id)


def frame_from_msgs(color: Image, depth: Image, info: CameraInfo, min_range_m: float,
                    max_range_m: float) -> RGBDFrame:
    """Decode a matched set into an RGBDFrame (raises InputError saying what is wrong)."""
    from ..core.depth_check import read_depth_payload
    from ..core.images import decode_color, decode_depth

    problem = check_alignment(color, depth, info)
    if problem:
        raise InputError(problem)
    frame_id = color.header.frame_id or "camera_color_optical_frame"
    rgb = decode_color(bytes(color.data), color.encoding, color.width, color.height, step=color.step,
                       is_bigendian=bool(color.is_bigendian))
    encoding, payload = DEPTH_ENCODING_ALIASES.get(depth.encoding, depth.encoding), bytes(depth.data)
    layout = dict(step=depth.step, is_bigendian=bool(depth.is_bigendian))
    metres = decode_depth(payload, encoding, depth.width, depth.height, min_range_m=min_range_m,
                          max_range_m=max_range_m, **layout)
    # What the sensor sent before the range was applied, so that a refusal can say "all 65535", "looks like
    # millimetres in a 32FC1 image" or "wrong is_bigendian" (core/depth_check.py).
    readout = read_depth_payload(payload, encoding, depth.width, depth.height, **layout)
    return RGBDFrame(color=rgb, depth=metres, camera=camera_from_msg(info, frame_id),
                     stamp_ns=stamp_to_ns(color.header.stamp), frame_id=frame_id, depth_readout=readout)


# ---------------------------------------------------------------------- core -> sensor messages
def frame_to_msgs(frame: RGBDFrame, depth_mm: Optional[np.ndarray] = None) -> Tuple[Image, Image, CameraInfo]:
    """(rgb8 colour, depth, camera_info) with the frame's stamp; depth is 16UC1 when depth_mm is given
    (what RealSense publishes), else 32FC1 metres with NaN for no reading."""
    header = Header(stamp=ns_to_stamp(frame.stamp_ns), frame_id=frame.frame_id)
    height, width = frame.color.shape[:2]
    color = Image(header=header, height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3,
                  data=np.ascontiguousarray(frame.color, dtype=np.uint8).tobytes())
    if depth_mm is not None:
        depth = Image(header=header, height=height, width=width, encoding="16UC1", is_bigendian=0, step=width * 2,
                      data=np.ascontiguousarray(depth_mm, dtype="<u2").tobytes())
    else:
        depth = Image(header=header, height=height, width=width, encoding="32FC1", is_bigendian=0, step=width * 4,
                      data=np.ascontiguousarray(frame.depth, dtype="<f4").tobytes())
    camera = frame.camera
    info = CameraInfo(header=header, height=height, width=width,
                      distortion_model=camera.distortion_model or "plumb_bob",
                      d=[float(v) for v in camera.distortion] or [0.0] * 5,
                      k=[camera.fx, 0.0, camera.cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0],
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[camera.fx, 0.0, camera.cx, 0.0, 0.0, camera.fy, camera.cy, 0.0, 0.0, 0.0, 1.0, 0.0])
    return color, depth, info


def rgb_image_msg(rgb: np.ndarray, header: Header) -> Image:
    height, width = rgb.shape[:2]
    return Image(header=header, height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3,
                 data=np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())


# ---------------------------------------------------------------------- boxes -> vision_msgs
def object_id(box: Box3D, index: int) -> str:
    return str(box.id) if box.id is not None else str(index)


def _hypothesis(box: Box3D, pose: Pose) -> ObjectHypothesisWithPose:
    result = ObjectHypothesisWithPose()
    result.hypothesis.class_id = box.label
    result.hypothesis.score = float(box.score)
    result.pose.pose = pose
    return result


def detections_3d(boxes: Iterable[Box3D], header: Header, transform: Optional[Transform] = None) -> Detection3DArray:
    """Detection3DArray: header from the colour image (frame replaced by the target frame when transformed),
    sizes in metres along the box axes, centre repeated in results[0].pose, class_id = label, id = object id."""
    array = Detection3DArray(header=header)
    for index, box in enumerate(boxes):
        pose = box_pose(box, transform)
        size = Vector3(x=float(box.size[0]), y=float(box.size[1]), z=float(box.size[2]))
        array.detections.append(Detection3D(header=header, results=[_hypothesis(box, pose)],
                                            bbox=BoundingBox3D(center=pose, size=size), id=object_id(box, index)))
    return array


def detections_2d(boxes: Sequence[Box3D], rects: Sequence[Optional[Tuple[float, float, float, float]]],
                  header: Header) -> Detection2DArray:
    """Detection2DArray from pixel rectangles (x0, y0, x1, y1) of the same boxes; boxes with no visible
    rectangle (None) are left out, ids keep them matched to the 3D detections."""
    array = Detection2DArray(header=header)
    for index, (box, rect) in enumerate(zip(boxes, rects)):
        if rect is None:
            continue
        x0, y0, x1, y1 = (float(v) for v in rect)
        bbox = BoundingBox2D(size_x=x1 - x0, size_y=y1 - y0)
        bbox.center.position.x, bbox.center.position.y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        result = ObjectHypothesisWithPose()
        result.hypothesis.class_id, result.hypothesis.score = box.label, float(box.score)
        array.detections.append(Detection2D(header=header, results=[result], bbox=bbox, id=object_id(box, index)))
    return array


def label_color(label: str) -> Tuple[float, float, float]:
    """A stable colour per label (same label, same colour, across runs)."""
    hue = (zlib.crc32(label.encode("utf-8")) % 360) / 360.0
    return colorsys.hsv_to_rgb(hue, 0.85, 1.0)


def markers(boxes: Sequence[Box3D], header: Header, namespace: str,
            transform: Optional[Transform] = None) -> MarkerArray:
    """DELETEALL, then a translucent cube and a text label per box (replaced wholesale: no blinking)."""
    array = MarkerArray(markers=[Marker(header=header, ns=namespace, action=Marker.DELETEALL)])
    for index, box in enumerate(boxes):
        r, g, b = label_color(box.label)
        pose = box_pose(box, transform)
        array.markers.append(Marker(
            header=header, ns=namespace, id=2 * index, type=Marker.CUBE, action=Marker.ADD, pose=pose,
            scale=Vector3(x=float(box.size[0]), y=float(box.size[1]), z=float(box.size[2])),
            color=ColorRGBA(r=r, g=g, b=b, a=0.35)))
        # The label floats just above the box: "up" is -y in the optical frame.
        top = Box3D(box.label, box.center - np.array([0.0, box.size[1] / 2.0 + 0.04, 0.0]), [0, 0, 0])
        text = f"{box.label} [{object_id(box, index)}]"
        array.markers.append(Marker(
            header=header, ns=namespace, id=2 * index + 1, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
            pose=box_pose(top, transform), scale=Vector3(z=0.05), color=ColorRGBA(r=r, g=g, b=b, a=1.0),
            text=text))
    return array


class LabelMap:
    """Label -> VisionClass.class_id for ~/label_info, stable for the node's lifetime.

    Open-vocabulary labels are unbounded but class_id is a uint16: ids 0..max_labels-1 go to labels in order
    of first sight, and once those are used up every further label shares the reserved overflow id (its
    name says so), so the map stops growing instead of wrapping around onto existing ids.
    """

    UINT16_MAX = 65535

    def __init__(self, max_labels: int = UINT16_MAX, overflow_name: str = "(other: label map full)"):
        if not 1 <= max_labels <= self.UINT16_MAX:
            raise ValueError(f"max_labels must be in [1, {self.UINT16_MAX}], got {max_labels}")
        self.max_labels = int(max_labels)
        self.overflow_id = self.max_labels  # <= 65535: still a valid uint16
        self.overflow_name = overflow_name
        self._ids: Dict[str, int] = {}
        self._overflowed = False

    def __len__(self) -> int:
        return len(self._ids)

    def id_of(self, label: str) -> int:
        return self._ids.get(label, self.overflow_id)

    def add(self, labels: Iterable[str]) -> Tuple[bool, list]:
        """Map new labels; (whether the class map changed, labels that got the overflow id)."""
        changed, unmapped = False, []
        for label in labels:
            if label in self._ids or label in unmapped:
                continue
            if len(self._ids) < self.max_labels:
                self._ids[label] = len(self._ids)
                changed = True
            else:
                unmapped.append(label)
                if not self._overflowed:
                    self._overflowed = changed = True  # the overflow entry appears in the map once
        return changed, unmapped

    def class_map(self) -> Dict[str, int]:
        mapping = dict(self._ids)
        if self._overflowed:
            mapping[self.overflow_name] = self.overflow_id
        return mapping


def label_info(class_map: Dict[str, int], header: Header, threshold: float = 0.0) -> LabelInfo:
    return LabelInfo(header=header, threshold=float(threshold),
                     class_map=[VisionClass(class_id=index, class_name=name)
                                for name, index in sorted(class_map.items(), key=lambda item: item[1])])


def fill_answer(target, answer: Answer, objects: Detection3DArray, objects_2d: Optional[Detection2DArray],
                latency_s: float):
    """Copy an Answer into a SpatialQuery response / action result / SpatialAnswer message."""
    target.success = bool(answer.success)
    target.message = answer.message
    target.answer = answer.text
    target.reasoning = answer.reasoning
    target.has_value = answer.value is not None
    target.value = float(answer.value) if answer.value is not None else 0.0
    target.unit = answer.unit
    target.answer_path = answer.path
    target.objects = objects
    if objects_2d is not None and hasattr(target, "objects_2d"):
        target.objects_2d = objects_2d
    target.latency_s = float(latency_s)
    remembered = [b for b in answer.objects if b.attributes.get("from_memory")]
    target.from_memory_ids = [str(b.id) for b in remembered]
    target.from_memory_ages_s = [float(b.attributes["memory"]["age_s"]) for b in remembered]
    if any(MEMORY_ID in b.attributes for b in answer.objects):  # the memory is on and took part
        target.memory_ids = [str(b.attributes.get(MEMORY_ID, "")) for b in answer.objects]
    return target


# ---------------------------------------------------------------------- 2D boxes and the debug image
def box_rect(box: Box3D, camera: PinholeCamera) -> Optional[Tuple[float, float, float, float]]:
    """Pixel rectangle (x0, y0, x1, y1) around the projected box corners, clipped to the image; None when the
    box is behind the camera or outside the image. Pinhole projection (distortion is not applied)."""
    from ..core.boxes import box_corners

    corners = np.asarray(box_corners(box), dtype=np.float64)
    if np.any(corners[:, 2] <= 1e-6):
        return None
    u = camera.fx * corners[:, 0] / corners[:, 2] + camera.cx
    v = camera.fy * corners[:, 1] / corners[:, 2] + camera.cy
    # Pixel centres are integers, so the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5].
    x0, x1 = np.clip([u.min(), u.max()], -0.5, camera.width - 0.5)
    y0, y1 = np.clip([v.min(), v.max()], -0.5, camera.height - 0.5)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return None
    return float(x0), float(y0), float(x1), float(y1)


def draw_detections(rgb: np.ndarray, boxes: Sequence[Box3D],
                    rects: Sequence[Optional[Tuple[float, float, float, float]]]) -> np.ndarray:
    """A copy of the colour image with each box's rectangle and label drawn in its label colour."""
    import cv2

    canvas = np.ascontiguousarray(rgb.copy())
    for index, (box, rect) in enumerate(zip(boxes, rects)):
        if rect is None:
            continue
        color = tuple(int(255 * c) for c in label_color(box.label))
        x0, y0, x1, y1 = (int(round(v)) for v in rect)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), color, 2)
        text = f"{box.label} [{object_id(box, index)}] {box.center[2]:.2f}m"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y0, th + 4)
        cv2.rectangle(canvas, (x0, ty - th - 4), (x0 + tw + 4, ty), color, -1)
        cv2.putText(canvas, text, (x0 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
