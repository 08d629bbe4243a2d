"""The ~/query service and action: admission (at most max_queued_queries in flight, the rest refused at once
with a 'busy' reason), waiting for a fresh frame, running the question on the inference worker, replies.

Every request gets an answer. Bursts: the service and the action's goal service keep REQUEST_QUEUE_DEPTH
requests (rclpy's default keeps 10, and DDS silently drops the rest of a burst). Every action goal is accepted;
one over the limit is aborted at once with the busy reason in its result (a plain rejection carries no reason
to the client). Each request in flight holds one executor thread (see node.py).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray

from ..core.types import Answer, InputError
from ..pipeline import validate_query
from . import conversions as conv
from . import memory_node
from .outputs import echo, target_transform
from .params import MAX_FRAME_ID_CHARS
from .worker import Job, QueueFull

from n3d_ros.action import SpatialQuery as SpatialQueryAction
from n3d_ros.msg import SpatialAnswer
from n3d_ros.srv import SpatialQuery

REQUEST_QUEUE_DEPTH = 1000  # requests DDS keeps for the service (and goal service) before the node takes them
REQUEST_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=REQUEST_QUEUE_DEPTH,
                         reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
BUSY_LOG_PERIOD_S = 5.0


@dataclass
class QueryOutcome:
    answer: Answer
    objects: Detection3DArray
    objects_2d: Detection2DArray


def failure(message: str) -> QueryOutcome:
    return QueryOutcome(Answer(success=False, text="", path="none", message=message),
                        Detection3DArray(), Detection2DArray())


class QueryServer:
    def __init__(self, node, log):
        self._node = node  # the shell: read for its current state only
        self._log = log
        self._in_flight = 0  # requests waiting for a frame, queued or running: each holds an executor thread
        self._lock = threading.Lock()
        group = ReentrantCallbackGroup()
        self.service = node.create_service(SpatialQuery, "~/query", self._on_service, qos_profile=REQUEST_QOS,
                                           callback_group=group)
        self.action = ActionServer(node, SpatialQueryAction, "~/query", execute_callback=self._on_action,
                                   goal_callback=lambda goal: GoalResponse.ACCEPT,
                                   cancel_callback=lambda goal: CancelResponse.ACCEPT, callback_group=group,
                                   goal_service_qos_profile=REQUEST_QOS, result_service_qos_profile=REQUEST_QOS,
                                   cancel_service_qos_profile=REQUEST_QOS)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def destroy(self) -> None:
        # rclpy's destroy_node does not destroy action servers: without this the ~/query action's services and
        # topics outlive the node in the graph, and a later server of the same name never looks available.
        self.action.destroy()

    # ------------------------------------------------------------------ callbacks
    def _on_service(self, request, response):
        outcome, latency = self.answer(request.query, request.timeout_s, request.require_fresh_frame,
                                       request.target_frame)
        return conv.fill_answer(response, outcome.answer, outcome.objects, outcome.objects_2d, latency)

    def _on_action(self, goal_handle):
        goal = goal_handle.request
        feedback = SpatialQueryAction.Feedback()

        def report(stage: str, elapsed: float, objects: Optional[Detection3DArray] = None) -> None:
            feedback.stage, feedback.elapsed_s = stage, float(elapsed)
            if objects is not None:
                feedback.partial_objects = objects
            goal_handle.publish_feedback(feedback)

        outcome, latency = self.answer(goal.query, goal.timeout_s, goal.require_fresh_frame, goal.target_frame,
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

    # ------------------------------------------------------------------ answering
    def answer(self, query, timeout_s, fresh, target_frame, report: Optional[Callable] = None,
               cancelled: Callable[[], bool] = lambda: False):
        """Run one query end to end; never raises. Returns (QueryOutcome, latency_s)."""
        started = time.monotonic()
        stats = self._node.stats
        try:
            outcome = self._checked(query, timeout_s, fresh, target_frame, report or (lambda *a: None), cancelled,
                                    started)
        except Exception as exc:  # the node must answer every request, whatever went wrong inside
            self._node.get_logger().error(f"query failed: {type(exc).__name__}: {exc}")
            outcome = failure(f"internal error: {type(exc).__name__}: {exc}")
        latency = time.monotonic() - started
        stats.count("queries_ok" if outcome.answer.success else "queries_failed")
        with stats.lock:
            stats.query_latency.append(latency)
        return outcome, latency

    def _not_active(self) -> str:
        node = self._node
        if node.lifecycle == "finalized":
            return "the node is shut down (finalized): it answers no more queries; restart it"
        reason = (f"the node is {node.lifecycle}, not active: configure and activate it "
                  f"(ros2 lifecycle set {node.get_fully_qualified_name()} configure, then activate)")
        return reason + (f"; last error: {node.last_error}" if node.last_error else "")

    def _checked(self, query, timeout_s, fresh, target_frame, report, cancelled, started) -> QueryOutcome:
        node = self._node
        worker, matcher, settings, pipeline = node.worker, node.matcher, node.settings, node.pipeline
        if node.lifecycle != "active" or worker is None or pipeline is None or matcher is None:
            return failure(self._not_active())
        if not math.isfinite(timeout_s) or timeout_s < 0:
            return failure(f"timeout_s must be >= 0 (0 = the node default), got {timeout_s}")
        timeout = timeout_s or settings.query_timeout_s
        try:
            query = validate_query(query, pipeline.config.max_query_chars)
        except InputError as exc:
            return failure(str(exc))
        target = target_frame.strip() or settings.target_frame
        if len(target) > MAX_FRAME_ID_CHARS:
            return failure(f"target_frame is {len(target)} characters ({echo(target, 40)}); frame ids are at most "
                           f"{MAX_FRAME_ID_CHARS}")
        # The in-flight bound comes before anything that blocks this executor thread.
        busy = self._reserve(settings.max_queued_queries)
        if busy:
            return failure(busy)
        try:
            return self._in_flight_answer(worker, matcher, pipeline, query, fresh, target, timeout,
                                          started + timeout, report, cancelled, started)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _reserve(self, limit: int) -> Optional[str]:
        """None when a request may go in flight (it is counted; the caller counts it out), else the busy reason."""
        with self._lock:
            in_flight = self._in_flight
            if in_flight < limit:
                self._in_flight += 1
                return None
        self._node.stats.count("queries_refused")
        reason = f"busy: {in_flight} requests in flight (max_queued_queries={limit}); retry later"
        self._log.warning("busy", f"query refused: {reason}", BUSY_LOG_PERIOD_S)
        return reason

    def _in_flight_answer(self, worker, matcher, pipeline, query, fresh, target, timeout, deadline, report,
                          cancelled, started) -> QueryOutcome:
        node = self._node
        match = None
        if fresh:
            report("waiting_for_frame", time.monotonic() - started)
            requested_ns = node.get_clock().now().nanoseconds
            # In short slices, so that a cancel or a deactivate ends the wait early.
            while match is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return failure(node.inputs.no_fresh_frame_message(timeout))
                if cancelled():
                    return failure("cancelled while waiting for a fresh frame")
                if node.lifecycle != "active":
                    return failure(f"the node became {node.lifecycle} while waiting for a fresh frame")
                match = matcher.wait_newer(requested_ns, min(0.1, remaining))
        job = Job(lambda job: self._run(job, pipeline, query, match, target), "query")
        try:
            worker.submit_query(job)
        except QueueFull as exc:
            node.stats.count("queries_refused")
            self._log.warning("busy", f"query refused: busy: {exc}", BUSY_LOG_PERIOD_S)
            return failure(f"busy: {exc}")
        while not job.wait(0.1):
            report(job.stage, time.monotonic() - started, job.partial)
            if cancelled() or time.monotonic() > deadline:
                # The model polls job.abandoned and stops decoding: the worker is free for the next request.
                job.abandon()
                reason = "cancelled" if cancelled() else f"timed out after {timeout:.1f} s (stage: {job.stage})"
                return failure(reason)
        if job.error:
            return failure(f"internal error: {job.error}")
        if job.result.answer.success or job.result.answer.objects:
            report("done", time.monotonic() - started, job.result.objects)
        return job.result

    def _run(self, job: Job, pipeline, query: str, match, target: str) -> QueryOutcome:
        """In the inference thread."""
        node = self._node
        inputs, settings, tf = node.inputs, node.settings, node.tf
        matcher = node.matcher
        match = match or (matcher.latest() if matcher is not None else None)
        if match is None:
            return failure(inputs.no_frame_message())
        job.stage = "grounding"
        try:
            frame = inputs.usable_frame(match, pipeline)
        except InputError as exc:
            return failure(f"the latest frame cannot be used: {exc}")
        image_header = Header(stamp=match.color.header.stamp, frame_id=frame.frame_id)
        if target and target != frame.frame_id and tf is None:  # before the model runs: it cannot be served
            return failure(f"target_frame {echo(target)} cannot be served: {node.tf_missing or 'no TF listener'}")

        def grounded(grounding) -> None:  # action feedback: the boxes, before the (slow) reasoning turn
            job.partial = conv.detections_3d(grounding.boxes, image_header, None)
            job.stage = "reasoning"

        answer = memory_node.ask(node, pipeline, frame, query, grounded, job.abandoned)
        if job.abandoned.is_set():  # the caller has gone (timeout, cancel, shutdown): publish nothing
            return failure(answer.message or "cancelled")
        job.stage = "publishing"
        try:
            transform, out_frame = target_transform(tf, node.tf_missing, target, frame, settings.tf_timeout_s)
        except InputError as exc:
            return failure(str(exc))
        out_header = Header(stamp=image_header.stamp, frame_id=out_frame)
        det3d, det2d = node.outputs.publish_boxes("query", frame, answer.objects, image_header, out_header, transform,
                                                  settings.publish_debug_image)
        node.outputs.publish_answer(conv.fill_answer(SpatialAnswer(header=image_header, query=query), answer, det3d,
                                                     None, time.monotonic() - job.created))
        return QueryOutcome(answer, det3d, det2d)
