"""Counters and timings the node reports on /diagnostics."""

from __future__ import annotations

import collections
import threading
import time
from typing import Deque, Dict

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._times: Deque[float] = collections.deque(maxlen=1000)
        self.total = 0

    def tick(self) -> None:
        self._times.append(time.monotonic())
        self.total += 1

    def rate(self) -> float:
        now = time.monotonic()
        recent = [t for t in self._times if now - t <= self.window_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)


class NodeStats:
    def __init__(self):
        self.lock = threading.Lock()
        self.rates: Dict[str, RateMeter] = {name: RateMeter() for name in ("color", "depth", "info", "matched",
                                                                            "detections")}
        self.counters = collections.Counter()
        self.query_latency: Deque[float] = collections.deque(maxlen=200)
        self.detection_latency: Deque[float] = collections.deque(maxlen=200)
        self.last_problem = ""

    def tick(self, name: str) -> None:
        with self.lock:
            self.rates[name].tick()

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] += n

    def received(self, name: str) -> int:
        with self.lock:
            return self.rates[name].total

    def rate(self, name: str) -> float:
        with self.lock:
            return self.rates[name].rate()

    def status(self, name: str, hardware_id: str, lifecycle: str, model_state: str, queue: int,
               frame_age_s, max_future_stamp_s=None, input_problem: str = "", last_error: str = "") -> DiagnosticStatus:
        """ERROR: a failed transition or model, or a frame stamped in the future (no query can use it);
        WARN: no matched frame yet, an input problem the watchdog found, a refused frame; else OK."""
        with self.lock:
            values = {f"{k}_hz": f"{m.rate():.2f}" for k, m in self.rates.items()}
            values.update({f"{k}_total": str(m.total) for k, m in self.rates.items()})
            values.update({k: str(v) for k, v in sorted(self.counters.items())})
            for label, samples in (("query", self.query_latency), ("detection", self.detection_latency)):
                if samples:
                    values[f"{label}_latency_median_s"] = f"{float(np.median(samples)):.4f}"
                    values[f"{label}_latency_p95_s"] = f"{float(np.percentile(samples, 95)):.4f}"
            problem = self.last_problem
        values.update({"lifecycle_state": lifecycle, "model_state": model_state, "query_queue": str(queue),
                       "frame_age_s": "none" if frame_age_s is None else f"{frame_age_s:.3f}"})
        if last_error:
            values["last_error"] = last_error
        future = (lifecycle == "active" and frame_age_s is not None and max_future_stamp_s is not None
                  and -frame_age_s > max_future_stamp_s)
        if model_state.startswith("error"):
            level, message = DiagnosticStatus.ERROR, model_state
        elif last_error and lifecycle != "active":
            level, message = DiagnosticStatus.ERROR, last_error
        elif future:
            level, message = DiagnosticStatus.ERROR, (
                f"the latest frame is stamped {-frame_age_s:.2f} s ahead of the node clock (max_future_stamp_s="
                f"{max_future_stamp_s}): synchronise the camera's and this computer's clocks")
        elif input_problem:
            level, message = DiagnosticStatus.WARN, input_problem
        elif lifecycle == "active" and frame_age_s is None:
            level, message = DiagnosticStatus.WARN, "no matched colour/depth/camera_info frame yet"
        elif problem:
            level, message = DiagnosticStatus.WARN, problem
        else:
            level, message = DiagnosticStatus.OK, f"{lifecycle}, model {model_state}"
        return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])
