"""The n3d lifecycle node: RGB-D in, 3D detections and spatial answers out.

configure: validate parameters, load the backend (the model), create publishers.
activate: subscribe to colour, depth and camera_info; start background detection and the input watchdog.
deactivate: stop subscriptions and timers (frees cached GPU blocks). cleanup: close the pipeline (frees the model).
The ~/query service and action exist in every state and always answer (with a reason when they cannot).

Threads: sensor callbacks only store messages (stamp matching); one inference thread (worker.py) runs the
model; service/action callbacks wait for it on executor threads, so run this node in a multi-threaded executor
(main() uses executor.QueuedOnceExecutor, rclpy's MultiThreadedExecutor without its hot loop).
Each request in flight (waiting for a fresh frame, queued or running) holds one executor thread; at most
max_queued_queries are in flight, further ones are refused at once, and the executor has
RESERVED_EXECUTOR_THREADS more threads than that, so sensor and timer callbacks always get one.
"""

from __future__ import annotations

import gc
import math
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Optional

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from diagnostic_msgs.msg import DiagnosticArray, KeyValue
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from ..core.types import Answer, Cancelled, InputError
from ..pipeline import Pipeline, validate_query
from . import conversions as conv
from .diagnostics import NodeStats
from .params import MAX_QUEUED_QUERIES_LIMIT, PARAMETERS, validate
from .sync import StampMatcher
from .worker import InferenceWorker, Job, QueueFull

from n3d_ros.action import SpatialQuery as SpatialQueryAction
from n3d_ros.msg import SpatialAnswer
from n3d_ros.srv import SpatialQuery

RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Executor threads never held by a request in flight: the sensor group, the timer group, and short-lived
# work (refusals, action goal/cancel/result callbacks, lifecycle and parameter services).
RESERVED_EXECUTOR_THREADS = 4
CALLBACK_ERROR_LOG_PERIOD_S = 5.0


def executor_threads_for(max_in_flight: int) -> int:
    """Threads a MultiThreadedExecutor needs so that max_in_flight blocked requests cannot starve sensors."""
    return int(max_in_flight) + RESERVED_EXECUTOR_THREADS


@dataclass
class QueryOutcome:
    answer: Answer
    objects: Detection3DArray
    objects_2d: Detection2DArray


def _failure(message: str) -> QueryOutcome:
    return QueryOutcome(Answer(success=False, text="", path="none", message=message),
                        Detection3DArray(), Detection2DArray())


