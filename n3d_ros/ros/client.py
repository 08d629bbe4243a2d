"""n3d-query: ask the n3d node a spatial question from the command line, without ros2cli.

  n3d-query "where is the red mug"
  n3d-query --node /robot/n3d_node --fresh --timeout 20 --json "how far is the mug from the laptop"
Exit code: 0 answered, 1 the node could not answer (message printed), 2 no node / no reply.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional


def response_to_dict(response) -> dict:
    def objects(array):
        return [{"id": d.id, "label": d.results[0].hypothesis.class_id if d.results else "",
                 "center_m": [d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z],
                 "size_m": [d.bbox.size.x, d.bbox.size.y, d.bbox.size.z]} for d in array.detections]

    return {"success": response.success, "message": response.message, "answer": response.answer,
            "reasoning": response.reasoning, "value": response.value if response.has_value else None,
            "unit": response.unit, "answer_path": response.answer_path, "frame_id": response.objects.header.frame_id,
            "objects": objects(response.objects), "latency_s": round(response.latency_s, 4)}


def request_fields(query, timeout_s, fresh, target_frame) -> dict:
    """The request's fields with the types the message needs. rosidl's C conversion asserts on a wrong type
    (an int timeout_s aborts the process with SIGABRT), so numbers are converted and anything else refused."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise TypeError(f"timeout_s must be a number of seconds, got {type(timeout_s).__name__} {timeout_s!r}")
    if not isinstance(query, str) or not isinstance(target_frame, str):
        raise TypeError("query and target_frame must be str, got "
                        f"{type(query).__name__} and {type(target_frame).__name__}")
    if "\x00" in query or "\x00" in target_frame:
        # rclpy cuts a string at its first NUL on the way out: the node would answer a different question.
        raise ValueError("query and target_frame must not contain NUL characters (ROS strings end at the first one)")
    return {"query": query, "timeout_s": float(timeout_s), "require_fresh_frame": bool(fresh),
            "target_frame": target_frame}


def call(node, service: str, query: str, timeout_s: float, fresh: bool = False, target_frame: str = "",
         wait_s: float = 10.0):
    """Call the SpatialQuery service from an rclpy node that something else spins; None if no reply.
    TypeError/ValueError for arguments the message cannot carry."""
    from n3d_ros.srv import SpatialQuery

    request = SpatialQuery.Request(**request_fields(query, timeout_s, fresh, target_frame))
    client = node.create_client(SpatialQuery, service)
    try:
        if not client.wait_for_service(timeout_sec=float(wait_s)):
            return None
        future = client.call_async(request)
        deadline = time.monotonic() + (request.timeout_s or 60.0) + 5.0
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        return future.result() if future.done() else None
    finally:
        node.destroy_client(client)


def main(argv: Optional[List[str]] = None) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    import threading

    parser = argparse.ArgumentParser(prog="n3d-query", description="ask the n3d node a spatial question")
    parser.add_argument("query")
    parser.add_argument("--node", default="/n3d_node", help="the n3d node's full name")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds; 0 = the node's default")
    parser.add_argument("--fresh", action="store_true", help="wait for a frame newer than the request")
    parser.add_argument("--target-frame", default="", help="frame for the objects (tf2 on the node)")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the service to appear")
    parser.add_argument("--json", action="store_true", help="print the whole reply as JSON")
    args = parser.parse_args(argv)

    rclpy.init()
    node = rclpy.create_node("n3d_query_client")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        service = args.node.rstrip("/") + "/query"
        response = call(node, service, args.query, args.timeout, args.fresh, args.target_frame, args.wait)
        if response is None:
            print(f"n3d-query: no reply from {service} (is the node running and active?)", file=sys.stderr)
            return 2
        reply = response_to_dict(response)
        if args.json:
            print(json.dumps(reply, indent=2))
        elif response.success:
            print(response.answer)
        else:
            print(f"n3d-query: {response.message}", file=sys.stderr)
        return 0 if response.success else 1
    finally:
        executor.shutdown()
        spinner.join(5.0)  # a spin thread still inside rcl at interpreter exit aborts the process
        node.destroy_node()
        rclpy.try_shutdown()
