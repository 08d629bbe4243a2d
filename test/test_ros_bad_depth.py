"""Depth without readings in range, over real DDS: the node's reply says why, and the node keeps serving."""

from __future__ import annotations

import numpy as np
import pytest

from test_ros_node import _scene_messages, _wait, harness_factory  # noqa: F401  (a fixture)


def _bad_depth(kind):
    from n3d_ros.core.types import RGBDFrame
    from n3d_ros.ros.conversions import frame_to_msgs

    scene, color, depth, info = _scene_messages()
    if kind == "32FC1 all NaN":
        blank = RGBDFrame(color=scene.frame.color, depth=np.full_like(scene.frame.depth, np.nan),
                          camera=scene.frame.camera, frame_id=scene.frame.frame_id)
        _, depth, _ = frame_to_msgs(blank)  # 32FC1 metres
    elif kind == "16UC1 all zero":
        _, depth, _ = frame_to_msgs(scene.frame, depth_mm=np.zeros_like(scene.depth_mm))  # 16UC1, 0 = no reading
    else:  # 16UC1 saturated: every pixel 65535
        _, depth, _ = frame_to_msgs(scene.frame, depth_mm=np.full_like(scene.depth_mm, 65535))
    return color, depth, info


# What the reply must say the sensor sent: decided from the raw payload, before the range is applied.
SEEN = {"32FC1 all NaN": "all NaN", "16UC1 all zero": "all 0", "16UC1 all 65535": "all 65535"}


@pytest.mark.parametrize("kind, encoding", [("32FC1 all NaN", "32FC1"), ("16UC1 all zero", "16UC1"),
                                            ("16UC1 all 65535", "16UC1")])
def test_depth_without_readings_gets_the_reason_not_i_see_no(harness_factory, kind, encoding):
    h = harness_factory()
    h.activate()
    color, depth, info = _bad_depth(kind)
    assert depth.encoding == encoding
    h.publish(color, depth, info)
    assert _wait(lambda: h.node.matcher.latest() is not None)
    reply = h.ask("how tall is the red sphere?")
    assert not reply.success and "I see no" not in reply.message, reply.message
    assert "depth has no valid readings in range 0.1-10 m" in reply.message and SEEN[kind] in reply.message, \
        reply.message
    scene, color, depth, info = _scene_messages()  # a good frame afterwards is answered as usual
    h.publish(color, depth, info)
    label = scene.objects[0].label
    assert _wait(lambda: h.ask(f"where is the {label}?").success, timeout=15.0)
