"""Benchmark of the n3d node with the tabletop backend and a 30 Hz synthetic camera.

The camera runs in its own process, as a RealSense driver does; the node and a service client run here.
Prints: the node's CPU time per input frame against the camera's own CPU time per published frame (the
baseline, measured in the same run), query latency through the real service (median, p95), and resident
memory of the node's process over the run (growth should be flat). Run: make bench  [-- --seconds 180]

Why a separate process: rclpy's executor rebuilds its wait set in Python at every wake-up and holds the GIL
while doing so; a camera timer in the node's executor would compete with the node for it and measure rclpy,
not the node.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import threading
import time

import numpy as np

RATE_HZ = 30.0


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> int:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo

    from n3d_ros.core.scene import make_scene
    from n3d_ros.ros.executor import QueuedOnceExecutor
    from n3d_ros.ros.node import N3DNode
    from n3d_ros.srv import SpatialQuery

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the memory run")
    parser.add_argument("--phase", type=float, default=10.0, help="seconds per CPU phase")
    parser.add_argument("--executor", choices=("queued-once", "rclpy"), default="queued-once",
                        help="the node's executor (ros/executor.py) or rclpy's stock MultiThreadedExecutor")
    parser.add_argument("--best-effort", action="store_true",
                        help="best-effort QoS on camera and node, as simulators (default: reliable, as realsense2_camera)")
    args = parser.parse_args()

    domain = 150 + os.getpid() % 50
    camera = subprocess.Popen([sys.executable, "-m", "n3d_ros.ros.synthetic_camera", "--rate", str(RATE_HZ)]
                              + (["--best-effort"] if args.best_effort else []),
                              env={**os.environ, "ROS_DOMAIN_ID": str(domain)})
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    kind = QueuedOnceExecutor if args.executor == "queued-once" else MultiThreadedExecutor
    executor = kind(num_threads=8, context=context)
    try:
        frames = {"n": 0}
        counter = rclpy.create_node("bench_frame_counter", context=context)
        counter.create_subscription(CameraInfo, "/synthetic_camera/color/camera_info",
                                    lambda msg: frames.__setitem__("n", frames["n"] + 1), qos_profile_sensor_data)
        executor.add_node(counter)
        threading.Thread(target=executor.spin, daemon=True).start()
        deadline = time.monotonic() + 30.0  # the camera process imports and renders its scene first
        while frames["n"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        if frames["n"] == 0:
            print("the synthetic camera process published nothing in 30 s", file=sys.stderr)
            return 1

        # Baseline: the camera process's own CPU per frame it publishes.
        c0, f0 = process_cpu_s(camera.pid), frames["n"]
        time.sleep(args.phase)
        camera_cpu_per_frame = (process_cpu_s(camera.pid) - c0) / max(frames["n"] - f0, 1)

        node = N3DNode(context=context, parameter_overrides=[
            Parameter("backend", value="tabletop"),
            Parameter("color_topic", value="/synthetic_camera/color/image_raw"),
            Parameter("depth_topic", value="/synthetic_camera/aligned_depth_to_color/image_raw"),
            Parameter("camera_info_topic", value="/synthetic_camera/color/camera_info"),
            Parameter("input_qos", value="best_effort" if args.best_effort else "reliable")])
        node.executor_threads = 8
        client_node = rclpy.create_node("bench_client", context=context)
        executor.add_node(node)
        executor.add_node(client_node)
        node.trigger_configure()
        node.trigger_activate()
        time.sleep(2.0)
        streams = ("color", "depth", "info", "matched")
        c0, r0 = cpu_s(), {k: node.stats.received(k) for k in streams}
        time.sleep(args.phase)
        rates = {k: (node.stats.received(k) - r0[k]) / args.phase for k in streams}
        node_cpu_per_frame = (cpu_s() - c0) / max(rates["matched"] * args.phase, 1)
        print(f"input (camera publishes at {RATE_HZ:.0f} Hz): received colour {rates['color']:.1f} Hz, depth "
              f"{rates['depth']:.1f} Hz, camera_info {rates['info']:.1f} Hz; matched {rates['matched']:.1f} Hz")
        print(f"CPU per frame: camera process {camera_cpu_per_frame * 1e3:.2f} ms (baseline) | node process "
              f"{node_cpu_per_frame * 1e3:.2f} ms ({node_cpu_per_frame / camera_cpu_per_frame:.2f}x)")

        client = client_node.create_client(SpatialQuery, "/n3d_node/query")
        if not client.wait_for_service(timeout_sec=10.0):
            print("the node's ~/query service did not appear", file=sys.stderr)
            return 1
        label = make_scene(0).objects[0].label  # the camera process renders seed 0 (its default)
        latencies, memory, failures = [], [], []
        start = time.monotonic()
        while time.monotonic() - start < args.seconds:
            t0 = time.perf_counter()
            future = client.call_async(SpatialQuery.Request(query=f"where is the {label}", timeout_s=30.0))
            while not future.done():
                time.sleep(0.002)
            latencies.append(time.perf_counter() - t0)
            reply = future.result()
            if not reply.success:
                failures.append(reply.message)
            memory.append((time.monotonic() - start, rss_mib()))
            time.sleep(0.2)
        lat = np.array(latencies) * 1e3
        print(f"query latency over {len(lat)} calls: median {np.median(lat):.1f} ms, "
              f"p95 {np.percentile(lat, 95):.1f} ms, failed {len(failures)}"
              + (f" (first: {failures[0]})" if failures else ""))
        t, m = np.array(memory).T
        tail = t > t[-1] / 4  # skip warm-up
        slope = np.polyfit(t[tail], m[tail], 1)[0] * 60 if tail.sum() > 2 else float("nan")
        print(f"RSS of the node's process: {m[0]:.0f} MiB after the first query, {m[-1]:.0f} MiB after "
              f"{t[-1]:.0f} s; trend {slope:+.2f} MiB/min after warm-up (target: flat)")
        return 1 if failures else 0
    finally:
        executor.shutdown(timeout_sec=5.0)
        context.try_shutdown()
        camera.terminate()
        camera.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
