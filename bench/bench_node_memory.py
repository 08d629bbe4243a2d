"""Resident memory of the n3d backend (tiny random-weight N3D-VLM checkpoint, CPU) with and without the node,
across queries and configure/cleanup cycles.

Each variant runs in its own process (RSS is per process and glibc does not give freed pages back by itself),
with the same frames and questions. Prints resident memory (MiB): at start, with the model loaded, the most
after the queries, after each cleanup, and the process's peak (VmHWM).
  pipeline         Pipeline without ROS, close() after each cycle (the baseline)
  pipeline+trim    the same, then release_freed_memory() (gc + glibc malloc_trim) after close
  node-no-trim     N3DNode over real DDS with malloc_trim disabled: the node as it was before the fix
  node             N3DNode: configure, activate, queries through ~/query, deactivate, cleanup (cleanup trims:
                   n3d_ros/ros/freed_memory.py)
Run: . ci/env.sh && python bench/bench_node_memory.py [--cycles 4 --queries 6]   (minutes on 2 cores)

Measured here (2-core CPU, --cycles 3 --queries 4, MiB): loaded 602 (pipeline) / 648 (node); after the
queries 909 / 1040; after each cleanup: pipeline 645 668 644, pipeline+trim 429 431 433, node-no-trim
746 822 837 (climbing), node 508 517 523. The node kept nothing of ours after cleanup (the cached frame,
matcher and publishers are dropped); the RSS it kept was freed memory left in glibc's arenas. MALLOC_ARENA_MAX=2
did not lower the peak during queries (1070), nor did running the pipeline in a thread (896): the first query's
working set (+260 MiB) is the model's, with or without ROS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

QUESTIONS = ("where is the red mug", "how tall is the box?", "What would a child like to play with?")
VARIANTS = ("pipeline", "pipeline+trim", "node-no-trim", "node")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _scenes(count: int):
    from n3d_ros.core.scene import make_scene

    return [make_scene(seed) for seed in range(count)]


def _config() -> dict:
    from n3d_ros.engine.tiny import cached_tiny_checkpoint

    return {"backend": "n3d", "model": str(cached_tiny_checkpoint()), "device": "cpu", "dtype": "float32",
            "max_new_tokens": 16}


def run_pipeline(cycles: int, queries: int, trim: bool) -> dict:
    import gc

    from n3d_ros.pipeline import Pipeline, PipelineConfig
    from n3d_ros.ros.freed_memory import release_freed_memory

    scenes = _scenes(queries)
    config = PipelineConfig.from_dict(_config())
    marks = {"start": rss_mib(), "cycles": []}
    for _ in range(cycles):
        pipeline = Pipeline.from_config(config)
        loaded = rss_mib()
        for i, scene in enumerate(scenes):
            pipeline.ask(scene.frame, QUESTIONS[i % len(QUESTIONS)])
        asked = rss_mib()
        pipeline.close()
        del pipeline
        if trim:
            release_freed_memory()
        else:
            gc.collect()
        marks["cycles"].append({"loaded": loaded, "after_queries": asked, "after_cleanup": rss_mib()})
    marks["peak"] = peak_mib()
    return marks


def _publish_and_wait(node, pubs, scene) -> None:
    from n3d_ros.ros.conversions import frame_to_msgs

    color, depth, info = frame_to_msgs(scene.frame, depth_mm=scene.depth_mm)
    stamp = node.get_clock().now().to_msg()
    for key, msg in (("color", color), ("depth", depth), ("info", info)):
        msg.header.stamp = stamp
        pubs[key].publish(msg)
    stamp_ns = stamp.sec * 10**9 + stamp.nanosec
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        latest = node.matcher.latest()
        if latest is not None and latest.stamp_ns == stamp_ns:
            return
        time.sleep(0.01)
    raise RuntimeError("the node did not receive the frame")


def run_node(cycles: int, queries: int, trim: bool) -> dict:
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image

    from n3d_ros.ros import freed_memory
    from n3d_ros.ros.client import call
    from n3d_ros.ros.executor import QueuedOnceExecutor
    from n3d_ros.ros.node import N3DNode

    if not trim:
        freed_memory._malloc_trim = lambda: None  # the node as it was: gc and the CUDA cache only
    topics = {"color_topic": "/bench_cam/color", "depth_topic": "/bench_cam/depth",
              "camera_info_topic": "/bench_cam/info"}
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=150 + os.getpid() % 80)
    node = N3DNode(context=context, parameter_overrides=[
        Parameter(k, value=v) for k, v in {**_config(), **topics, "max_frame_age_s": 600.0,
                                           "query_timeout_s": 120.0}.items()])
    camera = rclpy.create_node("bench_cam", context=context)
    client = rclpy.create_node("bench_client", context=context)
    pubs = {key: camera.create_publisher(kind, topics[topic], 10)
            for key, kind, topic in (("color", Image, "color_topic"), ("depth", Image, "depth_topic"),
                                     ("info", CameraInfo, "camera_info_topic"))}
    executor = QueuedOnceExecutor(num_threads=8, context=context)
    node.executor_threads = 8
    for each in (node, camera, client):
        executor.add_node(each)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    scenes = _scenes(queries)
    marks = {"start": rss_mib(), "cycles": []}
    try:
        for _ in range(cycles):
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, node.model_state
            loaded = rss_mib()
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS, node.last_error
            deadline = time.monotonic() + 10
            while not all(p.get_subscription_count() for p in pubs.values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            for i, scene in enumerate(scenes):
                _publish_and_wait(node, pubs, scene)
                if call(client, "/n3d_node/query", QUESTIONS[i % len(QUESTIONS)], 120.0) is None:
                    raise RuntimeError("no reply from the node")
            asked = rss_mib()
            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
            marks["cycles"].append({"loaded": loaded, "after_queries": asked, "after_cleanup": rss_mib()})
    finally:
        executor.shutdown(timeout_sec=5)
        spinner.join(5)
        for each in (node, camera, client):
            each.destroy_node()
        context.try_shutdown()
    marks["peak"] = peak_mib()
    return marks


def child(variant: str, cycles: int, queries: int) -> None:
    if variant.startswith("pipeline"):
        marks = run_pipeline(cycles, queries, trim=variant.endswith("trim"))
    else:
        marks = run_node(cycles, queries, trim=variant == "node")
    print("RESULT " + json.dumps(marks), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=4, help="configure/cleanup cycles per variant")
    parser.add_argument("--queries", type=int, default=6, help="queries per cycle (each on a new frame)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.cycles, args.queries)
        return 0
    from n3d_ros.engine.tiny import cached_tiny_checkpoint

    cached_tiny_checkpoint()  # built once, outside the measured processes
    print(f"n3d backend, tiny checkpoint on CPU; {args.cycles} cycles x {args.queries} queries; RSS in MiB"
          + (f"; MALLOC_ARENA_MAX={os.environ['MALLOC_ARENA_MAX']}" if "MALLOC_ARENA_MAX" in os.environ else ""))
    print(f"{'variant':<14} {'start':>6} {'loaded':>7} {'queried':>8}  {'after each cleanup':<28} {'peak':>6}")
    for variant in args.variants:
        started = time.monotonic()
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--cycles", str(args.cycles),
                              "--queries", str(args.queries)], capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            print(f"{variant:<14} failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-3:]}")
            continue
        marks = json.loads(lines[-1][len("RESULT "):])
        cycles = marks["cycles"]
        cleanup = " ".join(f"{c['after_cleanup']:.0f}" for c in cycles)
        print(f"{variant:<14} {marks['start']:6.0f} {cycles[0]['loaded']:7.0f} "
              f"{max(c['after_queries'] for c in cycles):8.0f}  {cleanup:<28} {marks['peak']:6.0f}"
              f"   ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
