"""Regression tests for the reviewed defects of the ROS layer: bounded requests in flight (no executor
starvation), cancellation of timed-out work, safe cleanup, guarded callbacks, on_error teardown, time jumps
in the stamp matcher, big-endian and mono16 depth, TF at configure, and the bounded LabelInfo map."""

from __future__ import annotations

import sys
import threading
import time
import types

import numpy as np
import pytest

from test_ros_node import _scene_messages, _wait, harness_factory  # noqa: F401  (a fixture)


# ---------------------------------------------------------------------- helpers
@pytest.fixture
def node_executor(ros_context):
    """A separate executor for the n3d node, sized as node.main() sizes it for the node's limit."""
    from n3d_ros.ros.executor import QueuedOnceExecutor

    made = []

    def make(threads):
        executor = QueuedOnceExecutor(num_threads=threads, context=ros_context)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        made.append((executor, thread))
        return executor

    yield make
    for executor, thread in made:
        executor.shutdown(timeout_sec=5.0)
        thread.join(timeout=5.0)


def _own_executor_harness(harness_factory, node_executor, limit, **params):
    """Camera and client on the shared executor; the n3d node alone on one with executor_threads_for(limit)."""
    from n3d_ros.ros.node import executor_threads_for

    h = harness_factory(max_queued_queries=limit, **params)
    h.executor.remove_node(h.node)
    threads = executor_threads_for(limit)
    h.node.executor_threads = threads
    node_executor(threads).add_node(h.node)
    return h


class SlowPipeline:
    """Stands in for Pipeline: questions containing 'slow' decode until cancel is set (or give_up_s passes,
    so a missing cancel shows up as a stuck worker, not a hung test); other questions answer at once."""

    def __init__(self, config, honour_cancel=True, give_up_s=30.0):
        self.config = config
        self.honour_cancel = honour_cancel
        self.give_up_s = give_up_s
        self.running = threading.Event()
        self.release = threading.Event()
        self.ask_ended_at = None
        self.closed_at = None

    def _spin(self, cancel):
        self.running.set()
        deadline = time.monotonic() + self.give_up_s
        while time.monotonic() < deadline and not self.release.is_set():
            if self.honour_cancel and cancel is not None and cancel.is_set():
                return True
            time.sleep(0.01)
        return False

    def ask(self, frame, question, on_grounded=None, cancel=None):
        from n3d_ros.core.types import Answer

        try:
            if "slow" in question:
                cancelled = self._spin(cancel)
                return Answer(success=False, text="", path="none", message="cancelled" if cancelled else "gave up")
            return Answer(success=True, text="fast answer", path="geometry")
        finally:
            self.ask_ended_at = time.monotonic()

    def detect(self, frame, prompt=None, cancel=None):
        from n3d_ros.core.types import Cancelled

        if self._spin(cancel):
            raise Cancelled("cancelled")
        raise RuntimeError("slow detection gave up")

    def close(self):
        self.closed_at = time.monotonic()


def _use_slow_pipeline(h, **kwargs):
    real = h.node.pipeline
    slow = SlowPipeline(real.config, **kwargs)
    real.close()
    h.node.pipeline = slow
    return slow


def _ask_slow_in_background(h, timeout_s):
    """Start a query the slow pipeline holds; (thread, replies) where replies gets its reply."""
    replies = []
    thread = threading.Thread(target=lambda: replies.append(h.ask("slow: where is the mug", timeout_s=timeout_s)))
    thread.start()
    return thread, replies


def _publish_scene(h, seed=1):
    _, color, depth, info = _scene_messages(seed=seed)
    h.publish(color, depth, info)
    assert _wait(lambda: h.node.matcher.latest() is not None)


