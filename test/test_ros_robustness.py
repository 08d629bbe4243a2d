"""Issue 12 (node side) over real DDS: bursts of requests, frames stamped in the future, configure and activate
failures that say why, runtime parameter changes, bounded timer periods, and the client helper's types."""

from __future__ import annotations

import math
import sys

import pytest

from test_ros_node import TOPICS, _scene_messages, _wait, harness_factory  # noqa: F401  (a fixture)

# The node's request queues are under test; a deep client response queue keeps the client's own reader (rclpy's
# default keeps 10) out of it on a loaded machine. (With the default client queue the bursts pass here too.)
DEEP = 200


def _deep_qos():
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=DEEP, reliability=ReliabilityPolicy.RELIABLE)


def _publish_scene(h, seed=1, stamp_ns=None):
    scene, color, depth, info = _scene_messages(seed=seed)
    h.publish(color, depth, info, stamp_ns=stamp_ns)
    assert _wait(lambda: h.node.matcher.latest() is not None)
    return scene


def _reply_ok_or_busy(success, message):
    return success or message.startswith("busy: ")


# ---------------------------------------------------------------------- 1. bursts
def test_fifty_simultaneous_service_calls_all_get_an_answer(harness_factory):
    from n3d_ros.srv import SpatialQuery

    h = harness_factory(max_queued_queries=2)
    h.activate()
    scene = _publish_scene(h)
    client = h.client.create_client(SpatialQuery, "/n3d_node/query", qos_profile=_deep_qos())
    assert client.wait_for_service(timeout_sec=10)
    request = SpatialQuery.Request(query=f"where is the {scene.objects[0].label}", timeout_s=20.0)
    futures = [client.call_async(request) for _ in range(50)]
    assert _wait(lambda: all(f.done() for f in futures), timeout=60), sum(f.done() for f in futures)
    replies = [f.result() for f in futures]
    for reply in replies:
        assert _reply_ok_or_busy(reply.success, reply.message), reply.message
    assert any(reply.success for reply in replies)
    busy = sum(not reply.success for reply in replies)
    assert h.node.stats.counters["queries_refused"] == busy
    if busy:
        assert h.node.log.emitted["busy"] >= 1  # refusals are logged (throttled), not silent


def test_twenty_simultaneous_action_goals_all_get_a_result_with_the_reason(harness_factory):
    from rclpy.action import ActionClient

    from n3d_ros.action import SpatialQuery

    h = harness_factory(max_queued_queries=2)
    deep = _deep_qos()
    client = ActionClient(h.client, SpatialQuery, "/n3d_node/query", goal_service_qos_profile=deep,
                          result_service_qos_profile=deep, cancel_service_qos_profile=deep)
    try:
        h.activate()
        scene = _publish_scene(h)
        assert client.wait_for_server(timeout_sec=30)
        goal = SpatialQuery.Goal(query=f"where is the {scene.objects[0].label}", timeout_s=20.0)
        goal_futures = [client.send_goal_async(goal) for _ in range(20)]
        assert _wait(lambda: all(f.done() for f in goal_futures), timeout=30), sum(f.done() for f in goal_futures)
        handles = [f.result() for f in goal_futures]
        assert all(handle.accepted for handle in handles)
        result_futures = [handle.get_result_async() for handle in handles]
        assert _wait(lambda: all(f.done() for f in result_futures), timeout=60)
        results = [f.result().result for f in result_futures]
        for result in results:
            assert _reply_ok_or_busy(result.success, result.message), result.message
        assert any(result.success for result in results)
    finally:
        client.destroy()


# ---------------------------------------------------------------------- 2. frames stamped in the future
def _diagnostics_status(h, predicate, timeout=10.0):
    from diagnostic_msgs.msg import DiagnosticArray

    seen = []
    subscription = h.client.create_subscription(DiagnosticArray, "/diagnostics",
                                                lambda msg: seen.extend(msg.status), 10)
    try:
        assert _wait(lambda: any(predicate(status) for status in seen), timeout=timeout), \
            [(s.level, s.message) for s in seen[-3:]]
        return next(status for status in seen if predicate(status))
    finally:
        h.client.destroy_subscription(subscription)


