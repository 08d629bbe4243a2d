"""The node's inputs over real DDS: a stream that dies after a good start is named (log, diagnostics, reply),
stamp skew is reported, the default QoS receives every frame of a reliable (RealSense-like) publisher and says
what to change for a best-effort one, and a missing transform is reported once per period, not per cycle."""

from __future__ import annotations

import re
import sys
import threading
import time

import pytest

from test_ros_node import TOPICS, _scene_messages, _wait, harness_factory  # noqa: F401  (a fixture)
from test_ros_review_fixes import _FakeTf2


class Streamer:
    """Publishes the scene at rate_hz in a thread; ``streams`` says which inputs go out, ``skew_ns`` shifts depth."""

    def __init__(self, h, rate_hz=20.0):
        self.h = h
        self.period = 1.0 / rate_hz
        self.streams = {"color", "depth", "info"}
        self.skew_ns = 0
        self.sent = 0
        _, self.color, self.depth, self.info = _scene_messages(seed=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from n3d_ros.ros.conversions import ns_to_stamp

        while not self._stop.is_set():
            now = self.h.node.get_clock().now().nanoseconds
            for key, msg, stamp in (("color", self.color, now), ("depth", self.depth, now + self.skew_ns),
                                    ("info", self.info, now)):
                if key in self.streams:
                    msg.header.stamp = ns_to_stamp(stamp)
                    self.h.pubs[key].publish(msg)
            self.sent += 1
            time.sleep(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def _diagnostics(h, seen):
    from diagnostic_msgs.msg import DiagnosticArray

    h.client.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: seen.extend(msg.status), 10)


# ---------------------------------------------------------------------- issue 12 item 5: a stream dies
@pytest.mark.parametrize("dead,label", [("depth", "depth"), ("info", "camera_info"), ("color", "colour")])
def test_a_stream_that_stops_after_a_good_start_is_named(harness_factory, dead, label):
    from diagnostic_msgs.msg import DiagnosticStatus

    h = harness_factory(no_input_warning_s=0.4, max_frame_age_s=0.3, diagnostics_period_s=0.1)
    seen = []
    _diagnostics(h, seen)
    h.activate()
    with Streamer(h) as camera:
        assert _wait(lambda: h.node.stats.received("matched") >= 5)
        assert _wait(lambda: h.node.inputs.health() is None)
        camera.streams.discard(dead)
        topic = TOPICS[{"color": "color_topic", "depth": "depth_topic", "info": "camera_info_topic"}[dead]]
        expected = f"{label} ({topic}) stopped"
        assert _wait(lambda: expected in h.node.inputs.problem, timeout=5), h.node.inputs.problem
        assert "still arrive" in h.node.inputs.problem
        assert _wait(lambda: any(s.level == DiagnosticStatus.WARN and expected in s.message for s in seen))
        assert h.node.log.emitted[f"inputs stopped {dead}"] == 1  # logged once, not per watchdog tick
        reply = h.ask("where is the mug", timeout_s=2.0)
        assert not reply.success and expected in reply.message, reply.message


def test_stamp_skew_between_depth_and_colour_is_reported(harness_factory):
    h = harness_factory(no_input_warning_s=0.4, sync_slop_s=0.02)
    h.activate()
    with Streamer(h) as camera:
        assert _wait(lambda: h.node.stats.received("matched") >= 3)
        camera.skew_ns = 30_000_000
        assert _wait(lambda: "no set has matched" in h.node.inputs.problem, timeout=5), h.node.inputs.problem
        # +30 ms, or -20 ms when a newer colour message arrived before its depth
        assert re.search(r"newest depth stamp is (\+30\.0|-20\.0) ms from the newest colour stamp",
                         h.node.inputs.problem), h.node.inputs.problem
        assert "sync_slop_s=0.02" in h.node.inputs.problem


# ---------------------------------------------------------------------- issue 11 item 3: QoS
def test_the_default_qos_matches_every_frame_of_a_reliable_publisher(harness_factory):
    h = harness_factory()  # the harness camera publishes reliable, as realsense2_camera does
    assert h.node.get_parameter("input_qos").value == "reliable"
    h.activate()
    count = 40
    with Streamer(h, rate_hz=20.0) as camera:
        assert _wait(lambda: camera.sent >= count, timeout=10)
    assert _wait(lambda: h.node.stats.received("matched") >= camera.sent, timeout=5)
    for stream in ("color", "depth", "info"):
        assert h.node.stats.received(stream) == camera.sent, stream
    assert h.node.stats.received("matched") == camera.sent


def test_a_best_effort_publisher_is_reported_with_the_setting_to_change(harness_factory):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    h = harness_factory()
    best_effort = h.camera.create_publisher(Image, TOPICS["color_topic"], qos_profile_sensor_data)
    h.activate()
    assert _wait(lambda: "input_qos: best_effort" in h.node.inputs.qos_problem, timeout=10)
    assert TOPICS["color_topic"] in h.node.inputs.qos_problem
    h.camera.destroy_publisher(best_effort)
    reply = h.ask("where is the mug", timeout_s=1.0)
    assert not reply.success and "input_qos: best_effort" in reply.message


# ---------------------------------------------------------------------- issue 11 item 8: missing transform
def test_a_missing_transform_is_reported_once_per_period_with_the_frames(harness_factory, monkeypatch):
    fake = _FakeTf2()

    def no_transform(target, source, time, timeout=None):
        raise fake.module.TransformException(f'"{target}" passed to lookupTransform argument target_frame '
                                             "does not exist")

    fake.module.Buffer.lookup_transform = lambda self, *args, **kwargs: no_transform(*args, **kwargs)
    monkeypatch.setitem(sys.modules, "tf2_ros", fake.module)
    h = harness_factory(detection_rate_hz=20.0, target_frame="base_link")
    h.activate()
    with Streamer(h):
        assert _wait(lambda: h.node.stats.counters["skipped_detections"] >= 5, timeout=10)
    assert h.node.log.emitted["detection skipped"] == 1
    message = h.node.log.last_message["detection skipped"]
    assert f"from '{_scene_messages()[1].header.frame_id}' to 'base_link'" in message
    assert "does not exist" in message
    assert h.node.stats.counters["callback_errors"] == 0
