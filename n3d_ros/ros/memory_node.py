"""The node's use of the object memory (issue 14): the MemoryFeed made at configure, continuous detection and
query groundings fed into it, questions answered from it, and the ~/object_memory service (list | forget | clear).

A pose that cannot be had (stale, non-finite, another frame, no transform to the memory frame) loses that one
frame for the memory only: the detection is still published and the query still answered, its reply saying
"memory not updated: <why>", and a throttled warning says the same. The node keeps serving.
"""

from __future__ import annotations

from typing import Callable, Optional

from rclpy.callback_groups import ReentrantCallbackGroup

from ..core.types import Answer, InputError
from ..memory import ObjectMemory, UnknownObject
from ..memory.answers import answer_from_memory, ask_with_memory, names_memory_id
from .memory_io import MemoryFeed, memory_detections, memory_header

from n3d_ros.srv import ObjectMemory as ObjectMemorySrv

POSE_LOG_PERIOD_S = 5.0
OPERATIONS = ("list", "forget", "clear")


def make_feed(node, settings, tf) -> Optional[MemoryFeed]:
    """The MemoryFeed for validated NodeSettings (None when the memory is off); InputError naming the parameter
    when its pose source cannot work here."""
    memory = settings.memory
    if memory is None:
        return None
    if memory.pose_source == "tf" and tf is None:
        raise InputError(f"parameter memory_pose_source is tf but there is no TF listener ({node.tf_missing}); "
                         "use memory_pose_source topic with a camera pose topic, or none for a fixed camera")
    return MemoryFeed(node, ObjectMemory(memory.config), memory.pose_source, memory.pose_topic, memory.pose_type,
                      tf_lookup=tf, tf_timeout_s=settings.tf_timeout_s,
                      follow_camera_frame=memory.follow_camera_frame)


def _refused(node, what: str, exc: Exception) -> str:
    note = f"memory not updated: {exc}"
    node.stats.count("memory_frames_refused")
    node.log.warning("memory pose", f"{what}: {note}", POSE_LOG_PERIOD_S)
    return note


def _with_note(answer: Answer, note: str) -> Answer:
    answer.message = " ".join(p for p in (answer.message, note) if p)
    return answer


def feed_detection(node, grounding, frame, prompt: str) -> None:
    """Continuous detection into the memory (in the inference thread): a complete detection (no prompt) is
    negative evidence for every object in view, a prompt only for the objects it describes."""
    feed = node.memory_feed
    if feed is None:
        return
    try:
        feed.feed(grounding, frame, scope=[prompt] if prompt else None)
    except InputError as exc:
        _refused(node, "detection not added to the object memory", exc)


def ask(node, pipeline, frame, query: str, on_grounded: Callable, cancel) -> Answer:
    """Pipeline.ask, with the memory when it is on (in the inference thread): the query's grounding feeds it
    (scope = the query's phrases) and a geometry question the frame cannot answer is answered from it."""
    feed = node.memory_feed
    if feed is None:
        return pipeline.ask(frame, query, on_grounded=on_grounded, cancel=cancel)
    try:
        pose = feed.pose_for(frame)
    except InputError as exc:
        note = _refused(node, "query grounding not added to the object memory", exc)
        if names_memory_id(query):  # seen from the last pose the memory had
            return _with_note(answer_from_memory(feed.memory, query, frame.stamp_ns), note)
        return _with_note(pipeline.ask(frame, query, on_grounded=on_grounded, cancel=cancel), note)
    grounded = []

    def keep(grounding) -> None:
        grounded.append(grounding)
        on_grounded(grounding)

    memory = feed.memory
    answer = ask_with_memory(pipeline, memory, frame, query, pose, cancel=cancel, on_grounded=keep)
    if grounded and memory.last_pose is not pose:  # ingest refused the pose; ask_with_memory's message says why
        node.stats.count("memory_frames_refused")
        node.log.warning("memory pose", f"query grounding not added to the object memory: {answer.message}",
                         POSE_LOG_PERIOD_S)
    feed.publish(frame.stamp_ns)
    return answer


class MemoryService:
    """~/object_memory, in every lifecycle state (it says when the memory is off or the node unconfigured)."""

    def __init__(self, node):
        self._node = node
        self.service = node.create_service(ObjectMemorySrv, "~/object_memory", self._on_request,
                                           callback_group=ReentrantCallbackGroup())

    def _on_request(self, request, response):
        try:
            return self._answer(request, response)
        except Exception as exc:  # every request gets a reply
            self._node.get_logger().error(f"object_memory failed: {type(exc).__name__}: {exc}")
            response.success, response.message = False, f"internal error: {type(exc).__name__}: {exc}"
            return response

    def _answer(self, request, response):
        node = self._node
        feed = node.memory_feed
        operation = request.operation.strip().lower() or "list"
        if operation not in OPERATIONS:
            response.success = False
            response.message = f"operation must be one of {list(OPERATIONS)} ('' = list), got {request.operation!r}"
            return response
        if feed is None:
            response.success = False
            response.message = (f"the object memory is off: the node is {node.lifecycle}" if node.settings is None
                                else "the object memory is off: set memory_enabled true and reconfigure the node")
            return response
        memory = feed.memory
        now_ns = node.get_clock().now().nanoseconds
        if operation == "list":
            phrase = request.phrase.strip()
            objects = memory.find(phrase, request.include_tentative) if phrase else \
                memory.objects(request.include_tentative)
            response.message = f"{len(objects)} object(s) in '{memory.frame_id}'" + (
                f" matching '{phrase}'" if phrase else "")
        elif operation == "forget":
            try:
                objects = [memory.forget(int(request.id))]
            except UnknownObject as exc:
                response.success, response.message = False, str(exc)
                return response
            response.removed = 1
            response.message = f"forgot object {request.id} ({objects[0].label})"
        else:
            response.removed = memory.clear()
            objects = []
            response.message = f"cleared {response.removed} object(s)"
        if operation != "list":
            feed.publish(now_ns)  # ~/objects shows the change at once
        response.objects = memory_detections(objects, memory_header(memory.frame_id, now_ns), memory.basis)
        response.ages_s = [max(0.0, float(o.age_s(now_ns))) for o in objects]
        response.success = True
        return response