def test_a_frame_stamped_in_the_future_is_refused_with_a_clock_sync_message(harness_factory):
    from diagnostic_msgs.msg import DiagnosticStatus

    h = harness_factory(max_frame_age_s=2.0, diagnostics_period_s=0.1)
    h.activate()
    hour_ahead = h.node.get_clock().now().nanoseconds + 3600 * 10**9
    _publish_scene(h, stamp_ns=hour_ahead)
    for fresh in (False, True):
        reply = h.ask("where is the mug", timeout_s=2.0, fresh=fresh)
        assert not reply.success
        assert "ahead of this node's clock (max_future_stamp_s=0.5)" in reply.message, reply.message
        assert "synchronise" in reply.message
    status = _diagnostics_status(h, lambda s: s.level == DiagnosticStatus.ERROR)
    assert "ahead of the node clock" in status.message
    # Within the tolerance (a camera a little ahead) the frame is served.
    _publish_scene(h, stamp_ns=h.node.get_clock().now().nanoseconds + 200_000_000)
    assert _wait(lambda: h.node.matcher.latest().stamp_ns < hour_ahead)
    assert h.ask("where is the mug", timeout_s=5.0).message.find("ahead") < 0


# ---------------------------------------------------------------------- 3. and 8. configure/activate say why
@pytest.mark.parametrize("name,value,fragment", [
    ("no_input_warning_s", 1e10, "no_input_warning_s must be in [0.1, 3600]"),
    ("no_input_warning_s", 1e-12, "no_input_warning_s must be in [0.1, 3600]"),
    ("detection_rate_hz", 1e-11, "detection_rate_hz must be 0 (off) or in"),
    ("diagnostics_period_s", 1e-12, "diagnostics_period_s must be in [0.01, 3600]"),
    ("color_topic", "not a valid topic!!", "color_topic='not a valid topic!!' is not a valid topic name"),
    ("color_topic", "/", "must not end with a forward slash"),
    ("depth_topic", "/camera/1bad/start", "token must not start with a number"),
])
def test_bad_periods_and_topic_names_fail_configure_naming_the_parameter(harness_factory, name, value, fragment):
    from rclpy.lifecycle import TransitionCallbackReturn

    h = harness_factory(**{name: value})
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert fragment in h.node.model_state, h.node.model_state
    reply = h.ask("where is the mug")
    assert not reply.success and fragment in reply.message and "last error" in reply.message


def test_a_huge_diagnostics_period_at_start_up_does_not_kill_the_node(harness_factory):
    from rclpy.lifecycle import TransitionCallbackReturn

    h = harness_factory(diagnostics_period_s=1e10)  # rclpy's timer constructor overflowed on this
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert "diagnostics_period_s must be in [0.01, 3600]" in h.node.model_state


def test_an_activation_failure_is_logged_and_repeated_in_replies_and_diagnostics(harness_factory):
    from diagnostic_msgs.msg import DiagnosticStatus
    from rclpy.lifecycle import TransitionCallbackReturn

    h = harness_factory(diagnostics_period_s=0.1)
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS

    def refuse(*args, **kwargs):
        raise RuntimeError("injected: the middleware refused the subscription")

    h.node.create_subscription = refuse
    assert h.node.trigger_activate() == TransitionCallbackReturn.ERROR
    del h.node.create_subscription
    expected = f"activate failed: subscribing to color_topic='{TOPICS['color_topic']}' failed"
    assert expected in h.node.last_error
    reply = h.ask("where is the mug")
    assert not reply.success and expected in reply.message and "injected" in reply.message
    status = _diagnostics_status(h, lambda s: s.level == DiagnosticStatus.ERROR)
    assert expected in status.message
    h.activate()  # and it recovers
    assert h.node.last_error == ""


