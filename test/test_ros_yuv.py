"""YUV 4:2:2 colour through the node over real DDS: RealSense's YUYV (yuv422_yuy2) and ROS's UYVY (yuv422).

Same in-process set-up as test_ros_node.py: node, camera publisher and client on a private DDS domain.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from test_ros_node import _scene_messages, _wait, harness_factory  # noqa: F401  (a fixture)

TO_YUV = {"yuv422_yuy2": cv2.COLOR_RGB2YUV_YUY2, "yuv422": cv2.COLOR_RGB2YUV_UYVY}
FROM_YUV = {"yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuv422": cv2.COLOR_YUV2RGB_UYVY}
# Decoding is under test here, not QoS: a best-effort subscription matches the harness's camera whether it
# publishes best effort or reliable.
QOS = {"input_qos": "best_effort"}


def _as_yuv(color, encoding, pad=0):
    """The rgb8 message re-encoded as 4:2:2 (what a camera in YUYV mode sends), rows padded by pad bytes."""
    rgb = np.frombuffer(bytes(color.data), np.uint8).reshape(color.height, color.width, 3)
    packed = cv2.cvtColor(rgb, TO_YUV[encoding])  # (H, W, 2)
    rows = np.zeros((color.height, color.width * 2 + pad), np.uint8)
    rows[:, :color.width * 2] = packed.reshape(color.height, -1)
    color.encoding, color.step, color.data = encoding, rows.shape[1], rows.tobytes()
    return color, packed


@pytest.mark.parametrize("encoding", ["yuv422_yuy2", "yuv422"])
def test_yuv422_colour_stream_is_accepted_and_answered(harness_factory, encoding):
    h = harness_factory(**QOS)
    h.activate()
    scene, color, depth, info = _scene_messages(seed=1)
    color, packed = _as_yuv(color, encoding, pad=4)
    h.publish(color, depth, info)
    assert _wait(lambda: h.node.matcher.latest() is not None)
    assert h.node.stats.last_problem == "" and h.node.stats.counters["rejected_frames"] == 0
    target = scene.objects[0]
    reply = h.ask(f"where is the {target.label}")
    assert reply.success, reply.message
    centres = [np.array([d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z])
               for d in reply.objects.detections]
    assert centres and min(np.linalg.norm(c - np.asarray(target.center)) for c in centres) < 0.05
    # the frame the node answered on holds exactly cv_bridge's conversion of the bytes that were sent
    frame = h.node._frame_cache[1]
    assert np.array_equal(frame.color, cv2.cvtColor(packed, FROM_YUV[encoding]))
    assert np.abs(frame.color.astype(int) - scene.frame.color).mean() < 3  # 4:2:2 chroma loss only


def test_odd_width_yuyv_gets_a_clear_reply_and_the_node_keeps_serving(harness_factory):
    h = harness_factory(**QOS)
    h.activate()
    scene, color, depth, info = _scene_messages(seed=1)
    color, _ = _as_yuv(color, "yuv422_yuy2")
    color.width = color.width - 1  # a publisher bug: the same bytes, an odd width
    depth.width, info.width = color.width, color.width
    h.publish(color, depth, info)
    assert _wait(lambda: h.node.matcher.latest() is not None)
    reply = h.ask(f"where is the {scene.objects[0].label}")
    assert not reply.success and "width must be even" in reply.message, reply.message
    _, color, depth, info = _scene_messages(seed=1)
    h.publish(_as_yuv(color, "yuv422_yuy2")[0], depth, info)
    assert _wait(lambda: h.node.matcher.latest().color.width % 2 == 0)
    assert h.ask(f"where is the {scene.objects[0].label}").success