# ---------------------------------------------------------------------- 1. bounded requests in flight
def test_concurrent_fresh_frame_queries_do_not_starve_sensor_callbacks(harness_factory, node_executor):
    limit, requests = 4, 8
    h = _own_executor_harness(harness_factory, node_executor, limit)
    h.activate()
    scene, color, depth, info = _scene_messages(seed=1)
    stop = threading.Event()

    def camera():  # 10 Hz, fresh stamps
        while not stop.is_set():
            h.publish(color, depth, info)
            time.sleep(0.1)

    publisher = threading.Thread(target=camera)
    publisher.start()
    try:
        assert _wait(lambda: h.node.matcher.latest() is not None)
        replies = [None] * requests

        def ask(i):
            replies[i] = h.ask(f"where is the {scene.objects[0].label}", timeout_s=5.0, fresh=True)

        before = h.node.stats.received("color")
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(requests)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # with every executor thread blocked (the defect) no colour callback runs from here on
        during = h.node.stats.received("color")
        for thread in threads:
            thread.join(30)
        time.sleep(0.5)
        after = h.node.stats.received("color")
    finally:
        stop.set()
        publisher.join()
    assert all(r is not None for r in replies)
    for reply in replies:
        assert reply.success or f"requests in flight (max_queued_queries={limit})" in reply.message, reply.message
    assert any(r.success for r in replies)
    assert during > before and after > during, (before, during, after)


def test_requests_over_the_limit_are_refused_at_once_and_action_goals_aborted_with_the_reason(harness_factory):
    from rclpy.action import ActionClient

    from n3d_ros.action import SpatialQuery

    h = harness_factory(max_queued_queries=1)
    client = ActionClient(h.client, SpatialQuery, "/n3d_node/query")
    h.activate()
    _publish_scene(h)
    slow = _use_slow_pipeline(h)
    thread, _ = _ask_slow_in_background(h, timeout_s=20.0)
    try:
        assert slow.running.wait(10)
        started = time.monotonic()
        refused = h.ask("where is the mug", timeout_s=20.0)
        assert not refused.success and "busy: 1 requests in flight (max_queued_queries=1)" in refused.message
        assert time.monotonic() - started < 5.0
        assert client.wait_for_server(timeout_sec=30)
        goal_future = client.send_goal_async(SpatialQuery.Goal(query="where is the mug"))
        assert _wait(goal_future.done)
        # Accepted and aborted at once, so that the client gets the reason (a rejection carries none).
        handle = goal_future.result()
        assert handle.accepted
        result_future = handle.get_result_async()
        assert _wait(result_future.done, timeout=5.0)
        result = result_future.result().result
        assert not result.success and "busy: 1 requests in flight" in result.message
    finally:
        slow.release.set()
        thread.join(30)
        client.destroy()


def test_configure_refuses_more_requests_in_flight_than_the_executor_can_serve(harness_factory):
    from rclpy.lifecycle import TransitionCallbackReturn

    from n3d_ros.ros.node import RESERVED_EXECUTOR_THREADS

    h = harness_factory(max_queued_queries=8)
    h.node.executor_threads = 8
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert f"use at most {8 - RESERVED_EXECUTOR_THREADS}" in h.node.model_state


# ---------------------------------------------------------------------- 2. cancellation and safe cleanup
def test_a_timed_out_query_is_cancelled_and_frees_the_worker(harness_factory):
    h = harness_factory(max_queued_queries=2)
    h.activate()
    _publish_scene(h)
    slow = _use_slow_pipeline(h)
    timed_out = h.ask("slow: where is the mug", timeout_s=1.0)
    assert not timed_out.success and "timed out" in timed_out.message
    # The model saw the cancel: the worker is free for the next query long before give_up_s.
    assert _wait(lambda: slow.ask_ended_at is not None, timeout=5.0)
    reply = h.ask("where is the mug", timeout_s=5.0)
    assert reply.success, reply.message