# ---------------------------------------------------------------------- 4. runtime parameter changes
def _set(h, **values):
    """Set parameters through the node's parameter service (one request each, as `ros2 param set` does)."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    client = h.client.create_client(SetParameters, "/n3d_node/set_parameters")
    try:
        assert client.wait_for_service(timeout_sec=10)
        results = {}
        for name, value in values.items():
            future = client.call_async(SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()]))
            assert _wait(future.done)
            results[name] = future.result().results[0]
        return results
    finally:
        h.client.destroy_client(client)


def test_runtime_changes_are_applied_live_or_refused_with_a_reason(harness_factory):
    h = harness_factory()
    h.activate()
    refused = _set(h, backend="yolo", max_queued_queries=-5, max_frame_age_s=math.nan, color_topic="",
                   input_qos="best_effort")
    assert not refused["backend"].successful and "takes effect at configure; reconfigure the node" in \
        refused["backend"].reason
    assert not refused["color_topic"].successful and "takes effect at configure" in refused["color_topic"].reason
    assert not refused["input_qos"].successful
    assert not refused["max_queued_queries"].successful and "max_queued_queries must be in [1, 64]" in \
        refused["max_queued_queries"].reason
    assert not refused["max_frame_age_s"].successful and "max_frame_age_s must be in" in \
        refused["max_frame_age_s"].reason
    assert h.node.get_parameter("backend").value == "tabletop" and h.node.settings.max_frame_age_s == 2.0

    accepted = _set(h, query_timeout_s=7.0, max_frame_age_s=0.05, detection_rate_hz=5.0, sync_slop_s=0.03)
    assert all(result.successful for result in accepted.values()), accepted
    assert h.node.settings.query_timeout_s == 7.0 and h.node.matcher.slop_ns == 30_000_000
    assert "detection timer" in h.node._activation_timers
    _publish_scene(h)
    assert _wait(lambda: -h.node.inputs.ahead_s(h.node.matcher.latest()) > 0.1)
    reply = h.ask("where is the mug")
    assert not reply.success and "max_frame_age_s=0.05" in reply.message  # the new limit is in force


def test_unconfigured_changes_take_effect_at_configure_and_errors_are_refused_at_once(harness_factory):
    from rclpy.lifecycle import TransitionCallbackReturn

    h = harness_factory()
    results = _set(h, backend="yolo", max_queued_queries=3, diagnostics_period_s=1e10)
    assert not results["backend"].successful and "backend must be one of" in results["backend"].reason
    assert not results["diagnostics_period_s"].successful
    assert results["max_queued_queries"].successful
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert h.node.settings.max_queued_queries == 3


# ---------------------------------------------------------------------- 10. the client helper's types
def test_the_client_helper_converts_an_int_timeout_and_refuses_what_the_message_cannot_carry(harness_factory):
    from n3d_ros.ros.client import call

    h = harness_factory()
    h.activate()
    _publish_scene(h)
    reply = call(h.client, "/n3d_node/query", "where is the mug", 10)  # an int used to abort the process
    assert reply is not None
    with pytest.raises(TypeError, match="timeout_s must be a number"):
        call(h.client, "/n3d_node/query", "where is the mug", "10")
    with pytest.raises(ValueError, match="NUL"):
        call(h.client, "/n3d_node/query", "where is\x00 the mug", 10.0)


# ---------------------------------------------------------------------- 11. the smaller ones
def test_after_shutdown_the_reply_says_so(harness_factory):
    h = harness_factory()
    h.activate()
    h.node.trigger_shutdown()
    reply = h.ask("where is the mug")
    assert not reply.success and "shut down" in reply.message and "configure and activate" not in reply.message


def test_a_fresh_frame_timeout_after_frames_matched_says_how_old_the_latest_is(harness_factory):
    h = harness_factory()
    h.activate()
    _publish_scene(h)
    reply = h.ask("where is the mug", timeout_s=0.5, fresh=True)
    assert not reply.success and "no frame newer than the request" in reply.message
    assert "no matched frame yet" not in reply.message and "latest matched frame is" in reply.message


def test_the_camera_frame_as_target_needs_no_tf2(harness_factory, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2_ros", None)  # import tf2_ros raises ImportError
    h = harness_factory()
    h.activate()
    scene, color, depth, info = _scene_messages(seed=1)
    h.publish(color, depth, info)
    assert _wait(lambda: h.node.matcher.latest() is not None)
    reply = h.ask(f"where is the {scene.objects[0].label}", target_frame=color.header.frame_id)
    assert reply.success, reply.message
    assert reply.objects.header.frame_id == color.header.frame_id


def test_a_huge_target_frame_is_refused_without_echoing_it(harness_factory):
    h = harness_factory()
    h.activate()
    _publish_scene(h)
    reply = h.ask("where is the mug", target_frame="f" * 10_000)
    assert not reply.success and "10000 characters" in reply.message and len(reply.message) < 300
