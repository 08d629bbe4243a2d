"""Offline demo, no system ROS needed: a synthetic camera publishes a seeded tabletop scene, the n3d node
(tabletop backend) detects and answers questions through its real SpatialQuery service, and the detections
are rendered to an image file.

All three nodes share one process and one executor but talk over DDS exactly as separate processes would.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import List, Optional

import numpy as np


def demo_questions(objects) -> List[str]:
    """Questions about the scene's ground-truth objects."""
    labels = [obj.label for obj in objects]
    questions = [f"where is the {labels[0]}"]
    if len(labels) > 1:
        questions.append(f"how far is the {labels[0]} from the {labels[1]}")
        questions.append(f"is the {labels[0]} left of the {labels[1]}")
    questions.append(f"how big is the {labels[-1]}")
    return questions


def main(argv: Optional[List[str]] = None) -> int:
    import rclpy
    from .executor import QueuedOnceExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from .client import call
    from .node import N3DNode
    from .synthetic_camera import SyntheticCamera

    parser = argparse.ArgumentParser(prog="n3d-demo", description=__doc__)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--domain-id", type=int, default=None, help="DDS domain (default: from the process id)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import os

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id if args.domain_id is not None else 100 + os.getpid() % 100)
    camera = SyntheticCamera(seed=args.seed, rate_hz=15.0, context=context)
    node = N3DNode(context=context, parameter_overrides=[
        Parameter("backend", value="tabletop"),
        Parameter("color_topic", value="/synthetic_camera/color/image_raw"),
        Parameter("depth_topic", value="/synthetic_camera/aligned_depth_to_color/image_raw"),
        Parameter("camera_info_topic", value="/synthetic_camera/color/camera_info"),
        Parameter("detection_rate_hz", value=2.0),
        Parameter("autostart", value=True)])
    client = rclpy.create_node("n3d_demo_client", context=context)
    latest_image = {}
    client.create_subscription(Image, "/n3d_node/debug_image", lambda msg: latest_image.update(msg=msg), 5)
    executor = QueuedOnceExecutor(num_threads=8, context=context)
    node.executor_threads = 8  # configure checks max_queued_queries against it
    for each in (camera, node, client):
        executor.add_node(each)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    status = 0
    try:
        print(f"scene seed {args.seed}: " + ", ".join(
            f"{obj.label} at {np.round(obj.center, 2).tolist()} m" for obj in camera.scene.objects))
        deadline = time.monotonic() + 60.0
        while "msg" not in latest_image and time.monotonic() < deadline:
            time.sleep(0.05)
        if "msg" not in latest_image:
            print(f"demo: no detections after 60 s (node state: {node.lifecycle}, {node.model_state})")
            return 1
        for question in demo_questions(camera.scene.objects):
            reply = call(client, "/n3d_node/query", question, timeout_s=30.0, fresh=True)
            if reply is None:
                print(f"Q: {question}\nA: (no reply)")
                status = 1
                continue
            value = ""
            if reply.has_value:
                value = f" [{bool(reply.value)}]" if reply.unit == "bool" else f" [{reply.value:.4g} {reply.unit}]"
            text = reply.answer if reply.success else f"(refused: {reply.message})"
            print(f"Q: {question}\nA: {text}{value}  ({reply.answer_path}, {reply.latency_s * 1000:.0f} ms, "
                  f"objects: {len(reply.objects.detections)}, frame {reply.objects.header.frame_id})")
        msg = latest_image["msg"]
        rgb = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.width, 3)
        from PIL import Image as PILImage

        path = args.out / "demo_detections.png"
        PILImage.fromarray(rgb).save(path)
        print(f"rendered detections: {path}")
    finally:
        executor.shutdown(timeout_sec=5.0)
        spinner.join(timeout=5.0)
        for each in (camera, node, client):
            each.destroy_node()
        context.try_shutdown()
    return status
