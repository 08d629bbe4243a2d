"""Background detection: at detection_rate_hz the newest matched set (once each) goes to the inference worker,
and its boxes are published on ~/detections, ~/markers, ~/debug_image (in the target frame when one is set).

A problem that repeats every cycle (a missing transform, a stale camera) is logged once per period with its
cause, never as a traceback per cycle.
"""

from __future__ import annotations

import time
import traceback

from std_msgs.msg import Header

from ..core.types import Cancelled, InputError
from .memory_node import feed_detection
from .outputs import target_transform
from .worker import Job

PROBLEM_LOG_PERIOD_S = 10.0


class BackgroundDetection:
    def __init__(self, node, log):
        self._node = node  # the shell: read for its current state only
        self._log = log
        self._last_stamp = -1

    def reset(self) -> None:
        self._last_stamp = -1

    def tick(self) -> None:
        """The detection timer: offer the newest set that was not detected yet."""
        node = self._node
        matcher, worker, pipeline = node.matcher, node.worker, node.pipeline
        match = matcher.latest() if matcher is not None else None
        if match is None or worker is None or pipeline is None or match.stamp_ns == self._last_stamp:
            return
        if worker.submit_detection(Job(lambda job: self._run(job, pipeline, match), "detection")):
            self._last_stamp = match.stamp_ns

    def _run(self, job: Job, pipeline, match) -> None:
        """In the inference thread."""
        node = self._node
        stats, settings, tf, outputs = node.stats, node.settings, node.tf, node.outputs
        started = time.monotonic()
        try:
            frame = node.inputs.usable_frame(match, pipeline)
            result = pipeline.detect(frame, settings.detection_prompt or None, cancel=job.abandoned)
            if node.lifecycle != "active":  # a timer tick that raced deactivate submitted this: publish nothing
                raise Cancelled("deactivated")
            transform, out_frame = target_transform(tf, node.tf_missing, settings.target_frame, frame,
                                                    settings.tf_timeout_s)
        except InputError as exc:
            stats.count("skipped_detections")
            self._log.warning("detection skipped", f"detection skipped: {exc}", PROBLEM_LOG_PERIOD_S)
            return
        except Cancelled:  # deactivated or shutting down while the model ran: nothing to publish
            stats.count("cancelled_detections")
            return
        except Exception as exc:  # a backend failure: said once per period with its traceback, not per cycle
            stats.count("failed_detections")
            self._log.error("detection failed", f"detection failed: {type(exc).__name__}: {exc}\n"
                                                f"{traceback.format_exc()}", PROBLEM_LOG_PERIOD_S)
            return
        image_header = Header(stamp=match.color.header.stamp, frame_id=frame.frame_id)
        out_header = Header(stamp=match.color.header.stamp, frame_id=out_frame)
        outputs.publish_boxes("detection", frame, result.boxes, image_header, out_header, transform,
                              settings.publish_debug_image)
        feed_detection(node, result, frame, settings.detection_prompt)
        stats.tick("detections")
        with stats.lock:
            stats.detection_latency.append(time.monotonic() - started)