def test_cancelling_an_action_goal_cancels_the_running_model_call(harness_factory):
    from rclpy.action import ActionClient

    from n3d_ros.action import SpatialQuery

    h = harness_factory()
    client = ActionClient(h.client, SpatialQuery, "/n3d_node/query")
    h.activate()
    _publish_scene(h)
    slow = _use_slow_pipeline(h)
    try:
        assert client.wait_for_server(timeout_sec=30)
        goal_future = client.send_goal_async(SpatialQuery.Goal(query="slow: where is the mug", timeout_s=30.0))
        assert _wait(goal_future.done)
        handle = goal_future.result()
        assert handle.accepted and slow.running.wait(10)
        cancel_future = handle.cancel_goal_async()
        assert _wait(cancel_future.done)
        assert _wait(lambda: slow.ask_ended_at is not None, timeout=5.0)
        result_future = handle.get_result_async()
        assert _wait(result_future.done, timeout=10)
        assert "cancelled" in result_future.result().result.message
    finally:
        slow.release.set()
        client.destroy()


def test_cleanup_while_a_query_runs_cancels_it_and_closes_the_model_after_it_ended(harness_factory):
    from rclpy.lifecycle import TransitionCallbackReturn

    h = harness_factory()
    h.activate()
    _publish_scene(h)
    slow = _use_slow_pipeline(h)
    thread, holder = _ask_slow_in_background(h, timeout_s=30.0)
    assert slow.running.wait(10)
    assert h.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    thread.join(30)
    assert slow.ask_ended_at is not None and slow.closed_at is not None
    assert slow.closed_at >= slow.ask_ended_at
    assert holder and not holder[0].success
    assert h.node.model_state == "not loaded"


def test_cleanup_never_closes_the_model_under_a_job_that_does_not_stop(harness_factory):
    from rclpy.lifecycle import TransitionCallbackReturn

    h = harness_factory()
    h.activate()
    _publish_scene(h)
    slow = _use_slow_pipeline(h, honour_cancel=False)
    h.node.stop_timeout_s = 0.5
    thread, _ = _ask_slow_in_background(h, timeout_s=30.0)
    try:
        assert slow.running.wait(10)
        assert h.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert h.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert slow.closed_at is None
        assert "did not stop" in h.node.model_state
    finally:
        slow.release.set()
        thread.join(30)


def test_deactivate_drops_a_pending_detection():
    from n3d_ros.ros.worker import InferenceWorker, Job

    gate = threading.Event()
    ran = []
    worker = InferenceWorker(max_queries=1)
    try:
        query = worker.submit_query(Job(lambda job: gate.wait(5), "query"))
        while not worker.busy():
            time.sleep(0.001)
        detection = Job(lambda job: ran.append("detection"), "detection")
        assert worker.submit_detection(detection)
        worker.drop_detection()
        assert detection.done and "dropped" in detection.error and detection.abandoned.is_set()
        gate.set()
        assert query.wait(5)
        assert ran == []
    finally:
        worker.stop()


def test_worker_stop_cancels_the_running_job_and_reports_whether_it_ended():
    from n3d_ros.ros.worker import InferenceWorker, Job

    worker = InferenceWorker(max_queries=1)
    job = worker.submit_query(Job(lambda job: job.abandoned.wait(30), "query"))
    while not worker.busy():
        time.sleep(0.001)
    started = time.monotonic()
    assert worker.stop(timeout_s=10) is True
    assert job.done and time.monotonic() - started < 5

    release = threading.Event()
    stuck = InferenceWorker(max_queries=1)
    stuck.submit_query(Job(lambda job: release.wait(30), "query"))
    while not stuck.busy():
        time.sleep(0.001)
    assert stuck.stop(timeout_s=0.2) is False
    release.set()


# ---------------------------------------------------------------------- 6. guarded callbacks
def test_callback_exceptions_are_logged_and_do_not_end_spin(harness_factory):
    h = harness_factory(diagnostics_period_s=0.1)
    h.activate()

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure")

    h.node.stats.status = broken          # the diagnostics timer
    h.node.matcher.add = broken           # every sensor subscription
    _, color, depth, info = _scene_messages(seed=1)
    h.publish(color, depth, info)
    assert _wait(lambda: h.node.stats.counters["callback_errors"] >= 4)
    reply = h.ask("where is the mug", timeout_s=2.0)  # the executor still serves requests
    assert reply is not None and not reply.success


