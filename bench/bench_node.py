"""Benchmark of the n3d node with the tabletop backend and a 30 Hz synthetic camera.

Prints: node overhead per input frame (CPU time of the process per frame, with the node subscribed vs the
camera alone, measured in the same run), query latency through the real service (median, p95), and resident
memory over the run (growth should be flat). Run: make bench  [-- --seconds 180]
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time

import numpy as np


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from n3d_ros.ros.client import call
    from n3d_ros.ros.node import N3DNode
    from n3d_ros.ros.synthetic_camera import SyntheticCamera

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the memory run")
    parser.add_argument("--phase", type=float, default=10.0, help="seconds per overhead phase")
    args = parser.parse_args()

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=150 + os.getpid() % 50)
    camera = SyntheticCamera(seed=0, rate_hz=30.0, context=context)
    executor = MultiThreadedExecutor(num_threads=8, context=context)
    executor.add_node(camera)
    threading.Thread(target=executor.spin, daemon=True).start()

    # Baseline: the camera publishing alone.
    time.sleep(2.0)
    c0, f0 = cpu_s(), camera.published
    time.sleep(args.phase)
    base_cpu_per_frame = (cpu_s() - c0) / max(camera.published - f0, 1)

    node = N3DNode(context=context, parameter_overrides=[
        Parameter("backend", value="tabletop"),
        Parameter("color_topic", value="/synthetic_camera/color/image_raw"),
        Parameter("depth_topic", value="/synthetic_camera/aligned_depth_to_color/image_raw"),
        Parameter("camera_info_topic", value="/synthetic_camera/color/camera_info")])
    client = rclpy.create_node("bench_client", context=context)
    executor.add_node(node)
    executor.add_node(client)
    node.trigger_configure()
    node.trigger_activate()
    time.sleep(2.0)
    c0, f0, m0 = cpu_s(), camera.published, node.stats.received("matched")
    time.sleep(args.phase)
    frames = camera.published - f0
    node_cpu_per_frame = (cpu_s() - c0) / max(frames, 1)
    matched = node.stats.received("matched") - m0
    print(f"input: {frames / args.phase:.1f} Hz published, {matched / args.phase:.1f} Hz matched by the node")
    print(f"CPU per frame: camera alone {base_cpu_per_frame * 1e3:.2f} ms, camera + node "
          f"{node_cpu_per_frame * 1e3:.2f} ms; node overhead {(node_cpu_per_frame - base_cpu_per_frame) * 1e3:.2f} ms "
          f"(ratio {node_cpu_per_frame / base_cpu_per_frame:.2f}x)")

    question = f"where is the {camera.scene.objects[0].label}"
    latencies, memory = [], []
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        t0 = time.perf_counter()
        reply = call(client, "/n3d_node/query", question, timeout_s=30.0)
        latencies.append(time.perf_counter() - t0)
        if reply is None or not reply.success:
            print(f"query failed: {reply.message if reply else 'no reply'}")
            return 1
        memory.append((time.monotonic() - start, rss_mib()))
        time.sleep(0.2)
    lat = np.array(latencies) * 1e3
    print(f"query latency over {len(lat)} calls: median {np.median(lat):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms")
    t, m = np.array(memory).T
    tail = t > t[-1] / 4  # skip warm-up
    slope = np.polyfit(t[tail], m[tail], 1)[0] * 60 if tail.sum() > 2 else float("nan")
    print(f"RSS: {m[0]:.0f} MiB after the first query, {m[-1]:.0f} MiB after {t[-1]:.0f} s; "
          f"trend {slope:+.2f} MiB/min after warm-up (target: flat)")
    executor.shutdown(timeout_sec=5.0)
    context.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
