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


def call(node, service: str, query: str, timeout_s: float, fresh: bool = False, target_frame: str = "",
         wait_s: float = 10.0):
    """Call the SpatialQuery service from an rclpy node that something else spins; None if no reply."""
    from n3d_ros.srv import SpatialQuery

    client = node.create_client(SpatialQuery, service)
    try:
        if not client.wait_for_service(timeout_sec=wait_s):
            return None
        future = client.call_async(SpatialQuery.Request(query=query, timeout_s=timeout_s,
                                                        require_fresh_frame=fresh, target_frame=target_frame))
        deadline = time.monotonic() + (timeout_s or 60.0) + 5.0
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