# ---------------------------------------------------------------------- 7. on_error teardown
def test_error_transition_tears_down_subscriptions_so_reactivation_does_not_duplicate_them(harness_factory):
    from rclpy.lifecycle import TransitionCallbackReturn

    h = harness_factory()
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS

    def failing_create_timer(*args, **kwargs):  # on_activate fails after its subscriptions exist
        raise RuntimeError("injected failure")

    h.node.create_timer = failing_create_timer
    assert h.node.trigger_activate() == TransitionCallbackReturn.ERROR
    del h.node.create_timer
    assert h.node.lifecycle == "unconfigured" and h.node.pipeline is None
    assert h.node._input_subscriptions == []
    h.activate()
    assert len(h.node._input_subscriptions) == 3
    for pub in h.pubs.values():
        assert _wait(lambda: pub.get_subscription_count() == 1)
    time.sleep(0.5)
    assert [pub.get_subscription_count() for pub in h.pubs.values()] == [1, 1, 1]


# ---------------------------------------------------------------------- 3. time going backwards
def test_matcher_restarts_after_time_goes_backwards_and_still_drops_late_sets():
    from n3d_ros.ros.sync import StampMatcher

    jumps = []
    matcher = StampMatcher(slop_ns=1_000_000, on_time_jump=lambda old, new: jumps.append((old, new)))

    def frame(stamp_s):
        stamp = int(stamp_s * 1e9)
        result = None
        for stream in ("color", "depth", "info"):
            result = matcher.add(stream, stamp, f"{stream}@{stamp_s}") or result
        return result

    assert frame(100.0).stamp_ns == int(100e9)
    assert frame(100.1).stamp_ns == int(100.1e9)
    assert frame(99.9) is None              # reordered by the network: a newer set exists
    assert jumps == []
    restarted = frame(1.0)                   # bag loop / sim-time reset
    assert restarted is not None and restarted.stamp_ns == int(1e9)
    assert jumps == [(int(100.1e9), int(1e9))]
    assert frame(1.1).stamp_ns == int(1.1e9) and matcher.latest().stamp_ns == int(1.1e9)
    assert matcher.wait_newer(int(1.05e9), 0.0).stamp_ns == int(1.1e9)


# ---------------------------------------------------------------------- 5. byte order and mono16
def _depth_set(encoding, array, bigendian):
    from sensor_msgs.msg import CameraInfo, Image

    height, width = array.shape
    data = array.astype(array.dtype.newbyteorder(">" if bigendian else "<")).tobytes()
    color = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=bytes(width * height * 3))
    depth = Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
                  step=width * array.dtype.itemsize, data=data)
    info = CameraInfo(width=width, height=height, k=[50.0, 0, width / 2, 0, 50.0, height / 2, 0, 0, 1])
    return color, depth, info


@pytest.mark.parametrize("encoding,raw,metres", [
    ("16UC1", np.array([[1234, 0], [65000, 500]], dtype=np.uint16), [[1.234, np.nan], [np.nan, 0.5]]),
    ("mono16", np.array([[1234, 0], [65000, 500]], dtype=np.uint16), [[1.234, np.nan], [np.nan, 0.5]]),
    ("32FC1", np.array([[1.25, np.nan], [20.0, 0.5]], dtype=np.float32), [[1.25, np.nan], [np.nan, 0.5]]),
])
@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_byte_order_and_mono16_are_decoded(encoding, raw, metres, bigendian):
    from n3d_ros.ros.conversions import check_alignment, frame_from_msgs

    color, depth, info = _depth_set(encoding, raw, bigendian)
    assert check_alignment(color, depth, info) is None
    frame = frame_from_msgs(color, depth, info, min_range_m=0.1, max_range_m=10.0)
    np.testing.assert_allclose(frame.depth, np.array(metres, dtype=np.float32), rtol=1e-6, equal_nan=True)


