"""Log lines that repeat at most once per period per key.

rclpy's ``throttle_duration_sec`` throttles per call site, so two different problems logged from one line
(colour stopped, then depth stopped) would hide each other. Here each key (a problem kind, a stream) has its
own period, and every emitted line is counted, so tests and diagnostics can see what was said.
"""

from __future__ import annotations

import collections
import threading
import time


class ThrottledLog:
    def __init__(self, logger):
        self._logger = logger
        self._last = {}  # key -> monotonic time of the last line logged for it
        self._lock = threading.Lock()
        self.emitted = collections.Counter()  # key -> lines logged
        self.suppressed = collections.Counter()  # key -> lines held back by the period
        self.last_message = {}  # key -> the newest message offered, logged or not

    def _due(self, key: str, period_s: float, message: str) -> bool:
        now = time.monotonic()
        with self._lock:
            self.last_message[key] = message
            last = self._last.get(key)
            if last is not None and now - last < period_s:
                self.suppressed[key] += 1
                return False
            self._last[key] = now
            self.emitted[key] += 1
            return True

    def warning(self, key: str, message: str, period_s: float) -> bool:
        """Log ``message`` unless ``key`` was logged less than ``period_s`` ago; True when it was logged."""
        if not self._due(key, period_s, message):
            return False
        self._logger.warning(message)
        return True

    def error(self, key: str, message: str, period_s: float) -> bool:
        if not self._due(key, period_s, message):
            return False
        self._logger.error(message)
        return True
