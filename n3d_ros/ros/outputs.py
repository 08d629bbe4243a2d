"""The node's outputs: detections, markers, debug images, answers and the latched LabelInfo, created at
configure and destroyed at cleanup. Results leave in the target frame when one is set (tf2 at the image stamp)."""

from __future__ import annotations

from typing import Optional

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from ..core.types import InputError
from . import conversions as conv

from n3d_ros.msg import SpatialAnswer

RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
MAX_ECHOED_CHARS = 80  # user text (frame names) quoted back in replies is cut to this

# ~/<name> topics (the RViz config test reads these names from here)
TOPICS = (("detections", Detection3DArray), ("detections_2d", Detection2DArray),
          ("markers", MarkerArray), ("debug_image", Image), ("query_detections", Detection3DArray),
          ("query_markers", MarkerArray), ("query_debug_image", Image),
          ("answers", SpatialAnswer))
# (detections, markers, debug image, marker namespace) of each kind of result
KINDS = {"detection": ("detections", "markers", "debug_image", "n3d"),
         "query": ("query_detections", "query_markers", "query_debug_image", "n3d_query")}


def echo(text: str, limit: int = MAX_ECHOED_CHARS) -> str:
    """``text`` quoted for a reply, cut to ``limit`` characters (a 10 kB frame name is not sent back whole)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def target_transform(tf, tf_missing: str, target: str, frame, timeout_s: float):
    """(Transform or None, output frame id) for results about ``frame`` wanted in ``target``; InputError when
    the transform cannot be had. No transform is needed (nor tf2) when target is '' or the camera's own frame."""
    if not target or target == frame.frame_id:
        return None, frame.frame_id
    if tf is None:
        raise InputError(f"target_frame {echo(target)} cannot be served: {tf_missing or 'no TF listener'}")
    return tf.lookup(target, frame.frame_id, frame.stamp_ns, timeout_s), target


class Outputs:
    def __init__(self, node, log):
        self._node = node
        self._log = log
        self._pubs = {}
        self._labels = conv.LabelMap()

    def create(self) -> None:
        self._labels = conv.LabelMap()
        for name, kind in TOPICS:
            self._pubs[name] = self._node.create_publisher(kind, f"~/{name}", RELIABLE)
        self._pubs["label_info"] = self._node.create_publisher(LabelInfo, "~/label_info", LATCHED)

    def destroy(self) -> None:
        pubs, self._pubs = self._pubs, {}
        for pub in pubs.values():
            self._node.destroy_publisher(pub)

    def publish_boxes(self, kind: str, frame, boxes, image_header: Header, out_header: Header, transform,
                      debug_image: bool):
        """Publish one result (kind 'detection' or 'query'); returns its (Detection3DArray, Detection2DArray)."""
        det_topic, marker_topic, image_topic, namespace = KINDS[kind]
        det3d = conv.detections_3d(boxes, out_header, transform)
        rects = [conv.box_rect(box, frame.camera) for box in boxes]
        det2d = conv.detections_2d(boxes, rects, image_header)
        pubs = self._pubs
        if not pubs:  # cleaned up while this result was computed
            return det3d, det2d
        pubs[det_topic].publish(det3d)
        if kind == "detection":
            pubs["detections_2d"].publish(det2d)
        pubs[marker_topic].publish(conv.markers(boxes, out_header, namespace, transform))
        if debug_image:
            pubs[image_topic].publish(conv.rgb_image_msg(conv.draw_detections(frame.color, boxes, rects),
                                                         image_header))
        self._publish_labels(boxes, image_header)
        return det3d, det2d

    def publish_answer(self, message: SpatialAnswer) -> None:
        pub: Optional[object] = self._pubs.get("answers")
        if pub is not None:
            pub.publish(message)

    def _publish_labels(self, boxes, header: Header) -> None:
        changed, unmapped = self._labels.add(box.label for box in boxes)
        if unmapped:
            self._log.warning(
                "label_info full",
                f"~/label_info is full ({self._labels.max_labels} labels, the uint16 class_id range): "
                f"{', '.join(echo(label) for label in unmapped[:5])} mapped to class_id {self._labels.overflow_id} "
                f"({self._labels.overflow_name!r}); detections still carry the label as class_id", 30.0)
        if changed:
            self._pubs["label_info"].publish(conv.label_info(self._labels.class_map(), header))