# ---------------------------------------------------------------------- 4. TF from configure on
class _FakeTf2:
    """A tf2_ros stand-in: counts listeners and answers lookups with a fixed translation."""

    def __init__(self):
        from geometry_msgs.msg import TransformStamped

        self.listeners, self.lookups = [], []
        fake = self

        class TransformException(Exception):
            pass

        class Buffer:
            def lookup_transform(self, target, source, time, timeout=None):
                fake.lookups.append((target, source, time.nanoseconds))
                stamped = TransformStamped()
                stamped.transform.translation.x = 1.0
                stamped.transform.rotation.w = 1.0
                return stamped

        class TransformListener:
            def __init__(self, buffer, node):
                fake.listeners.append(self)
                self.unregistered = False

            def unregister(self):
                self.unregistered = True

        self.module = types.ModuleType("tf2_ros")
        self.module.Buffer, self.module.TransformListener = Buffer, TransformListener
        self.module.TransformException = TransformException


def test_tf_listener_starts_at_configure_and_serves_per_request_frames(harness_factory, monkeypatch):
    fake = _FakeTf2()
    monkeypatch.setitem(sys.modules, "tf2_ros", fake.module)
    h = harness_factory()
    h.activate()
    assert len(fake.listeners) == 1 and h.node.tf is not None  # before any request names a frame
    scene, color, depth, info = _scene_messages(seed=1)
    h.publish(color, depth, info)
    assert _wait(lambda: h.node.matcher.latest() is not None)
    replies = []
    threads = [threading.Thread(target=lambda: replies.append(
        h.ask(f"where is the {scene.objects[0].label}", target_frame="base_link"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(fake.listeners) == 1
    stamp_ns = color.header.stamp.sec * 1_000_000_000 + color.header.stamp.nanosec
    for reply in replies:
        assert reply.success, reply.message
        assert reply.objects.header.frame_id == "base_link"
    assert ("base_link", color.header.frame_id, stamp_ns) in fake.lookups
    from rclpy.lifecycle import TransitionCallbackReturn

    assert h.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert fake.listeners[0].unregistered and h.node.tf is None


def test_a_target_frame_request_without_tf2_gets_a_clear_reply(harness_factory, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2_ros", None)  # import tf2_ros raises ImportError
    h = harness_factory()
    h.activate()
    _publish_scene(h)
    reply = h.ask("where is the mug", target_frame="base_link")
    assert not reply.success and "tf2_ros is not installed" in reply.message and "base_link" in reply.message


# ---------------------------------------------------------------------- 8. bounded LabelInfo
def test_label_map_is_bounded_by_the_uint16_class_id():
    from n3d_ros.ros.conversions import LabelMap, label_info
    from std_msgs.msg import Header

    labels = LabelMap()
    changed, unmapped = labels.add(f"label {i}" for i in range(65535))
    assert changed and unmapped == [] and len(labels) == 65535
    assert labels.add(["label 0", "label 65534"]) == (False, [])
    changed, unmapped = labels.add(["one too many", "another"])
    assert changed and unmapped == ["one too many", "another"]  # the overflow entry appears once
    assert labels.id_of("one too many") == labels.overflow_id == 65535
    assert labels.add(["yet another"]) == (False, ["yet another"])
    mapping = labels.class_map()
    assert len(mapping) == 65536 and len(set(mapping.values())) == 65536
    assert max(mapping.values()) == 65535 and mapping[labels.overflow_name] == 65535
    message = label_info(mapping, Header())  # every id fits the uint16 field
    assert message.class_map[-1].class_id == 65535



# ---------------------------------------------------------------------- flaky action discovery
def test_destroy_node_removes_the_action_server_from_the_graph(harness_factory):
    """rclpy's destroy_node leaves action servers alive; stale ones from earlier nodes made a later
    ActionClient.wait_for_server fail (the service counts of the graph no longer agree)."""
    from n3d_ros.ros.node import N3DNode

    h = harness_factory()
    feedback = "/n3d_node/query/_action/feedback"
    assert _wait(lambda: h.client.count_publishers(feedback) == 1)
    h.executor.remove_node(h.node)
    h.node.destroy_node()
    assert _wait(lambda: h.client.count_publishers(feedback) == 0)
    h.node = N3DNode(context=h.client.context)  # Harness.close destroys this one
    h.executor.add_node(h.node)
    assert _wait(lambda: h.client.count_publishers(feedback) == 1)
