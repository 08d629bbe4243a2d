"""The node's object memory over real DDS: a moving synthetic camera publishing its pose, continuous detection
feeding ~/objects (ids stable across viewpoints, a removed object forgotten), a question about an object out of
view answered from memory, ~/object_memory list / forget / clear, bad camera poses reported while the node keeps
serving, and lifecycle cleanup clearing the memory.

Node, camera and client run in one process on a private DDS domain (conftest.py); frames are published one at a
time (camera rate 0) and each test waits for the node's ~/objects for that frame, so nothing depends on timing.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from n3d_ros.core.trajectory import MovingCamera, SceneChange
from test_ros_node import _wait  # noqa: E402  (one polling helper for the ROS tests)

SIZE = dict(width=320, height=240)
CAMERA = "/synthetic_camera"
TOPICS = {"color_topic": f"{CAMERA}/color/image_raw", "depth_topic": f"{CAMERA}/aligned_depth_to_color/image_raw",
          "camera_info_topic": f"{CAMERA}/color/camera_info"}
MEMORY = {"memory_enabled": True, "memory_frame": "table", "memory_pose_source": "topic",
          "memory_pose_topic": f"{CAMERA}/pose"}


def _stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class MemoryHarness:
    def __init__(self, context, executor, trajectory=None, **params):
        import rclpy
        from rclpy.parameter import Parameter
        from vision_msgs.msg import Detection3DArray

        from n3d_ros.ros.memory_io import objects_qos
        from n3d_ros.ros.node import N3DNode
        from n3d_ros.ros.synthetic_camera import SyntheticCamera

        values = {**TOPICS, **MEMORY, "backend": "tabletop", "max_frame_age_s": 5.0, "publish_debug_image": False,
                  **params}
        self.node = N3DNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        self.camera = SyntheticCamera(rate_hz=0.0, trajectory=trajectory, context=context)
        self.client = rclpy.create_node("test_client", context=context)
        self.objects = []  # every ~/objects message, in order
        self.client.create_subscription(Detection3DArray, "/n3d_node/objects", self.objects.append, objects_qos())
        for each in (self.node, self.camera, self.client):
            executor.add_node(each)

    def activate(self):
        from rclpy.lifecycle import TransitionCallbackReturn

        assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS, self.node.last_error
        assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        publishers = [self.camera.color_pub, self.camera.depth_pub, self.camera.info_pub]
        publishers += [self.camera.pose_pub] if self.camera.pose_pub is not None else []
        assert _wait(lambda: all(p.get_subscription_count() > 0 for p in publishers))

    def step(self) -> int:
        """Publish the camera's next frame and wait until the node's memory took it (~/objects for its stamp)."""
        before = self.node.matcher.latest()
        self.camera.publish_once()
        assert _wait(lambda: self.node.matcher.latest() is not before)
        stamp = self.node.matcher.latest().stamp_ns
        assert _wait(lambda: any(_stamp_ns(m.header) == stamp for m in self.objects)), "no ~/objects for the frame"
        return stamp

    def latest_objects(self):
        return self.objects[-1]

    def ask(self, query, **fields):
        from n3d_ros.ros.client import call

        response = call(self.client, "/n3d_node/query", query, 10.0, **fields)
        assert response is not None, "no reply from ~/query"
        return response

    def memory(self, operation="list", **fields):
        from n3d_ros.srv import ObjectMemory

        client = self.client.create_client(ObjectMemory, "/n3d_node/object_memory")
        try:
            assert client.wait_for_service(timeout_sec=5.0)
            future = client.call_async(ObjectMemory.Request(operation=operation, **fields))
            assert _wait(future.done)
            return future.result()
        finally:
            self.client.destroy_client(client)

    def close(self, executor):
        for each in (self.node, self.camera, self.client):
            executor.remove_node(each)
            each.destroy_node()


@pytest.fixture
def make_harness(ros_context, ros_executor):
    made = []

    def make(trajectory=None, **params):
        made.append(MemoryHarness(ros_context, ros_executor, trajectory, **params))
        return made[-1]

    yield make
    ros_executor.shutdown(timeout_sec=5.0)  # stop spinning before destroying the nodes (see test_ros_node.py)
    for harness in made:
        harness.close(ros_executor)


def _ids_by_label(message) -> dict:
    return {d.results[0].hypothesis.class_id: d.id for d in message.detections}


def test_ids_stay_on_a_moving_camera_a_removed_object_is_forgotten_and_the_service_lists_forgets_clears(
        make_harness):
    gone = MovingCamera(3, "orbit", 2, **SIZE).colors[0]
    camera = MovingCamera(3, "orbit", 14, changes=[SceneChange(7, gone)], **SIZE)
    h = make_harness(camera, detection_rate_hz=50.0)
    h.activate()
    ids_of = defaultdict(set)
    gone_id, gone_last_listed = None, None
    for index in range(camera.n_frames):
        h.step()
        message = h.latest_objects()
        assert message.header.frame_id == "table"
        for label, object_id in _ids_by_label(message).items():
            ids_of[label].add(object_id)
        if index == 6:
            gone_id = _ids_by_label(message)[f"{gone} object"]
        if gone_id is not None and gone_id in [d.id for d in message.detections]:
            gone_last_listed = index
    assert len(ids_of) >= 5 and all(len(ids) == 1 for ids in ids_of.values()), dict(ids_of)
    assert 7 <= gone_last_listed < 7 + 4, "the removed object should be dropped within four frames in view"
    assert all(0.0 < d.results[0].hypothesis.score <= 1.0 for d in h.latest_objects().detections)

    listed = h.memory("list")
    assert listed.success and sorted(d.id for d in listed.objects.detections) == \
        sorted(d.id for d in h.latest_objects().detections)
    assert listed.objects.header.frame_id == "table" and len(listed.ages_s) == len(listed.objects.detections)
    label, keep_id = next(iter(_ids_by_label(listed.objects).items()))
    filtered = h.memory("list", phrase=label)
    assert [d.id for d in filtered.objects.detections] == [keep_id]

    forgotten = h.memory("forget", id=int(keep_id))
    assert forgotten.success and forgotten.removed == 1 and forgotten.objects.detections[0].id == keep_id
    assert _wait(lambda: keep_id not in [d.id for d in h.latest_objects().detections])  # ~/objects at once
    again = h.memory("forget", id=int(keep_id))
    assert not again.success and f"no object {keep_id} in memory" in again.message
    assert not h.memory("forget", id=9999).success
    bad = h.memory("drop")
    assert not bad.success and "operation must be one of" in bad.message

    remaining = len(h.latest_objects().detections)
    cleared = h.memory("clear")
    assert cleared.success and cleared.removed >= remaining > 0
    assert _wait(lambda: not h.latest_objects().detections)
    assert h.memory("list").objects.detections == []


def test_question_about_an_object_out_of_view_is_answered_from_memory(make_harness):
    camera = MovingCamera(3, "pan", 9, **SIZE)
    h = make_harness(camera, detection_rate_hz=50.0)
    h.activate()
    h.step()
    h.step()
    remembered = _ids_by_label(h.latest_objects())
    view = camera.frame(2)
    hidden = next(c for c, px in view.visible_px.items() if px == 0 and f"{c} object" in remembered)
    in_view = max(view.visible_px, key=view.visible_px.get)
    h.step()

    reply = h.ask(f"where is the {hidden} object")
    assert reply.success and reply.answer.startswith(f"From memory: the {hidden} object (id "
                                                     f"{remembered[f'{hidden} object']}) was last seen")
    assert list(reply.from_memory_ids) == list(reply.memory_ids) == [remembered[f"{hidden} object"]]
    assert len(reply.from_memory_ages_s) == 1 and 0.0 < reply.from_memory_ages_s[0] < 10.0
    assert "In table it is at" in reply.answer

    direct = h.ask(f"where is the {in_view} object")
    assert direct.success and "From memory" not in direct.answer and list(direct.from_memory_ids) == []
    assert len(direct.memory_ids) == 1 and direct.memory_ids[0]  # the frame's box, by the id ~/objects lists it under
    assert _wait(lambda: _ids_by_label(h.latest_objects()).get(f"{in_view} object") == direct.memory_ids[0])

    by_id = h.ask(f"where is memory object {remembered[f'{hidden} object']}")
    assert by_id.success and list(by_id.from_memory_ids) == [remembered[f"{hidden} object"]]


def test_bad_camera_poses_are_reported_and_the_node_keeps_serving(make_harness):
    import numpy as np
    from geometry_msgs.msg import PoseStamped

    from n3d_ros.ros.conversions import ns_to_stamp
    from n3d_ros.ros.synthetic_camera import pose_message

    h = make_harness()  # a static camera publishing no pose: the test publishes the poses
    poses = h.client.create_publisher(PoseStamped, MEMORY["memory_pose_topic"], 10)
    h.activate()
    assert _wait(lambda: poses.get_subscription_count() > 0)

    def frame_with_pose(frame_id: str, offset_s: float, x: float = 0.0) -> None:
        """A frame, then its camera pose (stamp offset by offset_s), once the node has both."""
        before = h.node.matcher.latest()
        h.camera.publish_once()
        assert _wait(lambda: h.node.matcher.latest() is not before)
        msg = pose_message(np.linalg.inv(h.camera.scene.optical_from_table), frame_id)
        msg.header.stamp = ns_to_stamp(h.node.matcher.latest().stamp_ns + int(offset_s * 1e9))
        msg.pose.position.x += x
        kept = len(h.node.memory_feed.poses)
        poses.publish(msg)
        if np.isfinite(x):
            assert _wait(lambda: len(h.node.memory_feed.poses) > kept)
        else:
            assert _wait(lambda: "non-finite" in h.node.memory_feed.last_pose_error)

    frame_with_pose("table", -1.0)
    stale = h.ask("how many objects are there")
    assert stale.success and stale.value > 0  # the frame still answers
    assert "memory not updated" in stale.message and "stale" in stale.message

    frame_with_pose("map", 0.0)
    other = h.ask("how many objects are there")
    assert other.success and "memory not updated" in other.message and "kept in 'table'" in other.message

    frame_with_pose("table", 0.0, x=float("nan"))  # refused on arrival: the frame has no pose near it
    broken = h.ask("how many objects are there")
    assert broken.success and "memory not updated" in broken.message
    assert h.node.stats.counters["memory_frames_refused"] >= 3
    assert h.memory("list", include_tentative=True).objects.detections == []  # nothing was ingested

    frame_with_pose("table", 0.0)
    good = h.ask("how many objects are there")
    assert good.success and "memory not updated" not in good.message
    assert h.memory("list", include_tentative=True).objects.detections  # the good frame was ingested


def test_memory_frame_without_transform_is_reported_and_the_node_keeps_serving(make_harness):
    """The tf pose source with a memory frame tf2 cannot reach. tf2_ros is not in our environment, so the feed's
    lookup is replaced by one that fails the way ros.tf.TfLookup does."""
    from n3d_ros.core.types import InputError

    class NoTransform:
        def lookup(self, target, source, stamp_ns, timeout_s):
            raise InputError(f"no transform from {source!r} to {target!r} at the image stamp {stamp_ns / 1e9:.3f} s")

    h = make_harness()
    h.activate()
    feed = h.node.memory_feed
    feed.pose_source, feed._tf = "tf", NoTransform()
    h.camera.publish_once()
    assert _wait(lambda: h.node.matcher.latest() is not None)
    reply = h.ask("how many objects are there")
    assert reply.success and reply.value > 0
    assert "memory not updated: no transform from 'camera_color_optical_frame' to 'table'" in reply.message
    assert h.ask("where is memory object 1").success is False  # nothing remembered: said, not raised
    assert h.memory("list").success


def test_cleanup_clears_the_memory_and_the_service_says_it_is_off(make_harness):
    from rclpy.lifecycle import TransitionCallbackReturn

    h = make_harness(MovingCamera(3, "orbit", 4, **SIZE), detection_rate_hz=50.0)
    h.activate()
    h.step()
    h.step()
    assert h.memory("list").objects.detections
    assert h.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    off = h.memory("list")
    assert not off.success and "object memory is off" in off.message
    h.activate()
    assert h.memory("list").success and h.memory("list", include_tentative=True).objects.detections == []


@pytest.mark.parametrize("params, named", [
    ({"memory_pose_source": "tf"}, "memory_pose_source is tf"),  # tf2_ros is not in our environment
    ({"memory_drop_below_confidence": 0.7}, "memory_drop_below_confidence"),
    ({"memory_frame": "", "memory_pose_source": "topic"}, "memory_frame is ''"),
    ({"memory_pose_type": "twist"}, "memory_pose_type"),
    ({"memory_up": [0.0, 1.0]}, "memory_up"),
])
def test_bad_memory_parameters_fail_configure_naming_them(make_harness, params, named):
    from rclpy.lifecycle import TransitionCallbackReturn

    import importlib.util

    if params.get("memory_pose_source") == "tf" and importlib.util.find_spec("tf2_ros") is not None:
        pytest.skip("tf2_ros is installed: the tf pose source configures")
    h = make_harness(**params)
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert named in h.node.last_error
    reply = h.memory("list")
    assert not reply.success and "off" in reply.message


def test_fixed_camera_memory_in_the_camera_frame(make_harness):
    h = make_harness(detection_rate_hz=50.0, memory_frame="", memory_pose_source="none", memory_up=[0.0, -1.0, 0.0])
    h.activate()
    h.step()
    h.step()
    message = h.latest_objects()
    assert message.header.frame_id == "camera_color_optical_frame" and message.detections


def test_memory_parameters_take_effect_at_configure_only():
    from n3d_ros.ros.params import PARAMETERS
    from n3d_ros.ros.runtime_params import refusal

    current = {name: default for name, (default, _) in PARAMETERS.items()}
    for name, value in (("memory_frame", "map"), ("memory_miss_log_odds", 2.0), ("memory_enabled", True)):
        reason = refusal({name: value}, current, True, "n3d_node", "/")
        assert reason and f"parameter {name} takes effect at configure" in reason
    assert refusal({"memory_frame": "map"}, current, False, "n3d_node", "/") is None
