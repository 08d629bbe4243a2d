#!/usr/bin/env python3
"""What the object memory adds to the node per frame and per query (tabletop backend, seeded orbit).

    . ci/env.sh && python bench/bench_memory_feed.py [--frames 20] [--width 640 --height 480]

Per frame, medians: Pipeline.detect (the baseline, same frames) vs the node's memory feed: ObjectMemory.ingest
plus building ~/objects (Detection3DArray) and ~/objects_markers. Per query on the last frame: Pipeline.ask vs
ask_with_memory for an object in view, and answer_from_memory for one named by memory id.
"""

from __future__ import annotations

import argparse
import statistics
import time

from n3d_ros.backends.tabletop import TabletopBackend
from n3d_ros.core.trajectory import MovingCamera
from n3d_ros.memory import CameraPose, MemoryConfig, ObjectMemory
from n3d_ros.memory.answers import answer_from_memory, ask_with_memory
from n3d_ros.pipeline import Pipeline
from n3d_ros.ros.memory_io import memory_detections, memory_header, memory_markers


def timed(call, repeats=1):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    pipeline, memory = Pipeline(TabletopBackend()), ObjectMemory(MemoryConfig(frame_id="table"))
    detect_s, feed_s = [], []
    for view in MovingCamera(args.seed, "orbit", args.frames, width=args.width, height=args.height):
        frame = view.scene.frame
        pose = CameraPose(view.pose, "table", frame.stamp_ns, frame.frame_id)
        grounding, seconds = timed(lambda: pipeline.detect(frame))
        detect_s.append(seconds)

        def feed():
            memory.ingest(grounding, frame, pose)
            objects, header = memory.objects(), memory_header("table", frame.stamp_ns)
            memory_detections(objects, header, memory.basis)
            memory_markers(objects, header, memory.basis, frame.stamp_ns)

        feed_s.append(timed(feed)[1])
    print(f"{args.frames} frames {args.width}x{args.height}, {len(memory)} objects remembered")
    print(f"per frame: detect {statistics.median(detect_s) * 1e3:.1f} ms (baseline); memory feed "
          f"{statistics.median(feed_s) * 1e3:.2f} ms ({statistics.median(feed_s) / statistics.median(detect_s):.1%})")
    label = memory.objects()[0].label
    question = f"where is the {label}"
    _, plain = timed(lambda: pipeline.ask(frame, question), 5)
    _, remembered = timed(lambda: ask_with_memory(pipeline, memory, frame, question, pose), 5)
    _, by_id = timed(lambda: answer_from_memory(memory, f"where is memory object {memory.objects()[0].id}",
                                                frame.stamp_ns, pose), 5)
    print(f"per query '{question}': Pipeline.ask {plain * 1e3:.1f} ms (baseline); ask_with_memory "
          f"{remembered * 1e3:.1f} ms; answer_from_memory by id {by_id * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
