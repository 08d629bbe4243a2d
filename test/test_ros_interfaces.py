"""The generated interfaces exist with the fields planners rely on (an `ros2 interface show` check),
vision_msgs matches the upstream 4.x definitions, and a SpatialQuery service call round-trips over DDS."""

from __future__ import annotations

import time

import pytest

EXPECTED_RESPONSE = {
    "success": "boolean", "message": "string", "answer": "string", "reasoning": "string",
    "has_value": "boolean", "value": "double", "unit": "string", "answer_path": "string",
    "objects": "vision_msgs/Detection3DArray", "objects_2d": "vision_msgs/Detection2DArray",
    "latency_s": "double", "from_memory_ids": "sequence<string>", "from_memory_ages_s": "sequence<double>",
    "memory_ids": "sequence<string>",
}
EXPECTED_REQUEST = {"query": "string", "timeout_s": "double", "require_fresh_frame": "boolean",
                    "target_frame": "string"}

# vision_msgs 4.1.1, field by field (upstream .msg files), written out here independently of ci/vision_msgs.
VISION_MSGS = {
    "Detection3DArray": {"header": "std_msgs/Header", "detections": "sequence<vision_msgs/Detection3D>"},
    "Detection3D": {"header": "std_msgs/Header", "results": "sequence<vision_msgs/ObjectHypothesisWithPose>",
                    "bbox": "vision_msgs/BoundingBox3D", "id": "string"},
    "BoundingBox3D": {"center": "geometry_msgs/Pose", "size": "geometry_msgs/Vector3"},
    "ObjectHypothesisWithPose": {"hypothesis": "vision_msgs/ObjectHypothesis",
                                 "pose": "geometry_msgs/PoseWithCovariance"},
    "ObjectHypothesis": {"class_id": "string", "score": "double"},
    "Detection2DArray": {"header": "std_msgs/Header", "detections": "sequence<vision_msgs/Detection2D>"},
    "Detection2D": {"header": "std_msgs/Header", "results": "sequence<vision_msgs/ObjectHypothesisWithPose>",
                    "bbox": "vision_msgs/BoundingBox2D", "id": "string"},
    "BoundingBox2D": {"center": "vision_msgs/Pose2D", "size_x": "double", "size_y": "double"},
    "Pose2D": {"position": "vision_msgs/Point2D", "theta": "double"},
    "Point2D": {"x": "double", "y": "double"},
    "LabelInfo": {"header": "std_msgs/Header", "class_map": "sequence<vision_msgs/VisionClass>",
                  "threshold": "float"},
    "VisionClass": {"class_id": "uint16", "class_name": "string"},
}


def test_service_types_have_the_planner_fields(ros_context):
    from n3d_ros.srv import SpatialQuery

    assert SpatialQuery.Request.get_fields_and_field_types() == EXPECTED_REQUEST
    assert SpatialQuery.Response.get_fields_and_field_types() == EXPECTED_RESPONSE
    # The `ros2 service call ... "{query: 'where is the red mug'}"` form: every other field has a default.
    request = SpatialQuery.Request(query="where is the red mug")
    assert (request.timeout_s, request.require_fresh_frame, request.target_frame) == (0.0, False, "")


def test_action_and_message_types(ros_context):
    from n3d_ros.action import SpatialQuery
    from n3d_ros.msg import SpatialAnswer

    assert SpatialQuery.Goal.get_fields_and_field_types() == EXPECTED_REQUEST
    assert SpatialQuery.Result.get_fields_and_field_types() == EXPECTED_RESPONSE
    assert SpatialQuery.Feedback.get_fields_and_field_types() == {
        "stage": "string", "elapsed_s": "double", "partial_objects": "vision_msgs/Detection3DArray"}
    answer_fields = SpatialAnswer.get_fields_and_field_types()
    assert answer_fields["header"] == "std_msgs/Header"
    assert {k: answer_fields[k] for k in ("query", "answer", "value", "unit", "objects")} == {
        "query": "string", "answer": "string", "value": "double", "unit": "string",
        "objects": "vision_msgs/Detection3DArray"}
    assert answer_fields["from_memory_ids"] == answer_fields["memory_ids"] == "sequence<string>"


def test_object_memory_service_type(ros_context):
    from n3d_ros.srv import ObjectMemory

    assert ObjectMemory.Request.get_fields_and_field_types() == {
        "operation": "string", "phrase": "string", "include_tentative": "boolean", "id": "uint32"}
    assert ObjectMemory.Response.get_fields_and_field_types() == {
        "success": "boolean", "message": "string", "objects": "vision_msgs/Detection3DArray",
        "ages_s": "sequence<double>", "removed": "uint32"}


@pytest.mark.parametrize("name", sorted(VISION_MSGS))
def test_vision_msgs_match_upstream(ros_context, name):
    import vision_msgs.msg

    assert getattr(vision_msgs.msg, name).get_fields_and_field_types() == VISION_MSGS[name]


def test_service_round_trip_over_dds(ros_context, ros_executor):
    """A server and a client node in this process exchange a SpatialQuery through the middleware."""
    import rclpy
    from n3d_ros.srv import SpatialQuery
    from vision_msgs.msg import Detection3D

    server = rclpy.create_node("interface_server", context=ros_context)
    client_node = rclpy.create_node("interface_client", context=ros_context)

    def handle(request, response):
        response.success = True
        response.answer = request.query.upper()
        response.has_value, response.value, response.unit = True, float(len(request.query)), "chars"
        response.objects.header.frame_id = request.target_frame or "camera_color_optical_frame"
        response.objects.detections.append(Detection3D(id="7"))
        return response

    server.create_service(SpatialQuery, "~/query", handle)
    ros_executor.add_node(server)
    ros_executor.add_node(client_node)
    client = client_node.create_client(SpatialQuery, "/interface_server/query")
    assert client.wait_for_service(timeout_sec=10.0), "service never appeared"
    future = client.call_async(SpatialQuery.Request(query="where is the mug", target_frame="base_link"))
    deadline = time.monotonic() + 10.0
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    reply = future.result()
    assert reply.success and reply.answer == "WHERE IS THE MUG"
    assert (reply.has_value, reply.value, reply.unit) == (True, 16.0, "chars")
    assert reply.objects.header.frame_id == "base_link"
    assert [d.id for d in reply.objects.detections] == ["7"]
    server.destroy_node()
    client_node.destroy_node()