class N3DNode(LifecycleNode):
    def __init__(self, node_name: str = "n3d_node", **kwargs):
        super().__init__(node_name, **kwargs)
        for name, (default, description) in PARAMETERS.items():
            # dynamic typing: a YAML 1 for a float parameter is accepted and checked at configure instead.
            self.declare_parameter(name, default, ParameterDescriptor(description=description, dynamic_typing=True))
        self.stats = NodeStats()
        self.pipeline: Optional[Pipeline] = None
        self.settings = None
        self.worker: Optional[InferenceWorker] = None
        self.matcher: Optional[StampMatcher] = None
        self.tf = None
        self.lifecycle = "unconfigured"
        self.model_state = "not loaded"
        # Not _subscriptions/_timers: rclpy.Node keeps its own lists under those names.
        self._input_subscriptions = []
        self._frame_cache = None  # (matched set, RGBDFrame) of the latest frame a query or detection used
        self._active_timers = []
        self._pubs = {}
        self._labels = conv.LabelMap()
        # Requests in flight (waiting for a frame, queued or running): each holds an executor thread.
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        # Threads of the executor spinning this node when known (main() sets it); configure checks
        # max_queued_queries against it.
        self.executor_threads: Optional[int] = None
        self.stop_timeout_s = 30.0  # how long cleanup waits for a running job to stop before giving up on it
        self._tf_missing = ""  # why there is no TF listener ('' when there is one)
        self._callback_errors_logged = {}  # callback name -> monotonic time of its last error log
        self._last_detected_stamp = -1
        self._activated_at = 0.0
        self._queries = ReentrantCallbackGroup()
        self._sensors = MutuallyExclusiveCallbackGroup()
        self._background = MutuallyExclusiveCallbackGroup()
        self.create_service(SpatialQuery, "~/query", self._on_query_service, callback_group=self._queries)
        self._action = ActionServer(self, SpatialQueryAction, "~/query", execute_callback=self._on_query_action,
                                    goal_callback=self._on_goal,
                                    cancel_callback=lambda goal: CancelResponse.ACCEPT, callback_group=self._queries)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)
        period = self.get_parameter("diagnostics_period_s").value
        self.create_timer(float(period) if isinstance(period, (int, float)) and period > 0 else 1.0,
                          self._guarded("diagnostics", self._publish_diagnostics), callback_group=self._background)
        if self.get_parameter("autostart").value is True:
            self._autostart_timer = self.create_timer(0.0, self._guarded("autostart", self._autostart),
                                                      callback_group=self._background)

    def _guarded(self, name: str, callback: Callable) -> Callable:
        """Wrap a timer/subscription callback: the executor re-raises callback exceptions and that ends spin,
        so an exception is logged (at most once per CALLBACK_ERROR_LOG_PERIOD_S per callback) and counted."""
        def run(*args):
            try:
                return callback(*args)
            except Exception as exc:  # the node never dies on one bad message or a lifecycle race
                self.stats.count("callback_errors")
                now = time.monotonic()
                last = self._callback_errors_logged.get(name)
                if last is None or now - last >= CALLBACK_ERROR_LOG_PERIOD_S:
                    self._callback_errors_logged[name] = now
                    self.get_logger().error(f"{name} callback failed: {type(exc).__name__}: {exc}\n"
                                            f"{traceback.format_exc()}")
                return None
        return run

    def destroy_node(self) -> None:
        # rclpy's destroy_node does not destroy action servers: without this the ~/query action's services and
        # topics outlive the node in the graph, and a later server of the same name never looks available.
        self._action.destroy()
        super().destroy_node()

    # ================================================================== lifecycle
    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        tf = None
        try:
            pipeline_config, settings = validate(values)
            if self.executor_threads is not None and \
                    executor_threads_for(settings.max_queued_queries) > self.executor_threads:
                raise InputError(
                    f"parameter max_queued_queries={settings.max_queued_queries} needs "
                    f"{executor_threads_for(settings.max_queued_queries)} executor threads "
                    f"({RESERVED_EXECUTOR_THREADS} kept for sensors and timers) but the executor has "
                    f"{self.executor_threads}; use at most {self.executor_threads - RESERVED_EXECUTOR_THREADS}")
            # Before the model loads: the TF buffer then holds history at the stamps of the first images.
            tf = self._start_tf(required=bool(settings.target_frame))
            self.model_state = "loading"
            started = time.monotonic()
            pipeline = Pipeline.from_config(pipeline_config)
        except InputError as exc:
            self._close_tf(tf)
            return self._configure_failed(f"configure refused: {exc}")
        except Exception as exc:  # a model that fails to load must leave the node alive and saying why
            self._close_tf(tf)
            return self._configure_failed(f"configure failed loading the {values['backend']} backend: "
                                          f"{type(exc).__name__}: {exc}")
        self.tf, self.pipeline, self.settings = tf, pipeline, settings
        self.model_state = f"loaded ({pipeline_config.backend}, {time.monotonic() - started:.1f} s)"
        self.matcher = StampMatcher(int(settings.sync_slop_s * 1e9), on_time_jump=self._on_time_jump)
        self.worker = InferenceWorker(settings.max_queued_queries, logger=self.get_logger())
        self._labels = conv.LabelMap()
        for name, kind in (("detections", Detection3DArray), ("detections_2d", Detection2DArray),
                           ("markers", MarkerArray), ("debug_image", Image), ("query_detections", Detection3DArray),
                           ("query_markers", MarkerArray), ("query_debug_image", Image),
                           ("answers", SpatialAnswer)):
            self._pubs[name] = self.create_publisher(kind, f"~/{name}", RELIABLE)
        self._pubs["label_info"] = self.create_publisher(LabelInfo, "~/label_info", LATCHED)
        self.lifecycle = "inactive"
        self.get_logger().info(f"configured: {self.model_state}; inputs {settings.color_topic}, "
                               f"{settings.depth_topic}, {settings.camera_info_topic}")
        return TransitionCallbackReturn.SUCCESS

    def _start_tf(self, required: bool):
        """A TF listener whenever tf2_ros is importable (per-request target frames need its history);
        InputError when it is missing but required (the target_frame parameter is set). Only configure
        creates it (lifecycle transitions run one at a time); request threads read self.tf once into a local."""
        from .tf import TfLookup

        try:
            tf = TfLookup(self)
        except InputError as exc:
            if required:
                raise
            self._tf_missing = str(exc)
            return None
        self._tf_missing = ""
        return tf

    @staticmethod
    def _close_tf(tf) -> None:
        if tf is not None:
            tf.close()

    def _on_time_jump(self, previous_ns: int, new_ns: int) -> None:
        self.stats.count("time_jumps")
        self.get_logger().warning(
            f"input stamps went back in time by {(previous_ns - new_ns) / 1e9:.1f} s (bag loop or sim-time reset?); "
            "dropped the frames from before the jump", throttle_duration_sec=5.0)

    def _configure_failed(self, message: str) -> TransitionCallbackReturn:
        self.model_state = f"error: {message}"
        self.get_logger().error(message)
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        s = self.settings
        qos = self._input_qos()
        for topic, kind, stream in ((s.color_topic, Image, "color"), (s.depth_topic, Image, "depth"),
                                    (s.camera_info_topic, CameraInfo, "info")):
            self._input_subscriptions.append(self.create_subscription(
                kind, topic, self._guarded(f"{stream} subscription",
                                           lambda msg, stream=stream: self._on_sensor(stream, msg)), qos,
                callback_group=self._sensors))
        if s.detection_rate_hz > 0:
            self._active_timers.append(self.create_timer(
                1.0 / s.detection_rate_hz, self._guarded("detection timer", self._on_detection_timer),
                callback_group=self._background))
        self._active_timers.append(self.create_timer(s.no_input_warning_s,
                                                     self._guarded("input watchdog", self._check_inputs),
                                                     callback_group=self._background))
        self._activated_at = time.monotonic()
        self._received_at_activation = {k: self.stats.received(k) for k in ("color", "depth", "info", "matched")}
        self.lifecycle = "active"
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.lifecycle = "inactive"
        self._stop_processing()
        _free_gpu_cache()
        return TransitionCallbackReturn.SUCCESS

    def _stop_processing(self) -> None:
        """Deactivate's teardown: inputs and timers gone, background detection dropped."""
        for sub in self._input_subscriptions:
            self.destroy_subscription(sub)
        for timer in self._active_timers:
            timer.cancel()
            self.destroy_timer(timer)
        self._input_subscriptions, self._active_timers = [], []
        worker = self.worker
        if worker is not None:
            worker.drop_detection()

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        self.lifecycle = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self.lifecycle == "active":
            self.on_deactivate(state)
        self._release()
        self.lifecycle = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in state {state.label}; stopping inputs and releasing the model")
        self.lifecycle = "unconfigured"
        # Also the deactivate teardown: a later configure + activate must not duplicate subscriptions/timers.
        self._stop_processing()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        worker, pipeline = self.worker, self.pipeline
        self.worker, self.pipeline = None, None  # new requests see a node that is not active
        stopped = worker.stop(self.stop_timeout_s) if worker is not None else True
        if pipeline is not None and stopped:
            pipeline.close()
        tf, self.tf = self.tf, None
        self._close_tf(tf)
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self.matcher, self._pubs = None, {}
        self._frame_cache = None
        if stopped:
            self.model_state = "not loaded"
        else:
            # Closing the model under a running job would crash it; leaking it is the lesser harm.
            self.model_state = (f"error: the inference thread did not stop within {self.stop_timeout_s:.0f} s; "
                                "the model was left loaded (restart the node to free it)")
            self.get_logger().error(self.model_state)
        gc.collect()
        _free_gpu_cache()

    # ================================================================== inputs
    def _input_qos(self) -> QoSProfile:
        s = self.settings
        if s.input_qos == "sensor_data":
            return QoSProfile(depth=s.input_qos_depth, reliability=qos_profile_sensor_data.reliability,
                              durability=qos_profile_sensor_data.durability)
        reliability = ReliabilityPolicy.RELIABLE if s.input_qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
        return QoSProfile(depth=s.input_qos_depth, reliability=reliability, durability=DurabilityPolicy.VOLATILE)

    def _on_sensor(self, stream: str, msg) -> None:
        matcher = self.matcher
        if matcher is None:
            return
        self.stats.tick(stream)
        match = matcher.add(stream, conv.stamp_to_ns(msg.header.stamp), msg)
        if match is None:
            return
        self.stats.tick("matched")
        problem = conv.check_alignment(match.color, match.depth, match.info)
        if problem:
            self.stats.count("rejected_frames")
            self.stats.last_problem = problem
            self.get_logger().warning(f"input refused: {problem}", throttle_duration_sec=5.0)
        else:
            self.stats.last_problem = ""

    def _check_inputs(self) -> None:
        s = self.settings
        if s is None:
            return
        silent = [f"{name} ({topic})" for name, topic, key in (
            ("colour", s.color_topic, "color"), ("depth", s.depth_topic, "depth"),
            ("camera_info", s.camera_info_topic, "info"))
            if self.stats.received(key) == self._received_at_activation[key]]
        if silent:
            self.get_logger().warning(
                f"nothing received after {time.monotonic() - self._activated_at:.0f} s on {', '.join(silent)} "
                f"(subscribed with {s.input_qos} QoS); check the topic names/remapping and the publisher's QoS "
                "(ros2 topic info -v)", throttle_duration_sec=30.0)
        elif self.stats.received("matched") == self._received_at_activation["matched"]:
            self.get_logger().warning(
                f"messages arrive but colour, depth and camera_info stamps never agree within sync_slop_s="
                f"{s.sync_slop_s}; enable the driver's sync (RealSense: enable_sync:=true) or raise the slop",
                throttle_duration_sec=30.0)

    def _usable_frame(self, match, pipeline: Pipeline):
        """RGBDFrame of a matched set, or InputError saying why it cannot be used."""
        s = self.settings
        age_s = (self.get_clock().now().nanoseconds - match.stamp_ns) / 1e9
        if age_s > s.max_frame_age_s:
            self.stats.count("stale_frames")
            raise InputError(f"the latest frame is {age_s:.2f} s old (max_frame_age_s={s.max_frame_age_s}); "
                             "is the camera still publishing?")
        cached = self._frame_cache
        if cached is not None and cached[0] is match:
            return cached[1]
        frame = conv.frame_from_msgs(match.color, match.depth, match.info, pipeline.config.min_range_m,
                                     pipeline.config.max_range_m)
        # One RGBDFrame per matched set: backends key their per-frame work (point map, the model's cached
        # image prefix) on the frame object, so every query about the same frame reuses it.
        self._frame_cache = (match, frame)
        return frame

    def _no_frame_message(self) -> str:
        s = self.settings
        counts = ", ".join(f"{name} {self.stats.received(key)}" for name, key in (
            ("colour", "color"), ("depth", "depth"), ("camera_info", "info")))
        return (f"no matched frame yet (received so far: {counts}); check {s.color_topic}, {s.depth_topic}, "
                f"{s.camera_info_topic} and their QoS, and that their stamps agree within sync_slop_s={s.sync_slop_s}")

    # ================================================================== background detection
    def _on_detection_timer(self) -> None:
        matcher, worker, pipeline = self.matcher, self.worker, self.pipeline
        match = matcher.latest() if matcher else None
        if match is None or worker is None or pipeline is None or match.stamp_ns == self._last_detected_stamp:
            return
        if worker.submit_detection(Job(lambda job: self._run_detection(job, pipeline, match), "detection")):
            self._last_detected_stamp = match.stamp_ns

    def _run_detection(self, job: Job, pipeline: Pipeline, match) -> None:
        """In the inference thread."""
        started = time.monotonic()
        try:
            frame = self._usable_frame(match, pipeline)
            result = pipeline.detect(frame, self.settings.detection_prompt or None, cancel=job.abandoned)
        except InputError as exc:
            self.stats.count("skipped_detections")
            self.get_logger().warning(f"detection skipped: {exc}", throttle_duration_sec=5.0)
            return
        except Cancelled:  # deactivated or shutting down while the model ran: nothing to publish
            self.stats.count("cancelled_detections")
            return
        if self.lifecycle != "active":  # a timer tick that raced deactivate submitted this: publish nothing
            self.stats.count("cancelled_detections")
            return
        header = Header(stamp=match.color.header.stamp, frame_id=frame.frame_id)
        self._publish_results(frame, result.boxes, header, "detections", "markers", "debug_image", "n3d")
        self.stats.tick("detections")
        with self.stats.lock:
            self.stats.detection_latency.append(time.monotonic() - started)

    def _publish_results(self, frame, boxes, header, det_topic, marker_topic, image_topic, namespace):
        """Publish boxes as Detection3DArray, markers, debug image (and 2D detections). Returns (3D, 2D)."""
        transform, out_header = None, header
        target, tf = self.settings.target_frame, self.tf
        if target and target != frame.frame_id:
            if tf is None:  # configure refuses a target_frame without tf2_ros; this is a cleanup race
                raise InputError(f"no TF listener for target_frame {target!r}: {self._tf_missing}")
            transform = tf.lookup(target, frame.frame_id, frame.stamp_ns, self.settings.tf_timeout_s)
            out_header = Header(stamp=header.stamp, frame_id=target)
        return self._publish_boxes(frame, boxes, header, out_header, transform, det_topic, marker_topic,
                                   image_topic, namespace)

    def _publish_boxes(self, frame, boxes, image_header, out_header, transform, det_topic, marker_topic,
                       image_topic, namespace):
        det3d = conv.detections_3d(boxes, out_header, transform)
        rects = [conv.box_rect(box, frame.camera) for box in boxes]
        det2d = conv.detections_2d(boxes, rects, image_header)
        pubs = self._pubs
        if not pubs:
            return det3d, det2d
        pubs[det_topic].publish(det3d)
        if det_topic == "detections":
            pubs["detections_2d"].publish(det2d)
        pubs[marker_topic].publish(conv.markers(boxes, out_header, namespace, transform))
        if self.settings.publish_debug_image:
            pubs[image_topic].publish(conv.rgb_image_msg(conv.draw_detections(frame.color, boxes, rects),
                                                         image_header))
        changed, unmapped = self._labels.add(box.label for box in boxes)
        if unmapped:
            self.get_logger().warning(
                f"~/label_info is full ({self._labels.max_labels} labels, the uint16 class_id range): "
                f"{', '.join(repr(label) for label in unmapped[:5])} mapped to class_id {self._labels.overflow_id} "
                f"({self._labels.overflow_name!r}); detections still carry the label as class_id",
                throttle_duration_sec=30.0)
        if changed:
            pubs["label_info"].publish(conv.label_info(self._labels.class_map(), image_header))
        return det3d, det2d

    # ================================================================== queries
    def _on_query_service(self, request, response):
        outcome, latency = self._answer(request.query, request.timeout_s, request.require_fresh_frame,
                                        request.target_frame)
        return conv.fill_answer(response, outcome.answer, outcome.objects, outcome.objects_2d, latency)

    def _on_goal(self, goal) -> GoalResponse:
        # Over the limit: refuse before the goal takes an executor thread. (An inactive node accepts, so the
        # result can say why it cannot answer.)
        settings = self.settings
        if self.lifecycle == "active" and settings is not None:
            busy = self._busy_reason(settings.max_queued_queries, reserve=False)
            if busy:
                self.get_logger().warning(f"action goal rejected: {busy}", throttle_duration_sec=5.0)
                return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _busy_reason(self, limit: int, reserve: bool) -> Optional[str]:
        """Why a new request is refused ('busy: ...') when ``limit`` requests are in flight, else None; with
        ``reserve`` the new request is counted in flight (the caller must count it out when it ends)."""
        with self._in_flight_lock:
            in_flight = self._in_flight
            if in_flight < limit:
                self._in_flight += int(reserve)
                return None
        self.stats.count("queries_refused")
        return f"busy: {in_flight} requests in flight (max_queued_queries={limit}); retry later"

    def _on_query_action(self, goal_handle):
        goal = goal_handle.request
        feedback = SpatialQueryAction.Feedback()

        def report(stage: str, elapsed: float, objects: Optional[Detection3DArray] = None) -> None:
            feedback.stage, feedback.elapsed_s = stage, elapsed
            if objects is not None:
                feedback.partial_objects = objects
            goal_handle.publish_feedback(feedback)

        outcome, latency = self._answer(goal.query, goal.timeout_s, goal.require_fresh_frame, goal.target_frame,
                                        report=report, cancelled=lambda: goal_handle.is_cancel_requested)
        result = conv.fill_answer(SpatialQueryAction.Result(), outcome.answer, outcome.objects,
                                  outcome.objects_2d, latency)
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif outcome.answer.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def _answer(self, query, timeout_s, fresh, target_frame, report: Optional[Callable] = None,
                cancelled: Callable[[], bool] = lambda: False):
        """Run one query end to end; never raises. Returns (QueryOutcome, latency_s)."""
        started = time.monotonic()
        try:
            outcome = self._answer_checked(query, timeout_s, fresh, target_frame, report, cancelled, started)
        except Exception as exc:  # the node must answer every request, whatever went wrong inside
            self.get_logger().error(f"query failed: {type(exc).__name__}: {exc}")
            outcome = _failure(f"internal error: {type(exc).__name__}: {exc}")
        latency = time.monotonic() - started
        self.stats.count("queries_ok" if outcome.answer.success else "queries_failed")
        with self.stats.lock:
            self.stats.query_latency.append(latency)
        return outcome, latency

    def _answer_checked(self, query, timeout_s, fresh, target_frame, report, cancelled, started) -> QueryOutcome:
        report = report or (lambda *args: None)
        worker, matcher, settings, pipeline = self.worker, self.matcher, self.settings, self.pipeline
        if self.lifecycle != "active" or worker is None or pipeline is None or matcher is None:
            return _failure(f"the node is {self.lifecycle}, not active: configure and activate it "
                            f"(ros2 lifecycle set {self.get_fully_qualified_name()} configure, then activate)"
                            + (f"; last error: {self.model_state}" if self.model_state.startswith("error") else ""))
        if not math.isfinite(timeout_s) or timeout_s < 0:
            return _failure(f"timeout_s must be >= 0 (0 = the node default), got {timeout_s}")
        timeout = timeout_s or settings.query_timeout_s
        deadline = started + timeout
        try:
            query = validate_query(query, pipeline.config.max_query_chars)
        except InputError as exc:
            return _failure(str(exc))
        target = target_frame.strip() or settings.target_frame
        tf = self.tf
        if target and tf is None:
            return _failure(f"target_frame {target!r} cannot be served: {self._tf_missing or 'no TF listener'}")
        # The in-flight bound comes before anything that blocks this executor thread.
        busy = self._busy_reason(settings.max_queued_queries, reserve=True)
        if busy:
            return _failure(busy)
        try:
            return self._answer_in_flight(worker, matcher, pipeline, tf, query, fresh, target, timeout, deadline,
                                          report, cancelled, started)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def _answer_in_flight(self, worker, matcher, pipeline, tf, query, fresh, target, timeout, deadline, report,
                          cancelled, started) -> QueryOutcome:
        match = None
        if fresh:
            report("waiting_for_frame", time.monotonic() - started)
            requested_ns = self.get_clock().now().nanoseconds
            # In short slices, so that a cancel or a deactivate ends the wait early.
            while match is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return _failure(f"no fresh frame within the {timeout:.1f} s timeout; "
                                    + self._no_frame_message())
                if cancelled():
                    return _failure("cancelled while waiting for a fresh frame")
                if self.lifecycle != "active":
                    return _failure(f"the node became {self.lifecycle} while waiting for a fresh frame")
                match = matcher.wait_newer(requested_ns, min(0.1, remaining))
        job = Job(lambda job: self._run_query(job, pipeline, tf, query, match, target), "query")
        try:
            worker.submit_query(job)
        except QueueFull as exc:
            self.stats.count("queries_refused")
            return _failure(f"busy: {exc}")
        while not job.wait(0.1):
            report(job.stage, time.monotonic() - started, job.partial)
            if cancelled() or time.monotonic() > deadline:
                # The model polls job.abandoned and stops decoding: the worker is free for the next request.
                job.abandon()
                reason = "cancelled" if cancelled() else f"timed out after {timeout:.1f} s (stage: {job.stage})"
                return _failure(reason)
        if job.error:
            return _failure(f"internal error: {job.error}")
        if job.result.answer.success or job.result.answer.objects:
            report("done", time.monotonic() - started, job.result.objects)
        return job.result

    def _run_query(self, job: Job, pipeline: Pipeline, tf, query: str, match, target: str) -> QueryOutcome:
        """In the inference thread."""
        matcher = self.matcher
        match = match or (matcher.latest() if matcher is not None else None)
        if match is None:
            return _failure(self._no_frame_message())
        job.stage = "grounding"
        try:
            frame = self._usable_frame(match, pipeline)
        except InputError as exc:
            return _failure(f"the latest frame cannot be used: {exc}")
        image_header = Header(stamp=match.color.header.stamp, frame_id=frame.frame_id)

        def grounded(grounding) -> None:  # action feedback: the boxes, before the (slow) reasoning turn
            job.partial = conv.detections_3d(grounding.boxes, image_header, None)
            job.stage = "reasoning"

        answer = pipeline.ask(frame, query, on_grounded=grounded, cancel=job.abandoned)
        if job.abandoned.is_set():  # the caller has gone (timeout, cancel, shutdown): publish nothing
            return _failure(answer.message or "cancelled")
        job.stage = "publishing"
        out_header, transform = image_header, None
        if target and target != frame.frame_id:
            try:
                transform = tf.lookup(target, frame.frame_id, frame.stamp_ns, self.settings.tf_timeout_s)
            except InputError as exc:
                return _failure(str(exc))
            out_header = Header(stamp=image_header.stamp, frame_id=target)
        det3d, det2d = self._publish_boxes(frame, answer.objects, image_header, out_header, transform,
                                           "query_detections", "query_markers", "query_debug_image", "n3d_query")
        pubs = self._pubs
        if "answers" in pubs:
            message = conv.fill_answer(SpatialAnswer(header=image_header, query=query), answer, det3d, None,
                                       time.monotonic() - job.created)
            pubs["answers"].publish(message)
        return QueryOutcome(answer, det3d, det2d)

    # ================================================================== diagnostics
    def _publish_diagnostics(self) -> None:
        # Locals: the lifecycle thread may set these to None between two reads.
        matcher, pipeline, worker = self.matcher, self.pipeline, self.worker
        latest = matcher.latest() if matcher is not None else None
        now_ns = self.get_clock().now().nanoseconds
        age = None if latest is None else (now_ns - latest.stamp_ns) / 1e9
        with self._in_flight_lock:
            in_flight = self._in_flight
        status = self.stats.status(
            name=f"{self.get_fully_qualified_name()}: pipeline",
            hardware_id=pipeline.config.model if pipeline is not None and pipeline.config.backend == "n3d"
            else "tabletop", lifecycle=self.lifecycle, model_state=self.model_state,
            queue=worker.queue_length() if worker is not None else 0, frame_age_s=age)
        status.values.append(KeyValue(key="requests_in_flight", value=str(in_flight)))
        self._diagnostics.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                  status=[status]))


def _free_gpu_cache() -> None:
    torch = sys.modules.get("torch")  # only if a backend imported it: never import torch just for this
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(args=None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from .executor import QueuedOnceExecutor

    rclpy.init(args=args)
    node = N3DNode()
    # One thread per request in flight (at most max_queued_queries, whatever it is set to before configure)
    # plus the reserve for sensors, timers and refusals. The pool starts threads only as they are needed.
    node.executor_threads = executor_threads_for(MAX_QUEUED_QUERIES_LIMIT)
    executor = QueuedOnceExecutor(num_threads=node.executor_threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or a shutdown from outside: the normal way to stop a node
    finally:
        if node.lifecycle != "finalized":
            node.on_shutdown(None)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
